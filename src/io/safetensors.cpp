#include "io/safetensors.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "io/atomic_output.h"
#include "util/error.h"
#include "util/input_file.h"
#include "util/json_bounded.h"
#include "util/limits.h"

namespace hessgap::io {

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors I/O assumes a little-endian host"
#endif

namespace {

// The Python and Rust readers refuse headers above 100 MB; so do we (a corrupt length would
// otherwise make us allocate gigabytes).
constexpr uint64_t kMaxHeader = 100'000'000;

using json = nlohmann::json;

struct Entry {
  std::string name;
  torch::Dtype dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

bool is_nonneg_int(const json& v) {
  return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
}

std::string tensor_in(const std::string& name, const std::string& path) {
  return "tensor '" + name + "' in safetensors file '" + path + "'";
}

Entry parse_entry(const std::string& name, const json& v, const std::string& path) {
  const std::string what = tensor_in(name, path);
  HG_CHECK(v.is_object(), what << ": header entry is not a JSON object");
  HG_CHECK(v.contains("dtype") && v["dtype"].is_string(), what << ": header entry has no string 'dtype'");
  HG_CHECK(v.contains("shape") && v["shape"].is_array(), what << ": header entry has no 'shape' array");
  HG_CHECK(v.contains("data_offsets") && v["data_offsets"].is_array() && v["data_offsets"].size() == 2 &&
               is_nonneg_int(v["data_offsets"][0]) && is_nonneg_int(v["data_offsets"][1]),
           what << ": header entry needs 'data_offsets' [begin, end] of non-negative integers");
  Entry e;
  e.name = name;
  e.dtype = safetensors_dtype(v["dtype"].get<std::string>(), what);
  for (const auto& d : v["shape"]) {
    HG_CHECK(is_nonneg_int(d), what << ": shape " << v["shape"].dump() << " must hold non-negative integers");
    uint64_t u = d.get<uint64_t>();
    HG_CHECK(u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
             what << ": shape " << v["shape"].dump() << " is too large");
    e.shape.push_back(static_cast<int64_t>(u));
  }
  // Overflow-safe: a shape whose byte size wraps around 2^64 must not pass for a small span.
  const auto nbytes = checked_nbytes(e.shape, c10::elementSize(e.dtype));
  HG_CHECK(nbytes, what << ": shape " << v["shape"].dump() << " with dtype " << v["dtype"].get<std::string>()
                        << " is too large (more than 2^63 bytes)");
  e.begin = v["data_offsets"][0].get<uint64_t>();
  e.end = v["data_offsets"][1].get<uint64_t>();
  HG_CHECK(e.begin <= e.end, what << ": data_offsets [" << e.begin << ", " << e.end << "] are reversed");
  const uint64_t expected = static_cast<uint64_t>(*nbytes);
  HG_CHECK(e.end - e.begin == expected, what << ": data_offsets [" << e.begin << ", " << e.end << "] hold "
                                             << (e.end - e.begin) << " bytes, but dtype " << v["dtype"].get<std::string>()
                                             << " and shape " << v["shape"].dump() << " need " << expected);
  return e;
}

}  // namespace

torch::Dtype safetensors_dtype(const std::string& name, const std::string& what) {
  static const std::map<std::string, torch::Dtype> kDtypes = {
      {"F64", torch::kDouble}, {"F32", torch::kFloat}, {"F16", torch::kHalf},  {"BF16", torch::kBFloat16},
      {"I64", torch::kLong},   {"I32", torch::kInt},   {"I16", torch::kShort}, {"I8", torch::kChar},
      {"U8", torch::kByte},    {"BOOL", torch::kBool}};
  auto it = kDtypes.find(name);
  HG_CHECK(it != kDtypes.end(), what << ": unsupported dtype '" << name
                                     << "' (supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
  return it->second;
}

std::string safetensors_dtype_name(torch::Dtype dtype, const std::string& what) {
  switch (dtype) {
    case torch::kDouble: return "F64";
    case torch::kFloat: return "F32";
    case torch::kHalf: return "F16";
    case torch::kBFloat16: return "BF16";
    case torch::kLong: return "I64";
    case torch::kInt: return "I32";
    case torch::kShort: return "I16";
    case torch::kChar: return "I8";
    case torch::kByte: return "U8";
    case torch::kBool: return "BOOL";
    default: break;
  }
  HG_FAIL(what << ": dtype " << c10::toString(dtype) << " cannot be stored in safetensors");
}

TensorFile read_safetensors(const std::string& path) {
  const uint64_t file_size = require_regular_file(path, "safetensors file");
  std::ifstream in(path, std::ios::binary);
  HG_CHECK(in, "cannot open safetensors file '" << path << "' for reading");

  HG_CHECK(file_size >= 8, "safetensors file '" << path << "' is truncated: " << file_size
                                                << " bytes, shorter than the 8-byte header length");
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  HG_CHECK(header_len > 0 && header_len <= kMaxHeader,
           "safetensors file '" << path << "' has an invalid header length " << header_len
                                << " (expected 1 to " << kMaxHeader << " bytes)");
  HG_CHECK(8 + header_len <= file_size, "safetensors file '" << path << "' is truncated: the header needs "
                                                             << header_len << " bytes, the file has "
                                                             << file_size - 8 << " after the length");
  std::string header(header_len, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_len));
  HG_CHECK(in, "cannot read the header of safetensors file '" << path << "'");

  json h;
  try {
    h = parse_json_bounded(header, "safetensors file '" + path + "' header");
  } catch (const json::exception& e) {
    HG_FAIL("safetensors file '" << path << "' has a malformed JSON header: " << e.what());
  }
  HG_CHECK(h.is_object(), "safetensors file '" << path << "': the header is not a JSON object");

  TensorFile out;
  std::vector<Entry> entries;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") {
      HG_CHECK(it.value().is_object() || it.value().is_null(),
               "safetensors file '" << path << "': __metadata__ is not a JSON object");
      if (it.value().is_object()) {
        for (auto m = it.value().begin(); m != it.value().end(); ++m) {
          out.metadata[m.key()] = m.value().is_string() ? m.value().get<std::string>() : m.value().dump();
        }
      }
      continue;
    }
    entries.push_back(parse_entry(it.key(), it.value(), path));
  }

  const uint64_t data_size = file_size - 8 - header_len;
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.name < b.name;
  });
  uint64_t prev_end = 0;
  std::string prev_name;
  for (const Entry& e : entries) {
    HG_CHECK(e.end <= data_size, tensor_in(e.name, path) << ": data_offsets [" << e.begin << ", " << e.end
                                                         << "] lie beyond the data section of " << data_size
                                                         << " bytes (file truncated?)");
    if (e.end > e.begin) {
      HG_CHECK(e.begin >= prev_end, tensor_in(e.name, path) << ": data_offsets [" << e.begin << ", " << e.end
                                                            << "] overlap tensor '" << prev_name << "'");
      prev_end = e.end;
      prev_name = e.name;
    }
  }

  out.tensors.reserve(entries.size());
  for (const Entry& e : entries) {
    torch::Tensor t = torch::empty(e.shape, torch::TensorOptions().dtype(e.dtype));
    const uint64_t n = e.end - e.begin;
    if (n > 0) {
      in.seekg(static_cast<std::streamoff>(8 + header_len + e.begin));
      in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(n));
      HG_CHECK(in, "cannot read the data of " << tensor_in(e.name, path));
    }
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // nlohmann::ordered_json keeps the header in the caller's order, which is also the data order.
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    h["__metadata__"] = m;
  }
  std::vector<torch::Tensor> data;
  data.reserve(tensors.size());
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    const std::string what = "tensor '" + name + "' for safetensors file '" + path + "'";
    HG_CHECK(!name.empty() && name != "__metadata__", what << ": invalid tensor name");
    HG_CHECK(seen.insert(name).second, what << ": the name appears twice");
    HG_CHECK(tensor.defined(), what << ": the tensor is undefined");
    torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    const uint64_t nbytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    h[name] = {{"dtype", safetensors_dtype_name(t.scalar_type(), what)},
               {"shape", t.sizes().vec()},
               {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    data.push_back(std::move(t));
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');

  AtomicOutput out(path);
  {
    std::ofstream f(out.temp_path(), std::ios::binary | std::ios::trunc);
    HG_CHECK(f, "cannot create '" << out.temp_path() << "' for safetensors file '" << path << "'");
    unsigned char len_bytes[8];
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xff);
    f.write(reinterpret_cast<const char*>(len_bytes), 8);
    f.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (const torch::Tensor& t : data) {
      const auto nbytes = static_cast<std::streamsize>(t.numel() * t.element_size());
      if (nbytes > 0) f.write(static_cast<const char*>(t.data_ptr()), nbytes);
    }
    f.close();
    HG_CHECK(f, "cannot write safetensors file '" << path << "' (disk full?)");
  }
  out.commit();
}

}  // namespace hessgap::io
