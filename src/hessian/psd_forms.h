// The PSD-part distance measure: per layer i, v_iᵀ H_ii⁺ v_i with H_ii⁺ the PSD part of the layer's
// Hessian block (SPEC §10.16: what the paper's bound asks for, where the reference clips v_iᵀH_ii v_i at 0),
// by Lanczos quadrature started from v_i: after m steps with tridiagonal T_m = S diag(θ) Sᵀ,
//   vᵀ f(H) v ≈ ‖v‖² e₁ᵀ f(T_m) e₁ = ‖v‖² Σ_j (e₁ᵀs_j)² f(θ_j),  f(λ) = max(λ, 0),
// exact once the Krylov space of v is exhausted. The first step's α₀ = v̂ᵀHv̂ also gives the block
// quadratic form v_iᵀH_ii v_i = ‖v‖² α₀ for free, so the clipped measure comes beside the PSD one.
// Not collective.
#pragma once

#include <torch/types.h>

#include <vector>

namespace hessgap::hessian {

class HvpEngine;

struct PsdOptions {
  int steps = 30;     // m: at most this many block HVPs per layer (capped at the layer's size)
  // Stop a layer when the quadrature changes by at most tol relative to its value between two
  // consecutive steps and the smallest Ritz value has converged (|β_j s_j,0| ≤ tol·max|θ|: the negative
  // end of the spectrum that v sees is resolved); 0: always run m steps or to an exhausted Krylov space.
  double tol = 1e-4;
  void validate() const;  // throws hessgap::Error naming --psd-steps / --psd-tol
};

struct PsdForm {
  double psd = 0.0;    // v_iᵀ H_ii⁺ v_i (≥ 0)
  double block = 0.0;  // v_iᵀ H_ii v_i
  int steps = 0;       // block HVPs spent (0 for v_i = 0)
  double change = 0.0; // |last change| / max(|value|, tiny) between the last two steps (0 when exact)
  bool converged = false;  // tol met or the Krylov space exhausted (then the value is exact)
};

// ‖v‖² e₁ᵀ max(T, 0) e₁ for T given by α [j] and β [j−1].
double psd_quadrature(const std::vector<double>& alpha, const std::vector<double>& beta, double norm2);

// One entry per layer for v shaped like engine.params().
std::vector<PsdForm> psd_quadratic_forms(HvpEngine& engine, const std::vector<torch::Tensor>& v,
                                         const PsdOptions& opts);

}  // namespace hessgap::hessian
