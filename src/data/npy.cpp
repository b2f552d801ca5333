#include "data/npy.h"

#include <cctype>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>

#include "util/error.h"
#include "util/input_file.h"

namespace hessgap::data {
namespace {

// A tiny parser for the Python dict literal of a .npy header.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  void parse(std::string& descr, bool& fortran, std::vector<std::int64_t>& shape) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    skip_ws();
    expect('{');
    for (;;) {
      skip_ws();
      if (peek() == '}') {
        ++pos_;
        break;
      }
      const std::string key = parse_string();
      skip_ws();
      expect(':');
      skip_ws();
      if (key == "descr") {
        descr = parse_string();
        have_descr = true;
      } else if (key == "fortran_order") {
        fortran = parse_bool();
        have_fortran = true;
      } else if (key == "shape") {
        shape = parse_tuple();
        have_shape = true;
      } else {
        fail("unexpected key '" + key + "'");
      }
      skip_ws();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() == '}') {
        ++pos_;
        break;
      } else {
        fail("expected ',' or '}'");
      }
    }
    skip_ws();
    if (pos_ != s_.size()) fail("trailing characters after the dict");
    if (!have_descr || !have_fortran || !have_shape) fail("missing one of the keys 'descr', 'fortran_order', 'shape'");
  }

 private:
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_ws() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  [[noreturn]] void fail(const std::string& what) const {
    HG_FAIL(".npy file '" << path_ << "': malformed header (" << what << " at character " << pos_ << "): " << s_);
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  std::string parse_string() {
    const char q = peek();
    if (q != '\'' && q != '"') fail("expected a string");
    ++pos_;
    const std::size_t end = s_.find(q, pos_);
    if (end == std::string::npos) fail("unterminated string");
    std::string out = s_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return out;
  }
  bool parse_bool() {
    if (s_.compare(pos_, 4, "True") == 0) {
      pos_ += 4;
      return true;
    }
    if (s_.compare(pos_, 5, "False") == 0) {
      pos_ += 5;
      return false;
    }
    fail("expected True or False");
  }
  std::vector<std::int64_t> parse_tuple() {
    std::vector<std::int64_t> out;
    expect('(');
    for (;;) {
      skip_ws();
      if (peek() == ')') {
        ++pos_;
        return out;
      }
      if (!std::isdigit(static_cast<unsigned char>(peek()))) fail("expected a non-negative integer dimension");
      std::int64_t v = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        if (v > (INT64_MAX - 9) / 10) fail("dimension too large");
        v = v * 10 + (s_[pos_++] - '0');
      }
      if (peek() == 'L') ++pos_;  // Python 2 long
      out.push_back(v);
      skip_ws();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != ')') {
        fail("expected ',' or ')' in the shape");
      }
    }
  }

  const std::string& s_;
  const std::string& path_;
  std::size_t pos_ = 0;
};

std::size_t item_size_of(const std::string& descr) {
  static const std::map<std::string, std::size_t> sizes{{"<i8", 8}, {"<i4", 4}, {"<u1", 1}, {"|u1", 1},
                                                        {"<f4", 4}, {"<f8", 8}, {"|b1", 1}};
  const auto it = sizes.find(descr);
  return it == sizes.end() ? 0 : it->second;
}

}  // namespace

std::int64_t NpyArray::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

std::vector<std::int64_t> NpyArray::as_int64() const {
  const auto n = static_cast<std::size_t>(numel());
  std::vector<std::int64_t> out(n);
  const std::uint8_t* p = data.data();
  if (descr == "<i8") {
    std::memcpy(out.data(), p, n * 8);
  } else if (descr == "<i4") {
    for (std::size_t i = 0; i < n; ++i) {
      std::int32_t v;
      std::memcpy(&v, p + 4 * i, 4);
      out[i] = v;
    }
  } else if (descr == "<u1" || descr == "|u1" || descr == "|b1") {
    for (std::size_t i = 0; i < n; ++i) out[i] = p[i];
  } else {
    HG_FAIL(".npy array of dtype '" << descr << "' is not an integer array");
  }
  return out;
}

std::vector<double> NpyArray::as_double() const {
  const auto n = static_cast<std::size_t>(numel());
  std::vector<double> out(n);
  const std::uint8_t* p = data.data();
  if (descr == "<f8") {
    std::memcpy(out.data(), p, n * 8);
  } else if (descr == "<f4") {
    for (std::size_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, p + 4 * i, 4);
      out[i] = v;
    }
  } else {
    const std::vector<std::int64_t> ints = as_int64();
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<double>(ints[i]);
  }
  return out;
}

NpyArray read_npy(const std::string& path) {
  require_regular_file(path, ".npy file");
  std::ifstream in(path, std::ios::binary);
  HG_CHECK(in, "cannot open .npy file '" << path << "'");
  const std::vector<std::uint8_t> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  HG_CHECK(!in.bad(), "cannot read .npy file '" << path << "'");
  static const std::uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  HG_CHECK(bytes.size() >= 10 && std::memcmp(bytes.data(), magic, 6) == 0,
           "'" << path << "' is not a .npy file (no \\x93NUMPY magic)");
  const int major = bytes[6], minor = bytes[7];
  HG_CHECK((major == 1 || major == 2 || major == 3) && minor == 0,
           ".npy file '" << path << "': unsupported format version " << major << "." << minor
                         << " (expected 1.0, 2.0 or 3.0)");
  std::size_t header_len, start;
  if (major == 1) {
    header_len = bytes[8] | (static_cast<std::size_t>(bytes[9]) << 8);
    start = 10;
  } else {
    HG_CHECK(bytes.size() >= 12, ".npy file '" << path << "' is truncated in its header");
    header_len = bytes[8] | (static_cast<std::size_t>(bytes[9]) << 8) | (static_cast<std::size_t>(bytes[10]) << 16) |
                 (static_cast<std::size_t>(bytes[11]) << 24);
    start = 12;
  }
  HG_CHECK(bytes.size() >= start + header_len, ".npy file '" << path << "' is truncated in its header (header of "
                                                             << header_len << " bytes, file of " << bytes.size() << ")");
  const std::string header(bytes.begin() + static_cast<std::ptrdiff_t>(start),
                           bytes.begin() + static_cast<std::ptrdiff_t>(start + header_len));
  NpyArray out;
  bool fortran = false;
  HeaderParser(header, path).parse(out.descr, fortran, out.shape);
  out.item_size = item_size_of(out.descr);
  HG_CHECK(out.item_size > 0, ".npy file '" << path << "': unsupported dtype '" << out.descr
                                            << "' (expected <i8, <i4, <u1, |u1, <f4, <f8 or |b1)");
  HG_CHECK(!fortran, ".npy file '" << path << "' is in Fortran order, which is not supported "
                                   << "(save a C-contiguous array, e.g. np.save(f, np.ascontiguousarray(a)))");
  std::uint64_t expected = out.item_size;
  for (std::int64_t d : out.shape) {
    HG_CHECK(d == 0 || expected <= UINT64_MAX / static_cast<std::uint64_t>(d),
             ".npy file '" << path << "': shape too large");
    expected *= static_cast<std::uint64_t>(d);
  }
  const std::uint64_t actual = bytes.size() - start - header_len;
  HG_CHECK(actual == expected, ".npy file '" << path << "' is " << (actual < expected ? "truncated" : "too long")
                                             << ": expected " << expected << " bytes of data, found " << actual);
  out.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(start + header_len), bytes.end());
  return out;
}

std::vector<std::int64_t> read_npy_int_vector(const std::string& path) {
  const NpyArray a = read_npy(path);
  HG_CHECK(a.shape.size() == 1, ".npy file '" << path << "': expected a 1-D array, got " << a.shape.size()
                                              << " dimensions");
  HG_CHECK(a.descr != "<f4" && a.descr != "<f8",
           ".npy file '" << path << "': expected an integer array, got dtype '" << a.descr << "'");
  return a.as_int64();
}

}  // namespace hessgap::data
