#include "util/rng.h"

#include <cmath>
#include <utility>

namespace hessgap::rng {

std::uint64_t mix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

std::uint64_t make_key(std::uint64_t seed, Stream stream, std::uint64_t a, std::uint64_t b, std::uint64_t c) {
  std::uint64_t k = mix64(seed);
  k = mix64(k ^ static_cast<std::uint64_t>(stream));
  k = mix64(k ^ a);
  k = mix64(k ^ (b + 0x632BE59BD9B4E019ULL));
  k = mix64(k ^ (c + 0x8CB92BA72F3D8DD7ULL));
  return k;
}

double normal(std::uint64_t key, std::uint64_t i) {
  // Box-Muller on the pair (2*(i/2), 2*(i/2)+1): element i takes the cosine or sine branch.
  const std::uint64_t pair = i >> 1;
  const double u1 = 1.0 - uniform(key, 2 * pair);  // (0, 1]
  const double u2 = uniform(key, 2 * pair + 1);
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double angle = 6.283185307179586 * u2;
  return (i & 1) ? r * std::sin(angle) : r * std::cos(angle);
}

template <typename T>
static void rademacher_impl(T* out, std::int64_t n, std::uint64_t key, std::uint64_t offset) {
  // One 64-bit draw yields 64 signs; element i uses bit (i % 64) of word i / 64.
  std::int64_t i = 0;
  while (i < n) {
    const std::uint64_t g = offset + static_cast<std::uint64_t>(i);
    const std::uint64_t word = bits(key, g >> 6);
    const int first = static_cast<int>(g & 63);
    for (int b = first; b < 64 && i < n; ++b, ++i) out[i] = ((word >> b) & 1ULL) ? T(1) : T(-1);
  }
}

template <typename T>
static void normal_impl(T* out, std::int64_t n, std::uint64_t key, std::uint64_t offset) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(normal(key, offset + static_cast<std::uint64_t>(i)));
}

void fill_rademacher(float* out, std::int64_t n, std::uint64_t key, std::uint64_t offset) {
  rademacher_impl(out, n, key, offset);
}
void fill_rademacher(double* out, std::int64_t n, std::uint64_t key, std::uint64_t offset) {
  rademacher_impl(out, n, key, offset);
}
void fill_normal(float* out, std::int64_t n, std::uint64_t key, std::uint64_t offset) {
  normal_impl(out, n, key, offset);
}
void fill_normal(double* out, std::int64_t n, std::uint64_t key, std::uint64_t offset) {
  normal_impl(out, n, key, offset);
}

void permutation(std::int64_t* out, std::int64_t n, std::uint64_t key) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = i;
  for (std::int64_t i = n - 1; i > 0; --i) {
    const std::int64_t j = static_cast<std::int64_t>(bits(key, static_cast<std::uint64_t>(i)) %
                                                     static_cast<std::uint64_t>(i + 1));
    std::swap(out[i], out[j]);
  }
}

}  // namespace hessgap::rng
