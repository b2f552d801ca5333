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
//   bert-base | roberta-base | vit-base         Hugging Face transformers with the built-in base
//                                               configs (models/hf_config.h; ~86-125M parameters)
//   hf:<path>                                   BERT / RoBERTa / ViT from a Hugging Face
//                                               config.json (path = the file or its folder),
//                                               class chosen by its model_type
//   bert:<path> | roberta:<path> | vit:<path>   the same, also checking model_type
//   (the Hugging Face models' own num_labels is ignored: num_classes sizes the head; see
//   make_hf_model to take it from the config; weights are not loaded: use io::load_state_dict)
// Options may be given in any order and any subset. Every model's arch() returns a spec that
// rebuilds the same architecture (mlp and small-cnn spell out all options).
// Throws hessgap::Error for an unknown name (listing the known ones), an unknown or malformed
// option, or num_classes < 1.
std::shared_ptr<Classifier> make_model(const std::string& arch, std::int64_t num_classes);

// The base names accepted by make_model, in the order above, without the transformers (which
// are slow to build; see hf_architectures).
std::vector<std::string> known_architectures();

// The built-in transformer names: bert-base, roberta-base, vit-base.
std::vector<std::string> hf_architectures();

// The model described by a Hugging Face folder or config.json (make_model("hf:<path>")), with
// num_classes from the config's id2label / num_labels when num_classes <= 0. arch() is
// "hf:<path>". Weights are freshly initialised; load <folder>/model.safetensors with
// io::read_checkpoint + io::load_state_dict.
std::shared_ptr<Classifier> make_hf_model(const std::string& path, std::int64_t num_classes = 0);

// The parameters named `names` (full names as in named_parameters()), in that order. The
// tensors alias the model's parameters (same storage and requires_grad). Throws hessgap::Error
// naming the first unknown name and the model's arch.
std::vector<torch::Tensor> parameters_by_name(const Classifier& model,
                                              const std::vector<std::string>& names);

// parameters_by_name(model, model.hessian_layers()).
std::vector<torch::Tensor> hessian_parameters(const Classifier& model);

}  // namespace hessgap::models
