#include "models/batch_norm.h"

#include <torch/torch.h>

#include "util/error.h"

namespace hessgap::models {
namespace {

// Process-wide, not thread-local: on a GPU the autograd engine runs the backward pass on its own thread.
TensorAllReduce* g_all_reduce = nullptr;

// Sum over the ranks whose gradient is the sum over the ranks of the incoming gradients.
struct AllReduceSum : public torch::autograd::Function<AllReduceSum> {
  static torch::Tensor forward(torch::autograd::AutogradContext*, const torch::Tensor& x) {
    torch::Tensor out = x.clone();
    (*g_all_reduce)(out);
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list grads) {
    HG_ASSERT(g_all_reduce != nullptr, "SyncBN backward outside its BatchNormSync scope");
    torch::Tensor g = grads[0].contiguous().clone();
    (*g_all_reduce)(g);
    return {g};
  }
};

}  // namespace

BatchNormSync::BatchNormSync(TensorAllReduce all_reduce) {
  HG_ASSERT(g_all_reduce == nullptr, "BatchNormSync scopes do not nest");
  g_all_reduce = new TensorAllReduce(std::move(all_reduce));
}

BatchNormSync::~BatchNormSync() {
  delete g_all_reduce;
  g_all_reduce = nullptr;
}

torch::Tensor batch_norm(torch::nn::BatchNorm2d& bn, const torch::Tensor& input) { return batch_norm(bn.get(), input); }

torch::Tensor batch_norm(torch::nn::BatchNorm2dImpl* bn, const torch::Tensor& input) {
  HG_ASSERT(bn != nullptr, "batch_norm: no BatchNorm2d module");
  const auto& options = bn->options;
  if (g_all_reduce == nullptr || !bn->is_training() || !options.track_running_stats()) return bn->forward(input);
  HG_CHECK(input.dim() == 4, "BatchNorm2d: expected a 4-D input, got " << input.sizes());
  const std::int64_t C = input.size(1);
  {
    torch::NoGradGuard ng;
    bn->num_batches_tracked += 1;
  }
  const double momentum =
      options.momentum().has_value() ? options.momentum().value() : 1.0 / bn->num_batches_tracked.item<double>();
  const std::vector<std::int64_t> dims{0, 2, 3};
  const double local_n = static_cast<double>(input.size(0) * input.size(2) * input.size(3));
  torch::Tensor stats = torch::cat({input.sum(dims), (input * input).sum(dims),
                                    torch::full({1}, local_n, input.options().requires_grad(false))});
  stats = AllReduceSum::apply(stats);
  const double n = stats[2 * C].item<double>();
  HG_CHECK(n > 1, "BatchNorm2d: the global batch has " << n << " values per channel (need > 1 to train)");
  const torch::Tensor mean = stats.narrow(0, 0, C) / n;
  const torch::Tensor var = stats.narrow(0, C, C) / n - mean * mean;
  {
    torch::NoGradGuard ng;
    bn->running_mean.mul_(1 - momentum).add_(mean.detach() * momentum);
    bn->running_var.mul_(1 - momentum).add_(var.detach() * (momentum * n / (n - 1)));
  }
  const auto shape = std::vector<std::int64_t>{1, C, 1, 1};
  torch::Tensor y = (input - mean.view(shape)) * torch::rsqrt(var + options.eps()).view(shape);
  if (options.affine()) y = y * bn->weight.view(shape) + bn->bias.view(shape);
  return y;
}

}  // namespace hessgap::models
