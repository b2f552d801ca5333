// Architecture names -> freshly initialised models, name-based parameter lookup, and fitting a
// pretrained checkpoint to a model (renames, resized position embeddings, a new head).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "models/classifier.h"
#include "models/vit.h"

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
//   vit-b16 (= vit-base) | vit-b32 | vit-l16     the paper's other ViTs at 224 px (~88-304M parameters)
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

// Before allocating, make_model refuses a model whose parameters (float32) would not fit in this
// machine's physical memory, naming the sizes: a config.json within every bound of hf_config.h may
// still imply tens of GB (issue #12).

// The Hugging Face configuration `arch` stands for (bert-base, roberta-base, vit-*, and
// hf: / bert: / roberta: / vit:<path>, read from its config.json), or nullopt for the other
// architectures. Nothing is allocated. Errors: as make_model's for these names.
std::optional<TransformerConfig> transformer_config_of(const std::string& arch);

// Checks a checkpoint against the config a model is about to be built from, before it is built:
// the tensor names as adapt_checkpoint will see them (a DataParallel "module." prefix removed, the
// "<model_type>." prefix added to a base-model checkpoint), then check_config_against_weights. So a
// config.json that does not describe the weights is refused without first allocating the model it
// describes. Errors: as check_config_against_weights (naming the field, `source` and the tensor).
void check_checkpoint_fits_config(const TransformerConfig& config,
                                  const std::vector<std::pair<std::string, torch::Tensor>>& state,
                                  const std::string& source);

// The base names accepted by make_model, in the order above, without the transformers (which
// are slow to build; see hf_architectures).
std::vector<std::string> known_architectures();

// The built-in transformer names: bert-base, roberta-base, vit-base, vit-b16, vit-b32, vit-l16.
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

// Loading pretrained weights (a checkpoint of any io format) into a model built here:
//   io::StateDict state = io::read_checkpoint(path);
//   AdaptOptions ao;  ao.source = path;
//   CheckpointAdaptation a = adapt_checkpoint(*model, state, ao);        // log a.notes
//   io::LoadOptions lo;  lo.source = path;
//   lo.new_head_prefix = model->head_prefix();   // only when fine-tuning with a new head
//   io::LoadReport r = io::load_state_dict(*model, state, lo);           // log io::describe(r)
// (models does not link io; io::StateDict is this same vector of (name, tensor) pairs.)
struct AdaptOptions {
  std::string source;  // the checkpoint, named in messages
  // ViT: position embeddings made for another image size are resized to the model's grid
  // (image_size / patch_size); false makes that an Error naming image_size and the tensor.
  bool resize_position_embeddings = true;
  PositionInterpolation interpolation = PositionInterpolation::Bicubic;
};

struct CheckpointAdaptation {
  std::vector<std::string> notes;    // one line per change, for the log and the result file
  std::vector<std::string> dropped;  // tensor names removed from the state dict
  std::vector<std::string> resized;  // tensor names resized (position embeddings)
};

// Makes a checkpoint's state dict fit `model` the way its source library's loader would, in place:
// * Hugging Face models (BERT, RoBERTa, ViT), as from_pretrained does for *ForSequence/Image-
//   Classification:
//   - a base-model checkpoint (BertModel, ViTModel, ...: no tensor starts with "<model_type>.",
//     some start with "embeddings." or "encoder.") gets the "<model_type>." prefix on every name
//     outside the head;
//   - tensors of pretraining heads and modules the class lacks are dropped: "cls.*" (BERT
//     pretraining heads), "lm_head.*" (RoBERTa), "<p>.pooler.*" when the model has no pooler
//     (RoBERTa and ViT; e.g. the ImageNet-21k ViT's), "<p>.embeddings.position_ids" (a buffer older
//     transformers saved);
//   - check_config_against_weights (hf_config.h): a config.json that disagrees with the weights is
//     an Error naming the field and the tensor;
//   - ViT: position embeddings for another grid are resized (resize_position_embeddings).
// * Every model: a DataParallel "module." prefix on all names is removed; torchvision ResNets also
//   accept the reference's names (SPEC §3.1: "feature_extractor." removed, "pred_head." -> "fc.").
// The head is left alone: a head of another size is io::LoadOptions::new_head_prefix's business.
// Tensors the model does not know and that are not listed above stay, for load_state_dict to report.
// Errors (hessgap::Error naming opts.source): as check_config_against_weights; position
// embeddings of a non-square grid; resizing needed but disabled.
CheckpointAdaptation adapt_checkpoint(const Classifier& model,
                                      std::vector<std::pair<std::string, torch::Tensor>>& state,
                                      const AdaptOptions& opts = {});

// How reset_head draws a new head.
//   Library: as the model's source library initialises a new one: Hugging Face models
//     N(0, initializer_range²) weights and zero biases (_init_weights); torchvision ResNet, MLP and
//     small CNN nn.Linear's default (kaiming_uniform(a = sqrt 5) weight, U(+-1/sqrt(fan_in)) bias);
//     CIFAR ResNets (akamaster) that default followed by kaiming_normal_ of the weight.
//   TorchDefault: nn.Linear's default for every model, which is what the reference's ViT ends up
//     with (SPEC §3.1 and §10.11: reset_parameters overrides the zero head).
enum class HeadInit { Library, TorchDefault };

// Redraws the head (the Linear modules under model.head_prefix(), in module order) from torch's
// global generator; the draws equal those of building the head afresh. Error: the model has no
// Linear under its head prefix.
void reset_head(Classifier& model, HeadInit init = HeadInit::Library);

}  // namespace hessgap::models
