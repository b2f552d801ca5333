#include "hessian/hvp_engine.h"

#include <torch/torch.h>

#include "util/error.h"

namespace hessgap::hessian {

HvpEngine::HvpEngine(torch::Tensor loss, std::vector<torch::Tensor> params) : params_(std::move(params)) {
  HG_CHECK(loss.defined() && loss.numel() == 1, "HVP: the loss must be a scalar tensor");
  HG_CHECK(!params_.empty(), "HVP: no parameters selected");
  for (std::size_t i = 0; i < params_.size(); ++i) {
    HG_CHECK(params_[i].requires_grad(), "HVP: parameter " << i << " does not require grad");
  }
  loss_value_ = loss.detach().to(torch::kFloat64).item<double>();
  // allow_unused=false: a selected layer that does not reach the loss is a configuration error.
  grads_ = torch::autograd::grad({loss.reshape({})}, params_, /*grad_outputs=*/{}, /*retain_graph=*/true,
                                 /*create_graph=*/true, /*allow_unused=*/false);
}

std::vector<torch::Tensor> HvpEngine::gradient() const {
  std::vector<torch::Tensor> out;
  out.reserve(grads_.size());
  for (const auto& g : grads_) out.push_back(g.detach());
  return out;
}

std::vector<torch::Tensor> HvpEngine::hvp(const std::vector<torch::Tensor>& v) {
  HG_ASSERT(v.size() == params_.size(), "hvp: v has " << v.size() << " blocks, expected " << params_.size());
  // grad_outputs = v gives Σ_i ∂⟨g_i, v_i⟩/∂W in one backward pass without forming the dot product.
  std::vector<torch::Tensor> out =
      torch::autograd::grad(grads_, params_, v, /*retain_graph=*/true, /*create_graph=*/false,
                            /*allow_unused=*/true);
  for (std::size_t i = 0; i < out.size(); ++i) {
    // A layer whose gradient is linear in the others' weights only can have an undefined block.
    out[i] = out[i].defined() ? out[i].detach() : torch::zeros_like(params_[i]);
  }
  ++products_;
  return out;
}

torch::Tensor HvpEngine::block_hvp(std::size_t i, const torch::Tensor& v_i) {
  HG_ASSERT(i < params_.size(), "block_hvp: layer " << i << " out of range");
  auto out = torch::autograd::grad({grads_[i]}, {params_[i]}, {v_i}, /*retain_graph=*/true,
                                   /*create_graph=*/false, /*allow_unused=*/true);
  ++products_;
  return out[0].defined() ? out[0].detach() : torch::zeros_like(params_[i]);
}

double dot64(const torch::Tensor& a, const torch::Tensor& b) {
  // Products in the tensors' dtype, accumulated in float64: no float64 copies of the operands.
  return (a * b).sum(torch::kFloat64).item<double>();
}

std::vector<double> dots64(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  HG_ASSERT(a.size() == b.size(), "dots64: " << a.size() << " vs " << b.size() << " blocks");
  if (a.empty()) return {};
  std::vector<torch::Tensor> sums;
  sums.reserve(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) sums.push_back((a[i] * b[i]).sum(torch::kFloat64));
  const torch::Tensor host = torch::stack(sums).to(torch::kCPU).contiguous();
  const double* p = host.data_ptr<double>();
  return std::vector<double>(p, p + host.numel());
}

}  // namespace hessgap::hessian
