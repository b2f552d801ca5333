// A small fully connected classifier with a smooth activation: the test model whose Hessian
// is small enough to build explicitly in float64, and nonzero everywhere (unlike ReLU nets).
#pragma once

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>

#include <cstdint>
#include <string>
#include <vector>

#include "models/classifier.h"

namespace hessgap::models {

enum class Activation { kTanh, kGelu };  // GELU is the exact (erf) form, as torch's default

// "tanh" / "gelu"; throws hessgap::Error otherwise.
Activation parse_activation(const std::string& name);
std::string activation_name(Activation activation);

struct MlpOptions {
  std::int64_t in_features = 3 * 32 * 32;  // a flattened CIFAR image
  std::vector<std::int64_t> hidden = {32};  // empty: multinomial logistic regression
  Activation activation = Activation::kTanh;
};

// x -> act(fc0) -> act(fc1) -> ... -> head. Parameters: fc<i>.weight [h_i, h_{i-1}], fc<i>.bias,
// head.weight [num_classes, h_last], head.bias. All weights are Hessian layers (fc0 first, head
// last); head_prefix() is "head.". Default PyTorch Linear init from the global generator.
class Mlp : public Classifier {
 public:
  // Throws hessgap::Error when a size is < 1.
  Mlp(std::int64_t in_features, std::vector<std::int64_t> hidden, std::int64_t num_classes,
      Activation activation = Activation::kTanh);
  Mlp(const MlpOptions& options, std::int64_t num_classes);

  // batch.inputs: floating [B, ...] with in_features elements per sample (images are
  // flattened), cast to the module's dtype. Returns logits [B,num_classes]. Throws
  // hessgap::Error when the per-sample size is not in_features.
  torch::Tensor forward(const data::Batch& batch) override;
  torch::Tensor forward_inputs(const torch::Tensor& inputs);

  // The canonical registry spec, e.g. "mlp:in=12,hidden=8-6,act=tanh"; make_model(arch())
  // rebuilds the same architecture.
  std::string arch() const override;
  std::int64_t num_classes() const override { return num_classes_; }
  std::vector<std::string> hessian_layers() const override;
  std::string head_prefix() const override { return "head."; }
  const MlpOptions& options() const { return options_; }

 private:
  MlpOptions options_;
  std::int64_t num_classes_;
  std::vector<torch::nn::Linear> hidden_layers_;
  torch::nn::Linear head_{nullptr};
};

}  // namespace hessgap::models
