// torch.save zip files: the fixtures of tests/fixtures/models/make_checkpoint_fixtures.py (dtypes,
// views, shared storage, protocol 4, deflate, training checkpoints, legacy and malicious files),
// hand-made pickles for each refusal, and truncated or corrupt archives.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>
#include <zlib.h>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "io/torch_zip.h"
#include "io/zip_reader.h"
#include "io_test_util.h"

namespace hessgap::io {
namespace {

using test::error_of;
using test::tmp_path;

std::string fixture(const std::string& name) { return HG_SOURCE_DIR "/tests/fixtures/models/checkpoints/" + name; }

torch::Dtype dtype_named(const std::string& name) {
  static const std::map<std::string, torch::Dtype> k = {
      {"float64", torch::kDouble}, {"float32", torch::kFloat}, {"float16", torch::kHalf},
      {"bfloat16", torch::kBFloat16}, {"int64", torch::kLong}, {"int32", torch::kInt},
      {"int16", torch::kShort}, {"int8", torch::kChar}, {"uint8", torch::kByte}, {"bool", torch::kBool}};
  return k.at(name);
}

// Compares a state dict read by hessgap with <name>_expected.safetensors: order, dtype, shape,
// exact values, contiguity.
void expect_matches_fixture(const StateDict& got, const std::string& expected_file) {
  TensorFile ex = read_safetensors(fixture(expected_file));
  const auto order = nlohmann::json::parse(ex.metadata.at("order")).get<std::vector<std::string>>();
  const auto dtypes = nlohmann::json::parse(ex.metadata.at("dtypes"));
  std::map<std::string, torch::Tensor> want(ex.tensors.begin(), ex.tensors.end());
  ASSERT_EQ(got.size(), order.size());
  for (std::size_t k = 0; k < got.size(); ++k) {
    const auto& [name, t] = got[k];
    SCOPED_TRACE(name);
    EXPECT_EQ(name, order[k]);
    EXPECT_EQ(t.scalar_type(), dtype_named(dtypes.at(name).get<std::string>()));
    EXPECT_TRUE(t.is_contiguous());
    const torch::Tensor& w = want.at(name);
    EXPECT_EQ(t.sizes(), w.sizes());
    EXPECT_TRUE(torch::equal(t.to(w.scalar_type()), w));
  }
}

TEST(ioTorchZip, MixedDtypesViewsAndSharedStorage) {
  std::string resolved;
  EXPECT_EQ(detect_checkpoint_format(fixture("mixed.pt"), &resolved), CheckpointFormat::TorchZip);
  const StateDict sd = read_checkpoint(fixture("mixed.pt"));
  expect_matches_fixture(sd, "mixed_expected.safetensors");
  // Views of one storage come back as independent tensors.
  std::map<std::string, torch::Tensor> m(sd.begin(), sd.end());
  EXPECT_NE(m["p.alias"].data_ptr(), m["b.f32"].data_ptr());
  EXPECT_NE(m["m.transposed"].data_ptr(), m["a.f64"].data_ptr());
  m["q.shared0"].fill_(0);
  EXPECT_NE(m["r.shared1"].abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(m["k.scalar"].dim(), 0);
}

// Net of make_checkpoint_fixtures.py: conv (3->4, 3x3), BatchNorm2d(4), fc (4->2).
struct Net : torch::nn::Module {
  Net() {
    register_module("conv", torch::nn::Conv2d(3, 4, 3));
    register_module("bn", torch::nn::BatchNorm2d(4));
    register_module("fc", torch::nn::Linear(4, 2));
  }
};

TEST(ioTorchZip, StateDictOfAModuleInEveryVariant) {
  for (const char* file : {"net.pt", "net_proto4.pt", "net_deflate.pt"}) {
    SCOPED_TRACE(file);
    const StateDict sd = read_checkpoint(fixture(file));
    expect_matches_fixture(sd, "net_expected.safetensors");
    Net net;
    LoadOptions opts;
    opts.optional_suffixes = {};
    opts.source = fixture(file);
    EXPECT_EQ(load_state_dict(net, sd, opts).loaded.size(), 9u);
  }
  ZipReader deflated(fixture("net_deflate.pt"));
  EXPECT_EQ(deflated.find("net/data.pkl")->method, 8);
}

TEST(ioTorchZip, TrainingCheckpointYieldsItsStateDictAndScalars) {
  std::map<std::string, std::string> meta;
  const StateDict sd = read_checkpoint(fixture("train_checkpoint.pt"), &meta);
  ASSERT_EQ(sd.size(), 9u);
  EXPECT_EQ(sd[0].first, "conv.weight");
  EXPECT_EQ(sd[6].first, "bn.num_batches_tracked");
  EXPECT_EQ(sd.back().first, "fc.bias");
  EXPECT_EQ(meta.at("arch"), "Net");
  EXPECT_EQ(meta.at("epoch"), "7");
  EXPECT_DOUBLE_EQ(std::stod(meta.at("monitor_best")), 0.75);
  EXPECT_EQ(meta.count("optimizer"), 0u);
}

TEST(ioTorchZip, LegacyPickleIsRefusedWithAdvice) {
  const std::string msg = error_of([] { read_checkpoint(fixture("legacy.pt")); });
  EXPECT_HAS(msg, "legacy.pt");
  EXPECT_HAS(msg, "re-save it with torch.save");
}

TEST(ioTorchZip, ArbitraryGlobalIsRefused) {
  const std::string msg = error_of([] { read_checkpoint(fixture("malicious.pt")); });
  EXPECT_HAS(msg, "malicious.pt");
  EXPECT_HAS(msg, "'posix.system'");
  EXPECT_HAS(msg, "opcode 0x63 'c'");
  EXPECT_HAS(msg, "nothing in the file is ever executed");
}

// --- hand-made archives ----------------------------------------------------------------------

// A stored (uncompressed) zip of `entries`, as torch.save would lay it out; with `zip64`, every
// size and offset is saturated in the classic records and given in zip64 extra fields and records.
std::string make_zip(const std::vector<std::pair<std::string, std::string>>& entries, bool zip64 = false) {
  auto u16 = [](std::string& s, unsigned v) { s += char(v & 0xff), s += char((v >> 8) & 0xff); };
  auto u32 = [&](std::string& s, unsigned long v) { u16(s, v & 0xffff), u16(s, (v >> 16) & 0xffff); };
  auto u64 = [&](std::string& s, unsigned long long v) { u32(s, v & 0xffffffff), u32(s, v >> 32); };
  std::string out, cd;
  for (const auto& [name, data] : entries) {
    const unsigned long crc = crc32(0, reinterpret_cast<const Bytef*>(data.data()), data.size());
    const unsigned long offset = out.size();
    u32(out, 0x04034b50), u16(out, 20), u16(out, 0), u16(out, 0), u16(out, 0), u16(out, 0);
    u32(out, crc), u32(out, data.size()), u32(out, data.size()), u16(out, name.size()), u16(out, 0);
    out += name + data;
    const unsigned long sat = zip64 ? 0xffffffff : 0;
    u32(cd, 0x02014b50), u16(cd, 45), u16(cd, 45), u16(cd, 0), u16(cd, 0), u16(cd, 0), u16(cd, 0);
    u32(cd, crc), u32(cd, sat ? sat : data.size()), u32(cd, sat ? sat : data.size()), u16(cd, name.size());
    u16(cd, zip64 ? 28 : 0), u16(cd, 0), u16(cd, 0), u16(cd, 0), u32(cd, 0), u32(cd, sat ? sat : offset);
    cd += name;
    if (zip64) u16(cd, 1), u16(cd, 24), u64(cd, data.size()), u64(cd, data.size()), u64(cd, offset);
  }
  const unsigned long cd_offset = out.size();
  out += cd;
  if (zip64) {
    const unsigned long long record = out.size();
    u32(out, 0x06064b50), u64(out, 44), u16(out, 45), u16(out, 45), u32(out, 0), u32(out, 0);
    u64(out, entries.size()), u64(out, entries.size()), u64(out, cd.size()), u64(out, cd_offset);
    u32(out, 0x07064b50), u32(out, 0), u64(out, record), u32(out, 1);
  }
  const unsigned n = zip64 ? 0xffff : entries.size();
  u32(out, 0x06054b50), u16(out, 0), u16(out, 0), u16(out, n), u16(out, n);
  u32(out, zip64 ? 0xffffffff : cd.size()), u32(out, zip64 ? 0xffffffff : cd_offset), u16(out, 0);
  return out;
}

std::string binunicode(const std::string& s) {
  std::string out = "X";
  for (int k = 0; k < 4; ++k) out += char((s.size() >> (8 * k)) & 0xff);
  return out + s;
}

// The pickle of {"w": tensor(storage "0" of `numel` floats, offset, size (n,), stride (1,))},
// with `value` (default: the _rebuild_tensor_v2 call) as the dict value.
std::string state_pickle(int numel, int offset, int n, const std::string& value = "") {
  std::string tensor = std::string("ctorch._utils\n_rebuild_tensor_v2\n(") + "(" + binunicode("storage") +
                       "ctorch\nFloatStorage\n" + binunicode("0") + binunicode("cpu") + "K" + char(numel) +
                       "tQ" + "K" + char(offset) + "K" + char(n) + "\x85" + "K\x01\x85" + "\x89" +
                       "ccollections\nOrderedDict\n)R" + "tR";
  return std::string("\x80\x02}q\x00(", 6) + binunicode("w") + (value.empty() ? tensor : value) + "u.";
}

std::string floats(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) {
    const float f = 0.5f * i;
    s.append(reinterpret_cast<const char*>(&f), 4);
  }
  return s;
}

std::string write_archive(const std::string& leaf, const std::vector<std::pair<std::string, std::string>>& entries,
                          bool zip64 = false) {
  const std::string path = tmp_path(leaf);
  test::write_bytes(path, make_zip(entries, zip64));
  return path;
}

TEST(ioTorchZip, HandMadeArchiveIsReadAndViewsHonoured) {
  for (bool zip64 : {false, true}) {
    SCOPED_TRACE(zip64);
    const std::string path = write_archive(
        "ok.pt", {{"ok/data.pkl", state_pickle(4, 1, 3)}, {"ok/data/0", floats(4)}, {"ok/byteorder", "little"}}, zip64);
    const StateDict sd = read_checkpoint(path);
    ASSERT_EQ(sd.size(), 1u);
    EXPECT_TRUE(torch::equal(sd[0].second, torch::tensor({0.5f, 1.0f, 1.5f})));
    EXPECT_EQ(ZipReader(path).find("ok/data/0")->size, 16u);
  }
}

TEST(ioTorchZip, EveryRefusalNamesTheFileAndTheCause) {
  struct Case {
    const char* what;
    std::vector<std::pair<std::string, std::string>> entries;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"view outside its storage", {{"a/data.pkl", state_pickle(4, 2, 3)}, {"a/data/0", floats(4)}},
       "reaches element 4 of a storage of 4"},
      {"storage size", {{"a/data.pkl", state_pickle(4, 0, 3)}, {"a/data/0", floats(3)}},
       "holds 12 bytes, but 4 elements of torch.FloatStorage need 16"},
      {"missing storage", {{"a/data.pkl", state_pickle(4, 0, 3)}}, "lacks the storage record 'a/data/0'"},
      {"non-tensor value", {{"a/data.pkl", state_pickle(4, 0, 3, "K\x05")}}, "state dict entry 'w' is a int, not a tensor"},
      {"NEWOBJ opcode", {{"a/data.pkl", state_pickle(4, 0, 3, "\x81")}}, "opcode 0x81"},
      {"no STOP", {{"a/data.pkl", std::string("\x80\x02}q\x00", 5)}}, "ends without STOP"},
      {"cut inside an opcode", {{"a/data.pkl", std::string("\x80\x02X\x09\x00\x00\x00" "ab", 9)}}, "ends inside an opcode"},
      {"unknown storage type", {{"a/data.pkl", "\x80\x02" "ctorch\nComplexFloatStorage\n."}}, "'torch.ComplexFloatStorage'"},
      {"not a dict", {{"a/data.pkl", "\x80\x02K\x01."}}, "the saved object is a int, not a dict of tensors"},
      {"big-endian", {{"a/data.pkl", state_pickle(4, 0, 3)}, {"a/data/0", floats(4)}, {"a/byteorder", "big"}},
       "byte order 'big'"},
      {"TorchScript", {{"a/data.pkl", "\x80\x02}."}, {"a/constants.pkl", "\x80\x02)."}}, "TorchScript archive"},
      {"no data.pkl", {{"a/other.txt", "x"}}, "neither a torch.save file"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string path = write_archive("bad.pt", c.entries);
    const std::string msg = error_of([&] { read_checkpoint(path); });
    EXPECT_HAS(msg, path);
    EXPECT_HAS(msg, c.expected);
  }
}

TEST(ioTorchZip, TruncatedOrCorruptArchives) {
  const std::string bytes = test::read_bytes(fixture("net.pt"));
  for (std::size_t cut : {std::size_t{10}, bytes.size() / 2, bytes.size() - 30}) {
    SCOPED_TRACE(cut);
    const std::string path = tmp_path("cut.pt");
    test::write_bytes(path, bytes.substr(0, cut));
    const std::string msg = error_of([&] { read_checkpoint(path); });
    EXPECT_HAS(msg, path);
    EXPECT_HAS(msg, "truncated");
  }
  // A flipped byte inside a tensor's data: caught by the CRC.
  ZipReader zip(fixture("net.pt"));
  const ZipReader::Entry* e = zip.find("net/data/0");
  ASSERT_NE(e, nullptr);
  const auto* h = reinterpret_cast<const unsigned char*>(bytes.data() + e->local_header_offset);
  const std::size_t data = e->local_header_offset + 30 + (h[26] | h[27] << 8) + (h[28] | h[29] << 8);
  std::string corrupt = bytes;
  corrupt[data + 5] = static_cast<char>(corrupt[data + 5] ^ 0x40);
  const std::string path = tmp_path("corrupt.pt");
  test::write_bytes(path, corrupt);
  EXPECT_HAS(error_of([&] { read_checkpoint(path); }), "entry 'net/data/0' of zip archive '" + path + "': CRC-32 mismatch");
  // A truncated deflate stream (the archive's directory intact) is caught by inflate.
  std::string deflated = test::read_bytes(fixture("net_deflate.pt"));
  ZipReader dz(fixture("net_deflate.pt"));
  const ZipReader::Entry* pkl = dz.find("net/data.pkl");
  const auto* dh = reinterpret_cast<const unsigned char*>(deflated.data() + pkl->local_header_offset);
  const std::size_t start = pkl->local_header_offset + 30 + (dh[26] | dh[27] << 8) + (dh[28] | dh[29] << 8);
  std::fill(deflated.begin() + static_cast<std::ptrdiff_t>(start + pkl->compressed_size / 2),
            deflated.begin() + static_cast<std::ptrdiff_t>(start + pkl->compressed_size), '\0');
  const std::string path2 = tmp_path("bad_deflate.pt");
  test::write_bytes(path2, deflated);
  EXPECT_HAS(error_of([&] { read_checkpoint(path2); }), "entry 'net/data.pkl' of zip archive '" + path2 + "'");
}

}  // namespace
}  // namespace hessgap::io
