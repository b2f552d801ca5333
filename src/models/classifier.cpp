// Dtype casting with Python semantics and the conv-name Hessian-layer rule shared by conv nets.
#include "models/classifier.h"

#include <torch/torch.h>

namespace hessgap::models {
namespace {

// set_data swaps the storage in place, so module members (Conv2dImpl::weight, ...) that alias
// the registered tensors see the cast too.
void cast_floating(torch::nn::Module& module, c10::optional<torch::Device> device,
                   torch::Dtype dtype, bool non_blocking) {
  torch::NoGradGuard no_grad;
  auto cast = [&](torch::Tensor& t) {
    const torch::Dtype target = t.is_floating_point() ? dtype : t.scalar_type();
    t.set_data(t.to(device.value_or(t.device()), target, non_blocking));
  };
  for (auto& item : module.named_parameters(/*recurse=*/true)) cast(item.value());
  for (auto& item : module.named_buffers(/*recurse=*/true)) cast(item.value());
}

}  // namespace

void Classifier::to(torch::Dtype dtype, bool non_blocking) {
  cast_floating(*this, c10::nullopt, dtype, non_blocking);
}

void Classifier::to(torch::Device device, torch::Dtype dtype, bool non_blocking) {
  cast_floating(*this, device, dtype, non_blocking);
}

torch::Dtype Classifier::dtype() const {
  const auto params = parameters(/*recurse=*/true);
  return params.empty() ? torch::kFloat : params.front().scalar_type();
}

std::vector<std::string> conv_hessian_layers(const torch::nn::Module& model,
                                             const std::string& head_weight) {
  std::vector<std::string> names;
  for (const auto& item : model.named_modules(/*name_prefix=*/"", /*include_self=*/false)) {
    if (item.value()->as<torch::nn::Conv2d>() != nullptr &&
        item.key().find("conv") != std::string::npos) {
      names.push_back(item.key() + ".weight");
    }
  }
  names.push_back(head_weight);
  return names;
}

torch::Tensor inputs_as(const torch::Tensor& inputs, torch::Dtype dtype) {
  return inputs.is_floating_point() ? inputs.to(dtype) : inputs;
}

}  // namespace hessgap::models
