// File content quoted in a message, shortened: a hostile header or line can be megabytes long, and quoted
// whole it buries the message (issue #12: a GLUE header of 10^6 columns printed 3 MB). Header-only.
#pragma once

#include <cstddef>
#include <string>

namespace hessgap {

// What a message quotes of a file by default: a line of any real table fits.
constexpr std::size_t kMaxExcerptBytes = 200;

// `text` whole when at most `max_bytes` long, else its first `max_bytes` bytes (backing off to the start of
// a UTF-8 sequence, so that an excerpt of valid text stays valid) and "... (N bytes)".
inline std::string excerpt(const std::string& text, std::size_t max_bytes = kMaxExcerptBytes) {
  if (text.size() <= max_bytes) return text;
  std::size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;  // 10xxxxxx: continuation
  return text.substr(0, end) + "... (" + std::to_string(text.size()) + " bytes)";
}

}  // namespace hessgap
