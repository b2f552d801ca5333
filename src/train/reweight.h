// Consistent loss reweighting (SPEC §5): the synthetic noise transition matrix, its pseudo-inverse, and
// Patrini et al.'s backward-corrected cross-entropy that the reference trains with under label noise.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace hessgap::train {

// The reference's genereate_confusion_matrix (§5.1): C[i][i] = 1 − rho, C[i][j≠i] = rho/(K−1), rows
// normalised (a no-op). C is read as C[y_true][y_noisy]. float64 [K, K] on the CPU.
// Throws hessgap::Error unless K >= 2 and rho is in [0, 1].
torch::Tensor synthetic_transition_matrix(std::int64_t num_classes, double rho);

// R = pinv(C) (torch.linalg.pinv) in float64, [K, K]. For the synthetic C with a = 1 − rho·K/(K−1) ≠ 0
// this is I/a − (b/a)·J with b = rho/(K−1). Throws hessgap::Error unless C is square and finite.
torch::Tensor reweight_matrix(const torch::Tensor& transition);

// True when rho makes the synthetic C singular or inverts the correction (rho >= (K−1)/K): the
// reference's default 0.8 does both for K = 5 and K = 2 (SPEC §10.1). Callers warn or refuse.
bool degenerate_reweight_rate(std::int64_t num_classes, double rho);

// L = (1/B) Σ_b −Σ_k R[ỹ_b][k] · log_softmax(z_b)_k  (§5.2), a differentiable [] scalar in the logits'
// dtype (R is cast to it). logits [B, K] floating, noisy_labels [B] int64 in [0, K), R [K, K].
// With R = I it is the plain cross-entropy. May be negative: R has negative entries, nothing is clipped.
// Throws hessgap::Error on shape mismatches or B = 0.
torch::Tensor reweighted_cross_entropy(const torch::Tensor& logits, const torch::Tensor& noisy_labels,
                                       const torch::Tensor& reweight);

// The same loss as a SUM over the batch, B·L, which allows B = 0 (a zero [] scalar): what a rank
// contributes for its shard of a global batch, divided once by the global batch size.
torch::Tensor reweighted_cross_entropy_sum(const torch::Tensor& logits, const torch::Tensor& noisy_labels,
                                           const torch::Tensor& reweight);

}  // namespace hessgap::train
