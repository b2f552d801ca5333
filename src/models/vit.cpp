#include "models/vit.h"

#include <torch/torch.h>

#include <cmath>

#include "models/transformer_text.h"
#include "models/layers.h"
#include "util/error.h"

namespace hessgap::models {
namespace {

namespace nn = torch::nn;

}  // namespace

VisionTransformer::VisionTransformer(const TransformerConfig& config, std::int64_t num_classes,
                                     std::string arch)
    : config_(config), arch_(std::move(arch)), num_classes_(num_classes) {
  validate(config_);
  HG_CHECK(config_.model_type == "vit", "config " << config_.source << ": model_type '"
                                                  << config_.model_type << "' is not vit");
  HG_CHECK(num_classes >= 1, "model '" << arch_ << "': num_classes must be >= 1, got " << num_classes);
  const auto D = config_.hidden_size;
  const double eps = config_.layer_norm_eps;
  const auto grid = config_.image_size / config_.patch_size;

  auto base = holder(*this, "vit");
  auto emb = holder(*base, "embeddings");
  cls_token_ = emb->register_parameter("cls_token", torch::zeros({1, 1, D}));
  position_embeddings_ =
      emb->register_parameter("position_embeddings", torch::zeros({1, grid * grid + 1, D}));
  auto patches = holder(*emb, "patch_embeddings");
  projection_ = patches->register_module(
      "projection", nn::Conv2d(nn::Conv2dOptions(config_.num_channels, D, config_.patch_size)
                                   .stride(config_.patch_size)
                                   .bias(true)));

  auto encoder = holder(*base, "encoder");
  auto list = encoder->register_module("layer", nn::ModuleList());
  for (std::int64_t i = 0; i < config_.num_hidden_layers; ++i) {
    auto block = std::make_shared<nn::Module>();
    Layer l;
    auto attention = holder(*block, "attention");
    auto self = holder(*attention, "attention");
    auto qkv = [&](const char* name) {
      return self->register_module(name, nn::Linear(nn::LinearOptions(D, D).bias(config_.qkv_bias)));
    };
    l.query = qkv("query");
    l.key = qkv("key");
    l.value = qkv("value");
    l.attn_out = holder(*attention, "output")->register_module("dense", nn::Linear(D, D));
    l.intermediate = holder(*block, "intermediate")
                         ->register_module("dense", nn::Linear(D, config_.intermediate_size));
    l.output = holder(*block, "output")
                   ->register_module("dense", nn::Linear(config_.intermediate_size, D));
    l.norm_before = block->register_module("layernorm_before", layer_norm(D, eps));
    l.norm_after = block->register_module("layernorm_after", layer_norm(D, eps));
    list->push_back(block);
    layers_.push_back(l);
    const std::string prefix = "vit.encoder.layer." + std::to_string(i) + ".";
    for (const char* name : {"attention.attention.query", "attention.attention.key",
                             "attention.attention.value", "attention.output.dense",
                             "intermediate.dense", "output.dense"}) {
      hessian_layers_.push_back(prefix + name + ".weight");
    }
  }
  final_norm_ = base->register_module("layernorm", layer_norm(D, eps));
  classifier_ = register_module("classifier", nn::Linear(D, num_classes));
  hessian_layers_.push_back("classifier.weight");

  hf_init_weights(*this, config_.initializer_range);
  torch::NoGradGuard no_grad;
  cls_token_.normal_(0.0, config_.initializer_range);
  position_embeddings_.normal_(0.0, config_.initializer_range);
}

torch::Tensor VisionTransformer::forward(const data::Batch& batch) {
  return forward_images(batch.inputs);
}

torch::Tensor VisionTransformer::forward_images(const torch::Tensor& images) {
  HG_CHECK(images.defined() && images.dim() == 4 && images.is_floating_point() &&
               images.size(1) == config_.num_channels && images.size(2) == config_.image_size &&
               images.size(3) == config_.image_size,
           "model " << arch_ << ": inputs must be floating [B," << config_.num_channels << ","
                    << config_.image_size << "," << config_.image_size << "], got "
                    << (images.defined() ? images.sizes() : torch::IntArrayRef{}));
  const auto x_in = inputs_as(images, dtype());
  const auto B = x_in.size(0);
  auto x = projection_(x_in).flatten(2).transpose(1, 2);  // [B,N,D]
  x = torch::cat({cls_token_.expand({B, -1, -1}), x}, 1);
  x = x + position_embeddings_;
  for (auto& l : layers_) {
    auto ctx = hf_self_attention(l.norm_before(x), l.query, l.key, l.value,
                                 config_.num_attention_heads, torch::Tensor());
    x = l.attn_out(ctx) + x;
    x = l.output(torch::gelu(l.intermediate(l.norm_after(x)))) + x;
  }
  x = final_norm_(x);
  return classifier_(x.select(1, 0));
}

PositionInterpolation parse_position_interpolation(const std::string& name) {
  if (name == "bicubic") return PositionInterpolation::Bicubic;
  if (name == "bilinear-align-corners") return PositionInterpolation::BilinearAlignCorners;
  HG_FAIL("position-embedding interpolation '" << name << "' is unknown (bicubic, bilinear-align-corners)");
}

torch::Tensor resize_position_embeddings(const torch::Tensor& pos, std::int64_t grid_h, std::int64_t grid_w,
                                         PositionInterpolation mode) {
  HG_CHECK(pos.defined() && pos.dim() == 3 && pos.size(0) == 1 && pos.size(1) >= 2 && pos.is_floating_point(),
           "position embeddings must be floating [1, 1 + g*g, D], got "
               << (pos.defined() ? pos.sizes() : torch::IntArrayRef{}));
  const std::int64_t n = pos.size(1) - 1, D = pos.size(2);
  auto g = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
  HG_CHECK(g * g == n, "position embeddings [1, " << pos.size(1) << ", " << D << "] do not hold a class token and a "
                                                  << "square grid (" << n << " is not a square)");
  HG_CHECK(grid_h >= 1 && grid_w >= 1, "position-embedding grid " << grid_h << "x" << grid_w << " must be >= 1x1");
  if (grid_h == g && grid_w == g) return pos;
  namespace F = torch::nn::functional;
  torch::NoGradGuard no_grad;
  const auto grid = pos.slice(1, 1).to(torch::kDouble).reshape({1, g, g, D}).permute({0, 3, 1, 2});
  auto opts = F::InterpolateFuncOptions().size(std::vector<std::int64_t>{grid_h, grid_w});
  if (mode == PositionInterpolation::Bicubic) {
    opts = opts.mode(torch::kBicubic).align_corners(false);
  } else {
    opts = opts.mode(torch::kBilinear).align_corners(true);
  }
  const auto resized = F::interpolate(grid, opts).permute({0, 2, 3, 1}).reshape({1, grid_h * grid_w, D});
  return torch::cat({pos.slice(1, 0, 1).to(torch::kDouble), resized}, 1).to(pos.scalar_type()).contiguous();
}

}  // namespace hessgap::models
