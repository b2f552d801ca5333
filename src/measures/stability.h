// `hessgap stability`: noise stability. f(W) is the mean loss on a fixed subset; each repeat r adds
// U_r ~ N(0, eps²) i.i.d. to every Hessian-layer weight and records Δ_r = f(W + U_r) − f(W).
// For small eps, E Δ ≈ (eps²/2)·Σ_i tr(H_ii) over the perturbed layers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "measures/measure_context.h"

namespace hessgap::measures {

struct StabilityOptions {
  double eps = 1e-3;   // standard deviation of the perturbation (absolute, not relative)
  int repeats = 20;    // R (image reference 20, text 100)
  std::uint64_t seed = 0;
  void validate() const;
};

struct StabilityResult {
  std::vector<std::string> layers;  // the perturbed tensors
  double base_loss = 0.0;           // f(W): sample-weighted mean loss over the subset
  double base_accuracy = 0.0;
  std::int64_t num_samples = 0;
  std::vector<double> deltas;       // [R]
  double mean = 0.0;                // mean of deltas
  double std = 0.0;                 // population standard deviation of deltas (as the reference)
  double seconds = 0.0;
};

// Collective over ctx.world: the subset's batches are sharded over ranks, loss sums all-reduced;
// U_r is keyed by (seed, r, layer) and identical on every rank. The weights are restored exactly
// after each repeat.
StabilityResult compute_stability(const MeasureContext& ctx, const StabilityOptions& opts);

}  // namespace hessgap::measures
