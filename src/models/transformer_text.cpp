// BERT / RoBERTa sequence classifiers. The module tree is built from plain holder modules so
// that the dotted names equal Hugging Face's; forward uses the handles kept in Layer.
#include "models/transformer_text.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "models/dropout.h"
#include "models/layers.h"
#include "util/error.h"

namespace hessgap::models {
namespace {

namespace nn = torch::nn;

double dtype_min(torch::Dtype dtype) {
  switch (dtype) {
    case torch::kFloat64: return std::numeric_limits<double>::lowest();
    case torch::kFloat32: return static_cast<double>(std::numeric_limits<float>::lowest());
    case torch::kFloat16: return -65504.0;
    case torch::kBFloat16: return -3.3895313892515355e38;
    default: HG_FAIL("unsupported model dtype " << dtype);
  }
}

}  // namespace

torch::Tensor hf_self_attention(const torch::Tensor& x, nn::Linear& query, nn::Linear& key,
                                nn::Linear& value, std::int64_t num_heads,
                                const torch::Tensor& additive_mask, double dropout_p, bool training) {
  const auto B = x.size(0), T = x.size(1), D = x.size(2);
  const auto d = D / num_heads;
  auto heads = [&](const torch::Tensor& t) { return t.view({B, T, num_heads, d}).transpose(1, 2); };
  auto q = heads(query(x));
  auto k = heads(key(x));
  auto v = heads(value(x));
  auto scores = torch::matmul(q, k.transpose(2, 3)) * (1.0 / std::sqrt(static_cast<double>(d)));
  if (additive_mask.defined()) scores = scores + additive_mask;
  auto probs = keyed_dropout(torch::softmax(scores, -1), dropout_p, training);
  auto ctx = torch::matmul(probs, v);  // [B,H,T,d]
  return ctx.transpose(1, 2).reshape({B, T, D});
}

void hf_init_weights(nn::Module& model, double std) {
  torch::NoGradGuard no_grad;
  visit_submodules(model, [std](nn::Module& m) {
    if (auto* lin = m.as<nn::Linear>()) {
      lin->weight.normal_(0.0, std);
      if (lin->bias.defined()) lin->bias.zero_();
    } else if (auto* emb = m.as<nn::Embedding>()) {
      emb->weight.normal_(0.0, std);
      if (emb->options.padding_idx().has_value()) emb->weight[*emb->options.padding_idx()].zero_();
    } else if (auto* ln = m.as<nn::LayerNorm>()) {
      ln->weight.fill_(1.0);
      ln->bias.zero_();
    } else if (auto* conv = m.as<nn::Conv2d>()) {
      conv->weight.normal_(0.0, std);
      if (conv->bias.defined()) conv->bias.zero_();
    }
  });
}

TextTransformer::TextTransformer(const TransformerConfig& config, std::int64_t num_classes,
                                 std::string arch)
    : config_(config), arch_(std::move(arch)), num_classes_(num_classes) {
  validate(config_);
  HG_CHECK(config_.model_type == "bert" || config_.model_type == "roberta",
           "config " << config_.source << ": model_type '" << config_.model_type
                     << "' is not a text model (bert, roberta)");
  HG_CHECK(num_classes >= 1, "model '" << arch_ << "': num_classes must be >= 1, got " << num_classes);
  roberta_ = config_.model_type == "roberta";
  const std::string P = roberta_ ? "roberta" : "bert";
  const auto D = config_.hidden_size;
  const double eps = config_.layer_norm_eps;

  auto base = holder(*this, P);
  auto emb = holder(*base, "embeddings");
  // Registration order follows transformers 5 (see the header).
  word_ = emb->register_module(
      "word_embeddings",
      nn::Embedding(nn::EmbeddingOptions(config_.vocab_size, D).padding_idx(config_.pad_token_id)));
  if (roberta_) {
    token_type_ = emb->register_module("token_type_embeddings",
                                       nn::Embedding(config_.type_vocab_size, D));
    emb_norm_ = emb->register_module("LayerNorm", layer_norm(D, eps));
    position_ = emb->register_module(
        "position_embeddings",
        nn::Embedding(nn::EmbeddingOptions(config_.max_position_embeddings, D)
                          .padding_idx(config_.pad_token_id)));
  } else {
    position_ = emb->register_module("position_embeddings",
                                     nn::Embedding(config_.max_position_embeddings, D));
    token_type_ = emb->register_module("token_type_embeddings",
                                       nn::Embedding(config_.type_vocab_size, D));
    emb_norm_ = emb->register_module("LayerNorm", layer_norm(D, eps));
  }

  auto encoder = holder(*base, "encoder");
  auto list = encoder->register_module("layer", nn::ModuleList());
  for (std::int64_t i = 0; i < config_.num_hidden_layers; ++i) {
    auto block = std::make_shared<nn::Module>();
    Layer l;
    auto attention = holder(*block, "attention");
    auto self = holder(*attention, "self");
    l.query = self->register_module("query", nn::Linear(D, D));
    l.key = self->register_module("key", nn::Linear(D, D));
    l.value = self->register_module("value", nn::Linear(D, D));
    auto attn_output = holder(*attention, "output");
    l.attn_out = attn_output->register_module("dense", nn::Linear(D, D));
    l.attn_norm = attn_output->register_module("LayerNorm", layer_norm(D, eps));
    auto intermediate = holder(*block, "intermediate");
    l.intermediate = intermediate->register_module("dense", nn::Linear(D, config_.intermediate_size));
    auto output = holder(*block, "output");
    l.output = output->register_module("dense", nn::Linear(config_.intermediate_size, D));
    l.output_norm = output->register_module("LayerNorm", layer_norm(D, eps));
    list->push_back(block);
    layers_.push_back(l);

    const std::string prefix = P + ".encoder.layer." + std::to_string(i) + ".";
    for (const char* name : {"attention.self.query", "attention.self.key", "attention.self.value",
                             "attention.output.dense", "intermediate.dense", "output.dense"}) {
      hessian_layers_.push_back(prefix + name + ".weight");
    }
  }

  if (roberta_) {
    auto head = holder(*this, "classifier");
    head_dense_ = head->register_module("dense", nn::Linear(D, D));
    classifier_ = head->register_module("out_proj", nn::Linear(D, num_classes));
    hessian_layers_.push_back("classifier.dense.weight");
    hessian_layers_.push_back("classifier.out_proj.weight");
  } else {
    auto pooler = holder(*base, "pooler");
    pooler_ = pooler->register_module("dense", nn::Linear(D, D));
    classifier_ = register_module("classifier", nn::Linear(D, num_classes));
    hessian_layers_.push_back("classifier.weight");
  }
  hf_init_weights(*this);
}

torch::Tensor TextTransformer::forward(const data::Batch& batch) {
  return forward_ids(batch.inputs, batch.attention_mask, batch.token_type_ids);
}

torch::Tensor TextTransformer::forward_ids(const torch::Tensor& input_ids,
                                           torch::Tensor attention_mask,
                                           torch::Tensor token_type_ids) {
  HG_CHECK(input_ids.defined() && input_ids.dim() == 2 && !input_ids.is_floating_point(),
           "model " << arch_ << ": inputs must be [B,T] integer token ids");
  const auto B = input_ids.size(0), T = input_ids.size(1);
  const auto ids = input_ids.to(torch::kLong);
  const std::int64_t max_pos = available_positions();
  HG_CHECK(T <= max_pos, "model " << arch_ << ": sequence length " << T << " exceeds the "
                                   << max_pos << " available positions");
  auto check_shape = [&](const torch::Tensor& t, const char* what) {
    HG_CHECK(t.dim() == 2 && t.size(0) == B && t.size(1) == T,
             "model " << arch_ << ": " << what << " has shape " << t.sizes() << ", expected ["
                      << B << ", " << T << "]");
  };
  const auto dtype = this->dtype();
  if (!attention_mask.defined()) {
    attention_mask = torch::ones({B, T}, ids.options());
  }
  check_shape(attention_mask, "attention_mask");
  if (!token_type_ids.defined()) token_type_ids = torch::zeros({B, T}, ids.options());
  check_shape(token_type_ids, "token_type_ids");

  // Out-of-range ids would be an index error deep in embedding (a device assert on CUDA).
  auto check_range = [&](const torch::Tensor& t, std::int64_t size, const char* what) {
    if (t.numel() == 0) return;
    const auto lo = t.min().item<std::int64_t>(), hi = t.max().item<std::int64_t>();
    HG_CHECK(lo >= 0 && hi < size, "model " << arch_ << ": " << what << " must lie in [0, " << size
                                            << "), got [" << lo << ", " << hi << "]");
  };
  check_range(ids, config_.vocab_size, "token ids");
  check_range(token_type_ids, config_.type_vocab_size, "token_type_ids");

  torch::Tensor positions;
  if (roberta_) {
    const auto not_pad = ids.ne(config_.pad_token_id).to(torch::kLong);
    positions = torch::cumsum(not_pad, 1) * not_pad + config_.pad_token_id;
  } else {
    positions = torch::arange(T, ids.options()).unsqueeze(0).expand({B, T});
  }
  auto x = word_(ids) + token_type_(token_type_ids.to(torch::kLong));
  x = x + position_(positions);
  x = emb_norm_(x);
  const bool training = is_training();
  const double hidden_p = config_.hidden_dropout_prob;
  const double head_p = config_.classifier_dropout >= 0 ? config_.classifier_dropout : hidden_p;
  x = keyed_dropout(x, hidden_p, training);

  // [B,1,1,T]: 0 for tokens, the dtype's most negative value for padding.
  const auto mask = attention_mask.to(dtype).view({B, 1, 1, T});
  const auto additive = (1.0 - mask) * dtype_min(dtype);

  for (auto& l : layers_) {
    auto ctx = hf_self_attention(x, l.query, l.key, l.value, config_.num_attention_heads, additive,
                                 config_.attention_probs_dropout_prob, training);
    x = l.attn_norm(keyed_dropout(l.attn_out(ctx), hidden_p, training) + x);
    auto h = torch::gelu(l.intermediate(x));
    x = l.output_norm(keyed_dropout(l.output(h), hidden_p, training) + x);
  }
  auto first = x.select(1, 0);
  // RobertaClassificationHead: dropout, dense, tanh, dropout, out_proj; BERT: the pooler (dense, tanh),
  // dropout, classifier.
  if (roberta_) {
    return classifier_(keyed_dropout(torch::tanh(head_dense_(keyed_dropout(first, head_p, training))), head_p, training));
  }
  return classifier_(keyed_dropout(torch::tanh(pooler_(first)), head_p, training));
}

}  // namespace hessgap::models
