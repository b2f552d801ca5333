// BatchNorm whose batch statistics can be synchronised across data-parallel ranks (SyncBN). The models
// call batch_norm(bn, x) instead of bn(x): outside a BatchNormSync scope, or in eval mode, that is exactly
// LibTorch's BatchNorm2d forward (same numbers); inside one, the global batch's statistics are used.
#pragma once

#include <torch/nn/modules/batchnorm.h>

#include <functional>

namespace hessgap::models {

// In-place sum of a tensor over the ranks (collective): how a BatchNormSync reaches the other ranks
// without the models depending on comm/.
using TensorAllReduce = std::function<void(torch::Tensor&)>;

// While one of these lives (one per process; not nested), every BatchNorm2d in training mode normalises
// with the statistics of the whole global batch: per channel, Σx, Σx² and the count are summed over the
// ranks (one all-reduce per layer in the forward pass and one per layer in the backward pass, through
// autograd), mean = Σx / N and the biased variance Σx²/N − mean² normalise, and the running statistics
// take the mean and the unbiased variance (N/(N−1)) as torch's do. Every rank must run the same forward
// and backward passes (an empty shard runs a batch of zero samples), since each layer is a collective.
class BatchNormSync {
 public:
  explicit BatchNormSync(TensorAllReduce all_reduce);
  ~BatchNormSync();
  BatchNormSync(const BatchNormSync&) = delete;
  BatchNormSync& operator=(const BatchNormSync&) = delete;
};

// bn(input) for input [B, C, H, W], or its synchronised form inside a BatchNormSync scope (training mode).
torch::Tensor batch_norm(torch::nn::BatchNorm2d& bn, const torch::Tensor& input);
torch::Tensor batch_norm(torch::nn::BatchNorm2dImpl* bn, const torch::Tensor& input);

}  // namespace hessgap::models
