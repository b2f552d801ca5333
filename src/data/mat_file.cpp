// Level 5 MAT-file layout (MathWorks, "MAT-File Format", R2021+): a 128-byte header (text, subsystem
// offset, version 0x0100, endian indicator "IM"/"MI"), then data elements, each an 8-byte tag (type,
// byte count; or the 4-byte "small element" form when the count is <= 4) and its data padded to 8
// bytes. An array is a miMATRIX element of sub-elements: flags (class), dimensions, name, then the
// class's data. miCOMPRESSED holds one zlib-compressed element and is not padded.
#include "data/mat_file.h"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include "util/error.h"
#include "util/input_file.h"

namespace hessgap::data {
namespace {

enum : std::uint32_t {
  miINT8 = 1, miUINT8 = 2, miINT16 = 3, miUINT16 = 4, miINT32 = 5, miUINT32 = 6, miSINGLE = 7, miDOUBLE = 9,
  miINT64 = 12, miUINT64 = 13, miMATRIX = 14, miCOMPRESSED = 15, miUTF8 = 16, miUTF16 = 17, miUTF32 = 18,
};
enum : std::uint32_t {
  mxCELL = 1, mxSTRUCT = 2, mxOBJECT = 3, mxCHAR = 4, mxSPARSE = 5, mxDOUBLE = 6, mxSINGLE = 7, mxINT8 = 8,
  mxUINT8 = 9, mxINT16 = 10, mxUINT16 = 11, mxINT32 = 12, mxUINT32 = 13, mxINT64 = 14, mxUINT64 = 15,
};
constexpr int kMaxDepth = 64;
constexpr std::int64_t kMaxElements = std::int64_t{1} << 40;  // per array; beyond any real annotation file

const char* class_name_of(std::uint32_t c, bool logical) {
  if (logical) return "logical";
  switch (c) {
    case mxCELL: return "cell";
    case mxSTRUCT: return "struct";
    case mxCHAR: return "char";
    case mxDOUBLE: return "double";
    case mxSINGLE: return "single";
    case mxINT8: return "int8";
    case mxUINT8: return "uint8";
    case mxINT16: return "int16";
    case mxUINT16: return "uint16";
    case mxINT32: return "int32";
    case mxUINT32: return "uint32";
    case mxINT64: return "int64";
    case mxUINT64: return "uint64";
    default: return "?";
  }
}

std::size_t type_size(std::uint32_t type) {
  switch (type) {
    case miINT8: case miUINT8: case miUTF8: return 1;
    case miINT16: case miUINT16: case miUTF16: return 2;
    case miINT32: case miUINT32: case miSINGLE: case miUTF32: return 4;
    case miDOUBLE: case miINT64: case miUINT64: return 8;
    default: return 0;
  }
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// One data element: its type and payload [data, data + size).
struct Element {
  std::uint32_t type = 0;
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;
};

class Reader {
 public:
  Reader(std::string path, bool big_endian) : path_(std::move(path)), big_(big_endian) {}

  // Unsigned integer of `n` bytes at p in the file's byte order.
  std::uint64_t uint_at(const std::uint8_t* p, std::size_t n) const {
    std::uint64_t v = 0;
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t byte = big_ ? k : n - 1 - k;
      v = (v << 8) | p[byte];
    }
    return v;
  }

  // The element at *pos in [*pos, end); advances *pos past it (and its padding).
  Element next(const std::uint8_t*& pos, const std::uint8_t* end, const std::string& where) const {
    HG_CHECK(end - pos >= 8, where << ": truncated (a data element tag needs 8 bytes, " << (end - pos) << " left)");
    const auto w0 = static_cast<std::uint32_t>(uint_at(pos, 4));
    Element e;
    if ((w0 >> 16) != 0) {  // small data element: count in the upper half, data in the tag's second word
      e.type = w0 & 0xFFFF;
      e.size = w0 >> 16;
      HG_CHECK(e.size <= 4, where << ": corrupt small data element (" << e.size << " bytes)");
      e.data = pos + 4;
      pos += 8;
      return e;
    }
    e.type = w0;
    e.size = static_cast<std::size_t>(uint_at(pos + 4, 4));
    e.data = pos + 8;
    HG_CHECK(static_cast<std::size_t>(end - e.data) >= e.size,
             where << ": truncated (an element of type " << e.type << " declares " << e.size << " bytes, "
                   << (end - e.data) << " left)");
    std::size_t advance = 8 + e.size;
    if (e.type != miCOMPRESSED) advance = (advance + 7) / 8 * 8;
    pos = advance > static_cast<std::size_t>(end - pos) ? end : pos + advance;
    return e;
  }

  std::vector<double> numbers(const Element& e, const std::string& where) const {
    const std::size_t width = type_size(e.type);
    HG_CHECK(width != 0 && e.type != miUTF8 && e.type != miUTF16 && e.type != miUTF32,
             where << ": unexpected data type " << e.type << " for numeric data");
    HG_CHECK(e.size % width == 0, where << ": " << e.size << " bytes is not a whole number of " << width << "-byte values");
    std::vector<double> out(e.size / width);
    for (std::size_t k = 0; k < out.size(); ++k) {
      const std::uint64_t u = uint_at(e.data + k * width, width);
      switch (e.type) {
        case miINT8: out[k] = static_cast<std::int8_t>(u); break;
        case miUINT8: out[k] = static_cast<double>(u); break;
        case miINT16: out[k] = static_cast<std::int16_t>(u); break;
        case miUINT16: out[k] = static_cast<double>(u); break;
        case miINT32: out[k] = static_cast<std::int32_t>(u); break;
        case miUINT32: out[k] = static_cast<double>(u); break;
        case miINT64: out[k] = static_cast<double>(static_cast<std::int64_t>(u)); break;
        case miUINT64: out[k] = static_cast<double>(u); break;
        case miSINGLE: {
          const auto bits = static_cast<std::uint32_t>(u);
          float f;
          std::memcpy(&f, &bits, 4);
          out[k] = f;
          break;
        }
        default: {  // miDOUBLE
          double d;
          std::memcpy(&d, &u, 8);
          out[k] = d;
        }
      }
    }
    return out;
  }

  std::u32string chars(const Element& e, const std::string& where) const {
    std::u32string out;
    if (e.type == miUTF8 || e.type == miUINT8 || e.type == miINT8) {
      for (std::size_t k = 0; k < e.size;) {  // UTF-8 (ASCII and Latin-1 bytes pass through)
        const std::uint8_t b = e.data[k];
        std::size_t len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
        if (e.type != miUTF8 || len == 0 || k + len > e.size) len = 1;
        char32_t c = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
        for (std::size_t j = 1; j < len; ++j) c = (c << 6) | (e.data[k + j] & 0x3F);
        out += c;
        k += len;
      }
    } else if (e.type == miUTF16 || e.type == miUINT16 || e.type == miINT16) {
      HG_CHECK(e.size % 2 == 0, where << ": odd byte count " << e.size << " for UTF-16 text");
      for (std::size_t k = 0; k < e.size / 2; ++k) {
        auto c = static_cast<char32_t>(uint_at(e.data + 2 * k, 2));
        if (c >= 0xD800 && c < 0xDC00 && (k + 1) < e.size / 2) {
          const auto lo = static_cast<char32_t>(uint_at(e.data + 2 * (k + 1), 2));
          if (lo >= 0xDC00 && lo < 0xE000) {
            c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
            ++k;
          }
        }
        out += c;
      }
    } else if (e.type == miUTF32 || e.type == miUINT32 || e.type == miINT32) {
      HG_CHECK(e.size % 4 == 0, where << ": byte count " << e.size << " is not a multiple of 4 for UTF-32 text");
      for (std::size_t k = 0; k < e.size / 4; ++k) out += static_cast<char32_t>(uint_at(e.data + 4 * k, 4));
    } else {
      HG_FAIL(where << ": unexpected data type " << e.type << " for char data");
    }
    return out;
  }

  // The array in the payload of a miMATRIX element.
  MatArray matrix(const Element& m, const std::string& origin, int depth) const {
    HG_CHECK(depth < kMaxDepth, origin << ": arrays nested deeper than " << kMaxDepth);
    MatArray a;
    a.origin = origin;
    if (m.size == 0) {  // an empty array written as a bare tag
      a.class_name = "double";
      a.dims = {0, 0};
      return a;
    }
    const std::uint8_t* pos = m.data;
    const std::uint8_t* end = m.data + m.size;
    const Element flags = next(pos, end, origin);
    HG_CHECK(flags.type == miUINT32 && flags.size >= 4, origin << ": corrupt array flags");
    const auto f = static_cast<std::uint32_t>(uint_at(flags.data, 4));
    const std::uint32_t cls = f & 0xFF;
    const bool logical = (f & 0x0200) != 0;
    a.complex = (f & 0x0800) != 0;
    const Element dims = next(pos, end, origin);
    // miINT32 by the format; some writers use miUINT32.
    HG_CHECK((dims.type == miINT32 || dims.type == miUINT32) && dims.size >= 8 && dims.size % 4 == 0,
             origin << ": corrupt dimensions");
    std::int64_t numel = 1;
    for (std::size_t k = 0; k < dims.size / 4; ++k) {
      const auto d = static_cast<std::int32_t>(uint_at(dims.data + 4 * k, 4));
      HG_CHECK(d >= 0, origin << ": negative dimension " << d);
      a.dims.push_back(d);
      // Checked before multiplying: 2^40 times a 31-bit dimension would overflow.
      HG_CHECK(d == 0 || numel <= kMaxElements / d, origin << ": implausible array size");
      numel *= d;
    }
    const Element name = next(pos, end, origin);
    HG_CHECK(name.type == miINT8 || name.type == miUINT8 || name.type == miUTF8, origin << ": corrupt array name");
    a.name.assign(reinterpret_cast<const char*>(name.data), name.size);
    a.class_name = class_name_of(cls, logical);

    switch (cls) {
      case mxDOUBLE: case mxSINGLE: case mxINT8: case mxUINT8: case mxINT16: case mxUINT16: case mxINT32:
      case mxUINT32: case mxINT64: case mxUINT64: {
        a.type = MatArray::Type::kNumeric;
        if (pos < end) a.values = numbers(next(pos, end, origin), origin);
        HG_CHECK(static_cast<std::int64_t>(a.values.size()) == numel,
                 origin << ": " << a.values.size() << " values for " << numel << " elements");
        break;  // an imaginary part, if any, follows and is dropped
      }
      case mxCHAR: {
        a.type = MatArray::Type::kChar;
        if (pos < end) a.chars = chars(next(pos, end, origin), origin);
        break;
      }
      case mxCELL: {
        a.type = MatArray::Type::kCell;
        HG_CHECK(numel * 8 <= end - pos, origin << ": truncated cell array (" << numel << " elements)");
        a.elements.reserve(static_cast<std::size_t>(numel));
        for (std::int64_t i = 0; i < numel; ++i) {
          const std::string where = origin + "{" + std::to_string(i + 1) + "}";
          const Element e = next(pos, end, where);
          HG_CHECK(e.type == miMATRIX, where << ": expected an array element, found type " << e.type);
          a.elements.push_back(matrix(e, where, depth + 1));
        }
        break;
      }
      case mxSTRUCT: {
        a.type = MatArray::Type::kStruct;
        const Element len = next(pos, end, origin);
        HG_CHECK(len.type == miINT32 && len.size == 4, origin << ": corrupt struct field name length");
        const auto width = static_cast<std::size_t>(uint_at(len.data, 4));
        const Element names = next(pos, end, origin);
        HG_CHECK(width > 0 && names.size % width == 0, origin << ": corrupt struct field names");
        for (std::size_t k = 0; k < names.size / width; ++k) {
          const char* s = reinterpret_cast<const char*>(names.data + k * width);
          a.fields.emplace_back(s, strnlen(s, width));
        }
        const auto nf = static_cast<std::int64_t>(a.fields.size());
        // Each field value needs an 8-byte tag; divided rather than multiplied (numel * nf can overflow).
        HG_CHECK(nf == 0 || numel <= (end - pos) / (nf * 8),
                 origin << ": truncated struct array (" << numel << " elements)");
        // A struct without fields holds no values, whatever its dimensions: nothing to read (and a
        // 2^40-element one would otherwise spin through empty iterations).
        if (nf == 0) break;
        a.elements.reserve(static_cast<std::size_t>(numel * nf));
        for (std::int64_t i = 0; i < numel; ++i) {
          for (std::int64_t k = 0; k < nf; ++k) {
            const std::string where = origin + "(" + std::to_string(i + 1) + ")." + a.fields[static_cast<std::size_t>(k)];
            const Element e = next(pos, end, where);
            HG_CHECK(e.type == miMATRIX, where << ": expected an array element, found type " << e.type);
            a.elements.push_back(matrix(e, where, depth + 1));
          }
        }
        break;
      }
      default:
        HG_FAIL(origin << ": unsupported array class " << cls
                       << (cls == mxSPARSE   ? " (sparse)"
                           : cls == mxOBJECT ? " (object)"
                                             : " (function handles and opaque objects are not read)"));
    }
    return a;
  }

  std::vector<std::uint8_t> inflate_all(const Element& e, const std::string& where) const {
    HG_CHECK(e.size <= UINT_MAX, where << ": compressed element too large");
    z_stream zs{};
    HG_CHECK(inflateInit(&zs) == Z_OK, where << ": zlib initialisation failed");
    std::vector<std::uint8_t> out(std::max<std::size_t>(1024, e.size * 4));
    zs.next_in = const_cast<Bytef*>(e.data);
    zs.avail_in = static_cast<uInt>(e.size);
    int ret = Z_OK;
    while (ret != Z_STREAM_END) {
      if (zs.total_out == out.size()) out.resize(out.size() * 2);
      zs.next_out = out.data() + zs.total_out;
      zs.avail_out = static_cast<uInt>(std::min<std::size_t>(out.size() - zs.total_out, UINT_MAX));
      ret = inflate(&zs, Z_NO_FLUSH);
      if (ret != Z_OK && ret != Z_STREAM_END) {
        const std::string msg = zs.msg != nullptr ? zs.msg : "truncated stream";
        inflateEnd(&zs);
        HG_FAIL(where << ": corrupt compressed variable (zlib: " << msg << ")");
      }
      if (ret == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
        inflateEnd(&zs);
        HG_FAIL(where << ": corrupt compressed variable (zlib: truncated stream)");
      }
    }
    out.resize(zs.total_out);
    inflateEnd(&zs);
    return out;
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool big_;
};

}  // namespace

std::int64_t MatArray::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : dims) n *= d;
  return n;
}

std::string MatArray::str() const {
  HG_CHECK(type == Type::kChar, origin << ": expected a char array (text), found " << class_name);
  std::int64_t rows = dims.empty() ? 0 : dims[0];
  std::int64_t cols = numel() / std::max<std::int64_t>(rows, 1);
  HG_CHECK(rows <= 1 || cols <= 1, origin << ": expected one line of text, found a " << rows << " x " << cols
                                          << " char array");
  std::string out;
  for (char32_t c : chars) append_utf8(out, c);
  return out;
}

std::vector<std::int64_t> MatArray::integers() const {
  HG_CHECK(type == Type::kNumeric, origin << ": expected a numeric array, found " << class_name);
  std::vector<std::int64_t> out;
  out.reserve(values.size());
  for (double v : values) {
    HG_CHECK(std::isfinite(v) && v == std::floor(v) && std::fabs(v) <= 9007199254740992.0,
             origin << ": expected integers, found " << v);
    out.push_back(static_cast<std::int64_t>(v));
  }
  return out;
}

std::int64_t MatArray::scalar_integer() const {
  HG_CHECK(type == Type::kNumeric && values.size() == 1,
           origin << ": expected one number, found a " << class_name << " array of " << numel() << " elements");
  return integers()[0];
}

const MatArray& MatArray::cell(std::int64_t i) const {
  HG_CHECK(type == Type::kCell, origin << ": expected a cell array, found " << class_name);
  HG_CHECK(i >= 0 && i < static_cast<std::int64_t>(elements.size()),
           origin << ": cell " << i + 1 << " out of range (" << elements.size() << " cells)");
  return elements[static_cast<std::size_t>(i)];
}

bool MatArray::has_field(const std::string& name) const {
  for (const std::string& f : fields) {
    if (f == name) return true;
  }
  return false;
}

const MatArray& MatArray::field(const std::string& name, std::int64_t i) const {
  HG_CHECK(type == Type::kStruct, origin << ": expected a struct array, found " << class_name);
  const auto nf = static_cast<std::int64_t>(fields.size());
  std::int64_t k = 0;
  while (k < nf && fields[static_cast<std::size_t>(k)] != name) ++k;
  if (k == nf) {
    std::string present;
    for (const std::string& f : fields) present += (present.empty() ? "" : ", ") + f;
    HG_FAIL(origin << ": no field '" << name << "' (fields: " << (present.empty() ? "none" : present) << ")");
  }
  HG_CHECK(i >= 0 && i < numel(), origin << ": element " << i + 1 << " out of range (" << numel() << " elements)");
  return elements[static_cast<std::size_t>(i * nf + k)];
}

std::vector<MatArray> read_mat_file(const std::string& path) {
  refuse_special_file(path, "MAT-file");
  std::ifstream in(path, std::ios::binary);
  HG_CHECK(in, "MAT-file '" << path << "' does not exist or cannot be opened");
  const std::vector<std::uint8_t> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  HG_CHECK(!in.bad(), "cannot read MAT-file '" << path << "'");
  const std::string file = "MAT-file '" + path + "'";
  HG_CHECK(bytes.size() >= 128, file << " is not a Level 5 MAT-file (" << bytes.size() << " bytes, shorter than its "
                                      << "128-byte header; MATLAB v4 files are not supported)");
  const std::string text(reinterpret_cast<const char*>(bytes.data()), 116);
  const std::string v73 = " is a MATLAB v7.3 (HDF5-based) file, which is not supported; re-save it with save(..., '-v7')";
  HG_CHECK(text.rfind("MATLAB 7.3", 0) != 0, file << v73);
  bool big = false;
  if (bytes[126] == 'I' && bytes[127] == 'M') {
    big = false;
  } else if (bytes[126] == 'M' && bytes[127] == 'I') {
    big = true;
  } else {
    HG_FAIL(file << " is not a Level 5 MAT-file (no endian indicator 'IM' or 'MI' at bytes 126-127; MATLAB v4 "
                    "files are not supported)");
  }
  const Reader r(path, big);
  const auto version = r.uint_at(bytes.data() + 124, 2);
  HG_CHECK(version != 0x0200, file << v73);
  HG_CHECK(version == 0x0100, file << ": unsupported MAT-file version 0x" << std::hex << version
                                   << " (expected 0x0100, Level 5)");
  std::vector<MatArray> out;
  const std::uint8_t* pos = bytes.data() + 128;
  const std::uint8_t* end = bytes.data() + bytes.size();
  while (pos < end) {
    const std::string where = file + ", variable " + std::to_string(out.size() + 1);
    Element e = r.next(pos, end, where);
    std::vector<std::uint8_t> inflated;
    if (e.type == miCOMPRESSED) {
      inflated = r.inflate_all(e, where);
      const std::uint8_t* p = inflated.data();
      e = r.next(p, inflated.data() + inflated.size(), where);
    }
    if (e.type != miMATRIX) continue;
    // Name the variable in messages: its name sub-element precedes the class data.
    std::string origin = where;
    {
      const std::uint8_t* p = e.data;
      const std::uint8_t* q = e.data + e.size;
      if (e.size > 0) {
        r.next(p, q, where);
        r.next(p, q, where);
        const Element name = r.next(p, q, where);
        origin = file + ", variable " + std::string(reinterpret_cast<const char*>(name.data), name.size);
      }
    }
    out.push_back(r.matrix(e, origin, 0));
  }
  return out;
}

MatArray read_mat_variable(const std::string& path, const std::string& name) {
  std::vector<MatArray> all = read_mat_file(path);
  std::string present;
  for (MatArray& a : all) {
    if (a.name == name) return std::move(a);
    present += (present.empty() ? "" : ", ") + a.name;
  }
  HG_FAIL("MAT-file '" << path << "' has no variable '" << name << "' (variables: "
                       << (present.empty() ? "none" : present) << ")");
}

}  // namespace hessgap::data
