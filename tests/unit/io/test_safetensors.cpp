// safetensors: a file written by hand in Python (make_safetensors_fixture.py) as the oracle, round
// trips through our writer, the real CIFAR ResNet-20 weights when present, and corrupt files.
#include "io/safetensors.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <functional>
#include <numeric>
#include <filesystem>

#include "io_test_util.h"

namespace hessgap::io {
namespace {

using test::error_of;
using test::tmp_path;

const std::string kFixture = HG_SOURCE_DIR "/tests/fixtures/io/small.safetensors";

// The values make_safetensors_fixture.py stores, computed in float64 and cast to `dtype`.
torch::Tensor expected_values(torch::Dtype dtype, std::vector<int64_t> shape) {
  auto i = torch::arange(std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>()), torch::kDouble).reshape(shape);
  torch::Tensor v;
  if (c10::isFloatingType(dtype)) {
    v = (i - 2) * 0.5;
  } else if (dtype == torch::kByte) {
    v = i;
  } else if (dtype == torch::kBool) {
    v = torch::fmod(i, 3) == 0;
  } else {
    v = i - 3;
  }
  return v.to(dtype);
}

// A safetensors file from a literal header and data section.
std::string raw_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

TEST(ioSafetensors, ReadsPythonFixtureInFileOrder) {
  TensorFile tf = read_safetensors(kFixture);
  struct Want {
    const char* name;
    torch::Dtype dtype;
    std::vector<int64_t> shape;
  };
  const std::vector<Want> want = {
      {"z.f32", torch::kFloat, {2, 3}},  {"a.f64", torch::kDouble, {3}},  {"m.f16", torch::kHalf, {2, 2}},
      {"b.bf16", torch::kBFloat16, {4}}, {"y.i64", torch::kLong, {5}},    {"c.i32", torch::kInt, {2, 1}},
      {"x.i16", torch::kShort, {3}},     {"d.i8", torch::kChar, {4}},     {"w.u8", torch::kByte, {6}},
      {"e.bool", torch::kBool, {5}},     {"v.scalar", torch::kFloat, {}}, {"f.empty", torch::kFloat, {0, 3}},
  };
  ASSERT_EQ(tf.tensors.size(), want.size());
  for (std::size_t k = 0; k < want.size(); ++k) {
    const auto& [name, t] = tf.tensors[k];
    SCOPED_TRACE(want[k].name);
    EXPECT_EQ(name, want[k].name);  // data order, not the JSON's sorted key order
    EXPECT_EQ(t.scalar_type(), want[k].dtype);
    EXPECT_EQ(t.sizes().vec(), want[k].shape);
    EXPECT_TRUE(t.is_contiguous());
    EXPECT_TRUE(torch::equal(t, expected_values(want[k].dtype, want[k].shape)));
  }
  EXPECT_EQ(tf.metadata.at("format"), "pt");
  EXPECT_EQ(tf.metadata.at("generated_by"), "tests/unit/io/make_safetensors_fixture.py");
}

TEST(ioSafetensors, RoundTripAllDtypes) {
  const std::string path = tmp_path("rt.safetensors");
  NamedTensors in;
  for (torch::Dtype d : {torch::kDouble, torch::kFloat, torch::kHalf, torch::kBFloat16, torch::kLong, torch::kInt,
                         torch::kShort, torch::kChar, torch::kByte, torch::kBool}) {
    in.emplace_back(std::string("t.") + c10::toString(d), expected_values(d, {3, 2}));
  }
  // A non-contiguous view and a 0-d tensor are written as their values.
  in.emplace_back("transposed", torch::arange(6, torch::kFloat).reshape({2, 3}).t());
  in.emplace_back("scalar", torch::tensor(2.5, torch::kDouble).reshape({}));
  write_safetensors(path, in, {{"k", "v"}, {"source", "unit test"}});

  // The data section starts 8-byte aligned.
  std::string bytes = test::read_bytes(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_EQ(bytes[8], '{');

  TensorFile out = read_safetensors(path);
  ASSERT_EQ(out.tensors.size(), in.size());
  for (std::size_t k = 0; k < in.size(); ++k) {
    SCOPED_TRACE(in[k].first);
    EXPECT_EQ(out.tensors[k].first, in[k].first);
    EXPECT_EQ(out.tensors[k].second.scalar_type(), in[k].second.scalar_type());
    EXPECT_TRUE(torch::equal(out.tensors[k].second, in[k].second));
  }
  EXPECT_EQ(out.metadata, (std::map<std::string, std::string>{{"k", "v"}, {"source", "unit test"}}));
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path())) {
    EXPECT_EQ(e.path().string().find(path + ".tmp-"), std::string::npos) << e.path();  // no temporary left
  }
}

TEST(ioSafetensors, RealResNet20) {
  const std::string path = "/work/shared/data/models/cifar10-resnet/resnet20.safetensors";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not present";
  TensorFile tf = read_safetensors(path);
  EXPECT_EQ(tf.tensors.size(), 97u);
  bool found = false;
  for (const auto& [name, t] : tf.tensors) {
    if (name == "linear.weight") {
      found = true;
      EXPECT_EQ(t.sizes().vec(), (std::vector<int64_t>{10, 64}));
      EXPECT_EQ(t.scalar_type(), torch::kFloat);
      EXPECT_TRUE(torch::isfinite(t).all().item<bool>());
    }
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(tf.tensors.front().first, "conv1.weight");
}

TEST(ioSafetensors, TruncatedFilesNameTheFile) {
  const std::string good = test::read_bytes(kFixture);
  const std::string path = tmp_path("cut.safetensors");
  for (std::size_t len : {std::size_t{0}, std::size_t{5}, std::size_t{8}, std::size_t{40}, good.size() - 1}) {
    SCOPED_TRACE(len);
    test::write_bytes(path, good.substr(0, len));
    std::string msg = error_of([&] { read_safetensors(path); });
    EXPECT_HAS(msg, path);
  }
  test::write_bytes(path, good.substr(0, good.size() - 1));
  EXPECT_HAS(error_of([&] { read_safetensors(path); }), "tensor 'v.scalar'");  // the last tensor with data
}

TEST(ioSafetensors, CorruptHeaders) {
  const std::string path = tmp_path("bad.safetensors");
  auto message = [&](const std::string& bytes) {
    test::write_bytes(path, bytes);
    return error_of([&] { read_safetensors(path); });
  };
  EXPECT_HAS(message(raw_file("{\"a\": [", "")), "malformed JSON header");
  EXPECT_HAS(message(raw_file("[1, 2]  ", "")), "not a JSON object");
  std::string huge(8, '\xff');
  EXPECT_HAS(message(huge + "{}"), "invalid header length");
  EXPECT_HAS(message(raw_file(R"({"w":{"dtype":"U16","shape":[1],"data_offsets":[0,2]}})", "xx")),
             "tensor 'w' in safetensors file '" + path + "': unsupported dtype 'U16'");
  EXPECT_HAS(message(raw_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "1234")),
             "tensor 'w' in safetensors file '" + path + "': data_offsets [0, 8] lie beyond");
  EXPECT_HAS(message(raw_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", "12345678")),
             "need 12");
  EXPECT_HAS(message(raw_file(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "1234")),
             "non-negative");
  EXPECT_HAS(message(raw_file(R"({"w":{"dtype":"F32","shape":[1]}})", "1234")), "data_offsets");
  EXPECT_HAS(message(raw_file(R"({"u":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("v":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                              "12345678")),
             "overlap tensor 'u'");
  EXPECT_HAS(error_of([&] { read_safetensors(tmp_path("absent.safetensors")); }), "not found");
}

TEST(ioSafetensors, WriteErrors) {
  const std::string path = tmp_path("w.safetensors");
  EXPECT_HAS(error_of([&] { write_safetensors(path, {{"a", torch::ones(2)}, {"a", torch::ones(2)}}); }),
             "tensor 'a' for safetensors file '" + path + "': the name appears twice");
  EXPECT_HAS(error_of([&] { write_safetensors(path, {{"u", torch::Tensor()}}); }), "undefined");
  EXPECT_HAS(error_of([&] { write_safetensors(path, {{"c", torch::ones(2, torch::kComplexFloat)}}); }),
             "cannot be stored in safetensors");
  EXPECT_HAS(error_of([&] { write_safetensors(tmp_path("nodir") + "/x.safetensors", {}); }), "does not exist");
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace hessgap::io
