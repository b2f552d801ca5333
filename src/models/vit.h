// Vision Transformer for image classification, a port of Hugging Face's
// ViTForImageClassification (eager attention, eval mode, no pooler) whose parameter names equal
// the keys of a model.safetensors written by save_pretrained (transformers 4 names, which
// transformers 5 still writes on disk), so such a file loads strictly by name.
#pragma once

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <cstdint>
#include <string>
#include <vector>

#include "models/classifier.h"
#include "models/hf_config.h"

namespace hessgap::models {

// Parameters, in named_parameters() order:
//   vit.embeddings.cls_token [1,1,D], vit.embeddings.position_embeddings [1,N+1,D],
//   vit.embeddings.patch_embeddings.projection.{weight [D,C,p,p], bias},
//   vit.encoder.layer.{i}.attention.attention.{query,key,value}.{weight,bias},
//   vit.encoder.layer.{i}.attention.output.dense.*, .intermediate.dense.*, .output.dense.*,
//   vit.encoder.layer.{i}.layernorm_before.*, .layernorm_after.*,
//   vit.layernorm.{weight,bias}, classifier.{weight,bias}.
// (transformers 5 renames these in memory to vit.layers.{i}.attention.{q,k,v,o}_proj and
// mlp.fc{1,2}; the files keep the names above.)
// Forward: patches = projection(x) flattened to [B,N,D], prepend cls_token, + position
// embeddings (no interpolation at forward time: the image must be image_size x image_size; a
// checkpoint made for another size is resized once, at load, by adapt_checkpoint); pre-LN blocks
// x = x + O(attn(LN_before(x))); x = x + W2 gelu(W1 LN_after(x)) (exact erf GELU); final
// vit.layernorm; classifier on token 0. The attention softmax runs in the model's dtype, whereas
// transformers' ViT runs it in float32 even for a float64 model: float64 outputs therefore agree
// with Hugging Face's float64 outputs only to ~1e-8 (logits) / ~2e-7 (gradients, HVPs) relative;
// float32 outputs agree to float32 precision.
// Init: Hugging Face's (Linear/Conv N(0, r²) with r = config.initializer_range (0.02), biases 0,
// LayerNorm (1,0), cls_token and position embeddings N(0, r²)); draws from torch's global
// generator. (The reference's jeonsworld ViT uses LayerNorm eps 1e-6 where Hugging Face's configs
// say 1e-12: set layer_norm_eps in the config.json to match the reference with Google's weights.)
// Hessian layers, per block in module order: attention.attention.query, .key, .value,
// attention.output.dense, intermediate.dense, output.dense weights (the reference's jeonsworld
// ViT lists ffn.fc1, ffn.fc2, query, key, value, out per block instead: same set, different
// order), then classifier.weight: 6 x layers + 1 (ViT-B/16: 73).
class VisionTransformer : public Classifier {
 public:
  VisionTransformer(const TransformerConfig& config, std::int64_t num_classes, std::string arch);

  // batch.inputs [B,C,H,W] floating with H = W = image_size; cast to the module's dtype.
  torch::Tensor forward(const data::Batch& batch) override;
  torch::Tensor forward_images(const torch::Tensor& images);

  std::string arch() const override { return arch_; }
  std::int64_t num_classes() const override { return num_classes_; }
  std::vector<std::string> hessian_layers() const override { return hessian_layers_; }
  std::string head_prefix() const override { return "classifier."; }
  const TransformerConfig& config() const { return config_; }

 private:
  struct Layer {
    torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, attn_out{nullptr};
    torch::nn::Linear intermediate{nullptr}, output{nullptr};
    torch::nn::LayerNorm norm_before{nullptr}, norm_after{nullptr};
  };

  TransformerConfig config_;
  std::string arch_;
  std::int64_t num_classes_;
  torch::Tensor cls_token_, position_embeddings_;
  torch::nn::Conv2d projection_{nullptr};
  std::vector<Layer> layers_;
  torch::nn::LayerNorm final_norm_{nullptr};
  torch::nn::Linear classifier_{nullptr};
  std::vector<std::string> hessian_layers_;
};

// How position embeddings are resized for another grid (SPEC §3.1 fixes 224 x 224 images, so the
// reference never resizes; the choice only matters for other image sizes).
//   Bicubic: torch.nn.functional.interpolate(mode="bicubic", align_corners=False, size=(h, w)) on
//     the grid, the class token kept, i.e. Hugging Face's ViTEmbeddings.interpolate_pos_encoding
//     (transformers >= 4.44, which sizes by output size; older versions passed a scale factor with
//     a +0.1 offset) and, when enlarging, timm's resample_abs_pos_embed (timm also antialiases
//     when shrinking). The default: our ViT is Hugging Face's.
//   BilinearAlignCorners: bilinear with align_corners=True, which equals the reference's
//     jeonsworld load_from (scipy.ndimage.zoom(order=1) of the grid).
enum class PositionInterpolation { Bicubic, BilinearAlignCorners };

// "bicubic" | "bilinear-align-corners"; Error naming the accepted values otherwise.
PositionInterpolation parse_position_interpolation(const std::string& name);

// pos [1, 1 + g*g, D] (a class token, then a square g x g grid in row-major order, as ViT
// checkpoints store it) -> [1, 1 + grid_h*grid_w, D] in pos's dtype and device (computed in
// float64 for floating inputs, float32 storage types cast back). Returns pos itself when the grid
// already has that size. Errors: pos not [1, 1 + g*g, D] with a whole g; grid sizes < 1.
torch::Tensor resize_position_embeddings(const torch::Tensor& pos, std::int64_t grid_h, std::int64_t grid_w,
                                         PositionInterpolation mode = PositionInterpolation::Bicubic);

}  // namespace hessgap::models
