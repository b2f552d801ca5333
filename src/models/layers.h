// Building blocks shared by the convolutional model files (internal to src/models).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>

#include <cstdint>
#include <functional>

namespace hessgap::models {

// 3×3 convolution with padding 1 and no bias (the ResNet convention), and the 1×1 projection.
torch::nn::Conv2d conv3x3(std::int64_t in, std::int64_t out, std::int64_t stride);
torch::nn::Conv2d conv1x1(std::int64_t in, std::int64_t out, std::int64_t stride);

// Calls fn on every descendant of `module` (not the module itself), depth first in registration
// order. Usable in a constructor: modules() needs shared_from_this(), which does not exist yet
// while the top-level module is being constructed (LibTorch 1.13 checks it even with
// include_self=false), so this walks children() instead.
void visit_submodules(torch::nn::Module& module, const std::function<void(torch::nn::Module&)>& fn);

}  // namespace hessgap::models
