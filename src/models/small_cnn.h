// A tiny CNN with the ResNet ingredients that matter to the measures (bias-free convs named
// "conv*", BatchNorm with running stats, a linear head), small enough for explicit Hessians.
#pragma once

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <cstdint>
#include <string>
#include <vector>

#include "models/classifier.h"

namespace hessgap::models {

struct SmallCnnOptions {
  std::int64_t in_channels = 3;
  std::int64_t channels1 = 4;  // conv1 output channels
  std::int64_t channels2 = 8;  // conv2 output channels
};

// x -> relu(bn1(conv1 x)) -> relu(bn2(conv2 .)) -> global average pool -> fc.
// conv1/conv2: 3x3, stride 1, padding 1, no bias, Kaiming-normal init (as the CIFAR ResNet).
// Parameters: conv1.weight [c1,in,3,3], bn1.*, conv2.weight [c2,c1,3,3], bn2.*,
// fc.weight [num_classes,c2], fc.bias. Hessian layers: conv1.weight, conv2.weight, fc.weight;
// head_prefix() is "fc.". Any spatial size works (the pool is global).
class SmallCnn : public Classifier {
 public:
  // Throws hessgap::Error when a size is < 1.
  SmallCnn(const SmallCnnOptions& options, std::int64_t num_classes);

  // batch.inputs: floating [B,in_channels,H,W], cast to the module's dtype. Returns logits
  // [B,num_classes]. Throws hessgap::Error on a wrong shape.
  torch::Tensor forward(const data::Batch& batch) override;
  torch::Tensor forward_images(const torch::Tensor& images);

  // The canonical registry spec, e.g. "small-cnn:in=3,c1=4,c2=8".
  std::string arch() const override;
  std::int64_t num_classes() const override { return num_classes_; }
  std::vector<std::string> hessian_layers() const override { return hessian_layers_; }
  std::string head_prefix() const override { return "fc."; }
  const SmallCnnOptions& options() const { return options_; }

 private:
  SmallCnnOptions options_;
  std::int64_t num_classes_;
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr};
  torch::nn::Conv2d conv2_{nullptr};
  torch::nn::BatchNorm2d bn2_{nullptr};
  torch::nn::Linear fc_{nullptr};
  std::vector<std::string> hessian_layers_;
};

}  // namespace hessgap::models
