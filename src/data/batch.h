// A mini-batch as every model and measure sees it: inputs, labels and the global sample ids.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace hessgap::data {

struct Batch {
  torch::Tensor inputs;          // images: [B,3,H,W] float32, normalised; text: [B,T] int64 token ids
  torch::Tensor labels;          // [B] int64 class indices
  torch::Tensor attention_mask;  // text only: [B,T] int64 (1 = token, 0 = padding); undefined for images
  torch::Tensor token_type_ids;  // text only: [B,T] int64; undefined for images
  std::vector<std::int64_t> sample_ids;  // global dataset indices of the B samples, in order

  std::int64_t size() const { return labels.defined() ? labels.size(0) : 0; }

  // A copy on `device`; floating inputs are cast to `dtype` (token ids stay int64).
  Batch to(const torch::Device& device, torch::Dtype dtype) const {
    Batch out = *this;
    if (inputs.defined()) {
      out.inputs = inputs.is_floating_point() ? inputs.to(device, dtype) : inputs.to(device);
    }
    if (labels.defined()) out.labels = labels.to(device);
    if (attention_mask.defined()) out.attention_mask = attention_mask.to(device);
    if (token_type_ids.defined()) out.token_type_ids = token_type_ids.to(device);
    return out;
  }
};

}  // namespace hessgap::data
