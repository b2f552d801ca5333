// Lookups into the generated tables (binary search; ASCII answered from the first runs directly).
#include "data/tokenizer_unicode.h"

#include <algorithm>
#include <iterator>

#include "util/error.h"

namespace hessgap::data::unicode {
namespace {

struct CategoryRun {
  char32_t first;
  CharClass cls;
};

struct CharMapping {
  char32_t cp;
  std::uint16_t offset;  // into the table's pool
  std::uint8_t length;
};

#include "data/tokenizer_unicode_tables.inc"

// Appends the mapping of c from `table` to out; false when c has none.
template <std::size_t N, std::size_t P>
bool append_mapped(std::u32string& out, char32_t c, const CharMapping (&table)[N], const char32_t (&pool)[P]) {
  const CharMapping* it =
      std::lower_bound(std::begin(table), std::end(table), c, [](const CharMapping& m, char32_t v) { return m.cp < v; });
  if (it == std::end(table) || it->cp != c) return false;
  out.append(pool + it->offset, it->length);
  return true;
}

// Hangul syllable decomposition (Unicode §3.12): syllable -> L V [T].
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kTCount = 28, kNCount = 21 * 28, kSCount = 19 * 21 * 28;

}  // namespace

const char* table_version() { return kUnicodeVersion; }

CharClass char_class(char32_t c) {
  if (c > 0x10FFFF) return CharClass::kOtherC;
  const CategoryRun* it = std::upper_bound(std::begin(kCategoryRuns), std::end(kCategoryRuns), c,
                                           [](char32_t v, const CategoryRun& r) { return v < r.first; });
  return std::prev(it)->cls;
}

bool is_white_space(char32_t c) {
  if ((c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85) return true;
  if (c < 0x80) return false;
  const CharClass k = char_class(c);
  return k == CharClass::kSpaceSeparator || k == CharClass::kLineSeparator;
}

void append_lower(std::u32string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(c >= 'A' && c <= 'Z' ? c + 32 : c);
    return;
  }
  if (!append_mapped(out, c, kLower, kLowerPool)) out.push_back(c);
}

void append_strip_marks(std::u32string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(c);
    return;
  }
  if (c >= kSBase && c < kSBase + kSCount) {
    const char32_t s = c - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  if (char_class(c) == CharClass::kMarkNonspacing) return;
  if (!append_mapped(out, c, kStripped, kStrippedPool)) out.push_back(c);
}

std::size_t utf8_find_invalid(const std::string& text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char b = s[i];
    if (b < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    char32_t min;
    char32_t c;
    if ((b & 0xE0) == 0xC0) {
      len = 2, min = 0x80, c = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3, min = 0x800, c = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4, min = 0x10000, c = b & 0x07;
    } else {
      return i;
    }
    if (i + len > n) return i;
    for (std::size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
      c = (c << 6) | (s[i + k] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return i;
    i += len;
  }
  return std::string::npos;
}

std::u32string utf8_decode(const std::string& text, const char* what) {
  const std::size_t bad = utf8_find_invalid(text);
  HG_CHECK(bad == std::string::npos, what << ": invalid UTF-8 at byte " << bad);
  std::u32string out;
  out.reserve(text.size());
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  for (std::size_t i = 0; i < text.size();) {
    const unsigned char b = s[i];
    if (b < 0x80) {
      out.push_back(b);
      ++i;
    } else if ((b & 0xE0) == 0xC0) {
      out.push_back((char32_t(b & 0x1F) << 6) | (s[i + 1] & 0x3F));
      i += 2;
    } else if ((b & 0xF0) == 0xE0) {
      out.push_back((char32_t(b & 0x0F) << 12) | (char32_t(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F));
      i += 3;
    } else {
      out.push_back((char32_t(b & 0x07) << 18) | (char32_t(s[i + 1] & 0x3F) << 12) | (char32_t(s[i + 2] & 0x3F) << 6) |
                    (s[i + 3] & 0x3F));
      i += 4;
    }
  }
  return out;
}

void utf8_append(std::string& out, char32_t c) {
  HG_ASSERT(c <= 0x10FFFF && !(c >= 0xD800 && c <= 0xDFFF), "utf8_append: not a scalar value");
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string utf8_encode(const std::u32string& text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) utf8_append(out, c);
  return out;
}

}  // namespace hessgap::data::unicode
