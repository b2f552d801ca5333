// Checkpoints: format detection, the HDF5 layout round trip, and load_state_dict's matching rules
// on a small module with parameters and BatchNorm buffers.
#include "io/checkpoint.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "io/h5.h"
#include "io/safetensors.h"
#include "io_test_util.h"

namespace hessgap::io {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using test::tmp_path;

// fc1.{weight,bias} [4,3],[4]; bn.{weight,bias} [4]; fc2.{weight,bias} [2,4],[2];
// buffers bn.running_mean, bn.running_var [4], bn.num_batches_tracked [].
struct Net : torch::nn::Module {
  Net() {
    fc1 = register_module("fc1", torch::nn::Linear(3, 4));
    bn = register_module("bn", torch::nn::BatchNorm1d(4));
    fc2 = register_module("fc2", torch::nn::Linear(4, 2));
  }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};

// A state dict for Net with distinct float64 values (k + 0.5 * i), so that copies are checkable
// and dtype conversion (float64 -> float32) is exercised.
StateDict net_values(const Net& net) {
  StateDict sd;
  double k = 1;
  for (const auto& [name, t] : state_dict_of(net)) {
    auto v = torch::arange(t.numel(), torch::kDouble).reshape(t.sizes()) * 0.5 + k++;
    sd.emplace_back(name, name == "bn.num_batches_tracked" ? v.to(torch::kLong) : v);
  }
  return sd;
}

StateDict without(StateDict sd, const std::string& name) {
  sd.erase(std::remove_if(sd.begin(), sd.end(), [&](const auto& p) { return p.first == name; }), sd.end());
  return sd;
}

TEST(ioCheckpoint, StateDictOfListsParametersThenBuffers) {
  Net net;
  StateDict sd = state_dict_of(net);
  std::vector<std::string> names;
  for (const auto& p : sd) names.push_back(p.first);
  EXPECT_EQ(names, (std::vector<std::string>{"fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "fc2.weight",
                                             "fc2.bias", "bn.running_mean", "bn.running_var",
                                             "bn.num_batches_tracked"}));
  // Aliases, not copies.
  sd[0].second.fill_(3.0);
  EXPECT_EQ(net.fc1->weight[0][0].item<float>(), 3.0f);
}

TEST(ioCheckpoint, LoadCopiesWithDtypeConversion) {
  Net net;
  StateDict sd = net_values(net);
  LoadOptions opts;
  opts.optional_suffixes = {};
  LoadReport r = load_state_dict(net, sd, opts);
  EXPECT_EQ(r.loaded.size(), 9u);
  EXPECT_TRUE(r.missing.empty() && r.unexpected.empty() && r.mismatched.empty());
  for (const auto& [name, want] : sd) {
    SCOPED_TRACE(name);
    for (const auto& [n2, got] : state_dict_of(net)) {
      if (n2 == name) EXPECT_TRUE(torch::equal(got, want.to(got.scalar_type())));
    }
  }
  EXPECT_EQ(net.fc1->weight.scalar_type(), torch::kFloat);
  EXPECT_TRUE(net.fc1->weight.requires_grad());
}

TEST(ioCheckpoint, IntegerValuesForAFloatingWeightAreRefused) {
  // Float64 into float32 converts (above); int64 into a float weight is no checkpoint of this model.
  Net net;
  StateDict sd = net_values(net);
  for (auto& [name, t] : sd) {
    if (name == "fc1.weight") t = t.to(torch::kInt32);
  }
  try {
    load_state_dict(net, sd, {});
    ADD_FAILURE() << "integer weights were loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'fc1.weight'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Int"), std::string::npos) << e.what();
  }
}

TEST(ioCheckpoint, StrictErrorListsEverythingOnce) {
  Net net;
  torch::Tensor before = net.fc1->weight.detach().clone();
  StateDict sd = without(net_values(net), "fc1.bias");
  sd.emplace_back("extra.weight", torch::ones({1}));
  for (auto& [name, t] : sd) {
    if (name == "fc2.weight") t = torch::ones({3, 4});
  }
  LoadOptions opts;
  opts.source = "ckpt/model.safetensors";
  std::string msg = error_of([&] { load_state_dict(net, sd, opts); });
  EXPECT_HAS(msg, "'ckpt/model.safetensors'");
  EXPECT_HAS(msg, "missing (1): fc1.bias");
  EXPECT_HAS(msg, "unexpected (1): extra.weight");
  EXPECT_HAS(msg, "fc2.weight (checkpoint [3, 4], model [2, 4])");
  // Nothing was copied.
  EXPECT_TRUE(torch::equal(net.fc1->weight.detach(), before));

  opts.strict = false;
  LoadReport r = load_state_dict(net, sd, opts);
  EXPECT_EQ(r.missing, std::vector<std::string>{"fc1.bias"});
  EXPECT_EQ(r.unexpected, std::vector<std::string>{"extra.weight"});
  EXPECT_EQ(r.mismatched, std::vector<std::string>{"fc2.weight"});
  EXPECT_EQ(r.loaded.size(), 7u);  // 9 - missing - mismatched
  EXPECT_FALSE(torch::equal(net.fc1->weight.detach(), before));
}

TEST(ioCheckpoint, OptionalSuffixMayBeMissing) {
  Net net;
  StateDict sd = without(net_values(net), "bn.num_batches_tracked");
  LoadReport r = load_state_dict(net, sd);
  EXPECT_TRUE(r.missing.empty());
  EXPECT_EQ(r.optional_missing, std::vector<std::string>{"bn.num_batches_tracked"});
  EXPECT_EQ(r.loaded.size(), 8u);
  LoadOptions none;
  none.optional_suffixes = {};
  EXPECT_HAS(error_of([&] { load_state_dict(net, sd, none); }), "missing (1): bn.num_batches_tracked");
}

TEST(ioCheckpoint, DuplicateNamesAreAnError) {
  Net net;
  StateDict sd = net_values(net);
  sd.push_back(sd.front());
  LoadOptions opts;
  opts.strict = false;
  EXPECT_HAS(error_of([&] { load_state_dict(net, sd, opts); }), "tensor 'fc1.weight' twice");
}

TEST(ioCheckpoint, Hdf5RoundTripPreservesDtypes) {
  const std::string path = tmp_path("ckpt.h5");
  StateDict in = {
      {"layer1.0.conv1.weight", torch::randn({2, 3, 1, 1}, torch::kFloat)},
      {"a.f64", torch::randn({3}, torch::kDouble)},
      {"b.i64", torch::arange(-2, 3, torch::kLong)},
      {"c.f16", torch::randn({4}).to(torch::kHalf)},
      {"d.bf16", torch::randn({4}).to(torch::kBFloat16)},
      {"e.i32", torch::arange(4, torch::kInt)},
      {"f.u8", torch::arange(250, 256, torch::kInt).to(torch::kByte)},
      {"g.bool", torch::tensor({true, false, true})},
      {"h.scalar", torch::tensor(7, torch::kLong).reshape({})},
      {"i.empty", torch::zeros({0, 5})},
      {"j.strided", torch::arange(6, torch::kFloat).reshape({2, 3}).t()},
  };
  write_checkpoint_h5(path, in, {{"source", "unit test"}, {"arch", "net"}});
  EXPECT_EQ(detect_checkpoint_format(path), CheckpointFormat::Hdf5);

  std::map<std::string, std::string> meta;
  StateDict out = read_checkpoint(path, &meta);
  EXPECT_EQ(meta, (std::map<std::string, std::string>{{"source", "unit test"}, {"arch", "net"}}));
  ASSERT_EQ(out.size(), in.size());
  std::map<std::string, torch::Tensor> got(out.begin(), out.end());
  for (std::size_t k = 1; k < out.size(); ++k) EXPECT_LT(out[k - 1].first, out[k].first);  // name order
  for (const auto& [name, t] : in) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(got.count(name));
    EXPECT_EQ(got[name].scalar_type(), t.scalar_type());
    EXPECT_EQ(got[name].sizes(), t.sizes());
    EXPECT_TRUE(torch::equal(got[name], t));
  }

  // The layout that analysis/ and other tools rely on.
  H5File f = H5File::open_read(path);
  EXPECT_EQ(f.attr_string("/", "format"), "hessgap-checkpoint");
  EXPECT_EQ(f.attr_int64("/", "format_version"), 1);
  EXPECT_EQ(f.info("/tensors/c.f16").element_size, 4u);
  EXPECT_EQ(f.attr_string("/tensors/c.f16", "dtype"), "float16");
  EXPECT_EQ(f.info("/tensors/a.f64").element_size, 8u);
  EXPECT_EQ(f.info("/tensors/g.bool").kind, DatasetInfo::Kind::Integer);
  EXPECT_TRUE(f.has_attr("/tensors/layer1.0.conv1.weight", "description"));
  EXPECT_EQ(f.attr_string("/metadata", "arch"), "net");
}

TEST(ioCheckpoint, ModuleRoundTripThroughHdf5) {
  const std::string path = tmp_path("net.h5");
  Net a, b;
  load_state_dict(a, net_values(a));
  write_checkpoint_h5(path, state_dict_of(a));
  LoadOptions opts;
  opts.optional_suffixes = {};
  opts.source = path;
  load_state_dict(b, read_checkpoint(path), opts);
  StateDict sa = state_dict_of(a), sb = state_dict_of(b);
  ASSERT_EQ(sa.size(), sb.size());
  for (std::size_t k = 0; k < sa.size(); ++k) EXPECT_TRUE(torch::equal(sa[k].second, sb[k].second)) << sa[k].first;
}

TEST(ioCheckpoint, SafetensorsFileAndFolder) {
  const std::string dir = tmp_path("hf_folder");
  fs::create_directories(dir);
  const std::string file = dir + "/model.safetensors";
  write_safetensors(file, {{"w", torch::ones({2, 2})}, {"b", torch::zeros({2}, torch::kDouble)}}, {{"m", "1"}});
  std::string resolved;
  EXPECT_EQ(detect_checkpoint_format(dir, &resolved), CheckpointFormat::Safetensors);
  EXPECT_EQ(resolved, file);
  std::map<std::string, std::string> meta;
  StateDict sd = read_checkpoint(dir, &meta);
  ASSERT_EQ(sd.size(), 2u);
  EXPECT_EQ(sd[0].first, "w");
  EXPECT_EQ(sd[1].second.scalar_type(), torch::kDouble);
  EXPECT_EQ(meta.at("m"), "1");
  EXPECT_EQ(read_checkpoint(HG_SOURCE_DIR "/tests/fixtures/io/small.safetensors").size(), 12u);
}

TEST(ioCheckpoint, FormatErrors) {
  const std::string missing = tmp_path("absent.h5");
  EXPECT_HAS(error_of([&] { read_checkpoint(missing); }), "checkpoint '" + missing + "' not found");
  const std::string empty_dir = tmp_path("empty_dir");
  fs::create_directories(empty_dir);
  EXPECT_HAS(error_of([&] { read_checkpoint(empty_dir); }), "has no model.safetensors");
  const std::string text = tmp_path("notes.txt");
  test::write_bytes(text, "hello, not a checkpoint");
  EXPECT_HAS(error_of([&] { read_checkpoint(text); }), "checkpoint '" + text + "' has an unknown format");
  const std::string zip = tmp_path("model.pt");
  test::write_bytes(zip, std::string("PK\x03\x04", 4) + "rest of a zip");
  EXPECT_HAS(error_of([&] { read_checkpoint(zip); }), "the file is truncated or not a zip archive");
  const std::string other_h5 = tmp_path("results.h5");
  {
    H5File f = H5File::create(other_h5);
    f.write("/x", 1.0, "x");
  }
  EXPECT_HAS(error_of([&] { read_checkpoint(other_h5); }), "'" + other_h5 + "' is not a hessgap checkpoint");
  EXPECT_HAS(error_of([&] { write_checkpoint_h5(tmp_path("w.h5"), {{"a/b", torch::ones(1)}}); }),
             "without '/'");
  EXPECT_HAS(error_of([&] { write_checkpoint_h5(tmp_path("w.h5"), {{"c", torch::ones(1, torch::kComplexFloat)}}); }),
             "cannot be stored in a checkpoint");
  EXPECT_FALSE(fs::exists(tmp_path("w.h5")));
}

}  // namespace
}  // namespace hessgap::io
