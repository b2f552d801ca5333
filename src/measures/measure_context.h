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

// Loads batch `ids` and moves it to the context's device and dtype.
data::Batch load_batch(const MeasureContext& ctx, const std::vector<std::int64_t>& ids);

}  // namespace hessgap::measures
