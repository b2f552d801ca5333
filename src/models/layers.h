// Building blocks shared by the convolutional model files (internal to src/models).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/normalization.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace hessgap::models {

// 3×3 convolution with padding 1 and no bias (the ResNet convention), and the 1×1 projection.
torch::nn::Conv2d conv3x3(std::int64_t in, std::int64_t out, std::int64_t stride);
torch::nn::Conv2d conv1x1(std::int64_t in, std::int64_t out, std::int64_t stride);

// An empty submodule registered as `name`: it only carries a level of Hugging Face's dotted names
// (e.g. "encoder" in "bert.encoder.layer.0...").
std::shared_ptr<torch::nn::Module> holder(torch::nn::Module& parent, const std::string& name);

// LayerNorm over the last dimension d with weight and bias (the transformers' convention).
torch::nn::LayerNorm layer_norm(std::int64_t d, double eps);

// Calls fn on every descendant of `module` (not the module itself), depth first in registration
// order. Usable in a constructor: modules() needs shared_from_this(), which does not exist yet
// while the top-level module is being constructed (LibTorch 1.13 checks it even with
// include_self=false), so this walks children() instead.
void visit_submodules(torch::nn::Module& module, const std::function<void(torch::nn::Module&)>& fn);

}  // namespace hessgap::models
