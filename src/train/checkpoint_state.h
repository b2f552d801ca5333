// What a training checkpoint holds besides the weights: the optimizer's per-parameter moments and
// step counts, as named tensors, so that a resumed run continues with the very same update.
// Stored in /state/optimizer of the project's HDF5 checkpoint (io/checkpoint.h).
#pragma once

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <string>
#include <utility>
#include <vector>

namespace hessgap::train {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// The state of an Adam or AdamW optimizer over `module`'s parameters, by parameter name:
// "<param>.exp_avg", "<param>.exp_avg_sq", "<param>.max_exp_avg_sq" (amsgrad only) as CPU copies in
// the parameter's dtype, and "<param>.step" as an int64 scalar; for SGD "<param>.momentum_buffer" (with
// momentum). Parameters the optimizer has not stepped yet have no entries. Throws hessgap::Error for an
// optimizer other than Adam / AdamW / SGD.
NamedTensors optimizer_state(const torch::optim::Optimizer& optimizer, const torch::nn::Module& module);

// Restores what optimizer_state wrote into a freshly built optimizer of the same kind over the same
// module: every entry must name one of its parameters with the parameter's shape. Throws
// hessgap::Error naming the entry otherwise.
void load_optimizer_state(torch::optim::Optimizer& optimizer, const torch::nn::Module& module,
                          const NamedTensors& state);

}  // namespace hessgap::train
