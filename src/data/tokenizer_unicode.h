// The Unicode the tokenizers need: UTF-8 decoding and encoding, general categories, the full lower-case
// mapping and "NFD without nonspacing marks" (BERT's accent stripping), one code point at a time.
//
// The tables are generated from Python's unicodedata (tokenizer_unicode_tables.py writes
// tokenizer_unicode_tables.inc; Unicode 14.0 with Debian 12's Python 3.11) and cover every code point.
// Hugging Face's Rust tokenizers use Rust's and their crates' own Unicode versions, so characters assigned
// or recategorised after 14.0 may tokenize differently. Limits, all deliberate (none occurs in GLUE):
//   * strip_marks() decomposes one character at a time and does not apply canonical reordering; marks
//     that survive it (spacing or enclosing marks with a non-zero combining class) keep their input order;
//   * lower() is the per-character full mapping (as Hugging Face's NormalizedString::lowercase, and unlike
//     Python's str.lower(), which lowers a final capital sigma to ς).
#pragma once

#include <cstdint>
#include <string>

namespace hessgap::data::unicode {

// General categories folded into what the tokenizers tell apart.
enum class CharClass : std::uint8_t {
  kLetter,           // L*
  kMarkNonspacing,   // Mn
  kMarkOther,        // Mc, Me
  kNumber,           // N*
  kPunctuation,      // P*
  kSymbol,           // S*
  kSpaceSeparator,   // Zs
  kLineSeparator,    // Zl, Zp
  kControl,          // Cc
  kFormat,           // Cf
  kOtherC,           // Cs, Co, Cn (surrogates, private use, unassigned)
};

// Unicode version of the tables, e.g. "14.0.0".
const char* table_version();

CharClass char_class(char32_t c);
inline bool is_letter(char32_t c) { return char_class(c) == CharClass::kLetter; }
inline bool is_number(char32_t c) { return char_class(c) == CharClass::kNumber; }
// Unicode P* (not the ASCII symbols such as $ + < = > ^ ` | ~, which are S*).
inline bool is_punctuation(char32_t c) { return char_class(c) == CharClass::kPunctuation; }
// Any C* category: Cc, Cf, Cs, Co, Cn.
inline bool is_other(char32_t c) {
  const CharClass k = char_class(c);
  return k == CharClass::kControl || k == CharClass::kFormat || k == CharClass::kOtherC;
}
// The White_Space property (U+0009..U+000D, U+0085, Zs, Zl, Zp): Rust's char::is_whitespace and
// Oniguruma's Unicode \s.
bool is_white_space(char32_t c);

// Appends the full lower-case mapping of c (1 to 3 code points) to out.
void append_lower(std::u32string& out, char32_t c);
// Appends NFD(c) without its nonspacing marks (Mn) to out: "é" -> "e", "Ḋ" -> "D", a Mn mark -> nothing,
// a Hangul syllable -> its conjoining jamo.
void append_strip_marks(std::u32string& out, char32_t c);

// Decodes UTF-8 (strict: no overlong forms, surrogates or code points above U+10FFFF).
// Throws hessgap::Error "<what>: invalid UTF-8 at byte N" on malformed input.
std::u32string utf8_decode(const std::string& text, const char* what = "text");
// Offset of the first malformed byte, or std::string::npos when `text` is valid UTF-8.
std::size_t utf8_find_invalid(const std::string& text);
void utf8_append(std::string& out, char32_t c);
std::string utf8_encode(const std::u32string& text);

}  // namespace hessgap::data::unicode
