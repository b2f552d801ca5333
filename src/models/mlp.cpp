// Fully connected test model.
#include "models/mlp.h"

#include <torch/torch.h>

#include <sstream>

#include "util/error.h"

namespace hessgap::models {

Activation parse_activation(const std::string& name) {
  if (name == "tanh") return Activation::kTanh;
  if (name == "gelu") return Activation::kGelu;
  HG_FAIL("unknown activation '" << name << "' (expected tanh or gelu)");
}

std::string activation_name(Activation activation) {
  return activation == Activation::kTanh ? "tanh" : "gelu";
}

Mlp::Mlp(std::int64_t in_features, std::vector<std::int64_t> hidden, std::int64_t num_classes,
         Activation activation)
    : Mlp(MlpOptions{in_features, std::move(hidden), activation}, num_classes) {}

Mlp::Mlp(const MlpOptions& options, std::int64_t num_classes)
    : options_(options), num_classes_(num_classes) {
  HG_CHECK(options.in_features >= 1, "mlp: in_features must be >= 1, got " << options.in_features);
  HG_CHECK(num_classes >= 1, "mlp: num_classes must be >= 1, got " << num_classes);
  std::int64_t width = options.in_features;
  for (std::size_t i = 0; i < options.hidden.size(); ++i) {
    HG_CHECK(options.hidden[i] >= 1,
             "mlp: hidden layer " << i << " must have >= 1 unit, got " << options.hidden[i]);
    hidden_layers_.push_back(register_module("fc" + std::to_string(i),
                                             torch::nn::Linear(width, options.hidden[i])));
    width = options.hidden[i];
  }
  head_ = register_module("head", torch::nn::Linear(width, num_classes));
}

torch::Tensor Mlp::forward(const data::Batch& batch) {
  HG_CHECK(batch.inputs.defined(), arch() << ": batch.inputs is undefined");
  return forward_inputs(batch.inputs);
}

torch::Tensor Mlp::forward_inputs(const torch::Tensor& inputs) {
  HG_CHECK(inputs.dim() >= 1 && inputs.is_floating_point() &&
               inputs.numel() == inputs.size(0) * options_.in_features,
           arch() << ": expected floating inputs [B, ...] with " << options_.in_features
                  << " features per sample, got " << inputs.sizes() << " "
                  << inputs.scalar_type());
  auto x = inputs_as(inputs, dtype()).reshape({inputs.size(0), options_.in_features});
  for (auto& layer : hidden_layers_) {
    x = layer(x);
    x = options_.activation == Activation::kTanh ? torch::tanh(x) : torch::gelu(x);
  }
  return head_(x);
}

std::string Mlp::arch() const {
  std::ostringstream os;
  os << "mlp:in=" << options_.in_features << ",hidden=";
  for (std::size_t i = 0; i < options_.hidden.size(); ++i) {
    os << (i ? "-" : "") << options_.hidden[i];
  }
  os << ",act=" << activation_name(options_.activation);
  return os.str();
}

std::vector<std::string> Mlp::hessian_layers() const {
  std::vector<std::string> names;
  for (std::size_t i = 0; i < hidden_layers_.size(); ++i) {
    names.push_back("fc" + std::to_string(i) + ".weight");
  }
  names.push_back("head.weight");
  return names;
}

}  // namespace hessgap::models
