// Dropout whose masks do not depend on how a global batch is split over ranks: a training step draws the
// masks of the WHOLE global batch from a generator keyed by (seed, step, site) and each rank keeps the
// rows of its shard, so np = 2 trains exactly as np = 1 (and a resumed step repeats its masks). Sites are
// the dropout calls of one forward pass, counted in call order (the same on every rank).
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace hessgap::models {

// What a training step tells the dropout calls of its forward pass.
struct DropoutPlan {
  std::uint64_t key = 0;           // the step's key (rng::make_key of the seed, the dropout stream and the step)
  std::int64_t global_batch = 0;   // rows of the global batch
  std::int64_t row_offset = 0;     // where this rank's shard starts in it
};

// Installs `plan` for the forward passes of this thread while it lives (not nestable; the site counter
// starts at 0). Not collective.
class DropoutScope {
 public:
  explicit DropoutScope(const DropoutPlan& plan);
  ~DropoutScope();
  DropoutScope(const DropoutScope&) = delete;
  DropoutScope& operator=(const DropoutScope&) = delete;
};

// x [n, ...] (rows n of the global batch, from the plan's row_offset) in training mode with p > 0:
// x * mask / (1 - p), mask ~ Bernoulli(1 - p) drawn as [global_batch, ...] on the CPU from the site's
// keyed generator, its rows [row_offset, row_offset + n) taken (n ≤ global_batch - row_offset, else
// hessgap::Error). Without a scope: torch's dropout (the global generator). Eval mode or p == 0: x.
// Differentiable (the mask is a constant).
torch::Tensor keyed_dropout(const torch::Tensor& x, double p, bool training);

}  // namespace hessgap::models
