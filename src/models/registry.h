// Architecture names -> freshly initialised models, and name-based parameter lookup.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/classifier.h"

namespace hessgap::models {

// Builds an initialised float32 CPU model (init draws from torch's global generator; seed it
// with torch::manual_seed for reproducibility; a checkpoint normally overwrites the weights).
// `arch` is one of
//   cifar-resnet20 | cifar-resnet32 | cifar-resnet44 | cifar-resnet56 | cifar-resnet110
//   resnet18 | resnet34 | resnet50 | resnet101  torchvision names (models/resnet.h)
//   mlp[:in=N,hidden=H1-H2-...,act=tanh|gelu]   defaults in=3072, hidden=32, act=tanh;
//                                               "hidden=" (empty) means no hidden layer
//   small-cnn[:in=C,c1=C1,c2=C2]                defaults in=3, c1=4, c2=8
// Options may be given in any order and any subset. Every model's arch() returns a spec that
// rebuilds the same architecture (mlp and small-cnn spell out all options).
// Throws hessgap::Error for an unknown name (listing the known ones), an unknown or malformed
// option, or num_classes < 1.
std::shared_ptr<Classifier> make_model(const std::string& arch, std::int64_t num_classes);

// The base names accepted by make_model, in the order above.
std::vector<std::string> known_architectures();

// The parameters named `names` (full names as in named_parameters()), in that order. The
// tensors alias the model's parameters (same storage and requires_grad). Throws hessgap::Error
// naming the first unknown name and the model's arch.
std::vector<torch::Tensor> parameters_by_name(const Classifier& model,
                                              const std::vector<std::string>& names);

// parameters_by_name(model, model.hessian_layers()).
std::vector<torch::Tensor> hessian_parameters(const Classifier& model);

}  // namespace hessgap::models
