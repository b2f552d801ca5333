// What every measure needs besides its own options: the model in eval mode, the data, the
// distributed layout, the device and dtype; and the loss the reference differentiates.
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

#include "data/batch.h"
#include "measures/batch_plan.h"

namespace hessgap::comm {
class Communicator;
}
namespace hessgap::data {
class Dataset;
}
namespace hessgap::models {
class Classifier;
}

namespace hessgap::measures {

struct MeasureContext {
  models::Classifier* model = nullptr;  // already on `device` in `dtype`
  const data::Dataset* dataset = nullptr;
  comm::Communicator* world = nullptr;
  torch::Device device = torch::kCPU;
  torch::Dtype dtype = torch::kFloat32;
  PlanOptions plan;  // batch size, sample size and rule, order
  // Labels that replace the dataset's, indexed by sample id (the trainer's noisy training labels); null:
  // the dataset's own. Not owned.
  const std::vector<std::int64_t>* labels = nullptr;
};

// Puts the model in eval mode (BN running stats, no dropout) and makes exactly the Hessian layers
// require grad, so that autograd keeps nothing for the other parameters. Returns those layers'
// tensors in Hessian-layer order. Throws hessgap::Error if a named layer is missing.
std::vector<torch::Tensor> prepare_hessian_params(models::Classifier& model);

// The batch-mean cross-entropy of the model's logits (the reference's loss). [] scalar.
torch::Tensor batch_loss(models::Classifier& model, const data::Batch& batch);

// Number of the plan's samples without a label (label < 0: GLUE's test files hide theirs), read with
// Dataset::label (no decoding). Not collective; the same on every rank.
std::int64_t count_unlabelled(const data::Dataset& dataset, const BatchPlan& plan);

// Throws hessgap::Error (naming `what`, e.g. "traces") when a sample of the plan has no label: the
// Hessian measures differentiate the loss. Not collective, so callers check before their first
// collective and every rank fails alike.
void require_labels(const data::Dataset& dataset, const BatchPlan& plan, const std::string& what);

// Sums over samples, so that shards of any size (an empty one too) add up to the global value.
struct LossSums {
  double loss = 0.0;          // Σ cross-entropy, nats
  std::int64_t correct = 0;   // argmax = label
  std::int64_t count = 0;     // samples
  LossSums& operator+=(const LossSums& o) {
    loss += o.loss;
    correct += o.correct;
    count += o.count;
    return *this;
  }
};

// The batch's sums without autograd. Not collective.
LossSums loss_sums(models::Classifier& model, const data::Batch& batch);

// `s` summed over the ranks of `world`. Collective.
LossSums all_reduce(comm::Communicator& world, const LossSums& s);

// Loads batch `ids` (with ctx.labels when set) and moves it to the context's device and dtype.
data::Batch load_batch(const MeasureContext& ctx, const std::vector<std::int64_t>& ids);

}  // namespace hessgap::measures
