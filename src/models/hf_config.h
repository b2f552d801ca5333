// Hugging Face config.json for the transformer models (BERT, RoBERTa, ViT): the fields the C++
// ports use, parsed with errors that name the file and the field, plus built-in base configs, and
// the check that a checkpoint's tensors agree with them.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace hessgap::models {

struct TransformerConfig {
  std::string model_type;  // "bert" | "roberta" | "vit"
  std::int64_t hidden_size = 768;
  std::int64_t num_hidden_layers = 12;
  std::int64_t num_attention_heads = 12;
  std::int64_t intermediate_size = 3072;
  double layer_norm_eps = 1e-12;
  // Standard deviation of Hugging Face's normal init (weights and, on reset_head, the new head).
  double initializer_range = 0.02;
  std::int64_t num_labels = 2;  // size of id2label if present, else num_labels, else 2
  // Dropout in training mode, as Hugging Face's modules apply it (models/dropout.h): after the embeddings'
  // LayerNorm and each sublayer's output dense (hidden), on the attention probabilities (attention), and
  // in the classification head (classifier; < 0: the hidden rate, as classifier_dropout null).
  double hidden_dropout_prob = 0.1;
  double attention_probs_dropout_prob = 0.1;
  double classifier_dropout = -1;
  // Text models (bert, roberta).
  std::int64_t vocab_size = 30522;
  std::int64_t max_position_embeddings = 512;
  std::int64_t type_vocab_size = 2;
  std::int64_t pad_token_id = 0;
  // Vision (vit).
  std::int64_t image_size = 224;
  std::int64_t patch_size = 16;
  std::int64_t num_channels = 3;
  bool qkv_bias = true;
  // Where the config came from (the file path, or "built-in <name>"), for error messages.
  std::string source;
};

// Reads a Hugging Face config.json; `path` is the file or a folder holding config.json.
// Required: model_type (bert | roberta | vit), hidden_size, num_hidden_layers,
// num_attention_heads, intermediate_size; text: vocab_size, max_position_embeddings;
// vit: image_size, patch_size. Optional with Hugging Face's defaults: hidden_dropout_prob and
// attention_probs_dropout_prob (0.1; in [0, 1)), classifier_dropout (null), layer_norm_eps (1e-12),
// initializer_range (0.02), type_vocab_size (2), pad_token_id (bert 0, roberta 1),
// num_channels (3), qkv_bias (true).
// hidden_act must be "gelu" (the exact erf form; other activations are refused) when present.
// Errors (hessgap::Error) name the file and the field: missing file or one that is not a regular
// file (a FIFO, a device), bad JSON, missing or mistyped field, non-positive sizes, sizes above the
// limits below, hidden_size not divisible by num_attention_heads, image_size not divisible by
// patch_size, pad_token_id outside the vocabulary.
TransformerConfig read_hf_config(const std::string& path);

// Limits on config values (README "Limits"), far above any BERT, RoBERTa or ViT published (the
// largest: ViT-22B, hidden 6144, 48 layers), checked before a model is built from them; the limit
// and the value are named in the error. kMaxParameters bounds the parameter count the sizes imply
// together (embeddings, layers, head; 2e10 float32 parameters are 80 GB).
constexpr std::int64_t kMaxHiddenSize = 65536;           // also num_attention_heads
constexpr std::int64_t kMaxHiddenLayers = 256;
constexpr std::int64_t kMaxIntermediateSize = 262144;
constexpr std::int64_t kMaxVocabSize = 10'000'000;
constexpr std::int64_t kMaxPositionEmbeddings = 1'048'576;
constexpr std::int64_t kMaxTypeVocabSize = 65536;
constexpr std::int64_t kMaxLabels = 1'000'000;           // num_labels or the size of id2label
constexpr std::int64_t kMaxImageSize = 16384;
constexpr std::int64_t kMaxChannels = 64;
constexpr double kMaxParameters = 2e10;

// Checks the invariants listed above (read_hf_config calls it; the constructors do too).
void validate(const TransformerConfig& config);

// About how many parameters `config` implies (embeddings, layers' weight matrices, head; biases and
// norms left out), as a double: no overflow for any sizes, and an estimate is all the limits need.
double parameter_estimate(const TransformerConfig& config);

// Checks that the tensors of a checkpoint (named as the model names them, with the "vit." /
// "bert." / "roberta." prefix) agree with `config`, field by field, so that a config.json that does
// not describe the weights is reported as such rather than as a list of shape mismatches:
//   hidden_size        vit.embeddings.cls_token [1,1,D]; text: P.embeddings.word_embeddings [V,D]
//   vocab_size         P.embeddings.word_embeddings [V,D]
//   max_position_embeddings  P.embeddings.position_embeddings [P,D]
//   type_vocab_size    P.embeddings.token_type_embeddings [T,D]
//   patch_size, num_channels  vit.embeddings.patch_embeddings.projection.weight [D,C,p,p]
//   num_hidden_layers  the layer indices present in P.encoder.layer.{i}.* (must be 0..L-1)
//   intermediate_size  P.encoder.layer.0.intermediate.dense.weight [F,D]
//   qkv_bias           (vit) presence of vit.encoder.layer.0.attention.attention.query.bias
// Absent tensors are not checked (loading reports them). image_size is not checked: ViT position
// embeddings for another grid are resized by models::adapt_checkpoint.
// Errors (hessgap::Error): "config <file>: <field> <value> disagrees with checkpoint <source>:
// tensor '<name>' has shape [...] (<field> <implied value>)".
void check_config_against_weights(const TransformerConfig& config,
                                  const std::vector<std::pair<std::string, torch::Tensor>>& state,
                                  const std::string& source);

// bert-base-uncased / roberta-base / google/vit-base-patch16-224 shapes (12 layers, hidden 768,
// 12 heads, ffn 3072): bert vocab 30522, 512 positions, 2 token types, eps 1e-12, pad 0;
// roberta vocab 50265, 514 positions, 1 token type, eps 1e-5, pad 1; vit 224x224, patch 16,
// 3 channels, eps 1e-12. num_labels 2.
TransformerConfig bert_base_config();
TransformerConfig roberta_base_config();
TransformerConfig vit_base_config();
// The ViTs of the original paper at 224 px: "vit-base" = "vit-b16" (as above), "vit-b32" (patch 32),
// "vit-l16" (hidden 1024, 24 layers, 16 heads, ffn 4096). Throws hessgap::Error for another name.
TransformerConfig vit_config(const std::string& name);

}  // namespace hessgap::models
