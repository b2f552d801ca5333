// BERT and RoBERTa for sequence classification, ports of Hugging Face's
// BertForSequenceClassification / RobertaForSequenceClassification (eager attention; in training mode
// the config's dropout at Hugging Face's places, rank-independent by models/dropout.h) whose parameter names and order equal Hugging Face's state-dict keys, so
// a model.safetensors written by save_pretrained loads strictly by name.
#pragma once

#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <cstdint>
#include <string>
#include <vector>

#include "models/classifier.h"
#include "models/hf_config.h"

namespace hessgap::models {

// Parameters (P = "bert" or "roberta"), in named_parameters() order (Hugging Face's module order):
//   bert:    P.embeddings.{word_embeddings, position_embeddings, token_type_embeddings}.weight,
//   roberta: P.embeddings.{word_embeddings, token_type_embeddings}.weight, P.embeddings.LayerNorm.*,
//            P.embeddings.position_embeddings.weight (transformers 5 registers it last);
//   bert:    P.embeddings.LayerNorm.{weight,bias};
//   P.encoder.layer.{i}.attention.self.{query,key,value}.{weight,bias},
//   P.encoder.layer.{i}.attention.output.{dense,LayerNorm}.{weight,bias},
//   P.encoder.layer.{i}.intermediate.dense.{weight,bias},
//   P.encoder.layer.{i}.output.{dense,LayerNorm}.{weight,bias};
//   bert:    bert.pooler.dense.{weight,bias}, classifier.{weight,bias};
//   roberta: classifier.dense.{weight,bias}, classifier.out_proj.{weight,bias}.
// Forward: embeddings = LayerNorm(word + token_type + position); BERT position ids 0..T-1;
// RoBERTa position ids from the input ids (Hugging Face's create_position_ids_from_input_ids):
// cumsum of (id != pad) along T, times that mask, + pad_token_id (padding keeps pad_token_id).
// Post-LN encoder layers: x = LN(x + O(attn(x))); x = LN(x + W2 gelu(W1 x)), exact erf GELU.
// Attention: softmax(Q K^T / sqrt(d) + (1 - mask) * finfo(dtype).min) V, plain matmuls (so
// double backward works). Heads: BERT tanh(pooler(x[:,0])) -> classifier; RoBERTa
// out_proj(tanh(dense(x[:,0]))).
// Init (Hugging Face's _init_weights): Linear and Embedding weights N(0, 0.02²), biases 0, the
// padding row of word_embeddings 0, LayerNorm weight 1 and bias 0; draws from torch's global
// generator.
// Hessian layers: per encoder layer query, key, value, attention.output.dense,
// intermediate.dense, output.dense weights, then the classifier weights (BERT: classifier.weight;
// RoBERTa: classifier.dense.weight, classifier.out_proj.weight). Embeddings, LayerNorms and the
// BERT pooler are excluded: bert-base 73, roberta-base 74.
class TextTransformer : public Classifier {
 public:
  // config.model_type must be "bert" or "roberta" (validated). `arch` is what arch() returns
  // (a spec make_model rebuilds, e.g. "bert-base" or "hf:<folder>").
  TextTransformer(const TransformerConfig& config, std::int64_t num_classes, std::string arch);

  // batch.inputs [B,T] int64 token ids in [0, vocab); attention_mask [B,T] (1 token, 0 padding;
  // all ones when undefined); token_type_ids [B,T] (zeros when undefined). T must not exceed the
  // available positions (max_position_embeddings, minus pad_token_id + 1 for RoBERTa). Returns
  // logits [B, num_classes] in the module's dtype. Throws hessgap::Error on wrong shapes/dtypes
  // and on token ids / token types outside the embedding tables.
  torch::Tensor forward(const data::Batch& batch) override;
  torch::Tensor forward_ids(const torch::Tensor& input_ids, torch::Tensor attention_mask = {},
                            torch::Tensor token_type_ids = {});

  std::string arch() const override { return arch_; }
  std::int64_t num_classes() const override { return num_classes_; }
  std::vector<std::string> hessian_layers() const override { return hessian_layers_; }
  std::string head_prefix() const override { return "classifier."; }
  const TransformerConfig& config() const { return config_; }
  bool is_roberta() const { return roberta_; }
  // The longest sequence forward accepts: max_position_embeddings, less pad_token_id + 1 for RoBERTa
  // (whose position ids start after the padding id).
  std::int64_t available_positions() const {
    return roberta_ ? config_.max_position_embeddings - config_.pad_token_id - 1 : config_.max_position_embeddings;
  }

 private:
  struct Layer {
    torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, attn_out{nullptr};
    torch::nn::LayerNorm attn_norm{nullptr};
    torch::nn::Linear intermediate{nullptr}, output{nullptr};
    torch::nn::LayerNorm output_norm{nullptr};
  };

  TransformerConfig config_;
  std::string arch_;
  std::int64_t num_classes_;
  bool roberta_;
  torch::nn::Embedding word_{nullptr}, position_{nullptr}, token_type_{nullptr};
  torch::nn::LayerNorm emb_norm_{nullptr};
  std::vector<Layer> layers_;
  torch::nn::Linear pooler_{nullptr};       // BERT only
  torch::nn::Linear head_dense_{nullptr};   // RoBERTa only
  torch::nn::Linear classifier_{nullptr};   // BERT classifier / RoBERTa out_proj
  std::vector<std::string> hessian_layers_;
};

// Multi-head self-attention as Hugging Face's eager path computes it (shared with ViT).
// x [B,T,D]; additive_mask [B,1,1,T] or undefined. Returns the context [B,T,D] before the
// output projection. In training mode the attention probabilities get dropout (models/dropout.h).
torch::Tensor hf_self_attention(const torch::Tensor& x, torch::nn::Linear& query,
                                torch::nn::Linear& key, torch::nn::Linear& value,
                                std::int64_t num_heads, const torch::Tensor& additive_mask,
                                double dropout_p = 0.0, bool training = false);

// Hugging Face's _init_weights for the modules of a freshly built model (std 0.02).
void hf_init_weights(torch::nn::Module& model, double std = 0.02);

}  // namespace hessgap::models
