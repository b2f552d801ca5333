// Counter-based random numbers keyed by global indices, so that a draw depends only on
// (seed, stream, ids, element index) and never on rank count, thread count or call order.
// Torch-free; hessian/ wraps it into tensors.
#pragma once

#include <cstdint>

namespace hessgap::rng {

// Streams keep unrelated uses of one seed independent.
enum class Stream : std::uint64_t {
  kProbe = 1,        // Hutchinson probes: ids (batch, probe, layer)
  kWeightNoise = 2,  // noise stability: ids (repeat, layer)
  kShuffle = 3,      // data order: ids (epoch)
  kAugment = 4,      // augmentation: ids (epoch, sample)
  kLabelNoise = 5,   // label noise: ids (sample)
  kInit = 6,         // parameter initialisation: ids (parameter index)
  kDropout = 7,      // training dropout: the step key, ids (step); then a site of its forward, ids (site)
};

// SplitMix64 finaliser: a bijective 64-bit mixer.
std::uint64_t mix64(std::uint64_t x);

// Key of one stream of numbers; element i of the stream is a pure function of (key, i).
std::uint64_t make_key(std::uint64_t seed, Stream stream, std::uint64_t a = 0, std::uint64_t b = 0,
                       std::uint64_t c = 0);

// Uniform 64 random bits for element `i` of the stream `key`.
inline std::uint64_t bits(std::uint64_t key, std::uint64_t i) { return mix64(key ^ mix64(i + 0x9E3779B97F4A7C15ULL)); }

// Uniform double in [0, 1) with 53 random bits.
inline double uniform(std::uint64_t key, std::uint64_t i) {
  return static_cast<double>(bits(key, i) >> 11) * (1.0 / 9007199254740992.0);
}

// Fill out[0..n) with element indices [offset, offset+n) of the stream.
// Rademacher: +1 or -1 with probability 1/2 each. Normal: N(0,1) by Box-Muller on element pairs,
// so element i only depends on (key, i).
void fill_rademacher(float* out, std::int64_t n, std::uint64_t key, std::uint64_t offset = 0);
void fill_rademacher(double* out, std::int64_t n, std::uint64_t key, std::uint64_t offset = 0);
void fill_normal(float* out, std::int64_t n, std::uint64_t key, std::uint64_t offset = 0);
void fill_normal(double* out, std::int64_t n, std::uint64_t key, std::uint64_t offset = 0);

// Standard normal for element i.
double normal(std::uint64_t key, std::uint64_t i);

// A permutation of [0, n) determined by key (Fisher-Yates driven by the stream).
void permutation(std::int64_t* out, std::int64_t n, std::uint64_t key);

}  // namespace hessgap::rng
