// Joint Rademacher probes drawn where the weights live: every layer's block of probes first … first+K−1
// of one batch in about twenty element-wise kernels for the whole set, with no per-layer host loop,
// no per-layer copy and no host synchronisation. The joint Hutchinson path draws with it on every
// device (hutchinson.cpp); draw_probe (probes.h) stays the definition, and the path of the layer scope,
// the sketches and the spectrum.
//
// Values: bitwise those of draw_probe(like[i], kRademacher, seed, batch, probe, i): element e of block i
// is bit e % 64 of the 64-bit word rng::bits(key_i, e / 64), +1 for a set bit, with key_i =
// rng::make_key(seed, kProbe, batch, probe, i). The per-layer keys are made on the host (K·L of them,
// one small copy per call); the words are SplitMix64 in int64 tensor arithmetic (splitmix_tensor.h),
// expanded to signs byte by byte through a 256-row look-up table. The tests compare it with draw_probe
// on the CPU, and on a GPU (tests/gpu).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace hessgap::hessian {

class JointRademacher {
 public:
  // The blocks' shapes, dtype and device are those of `like` (one tensor per layer, all on one device,
  // floating; may be empty of elements). Makes two int64 tensors of ⌈numel/64⌉ words per layer where
  // the layers live (a few kernels; no host loop over the words).
  explicit JointRademacher(const std::vector<torch::Tensor>& like);

  // Probes first … first+count−1 (count ≥ 1) of every layer: block i is [count, like[i].sizes()...].
  std::vector<torch::Tensor> draw(std::uint64_t seed, std::int64_t batch, std::int64_t first,
                                  std::int64_t count) const;

  // Probe `probe` of every layer, shaped like `like` (views into one buffer).
  std::vector<torch::Tensor> draw_one(std::uint64_t seed, std::int64_t batch, std::int64_t probe) const;

  // The draw in its two halves, for a caller that replays the device half (ProbeUnit's CUDA graph):
  //  * keys: the [count, L] int64 per-layer keys of probes first … first+count−1, on the host;
  //  * signs_from_keys: those keys (any [count, L] int64 tensor on the blocks' device) → the
  //    [count, Σ 64·words] ±1 signs in the blocks' dtype, layer i's elements from 64·word_offset(i),
  //    with no host work and no synchronisation; blocks_of_row cuts one row into the blocks (views).
  // draw_one(s, b, p) is blocks_of_row(signs_from_keys(keys(s, b, p, 1) on the device)[0]).
  torch::Tensor keys(std::uint64_t seed, std::int64_t batch, std::int64_t first, std::int64_t count) const;
  // Host keys to the blocks' device (on CUDA from pinned memory, without waiting), into `into` when it is
  // defined (a captured graph's input), else into a new tensor; returns the device keys.
  torch::Tensor upload_keys(const torch::Tensor& host_keys, torch::Tensor into = {}) const;
  torch::Tensor signs_from_keys(const torch::Tensor& device_keys) const;
  std::vector<torch::Tensor> blocks_of_row(const torch::Tensor& row) const;
  torch::Device device() const { return device_; }

 private:
  torch::Tensor signs(std::uint64_t seed, std::int64_t batch, std::int64_t first, std::int64_t count) const;

  std::vector<std::vector<std::int64_t>> shapes_;
  std::vector<std::int64_t> numel_, word_offset_;
  torch::ScalarType dtype_;
  torch::Device device_;
  torch::Tensor word_layer_;  // [W] int64: the layer of each word
  torch::Tensor word_salt_;   // [W] int64: mix64(j + golden) of the word's index j within its layer
  torch::Tensor byte_signs_;  // [256, 8] in the blocks' dtype: the signs of the 8 bits of each byte value
};

}  // namespace hessgap::hessian
