// `hessgap eval`: loss, accuracy and optionally every sample's logits of a model on a plan's samples,
// the batches sharded over the ranks (for_each_batch) and the sums all-reduced.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "measures/measure_context.h"

namespace hessgap::measures {

struct EvalOptions {
  // Also return every sample's logits, label and loss (gathered from all ranks).
  bool per_sample = false;
  std::string progress = "eval";  // the progress line's label; "" for none (the trainer's own evaluations)
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
  // Two-class models only (NaN otherwise): F1 of class 1, the positive class of GLUE MRPC/QQP, as
  // load_metric("glue", "mrpc") reports it: 2·TP / (2·TP + FP + FN) from all-reduced counts (0 when no
  // sample is positive or predicted positive, sklearn's zero_division=0).
  double f1 = std::nan("");
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

// The same on an explicit plan instead of ctx.plan's (the trainer's validation, training and test ids).
// An empty plan gives num_samples 0 and NaN loss and accuracy.
EvalResult evaluate(const MeasureContext& ctx, const BatchPlan& plan, const EvalOptions& opts = {});

}  // namespace hessgap::measures
