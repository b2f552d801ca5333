// Test oracle: the explicit Hessian of a scalar loss with respect to a list of parameters, in
// float64, built row by row with autograd (only for models with a few hundred weights).
#pragma once

#include <torch/torch.h>

#include <vector>

namespace hessgap::testing {

// H [N, N] with N = Σ numel(params), blocks in parameter order (row-major within a tensor).
inline torch::Tensor explicit_hessian(const torch::Tensor& loss, const std::vector<torch::Tensor>& params) {
  auto grads = torch::autograd::grad({loss}, params, {}, /*retain_graph=*/true, /*create_graph=*/true);
  std::vector<torch::Tensor> flat;
  for (auto& g : grads) flat.push_back(g.reshape({-1}));
  auto g = torch::cat(flat);
  const int64_t n = g.numel();
  auto H = torch::zeros({n, n}, torch::kFloat64);
  for (int64_t j = 0; j < n; ++j) {
    auto rows = torch::autograd::grad({g[j]}, params, {}, /*retain_graph=*/true, /*create_graph=*/false,
                                      /*allow_unused=*/true);
    std::vector<torch::Tensor> parts;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      parts.push_back(rows[i].defined() ? rows[i].reshape({-1}).to(torch::kFloat64)
                                        : torch::zeros({params[i].numel()}, torch::kFloat64));
    }
    H[j] = torch::cat(parts);
  }
  return H;
}

// Offsets of each parameter block in the flattened vector.
inline std::vector<int64_t> block_offsets(const std::vector<torch::Tensor>& params) {
  std::vector<int64_t> off{0};
  for (auto& p : params) off.push_back(off.back() + p.numel());
  return off;
}

inline torch::Tensor flatten(const std::vector<torch::Tensor>& xs) {
  std::vector<torch::Tensor> parts;
  for (auto& x : xs) parts.push_back(x.reshape({-1}).to(torch::kFloat64));
  return torch::cat(parts);
}

}  // namespace hessgap::testing
