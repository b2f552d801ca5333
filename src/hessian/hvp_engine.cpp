#include "hessian/hvp_engine.h"

#include <torch/torch.h>

// HG_NO_VMAP (cmake -DHG_WITH_VMAP=OFF): a build without the vmap internals below, which LibTorch exports
// but does not promise to keep; hvps() then runs its K products one after the other (same values, no
// batching). scripts/gpu-check.sh falls back to it if a newer LibTorch refuses this file, so that one
// renamed internal does not cost the GPU check.
#ifndef HG_NO_VMAP
// The vmap level counter of the batched-gradient path moved to LegacyVmapMode.h in LibTorch 2.
#if __has_include(<ATen/LegacyVmapMode.h>)
#include <ATen/LegacyVmapMode.h>
#else
#include <ATen/VmapMode.h>
#endif
#include <ATen/functorch/BatchedTensorImpl.h>
#include <ATen/functorch/DynamicLayer.h>
#endif

#include "util/error.h"

namespace hessgap::hessian {

ProbeBatching parse_probe_batching(const std::string& name) {
  if (name == "functorch") return ProbeBatching::kFunctorch;
  if (name == "legacy") return ProbeBatching::kLegacy;
  HG_FAIL("unknown probe batching '" << name << "' (expected functorch or legacy)");
}

std::string to_string(ProbeBatching b) {
  std::string name = b == ProbeBatching::kFunctorch ? "functorch" : "legacy";
#ifdef HG_NO_VMAP
  name += " (this build has no vmap: one product at a time)";  // recorded, so a result says so
#endif
  return name;
}

namespace {

#ifndef HG_NO_VMAP
// One backward pass of `grads` against grad_outputs `v` (each [K, ...]) under a vmap level over dim 0,
// the outputs taken back out of the level as [K, ...] tensors. Enter / mark / leave are the two vmaps'.
template <typename Enter, typename Mark, typename Unmark, typename Leave>
std::vector<torch::Tensor> batched_backward(const std::vector<torch::Tensor>& grads, const std::vector<torch::Tensor>& params,
                                            const std::vector<torch::Tensor>& v, Enter enter, Mark mark, Unmark unmark,
                                            Leave leave) {
  const std::int64_t k = v[0].size(0);
  const std::int64_t level = enter(k);
  struct Exit {
    Leave& leave;
    ~Exit() { leave(); }
  } exit{leave};
  std::vector<torch::Tensor> batched;
  batched.reserve(v.size());
  for (const auto& t : v) batched.push_back(mark(t, level));
  std::vector<torch::Tensor> out;
  try {
    out = torch::autograd::grad(grads, params, batched, /*retain_graph=*/true, /*create_graph=*/false,
                                /*allow_unused=*/true);
  } catch (const c10::Error& e) {
    HG_FAIL("--probes-in-flight: this model's second derivative has no batched form here ("
            << e.what_without_backtrace() << "); use --probes-in-flight 1 or the other --probe-batching");
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = out[i].defined() ? unmark(out[i], level, k).detach() : torch::zeros_like(v[i]);
  }
  return out;
}
#endif

// The float64 scalars or [K] vectors in `sums`, stacked along `dim` and read back in one device-to-host
// copy, row-major.
std::vector<double> stacked_on_host(const std::vector<torch::Tensor>& sums, std::int64_t dim) {
  const torch::Tensor host = torch::stack(sums, dim).to(torch::kCPU).contiguous();
  const double* p = host.data_ptr<double>();
  return std::vector<double>(p, p + host.numel());
}

}  // namespace

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

std::vector<torch::Tensor> HvpEngine::hvps(const std::vector<torch::Tensor>& v, ProbeBatching how) {
  HG_ASSERT(v.size() == params_.size(), "hvps: v has " << v.size() << " blocks, expected " << params_.size());
  const std::int64_t k = v[0].size(0);
  for (std::size_t i = 0; i < v.size(); ++i) {
    HG_ASSERT(v[i].dim() == params_[i].dim() + 1 && v[i].size(0) == k, "hvps: block " << i << " is not [K, ...]");
  }
  if (k == 1) {  // no batching needed: the plain product, bitwise hvp()
    std::vector<torch::Tensor> one;
    for (const auto& t : v) one.push_back(t[0]);
    auto out = hvp(one);
    for (auto& t : out) t = t.unsqueeze(0);
    return out;
  }
#ifdef HG_NO_VMAP
  (void)how;  // built without vmap: the K products in turn (each counted by hvp), stacked
  std::vector<std::vector<torch::Tensor>> rows(v.size());
  for (std::int64_t j = 0; j < k; ++j) {
    std::vector<torch::Tensor> one;
    for (const auto& t : v) one.push_back(t[j]);
    const auto h = hvp(one);
    for (std::size_t i = 0; i < h.size(); ++i) rows[i].push_back(h[i]);
  }
  std::vector<torch::Tensor> out;
  for (const auto& r : rows) out.push_back(torch::stack(r));
  return out;
#else
  std::vector<torch::Tensor> out;
  if (how == ProbeBatching::kFunctorch) {
    // What torch.func.vmap does around a function: push a vmap layer of size K on functorch's
    // interpreter stack, wrap the inputs as batched at its level, unwrap the outputs, pop.
    namespace ft = at::functorch;
    out = batched_backward(
        grads_, params_, v,
        [](std::int64_t n) { return ft::initAndPushDynamicLayer(ft::TransformType::Vmap, n, ft::RandomnessType::Error); },
        [](const torch::Tensor& t, std::int64_t level) { return ft::addBatchDim(t, 0, level); },
        [](const torch::Tensor& t, std::int64_t level, std::int64_t n) {
          ft::BatchedTensorImpl* impl = ft::maybeGetBatchedImpl(t);
          if (impl != nullptr && impl->level() == level) return impl->value().movedim(impl->bdim(), 0);
          std::vector<std::int64_t> sizes = t.sizes().vec();  // did not depend on the vectors
          sizes.insert(sizes.begin(), n);
          return t.unsqueeze(0).expand(sizes).clone();
        },
        [] { ft::popDynamicLayerAndDeleteMetadata(); });
  } else {
    // What Python's autograd.grad(is_grads_batched=True) does: enter a legacy vmap level, mark dim 0
    // of every grad_output as its batch dimension, run the backward once, take the dimension out.
    out = batched_backward(
        grads_, params_, v, [](std::int64_t) { return at::impl::VmapMode::increment_nesting(); },
        [](const torch::Tensor& t, std::int64_t level) { return at::_add_batch_dim(t, 0, level); },
        [](const torch::Tensor& t, std::int64_t level, std::int64_t n) { return at::_remove_batch_dim(t, level, n, 0); },
        [] { at::impl::VmapMode::decrement_nesting(); });
  }
  products_ += k;
  return out;
#endif
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
  return stacked_on_host(sums, 0);
}

std::vector<double> batched_dots64(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  HG_ASSERT(a.size() == b.size() && !a.empty(), "batched_dots64: " << a.size() << " vs " << b.size() << " blocks");
  const std::int64_t k = a[0].size(0);
  std::vector<torch::Tensor> sums;  // each [K]
  sums.reserve(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) sums.push_back((a[i] * b[i]).reshape({k, -1}).sum(1, false, torch::kFloat64));
  return stacked_on_host(sums, 1);  // [K, L]
}

}  // namespace hessgap::hessian
