// The Hessian distance measure's per-layer quadratic forms for a direction v = W − W⁽ˢ⁾.
#pragma once

#include <string>
#include <vector>

#include <torch/types.h>

namespace hessgap::hessian {

class HvpEngine;

enum class MeasureMode {
  // The reference: one HVP with the concatenated v, q_i = ⟨v_i, (Hv)_i⟩ = Σ_j v_iᵀ H_ij v_j
  // (cross-layer terms included; Σ_i q_i = vᵀHv).
  kJoint,
  // The paper's quantity: q_i = v_iᵀ H_ii v_i, one block HVP per layer, no cross terms.
  kBlock,
  // The bound's actual quantity: q_i = v_iᵀ H_ii⁺ v_i with the PSD part of the block, by Lanczos
  // quadrature (psd_forms.h; not computed by quadratic_forms()).
  kPsd,
};

MeasureMode parse_measure_mode(const std::string& name);  // "joint" | "block" | "psd"
std::string to_string(MeasureMode m);

// q (one entry per layer, float64) for v shaped like engine.params(). Not collective.
// Joint costs one HVP, block costs L. kPsd is psd_quadratic_forms' (a hessgap::Error here).
std::vector<double> quadratic_forms(HvpEngine& engine, const std::vector<torch::Tensor>& v, MeasureMode mode);

}  // namespace hessgap::hessian
