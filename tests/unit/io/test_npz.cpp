// .npy / .npz reading and the Google ViT renaming, against numpy-written fixtures
// (tests/fixtures/models/make_checkpoint_fixtures.py) and hand-made .npy headers.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "io/checkpoint.h"
#include "io/google_vit.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "io_test_util.h"

namespace hessgap::io {
namespace {

using test::error_of;
using test::tmp_path;

std::string fixture(const std::string& name) { return HG_SOURCE_DIR "/tests/fixtures/models/checkpoints/" + name; }

// A version-1 .npy file: magic, header padded to 64 bytes, then `data`.
std::string npy(const std::string& dict, const std::string& data) {
  std::string header = dict;
  const std::size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY\x01";
  out += '\0';
  out += char(header.size() & 0xff);
  out += char(header.size() >> 8);
  return out + header + data;
}

template <typename T>
std::string raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

TEST(ioNpy, HeaderDtypesAndFortranOrder) {
  auto t = parse_npy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", raw<float>({0, 1, 2, 3, 4, 5})), "x");
  EXPECT_TRUE(torch::equal(t, torch::arange(6, torch::kFloat).reshape({2, 3})));
  // Fortran order: the data is column-major; the tensor comes back in C order.
  t = parse_npy(npy("{'descr': '<i8', 'fortran_order': True, 'shape': (2, 3), }", raw<int64_t>({0, 3, 1, 4, 2, 5})), "x");
  EXPECT_TRUE(torch::equal(t, torch::arange(6, torch::kLong).reshape({2, 3})));
  EXPECT_TRUE(t.is_contiguous());
  t = parse_npy(npy("{'descr': '|b1', 'fortran_order': False, 'shape': (), }", std::string(1, '\1')), "x");
  EXPECT_EQ(t.dim(), 0);
  EXPECT_TRUE(t.item<bool>());
  t = parse_npy(npy("{'descr': '<f2', 'fortran_order': False, 'shape': (0, 4), }", ""), "x");
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(t.scalar_type(), torch::kHalf);
}

TEST(ioNpy, RefusalsNameTheArrayAndTheDtype) {
  const std::string what = "array 'w' in npz archive 'f.npz'";
  for (const char* descr : {"<u2", "<u4", "<c8", ">f4", "|O", "<V2", "<U3"}) {
    SCOPED_TRACE(descr);
    const std::string msg = error_of([&] {
      parse_npy(npy(std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (1,), }", "abcdefgh"), what);
    });
    EXPECT_HAS(msg, what);
    EXPECT_HAS(msg, std::string("'") + descr + "'");
  }
  EXPECT_HAS(error_of([&] { parse_npy(npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", "abcd"), what); }),
             "structured dtype");
  EXPECT_HAS(error_of([&] { parse_npy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", "abcd"), what); }),
             "4 bytes of data, but dtype '<f4' and shape [4] need 16 (truncated)");
  EXPECT_HAS(error_of([&] { parse_npy("\x93NUMPY\x01", what); }), "truncated");
  EXPECT_HAS(error_of([&] { parse_npy("PK not an array", what); }), "not a .npy array");
}

TEST(ioNpz, GoogleVitIsRenamedAndTransposed) {
  TensorFile expected = read_safetensors(fixture("vit_google_tiny_expected.safetensors"));
  std::map<std::string, torch::Tensor> want;
  std::vector<std::string> order;
  for (auto& [name, t] : expected.tensors) {
    if (name.rfind("hf.", 0) == 0) want[name.substr(3)] = t;
  }
  for (const char* file : {"vit_google_tiny.npz", "vit_google_tiny_deflate.npz"}) {
    SCOPED_TRACE(file);
    EXPECT_EQ(detect_checkpoint_format(fixture(file)), CheckpointFormat::Npz);
    std::map<std::string, std::string> meta;
    const StateDict sd = read_checkpoint(fixture(file), &meta);
    EXPECT_EQ(meta.at("google_vit.dropped"), "pre_logits/kernel,pre_logits/bias");
    ASSERT_EQ(sd.size(), want.size());
    EXPECT_EQ(sd.front().first, "vit.embeddings.cls_token");
    EXPECT_EQ(sd.back().first, "classifier.bias");
    for (const auto& [name, t] : sd) {
      SCOPED_TRACE(name);
      ASSERT_TRUE(want.count(name));
      EXPECT_EQ(t.scalar_type(), torch::kFloat);
      EXPECT_TRUE(t.is_contiguous());
      EXPECT_TRUE(torch::equal(t.to(torch::kDouble), want[name]));
    }
  }
  // The raw arrays keep their Google names.
  const NamedTensors raw_arrays = read_npz(fixture("vit_google_tiny.npz"));
  EXPECT_EQ(raw_arrays.front().first, "cls");
  EXPECT_EQ(raw_arrays.size(), want.size() + 2);  // + pre_logits kernel and bias
}

TEST(ioNpz, GoogleVitMappingErrors) {
  const NamedTensors good = read_npz(fixture("vit_google_tiny.npz"));
  auto with = [&](const std::function<void(NamedTensors&)>& edit) {
    NamedTensors a = good;
    edit(a);
    return error_of([&] { google_vit_to_hf(a, "g.npz"); });
  };
  EXPECT_HAS(with([](NamedTensors& a) { a.emplace_back("Transformer/encoderblock_0/Extra/kernel", torch::ones(1)); }),
             "unknown array 'Transformer/encoderblock_0/Extra/kernel'");
  EXPECT_HAS(with([](NamedTensors& a) {
               a.erase(std::remove_if(a.begin(), a.end(), [](auto& p) { return p.first == "head/bias"; }), a.end());
             }),
             "'g.npz' lacks array 'head/bias'");
  EXPECT_HAS(with([](NamedTensors& a) {
               for (auto& [n, t] : a) {
                 if (n == "Transformer/encoderblock_1/MultiHeadDotProductAttention_1/key/kernel") t = torch::ones({8, 8});
               }
             }),
             "array 'Transformer/encoderblock_1/MultiHeadDotProductAttention_1/key/kernel' has shape [8, 8], expected [8, 2, 4]");
  EXPECT_HAS(with([](NamedTensors& a) {
               for (auto& [n, t] : a) {
                 if (n.rfind("Transformer/encoderblock_1/", 0) == 0) n.replace(0, 26, "Transformer/encoderblock_5");
               }
             }),
             "encoder blocks must be numbered 0..1");
}

TEST(ioNpz, TruncatedAndForeignArchives) {
  const std::string bytes = test::read_bytes(fixture("vit_google_tiny.npz"));
  const std::string cut = tmp_path("cut.npz");
  test::write_bytes(cut, bytes.substr(0, bytes.size() / 2));
  const std::string msg = error_of([&] { read_checkpoint(cut); });
  EXPECT_HAS(msg, cut);
  EXPECT_HAS(msg, "truncated");
}

}  // namespace
}  // namespace hessgap::io
