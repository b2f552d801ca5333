// The model interface that measures and training rely on: a LibTorch module producing logits,
// with the ordered list of its "Hessian layers" (SPEC §3.4) and the name of its head.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <string>
#include <vector>

#include "data/batch.h"

namespace hessgap::models {

class Classifier : public torch::nn::Module {
 public:
  using torch::nn::Module::Module;
  // Logits [B, num_classes] for a batch already on the module's device. Floating inputs are
  // cast to the module's dtype (a no-op when they already match), so a float64 copy of a model
  // accepts the float32 batches the data pipeline produces.
  virtual torch::Tensor forward(const data::Batch& batch) = 0;
  // Architecture name as the registry knows it (e.g. "cifar-resnet20").
  virtual std::string arch() const = 0;
  virtual std::int64_t num_classes() const = 0;
  // Full parameter names (as in named_parameters()) of the weight tensors that the Hessian
  // measures differentiate, in the reference's order (SPEC §3.4). For ResNets: every conv
  // weight whose module name contains "conv" (stem first, downsample convs excluded), then the
  // head weight.
  virtual std::vector<std::string> hessian_layers() const = 0;
  // Prefix of the classification head's parameters (e.g. "linear." or "fc."): the distance
  // measure takes the head around zero by default for image models (SPEC §7.3).
  virtual std::string head_prefix() const = 0;

  // Casting follows PyTorch's Python semantics: only floating parameters and buffers change
  // dtype, so BatchNorm's int64 num_batches_tracked stays int64 (LibTorch's Module::to would
  // turn it into a float and a checkpoint written afterwards would carry the wrong dtype).
  using torch::nn::Module::to;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;

  // The dtype of the first parameter (the dtype forward() computes in); kFloat without parameters.
  torch::Dtype dtype() const;
};

// The reference's get_layers rule for convolutional nets (SPEC §3.4): the "<module>.weight" of
// every Conv2d submodule of `model` whose module name contains "conv", in registration order
// (depth first, as named_modules() lists them), followed by `head_weight` (e.g. "linear.weight").
// Downsample convs ("downsample.0") and BatchNorm are excluded by the name test.
std::vector<std::string> conv_hessian_layers(const torch::nn::Module& model,
                                             const std::string& head_weight);

// Casts floating batch inputs to `dtype`; token ids (int64) are returned unchanged.
torch::Tensor inputs_as(const torch::Tensor& inputs, torch::Dtype dtype);

}  // namespace hessgap::models
