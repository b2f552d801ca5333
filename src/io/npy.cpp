#include "io/npy.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>

#include "io/zip_reader.h"
#include "util/error.h"
#include "util/limits.h"

namespace hessgap::io {

namespace {

// The value text after "'key':" in the header dict, or "" when the key is absent.
std::string value_of(const std::string& header, const std::string& key) {
  for (const char q : {'\'', '"'}) {
    const std::string k = std::string(1, q) + key + q;
    std::size_t at = header.find(k);
    if (at == std::string::npos) continue;
    at = header.find(':', at + k.size());
    if (at == std::string::npos) return "";
    ++at;
    while (at < header.size() && header[at] == ' ') ++at;
    return header.substr(at);
  }
  return "";
}

torch::Dtype dtype_of(const std::string& descr, const std::string& what) {
  HG_CHECK(descr.size() >= 2, what << ": unsupported dtype '" << descr << "'");
  const char order = descr[0];
  const std::string code = descr.substr(1);
  static const std::map<std::string, torch::Dtype> kCodes = {
      {"f8", torch::kDouble}, {"f4", torch::kFloat}, {"f2", torch::kHalf}, {"i8", torch::kLong},
      {"i4", torch::kInt},    {"i2", torch::kShort}, {"i1", torch::kChar}, {"u1", torch::kByte},
      {"b1", torch::kBool}};
  auto it = kCodes.find(code);
  HG_CHECK(it != kCodes.end() && (order == '<' || order == '>' || order == '=' || order == '|'),
           what << ": unsupported dtype '" << descr << "' (supported: float64/32/16, int64/32/16/8, uint8, bool)");
  const bool one_byte = c10::elementSize(it->second) == 1;
  HG_CHECK(order != '>' || one_byte, what << ": dtype '" << descr << "' is big-endian (only little-endian arrays are read)");
  return it->second;
}

}  // namespace

NpyHeader parse_npy_header(const std::string& bytes, const std::string& what) {
  static const char kMagic[] = "\x93NUMPY";
  HG_CHECK(bytes.size() >= 10 && std::memcmp(bytes.data(), kMagic, 6) == 0,
           what << ": not a .npy array (bad magic" << (bytes.size() < 10 ? ", or truncated" : "") << ")");
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const int major = b[6];
  HG_CHECK(major >= 1 && major <= 3, what << ": unsupported .npy version " << major);
  std::size_t len_bytes = major == 1 ? 2 : 4;
  HG_CHECK(bytes.size() >= 8 + len_bytes, what << ": truncated .npy header");
  std::size_t header_len = 0;
  for (std::size_t i = len_bytes; i-- > 0;) header_len = (header_len << 8) | b[8 + i];
  NpyHeader h;
  h.data_offset = 8 + len_bytes + header_len;
  HG_CHECK(bytes.size() >= h.data_offset, what << ": truncated .npy header");
  const std::string header = bytes.substr(8 + len_bytes, header_len);
  HG_CHECK(!header.empty() && header.find('{') != std::string::npos,
           what << ": malformed .npy header '" << header << "'");

  const std::string descr = value_of(header, "descr");
  HG_CHECK(!descr.empty(), what << ": .npy header without 'descr': " << header);
  HG_CHECK(descr[0] == '\'' || descr[0] == '"',
           what << ": structured dtype " << descr.substr(0, descr.find(']') + 1) << " is not supported");
  const std::size_t close = descr.find(descr[0], 1);
  HG_CHECK(close != std::string::npos, what << ": malformed 'descr' in .npy header: " << header);
  h.descr = descr.substr(1, close - 1);
  h.dtype = dtype_of(h.descr, what);

  const std::string fortran = value_of(header, "fortran_order");
  HG_CHECK(fortran.rfind("True", 0) == 0 || fortran.rfind("False", 0) == 0,
           what << ": .npy header without 'fortran_order': " << header);
  h.fortran_order = fortran.rfind("True", 0) == 0;

  const std::string shape = value_of(header, "shape");
  HG_CHECK(!shape.empty() && shape[0] == '(', what << ": .npy header without 'shape': " << header);
  const std::size_t end = shape.find(')');
  HG_CHECK(end != std::string::npos, what << ": malformed 'shape' in .npy header: " << header);
  std::string dims = shape.substr(1, end - 1);
  std::size_t pos = 0;
  while (pos < dims.size()) {
    while (pos < dims.size() && (dims[pos] == ' ' || dims[pos] == ',')) ++pos;
    if (pos >= dims.size()) break;
    std::size_t used = 0;
    long long d = -1;
    try {
      d = std::stoll(dims.substr(pos), &used);
    } catch (const std::exception&) {
      used = 0;
    }
    HG_CHECK(used > 0 && d >= 0, what << ": malformed 'shape' in .npy header: " << header);
    h.shape.push_back(d);
    pos += used;
    if (pos < dims.size() && dims[pos] == 'L') ++pos;  // Python 2 longs
  }
  return h;
}

torch::Tensor parse_npy(const std::string& bytes, const std::string& what) {
  const NpyHeader h = parse_npy_header(bytes, what);
  std::vector<std::int64_t> shape = h.shape;
  if (h.fortran_order) std::reverse(shape.begin(), shape.end());
  // Overflow-checked over the non-zero dimensions too: (2^62, 2^62, 0) holds no data, but LibTorch's
  // int64 sizes and strides cannot describe it (an internal "numel" overflow before).
  const auto nbytes = checked_nbytes(shape, c10::elementSize(h.dtype));
  HG_CHECK(nbytes, what << ": shape " << torch::IntArrayRef(h.shape) << " is too large (its size overflows int64)");
  const std::uint64_t need = static_cast<std::uint64_t>(*nbytes);
  const std::uint64_t have = bytes.size() - h.data_offset;
  HG_CHECK(have == need, what << ": " << have << " bytes of data, but dtype '" << h.descr << "' and shape "
                              << torch::IntArrayRef(h.shape) << " need " << need
                              << (have < need ? " (truncated)" : ""));
  torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(h.dtype));
  if (need > 0) std::memcpy(t.data_ptr(), bytes.data() + h.data_offset, need);
  if (h.fortran_order && t.dim() > 1) {
    std::vector<std::int64_t> perm;
    for (std::int64_t i = t.dim() - 1; i >= 0; --i) perm.push_back(i);
    t = t.permute(perm).contiguous();
  }
  return t;
}

NamedTensors read_npz(const std::string& path) {
  ZipReader zip(path);
  NamedTensors out;
  for (const auto& entry : zip.entries()) {
    const std::string& n = entry.name;
    HG_CHECK(n.size() > 4 && n.compare(n.size() - 4, 4, ".npy") == 0,
             "npz archive '" << path << "': entry '" << n << "' is not a .npy array");
    const std::string name = n.substr(0, n.size() - 4);
    out.emplace_back(name, parse_npy(zip.read(entry), "array '" + name + "' in npz archive '" + path + "'"));
  }
  return out;
}

}  // namespace hessgap::io
