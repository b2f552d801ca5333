#include "util/limits.h"

#include <cerrno>
#include <cstdlib>
#include <limits>
#include <string>

#include <unistd.h>

#include "util/error.h"

namespace hessgap {

std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b) {
  std::uint64_t out = 0;
  if (__builtin_mul_overflow(a, b, &out)) return std::nullopt;
  return out;
}

std::optional<std::int64_t> checked_numel(const std::vector<std::int64_t>& dims) {
  std::int64_t nonzero = 1;
  bool zero = false;
  for (std::int64_t d : dims) {
    if (d < 0) return std::nullopt;
    if (d == 0) {
      zero = true;
      continue;
    }
    if (__builtin_mul_overflow(nonzero, d, &nonzero)) return std::nullopt;
  }
  return zero ? 0 : nonzero;
}

std::optional<std::int64_t> checked_nbytes(const std::vector<std::int64_t>& dims, std::uint64_t element_size) {
  const auto numel = checked_numel(dims);
  if (!numel || element_size > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
  std::int64_t out = 0;
  if (__builtin_mul_overflow(*numel, static_cast<std::int64_t>(element_size), &out)) return std::nullopt;
  return out;
}

std::uint64_t limit_from_env(const char* name, std::uint64_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  const std::string s = text;
  bool ok = s.find_first_not_of("0123456789") == std::string::npos;
  unsigned long long v = 0;
  if (ok) {
    errno = 0;
    v = std::strtoull(s.c_str(), nullptr, 10);
    ok = errno == 0 && v > 0;
  }
  HG_CHECK(ok, "environment variable " << name << "='" << s << "' is not a positive integer");
  return v;
}

std::uint64_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return 0;
  const auto bytes = checked_mul(static_cast<std::uint64_t>(pages), static_cast<std::uint64_t>(page));
  return bytes ? *bytes : 0;
}

}  // namespace hessgap
