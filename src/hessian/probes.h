// Hutchinson probe vectors drawn from the counter-based generator, so that probe k of batch b for
// layer i is the same tensor on every rank, thread count and call order.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>

namespace hessgap::hessian {

enum class ProbeDistribution { kRademacher, kGaussian };

// "rademacher" or "gaussian"; throws hessgap::Error naming the flag value otherwise.
ProbeDistribution parse_probe_distribution(const std::string& name);
std::string to_string(ProbeDistribution d);

// The probe block for one layer: a tensor of `like`'s shape, dtype and device whose entries are
// ±1 (Rademacher) or N(0,1) (Gaussian). Element e is a pure function of (seed, batch, probe,
// layer, e). Gaussian entries are generated on the CPU and copied to `like`'s device; Rademacher
// entries for a non-CPU `like` are computed on the device (rademacher_on_device: the generator's 64-bit
// words in int64 tensor arithmetic, no host loop and no copy): the same values either way.
torch::Tensor draw_probe(const torch::Tensor& like, ProbeDistribution dist, std::uint64_t seed,
                         std::int64_t batch, std::int64_t probe, std::int64_t layer);

// The device path of Rademacher draw_probe for key `key` (rng::make_key of the probe), usable on
// any device, the CPU included (where the tests compare it with rng::fill_rademacher).
torch::Tensor rademacher_on_device(const torch::Tensor& like, std::uint64_t key);

// The weight perturbation of noise stability: N(0, eps²) entries shaped like `like`, keyed by
// (seed, repeat, layer).
torch::Tensor draw_weight_noise(const torch::Tensor& like, double eps, std::uint64_t seed,
                                std::int64_t repeat, std::int64_t layer);

}  // namespace hessgap::hessian
