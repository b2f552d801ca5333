// The CIFAR ResNet of He et al. 2016 (§4.2) as in akamaster/pytorch_resnet_cifar10: three stages
// of 16/32/64 channels, parameter-free "option A" shortcuts, so that its pretrained safetensors
// files load by name.
#pragma once

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <cstdint>
#include <string>
#include <vector>

#include "models/classifier.h"

namespace hessgap::models {

// Parameter and buffer names match akamaster's state dict exactly:
//   conv1.weight, bn1.{weight,bias,running_mean,running_var},
//   layerS.B.conv{1,2}.weight, layerS.B.bn{1,2}.*   (S = 1..3, B = 0..n-1, n = (depth-2)/6),
//   linear.weight [num_classes,64], linear.bias [num_classes].
// BatchNorm also registers num_batches_tracked (int64), which akamaster's files do not carry.
// Convs have no bias. A block that halves the resolution and doubles the channels uses
// shortcut(x) = zero-pad-channels(x[:, :, ::2, ::2]), so there are no downsample convs and every
// conv is a Hessian layer: 6n+1 convs plus the head (ResNet-20: 19 + 1 = 20 layers).
// Init as akamaster: Kaiming-normal (fan_in, gain sqrt 2) for conv and linear weights, the
// default uniform init for the linear bias; draws come from torch's global generator, so
// torch::manual_seed makes construction deterministic.
class CifarResNet : public Classifier {
 public:
  // depth = 6n+2 with n >= 1 (the registry offers 20, 32, 44, 56, 110); num_classes >= 1.
  // Throws hessgap::Error otherwise.
  CifarResNet(std::int64_t depth, std::int64_t num_classes);

  // batch.inputs: [B,3,H,W] floating (32x32 for CIFAR; H = W required by the final pooling);
  // cast to the module's dtype. Returns logits [B,num_classes]. Throws hessgap::Error on a
  // wrong shape.
  torch::Tensor forward(const data::Batch& batch) override;
  // The same on a bare image tensor.
  torch::Tensor forward_images(const torch::Tensor& images);

  std::string arch() const override;  // "cifar-resnet<depth>"
  std::int64_t num_classes() const override { return num_classes_; }
  std::int64_t depth() const { return depth_; }
  // conv1.weight, layer1.0.conv1.weight, layer1.0.conv2.weight, ..., layer3.{n-1}.conv2.weight,
  // linear.weight.
  std::vector<std::string> hessian_layers() const override { return hessian_layers_; }
  std::string head_prefix() const override { return "linear."; }

 private:
  torch::nn::ModuleList make_stage(std::int64_t& in_planes, std::int64_t planes,
                                   std::int64_t blocks, std::int64_t stride);

  std::int64_t depth_;
  std::int64_t num_classes_;
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr};
  torch::nn::ModuleList layer1_{nullptr}, layer2_{nullptr}, layer3_{nullptr};
  torch::nn::Linear linear_{nullptr};
  std::vector<std::string> hessian_layers_;
};

}  // namespace hessgap::models
