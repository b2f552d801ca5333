// rng's SplitMix64 words (util/rng.h) computed as int64 tensor arithmetic where the tensors live, so
// that a device draws Rademacher probes without a host loop or a copy: the shared core of
// JointRademacher (joint_probes.h) and of draw_probe's device path (probes.h). Bitwise the host's
// values: int64 multiplication and addition wrap modulo 2^64 as uint64's do, and the logical right
// shifts are arithmetic ones with the copies of the sign bit masked off.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace hessgap::hessian {

// rng::mix64 (SplitMix64's finaliser) of every element of an int64 tensor (the uint64 bits).
torch::Tensor mix64_elementwise(torch::Tensor x);

// The salts of a key's words: element j of the [n] int64 result is rng::mix64(index[j] + golden) for
// an int64 tensor of word indices, so that rng::bits(key, index[j]) = mix64(key ^ salt[j]).
torch::Tensor word_salts(const torch::Tensor& index);

// The uint64 bits of u as an int64 (the tensors' element type).
inline std::int64_t as_i64(std::uint64_t u) { return static_cast<std::int64_t>(u); }

}  // namespace hessgap::hessian
