// Hessian-vector products by double backward on a named subset of parameters, reusing one
// first-order graph (loss → gradient with create_graph) for every product of a batch.
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

namespace hessgap::hessian {

// How HvpEngine::hvps batches K vectors through one backward pass:
//  * kFunctorch: a functorch vmap level around the backward (what torch.func.vmap over autograd.grad
//    does), whose batching rules cover convolution and batch-norm backward;
//  * kLegacy: the older vmap of Python's autograd.grad(is_grads_batched=True), which runs element-wise
//    and matrix ops batched but loops over the K vectors for convolution and batch-norm backward.
enum class ProbeBatching { kFunctorch, kLegacy };
ProbeBatching parse_probe_batching(const std::string& name);  // "functorch" | "legacy"
std::string to_string(ProbeBatching b);

// H is the Hessian of a scalar `loss` with respect to `params` (the "Hessian layers", in order;
// every other tensor is held fixed). Building the engine runs one backward pass with
// create_graph=true; each product then costs one more backward through that graph.
// Not collective; not thread-safe (autograd graphs are per engine).
class HvpEngine {
 public:
  // `loss`: a 0-dim floating tensor computed from `params` (each requires_grad). Throws
  // hessgap::Error if loss is not a scalar or a parameter does not influence the graph at all.
  HvpEngine(torch::Tensor loss, std::vector<torch::Tensor> params);

  std::size_t num_layers() const { return params_.size(); }
  const std::vector<torch::Tensor>& params() const { return params_; }
  // The first-order gradient g_i = ∂loss/∂W_i (detached), shapes as params.
  std::vector<torch::Tensor> gradient() const;
  double loss() const { return loss_value_; }

  // Joint product: u = H v for v = (v_1..v_L) shaped like params; returns u (detached), so
  // u_i = Σ_j H_ij v_j includes the cross-layer blocks.
  std::vector<torch::Tensor> hvp(const std::vector<torch::Tensor>& v);

  // K joint products in one backward pass: v_i is shaped [K, params[i]...] (probe j in row j) and
  // out_i[j] = (H v[j])_i. The K vectors travel batched through the first-order graph (a vmap over
  // the grad_outputs, see ProbeBatching), so each kernel does up to K times the work: what pays where
  // one small batch leaves a device idle. Equal to K calls of hvp() up to the batched kernels'
  // rounding; K = 1 is hvp() exactly. Counts K products. Throws hessgap::Error when an operation of
  // the graph has no batched form that runs.
  std::vector<torch::Tensor> hvps(const std::vector<torch::Tensor>& v, ProbeBatching how = ProbeBatching::kFunctorch);

  // Block product for one layer: H_ii v_i (only the diagonal block i), shaped like params[i].
  torch::Tensor block_hvp(std::size_t i, const torch::Tensor& v_i);

  // Number of backward passes through the first-order graph so far (for reports and benches).
  long products() const { return products_; }
  // A product made by replaying a captured hvp() (ProbeUnit's CUDA graph): the capture itself counted
  // one, each later replay is counted here.
  void count_replayed_product() { ++products_; }

 private:
  std::vector<torch::Tensor> params_;
  std::vector<torch::Tensor> grads_;  // with graph
  double loss_value_ = 0.0;
  long products_ = 0;
};

// Σ over elements of a ⊙ b: products in the operands' dtype, accumulated in float64 (same shapes).
double dot64(const torch::Tensor& a, const torch::Tensor& b);

// Per-block dot64: out[i] = Σ a[i] ⊙ b[i] for every block pair, with one device-to-host copy in all
// (on a GPU a value read back per layer costs a device sync each, as many as there are layers).
std::vector<double> dots64(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b);

// dots64 of K stacked pairs (blocks shaped [K, ...]): out[j·L + i] = Σ a[i][j] ⊙ b[i][j], probe-major,
// with one device-to-host copy in all.
std::vector<double> batched_dots64(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b);

}  // namespace hessgap::hessian
