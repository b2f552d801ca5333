#include "models/layers.h"

#include <torch/torch.h>

namespace hessgap::models {

torch::nn::Conv2d conv3x3(std::int64_t in, std::int64_t out, std::int64_t stride) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}

torch::nn::Conv2d conv1x1(std::int64_t in, std::int64_t out, std::int64_t stride) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).stride(stride).bias(false));
}

std::shared_ptr<torch::nn::Module> holder(torch::nn::Module& parent, const std::string& name) {
  return parent.register_module(name, std::make_shared<torch::nn::Module>());
}

torch::nn::LayerNorm layer_norm(std::int64_t d, double eps) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(eps).elementwise_affine(true));
}

void visit_submodules(torch::nn::Module& module, const std::function<void(torch::nn::Module&)>& fn) {
  for (auto& child : module.children()) {
    fn(*child);
    visit_submodules(*child, fn);
  }
}

}  // namespace hessgap::models
