// The ImageNet ResNets of torchvision (resnet18/34/50/101) with torchvision's module names, so
// that torchvision state dicts (saved as safetensors) load by name, and a replaceable `fc` head.
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

// torchvision.models.resnet{18,34,50,101} (torchvision >= 0.13, i.e. "ResNet V1.5": a Bottleneck
// strides in its 3x3 conv2, not in conv1). Parameter and buffer names equal torchvision's
// state-dict keys, in the same order within each module:
//   conv1.weight [64,3,7,7], bn1.{weight,bias,running_mean,running_var,num_batches_tracked},
//   layerS.B.conv{1,2}.weight, layerS.B.bn{1,2}.*                  (BasicBlock: 18, 34)
//   layerS.B.conv{1,2,3}.weight, layerS.B.bn{1,2,3}.*              (Bottleneck: 50, 101)
//   layerS.0.downsample.0.weight (1x1 conv), layerS.0.downsample.1.* (BN)
//                                   where the first block changes stride or width,
//   fc.weight [num_classes, 512 * expansion], fc.bias [num_classes].
// Blocks per stage: 18 → 2,2,2,2; 34 → 3,4,6,3; 50 → 3,4,6,3; 101 → 3,4,23,3. Convs have no bias.
// Init as torchvision (zero_init_residual = false): conv weights Kaiming-normal (fan_out, ReLU
// gain), BatchNorm weight 1 and bias 0, fc PyTorch's default Linear init; draws come from torch's
// global generator, so torch::manual_seed makes construction deterministic (the draws are not the
// same numbers as Python's: load weights from a checkpoint to reproduce a torchvision model).
// Hessian layers (SPEC §3.4): the stem conv1, every block conv, then fc.weight; downsample convs
// are excluded: 18 / 34 / 50 / 101 layers for depth 18 / 34 / 50 / 101.
class ResNet : public Classifier {
 public:
  // depth ∈ {18, 34, 50, 101}; num_classes >= 1. Throws hessgap::Error otherwise.
  ResNet(std::int64_t depth, std::int64_t num_classes);

  // batch.inputs: [B,3,H,W] floating, cast to the module's dtype; any H, W that survive the five
  // stride-2 stages (H, W >= 32 keeps layer4 at least 1x1 everywhere; ImageNet uses 224). The
  // final adaptive average pool makes the output size-independent. Returns logits
  // [B,num_classes]. Throws hessgap::Error on a wrong shape or a non-floating tensor.
  torch::Tensor forward(const data::Batch& batch) override;
  // The same on a bare image tensor.
  torch::Tensor forward_images(const torch::Tensor& images);

  std::string arch() const override;  // "resnet<depth>"
  std::int64_t num_classes() const override { return num_classes_; }
  std::int64_t depth() const { return depth_; }
  // conv1.weight, layer1.0.conv1.weight, ..., layer4.{last}.conv{2|3}.weight, fc.weight.
  std::vector<std::string> hessian_layers() const override { return hessian_layers_; }
  std::string head_prefix() const override { return "fc."; }

 private:
  torch::nn::ModuleList make_stage(std::int64_t planes, std::int64_t blocks, std::int64_t stride);

  std::int64_t depth_;
  std::int64_t num_classes_;
  bool bottleneck_;
  std::int64_t in_planes_ = 64;  // construction state, as torchvision's self.inplanes
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr};
  torch::nn::ModuleList layer1_{nullptr}, layer2_{nullptr}, layer3_{nullptr}, layer4_{nullptr};
  torch::nn::Linear fc_{nullptr};
  std::vector<std::string> hessian_layers_;
};

}  // namespace hessgap::models
