// Hugging Face sharded folders (model.safetensors.index.json and shards written by the test),
// safetensors dtypes that are refused or converted, a truncated file of every format, and the
// new-head rule of load_state_dict.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "io_test_util.h"

namespace hessgap::io {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using test::tmp_path;

std::string fixture(const std::string& name) { return HG_SOURCE_DIR "/tests/fixtures/models/checkpoints/" + name; }

// Two shards: a.weight [2,3] and a.bias [2] in shard 1, b.weight [4] (float64) in shard 2, with
// values k + 0.5 i so that each tensor is recognisable.
struct Sharded {
  std::string dir, index;
  NamedTensors shard1 = {{"a.weight", torch::arange(6, torch::kFloat).reshape({2, 3}) * 0.5 + 1},
                         {"a.bias", torch::arange(2, torch::kFloat) * 0.5 + 2}};
  NamedTensors shard2 = {{"b.weight", torch::arange(4, torch::kDouble) * 0.5 + 3}};
  nlohmann::ordered_json index_json = {
      {"metadata", {{"total_size", 64}}},
      {"weight_map",
       {{"a.bias", "model-00001-of-00002.safetensors"},
        {"a.weight", "model-00001-of-00002.safetensors"},
        {"b.weight", "model-00002-of-00002.safetensors"}}}};

  explicit Sharded(const std::string& leaf) : dir(tmp_path(leaf)), index(dir + "/model.safetensors.index.json") {
    fs::create_directories(dir);
  }
  void write(const std::string& index_text = "") {
    write_safetensors(dir + "/model-00001-of-00002.safetensors", shard1, {{"format", "pt"}});
    write_safetensors(dir + "/model-00002-of-00002.safetensors", shard2, {{"format", "pt"}});
    std::ofstream(index) << (index_text.empty() ? index_json.dump(2) : index_text);
  }
};

TEST(ioSharded, FolderReadsAsOneStateDict) {
  Sharded s("sharded_ok");
  s.write();
  std::string resolved;
  EXPECT_EQ(detect_checkpoint_format(s.dir, &resolved), CheckpointFormat::ShardedIndex);
  EXPECT_EQ(resolved, s.index);
  std::map<std::string, std::string> meta;
  const StateDict sd = read_checkpoint(s.dir, &meta);
  ASSERT_EQ(sd.size(), 3u);
  EXPECT_EQ(sd[0].first, "a.weight");  // shard by shard, each in file order
  EXPECT_EQ(sd[1].first, "a.bias");
  EXPECT_EQ(sd[2].first, "b.weight");
  EXPECT_TRUE(torch::equal(sd[0].second, s.shard1[0].second));
  EXPECT_TRUE(torch::equal(sd[2].second, s.shard2[0].second));
  EXPECT_EQ(sd[2].second.scalar_type(), torch::kDouble);
  EXPECT_EQ(meta.at("total_size"), "64");
  EXPECT_EQ(meta.at("format"), "pt");
  // The index file itself is accepted too.
  EXPECT_EQ(read_checkpoint(s.index).size(), 3u);
}

TEST(ioSharded, ErrorsNameTheIndexTheShardAndTheTensor) {
  {
    Sharded s("missing_shard");
    s.index_json["weight_map"]["b.weight"] = "model-00003-of-00002.safetensors";
    s.write();
    const std::string msg = error_of([&] { read_checkpoint(s.dir); });
    EXPECT_HAS(msg, s.index);
    EXPECT_HAS(msg, "model-00003-of-00002.safetensors' (holding 1 tensors, e.g. 'b.weight') not found");
  }
  {
    Sharded s("listed_absent");
    s.index_json["weight_map"]["c.weight"] = "model-00002-of-00002.safetensors";
    s.write();
    EXPECT_HAS(error_of([&] { read_checkpoint(s.dir); }),
               "the index lists tensor 'c.weight' in shard '" + s.dir + "/model-00002-of-00002.safetensors', which lacks it");
  }
  {
    Sharded s("unlisted");
    s.shard2.emplace_back("d.extra", torch::ones(1));
    s.write();
    EXPECT_HAS(error_of([&] { read_checkpoint(s.dir); }), "holds tensor 'd.extra', which the index does not list");
  }
  {
    Sharded s("in_two_shards");
    s.shard2.emplace_back("a.bias", torch::ones(2));
    s.write();
    EXPECT_HAS(error_of([&] { read_checkpoint(s.dir); }), "tensor 'a.bias' appears in more than one shard");
  }
  {
    Sharded s("wrong_shard");
    s.index_json["weight_map"]["a.bias"] = "model-00002-of-00002.safetensors";
    s.shard2.emplace_back("z", torch::ones(1));
    s.index_json["weight_map"]["z"] = "model-00002-of-00002.safetensors";
    s.write();
    EXPECT_HAS(error_of([&] { read_checkpoint(s.dir); }), "holds tensor 'a.bias', which the index puts in");
  }
  {
    Sharded s("duplicate_key");
    s.write(R"({"weight_map": {"a.weight": "model-00001-of-00002.safetensors", "a.bias": "model-00001-of-00002.safetensors",
               "b.weight": "model-00002-of-00002.safetensors", "a.weight": "model-00002-of-00002.safetensors"}})");
    EXPECT_HAS(error_of([&] { read_checkpoint(s.dir); }), "lists tensor 'a.weight' twice");
  }
  {
    Sharded s("no_weight_map");
    s.write(R"({"metadata": {}})");
    EXPECT_HAS(error_of([&] { read_checkpoint(s.dir); }), "has no \"weight_map\" object");
  }
  {
    Sharded s("escaping_shard");
    s.index_json["weight_map"]["b.weight"] = "../elsewhere.safetensors";
    s.write();
    EXPECT_HAS(error_of([&] { read_checkpoint(s.dir); }), "must be a file name in the index's folder");
  }
  {
    Sharded s("truncated_index");
    s.write(s.index_json.dump().substr(0, 40));
    const std::string msg = error_of([&] { read_checkpoint(s.dir); });
    EXPECT_HAS(msg, s.index);
    EXPECT_HAS(msg, "not valid JSON (truncated?)");
  }
  {
    Sharded s("truncated_shard");
    s.write();
    const std::string shard = s.dir + "/model-00002-of-00002.safetensors";
    const std::string bytes = test::read_bytes(shard);
    test::write_bytes(shard, bytes.substr(0, bytes.size() - 8));
    const std::string msg = error_of([&] { read_checkpoint(s.dir); });
    EXPECT_HAS(msg, shard);
    EXPECT_HAS(msg, "truncated");
  }
}

TEST(ioSharded, PytorchModelBinFolder) {
  const std::string dir = tmp_path("bin_folder");
  fs::create_directories(dir);
  fs::copy_file(fixture("net.pt"), dir + "/pytorch_model.bin");
  std::string resolved;
  EXPECT_EQ(detect_checkpoint_format(dir, &resolved), CheckpointFormat::TorchZip);
  EXPECT_EQ(resolved, dir + "/pytorch_model.bin");
  EXPECT_EQ(read_checkpoint(dir).size(), 9u);
}

// A safetensors file of one tensor "w" with the given dtype and byte count, written by hand.
std::string safetensors_with(const std::string& dtype, int nbytes, const std::string& leaf) {
  const std::string header = R"({"w":{"dtype":")" + dtype + R"(","shape":[2],"data_offsets":[0,)" +
                             std::to_string(nbytes) + "]}}";
  std::string bytes(8, '\0');
  for (int k = 0; k < 8; ++k) bytes[k] = static_cast<char>((header.size() >> (8 * k)) & 0xff);
  bytes += header + std::string(nbytes, '\1');
  const std::string path = tmp_path(leaf);
  test::write_bytes(path, bytes);
  return path;
}

TEST(ioSafetensorsDtypes, UnsupportedAreRefusedConvertibleAreConverted) {
  for (const auto& [dtype, nbytes] : std::vector<std::pair<std::string, int>>{
           {"F8_E4M3", 2}, {"F8_E5M2", 2}, {"U16", 4}, {"U32", 8}, {"U64", 16}, {"C64", 16}}) {
    SCOPED_TRACE(dtype);
    const std::string path = safetensors_with(dtype, nbytes, "odd.safetensors");
    const std::string msg = error_of([&] { read_checkpoint(path); });
    EXPECT_HAS(msg, "tensor 'w' in safetensors file '" + path + "': unsupported dtype '" + dtype + "'");
  }
  // F16 and BF16 are read as such and converted to the module's dtype when loaded.
  torch::nn::Linear lin(2, 1);
  const std::string path = tmp_path("half.safetensors");
  const auto w = torch::tensor({{0.5, -1.25}}).to(torch::kHalf);
  const auto b = torch::tensor({3.0}).to(torch::kBFloat16);
  write_safetensors(path, {{"weight", w}, {"bias", b}});
  const StateDict sd = read_checkpoint(path);
  EXPECT_EQ(sd[0].second.scalar_type(), torch::kHalf);
  EXPECT_EQ(sd[1].second.scalar_type(), torch::kBFloat16);
  load_state_dict(*lin, sd);
  EXPECT_EQ(lin->weight.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(lin->weight.detach(), torch::tensor({{0.5f, -1.25f}})));
  EXPECT_EQ(lin->bias.item<float>(), 3.0f);
}

TEST(ioTruncated, EveryFormatSaysTruncatedAndNamesTheFile) {
  // safetensors: cut in the header and in the data.
  const std::string st = tmp_path("full.safetensors");
  write_safetensors(st, {{"w", torch::ones({16})}});
  const std::string st_bytes = test::read_bytes(st);
  for (std::size_t cut : {std::size_t{20}, st_bytes.size() - 4}) {
    const std::string path = tmp_path("cut.safetensors");
    test::write_bytes(path, st_bytes.substr(0, cut));
    const std::string msg = error_of([&] { read_checkpoint(path); });
    EXPECT_HAS(msg, path);
    EXPECT_HAS(msg, "truncated");
  }
  // HDF5: the library's own error ("truncated file"), with the file named.
  const std::string h5 = tmp_path("full.h5");
  write_checkpoint_h5(h5, {{"w", torch::ones({256})}});
  const std::string h5_bytes = test::read_bytes(h5);
  const std::string h5_cut = tmp_path("cut.h5");
  test::write_bytes(h5_cut, h5_bytes.substr(0, h5_bytes.size() / 2));
  const std::string msg = error_of([&] { read_checkpoint(h5_cut); });
  EXPECT_HAS(msg, h5_cut);
  EXPECT_HAS(msg, "truncated");
  // torch.save and npz: see test_torch_zip.cpp and test_npz.cpp; the sharded index and shards:
  // ErrorsNameTheIndexTheShardAndTheTensor.
}

// fc1 [4,3] + fc2 [2,4]; the checkpoint's fc2 has 5 classes.
struct Net : torch::nn::Module {
  Net() {
    fc1 = register_module("fc1", torch::nn::Linear(3, 4));
    fc2 = register_module("fc2", torch::nn::Linear(4, 2));
  }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};

TEST(ioNewHead, MismatchedOrMissingHeadIsKeptAndReported) {
  Net net;
  const auto head_before = net.fc2->weight.detach().clone();
  StateDict sd = {{"fc1.weight", torch::full({4, 3}, 0.5)}, {"fc1.bias", torch::full({4}, 0.25)},
                  {"fc2.weight", torch::ones({5, 4})}, {"fc2.bias", torch::ones({5})}};
  LoadOptions opts;
  opts.source = "pretrained.safetensors";
  EXPECT_HAS(error_of([&] { load_state_dict(net, sd, opts); }), "fc2.weight (checkpoint [5, 4], model [2, 4])");
  opts.new_head_prefix = "fc2.";
  LoadReport r = load_state_dict(net, sd, opts);
  EXPECT_EQ(r.new_head, (std::vector<std::string>{"fc2.weight", "fc2.bias"}));
  EXPECT_TRUE(r.mismatched.empty() && r.missing.empty() && r.unexpected.empty());
  EXPECT_EQ(r.loaded, (std::vector<std::string>{"fc1.weight", "fc1.bias"}));
  EXPECT_TRUE(torch::equal(net.fc2->weight.detach(), head_before));
  EXPECT_EQ(net.fc1->weight[0][0].item<float>(), 0.5f);
  EXPECT_EQ(describe(r), "loaded 2 tensors; new head (2): fc2.weight, fc2.bias");

  // A checkpoint without a head (a backbone) is the same case.
  sd.resize(2);
  r = load_state_dict(net, sd, opts);
  EXPECT_EQ(r.new_head.size(), 2u);
  // A head of the right shape is loaded as usual; tensors outside the prefix are still strict.
  sd.emplace_back("fc2.weight", torch::full({2, 4}, 2.0));
  sd.emplace_back("fc2.bias", torch::full({2}, 2.0));
  r = load_state_dict(net, sd, opts);
  EXPECT_TRUE(r.new_head.empty());
  EXPECT_EQ(net.fc2->weight[0][0].item<float>(), 2.0f);
  sd[0].second = torch::ones({4, 4});
  EXPECT_HAS(error_of([&] { load_state_dict(net, sd, opts); }), "fc1.weight (checkpoint [4, 4], model [4, 3])");
}

}  // namespace
}  // namespace hessgap::io
