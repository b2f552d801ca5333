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

struct EvalOptions {
  // Also return every sample's logits, label and loss (gathered from all ranks).
  bool per_sample = false;
};

// Loss and accuracy (sample-weighted) of the model on the plan's samples.
// Unlabelled data (every label -1, as GLUE's test files): predictions only. labelled is false, loss and
// accuracy are NaN, correct is 0, and the per-sample rows are returned whatever per_sample says (they
// are the result), with label -1 and loss NaN.
struct EvalResult {
  bool labelled = true;
  double loss = 0.0;      // mean cross-entropy per sample
  double accuracy = 0.0;  // fraction in [0, 1]
  std::int64_t num_samples = 0;
  std::int64_t correct = 0;
  double seconds = 0.0;
  // per_sample only (empty otherwise), N = num_samples rows in the plan's order (the order of the
  // dataset's sample ids unless the plan shuffles), the same on every rank whatever the rank count:
  std::int64_t num_classes = 0;            // K
  std::vector<std::int64_t> sample_ids;    // [N] global dataset ids
  std::vector<std::int64_t> labels;        // [N] the labels evaluated against (-1: unlabelled)
  std::vector<double> logits;              // [N*K] row-major, in the compute dtype's precision
  std::vector<double> losses;              // [N] cross-entropy of each sample (nats; NaN: unlabelled)
};

// Collective over ctx.world: batches are sharded over ranks; sums and counts are all-reduced, and with
// per_sample each rank's rows are broadcast to every rank (one broadcast per rank).
// Throws hessgap::Error (on every rank, before any collective) when some but not all of the plan's
// samples are unlabelled.
EvalResult evaluate(const MeasureContext& ctx, const EvalOptions& opts = {});

}  // namespace hessgap::measures
