// Google's original ViT checkpoints (the .npz files of google-research/vision_transformer, e.g.
// imagenet21k_ViT-B_16.npz, which the reference loads with jeonsworld's load_from; SPEC §3.1)
// renamed and transposed into the Hugging Face ViTForImageClassification state dict that
// models::VisionTransformer uses.
#pragma once

#include <string>
#include <vector>

#include "io/safetensors.h"

namespace hessgap::io {

// True when `arrays` (an npz read by read_npz) has Google ViT names ("Transformer/encoder_norm/scale").
bool is_google_vit(const NamedTensors& arrays);

// The mapping, for D = hidden size, H heads of size d (H*d = D), F = MLP size, K classes, p = patch:
//   cls [1,1,D]                                     -> vit.embeddings.cls_token
//   embedding/kernel [p,p,C,D] (HWIO)               -> vit.embeddings.patch_embeddings.projection.weight
//                                                      [D,C,p,p] (OIHW: permute 3,2,0,1)
//   embedding/bias [D]                              -> ...projection.bias
//   Transformer/posembed_input/pos_embedding [1,N+1,D] -> vit.embeddings.position_embeddings
//   Transformer/encoderblock_{i}/ (-> vit.encoder.layer.{i}.)
//     LayerNorm_0/{scale,bias}                      -> layernorm_before.{weight,bias}
//     LayerNorm_2/{scale,bias}                      -> layernorm_after.{weight,bias}
//     MultiHeadDotProductAttention_1/{query,key,value}/kernel [D,H,d]
//                                                   -> attention.attention.{query,key,value}.weight:
//                                                      reshape [D,D], transpose (out, in)
//     MultiHeadDotProductAttention_1/{query,key,value}/bias [H,d] -> ....bias [D]
//     MultiHeadDotProductAttention_1/out/kernel [H,d,D] -> attention.output.dense.weight: reshape
//                                                      [D,D], transpose; out/bias [D] -> .bias
//     MlpBlock_3/Dense_0/{kernel [D,F], bias}       -> intermediate.dense.{weight [F,D] (transposed), bias}
//     MlpBlock_3/Dense_1/{kernel [F,D], bias}       -> output.dense.{weight [D,F] (transposed), bias}
//   Transformer/encoder_norm/{scale,bias}           -> vit.layernorm.{weight,bias}
//   head/kernel [D,K], head/bias [K]                -> classifier.weight [K,D] (transposed), classifier.bias
//   pre_logits/{kernel,bias}                        -> dropped (listed in `dropped`): the ImageNet-21k
//                                                      checkpoints' representation layer, which neither
//                                                      the reference's jeonsworld ViT nor Hugging Face's
//                                                      ViTForImageClassification has.
// This is what jeonsworld's load_from and timm's _load_weights do (view/flatten then .t()).
// Output order: embeddings, then the blocks in index order, the final norm, the head; all fresh
// contiguous tensors of the arrays' dtype. `source` names the file in errors.
// Errors (hessgap::Error naming the source and the array): an array name outside this list, a
// missing array, block indices that are not 0..L-1, shapes that disagree with the mapping (e.g.
// a query kernel that is not [D,H,d] with H*d = D).
NamedTensors google_vit_to_hf(const NamedTensors& arrays, const std::string& source,
                              std::vector<std::string>* dropped = nullptr);

}  // namespace hessgap::io
