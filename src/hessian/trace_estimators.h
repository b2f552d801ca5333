// Variance-reduced trace estimators for one symmetric operator A (a layer's Hessian block) at a fixed
// budget of operator products: Hutch++ (Meyer, Musco, Musco, Woodruff 2021) and XTrace (Epperly, Tropp,
// Webber 2024). Both spend part of the budget on a sketch Q of A's range, take tr(QᵀAQ) exactly and
// estimate only the rest stochastically, so a quickly decaying spectrum (a Hessian block of a few
// samples) leaves far less variance than Hutchinson's estimator with the same products.
//
// Vectors are tensors shaped like the operator's input (a layer's weight, in the model's dtype and
// device); the sketch and every inner product are kept in float64 on that device. Memory: a few d × k
// float64 matrices, d the block's size and k ≈ budget/2, which is why these work per layer.
// Not collective.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <string>

namespace hessgap::hessian {

enum class TraceEstimator { kHutchinson, kHutchPlusPlus, kXTrace };
// "hutchinson" | "hutch++" | "xtrace"; throws hessgap::Error naming the value otherwise.
TraceEstimator parse_trace_estimator(const std::string& name);
std::string to_string(TraceEstimator e);
// The smallest budget an estimator can use (Hutch++ 3: one sketch, one range and one residual product;
// XTrace 4: two test vectors).
int minimum_budget(TraceEstimator e);

// x ↦ A x for a symmetric A; x and the result shaped like the operator's input.
using TensorOperator = std::function<torch::Tensor(const torch::Tensor&)>;
// Random test vector number j (entries with mean 0 and variance 1, independent across j), shaped like
// the operator's input. Keyed probes make the estimate a pure function of the key.
using ProbeSource = std::function<torch::Tensor(std::int64_t j)>;

struct SketchedTrace {
  double estimate = 0.0;
  // Hutch++: the standard error of the stochastic part (sample std of its residual probes / √count,
  // NaN with one); XTrace: the sample std of its k exchangeable estimates / √k (the paper's estimate).
  double std_error = 0.0;
  std::int64_t products = 0;  // applications of A (≤ budget)
  std::int64_t sketch = 0;    // k: columns of the range sketch
};

// Hutch++ with `budget` products: k = ⌊budget/3⌋ sketch vectors S (probes 0..k-1), Q = orth(AS),
// tr(QᵀAQ) exactly (k products) plus Hutchinson on (I − QQᵀ)A(I − QQᵀ) with the remaining
// budget − 2k probes (k..). k is capped at dim. Unbiased. Throws hessgap::Error for budget < 3.
SketchedTrace hutchpp_trace(const TensorOperator& A, const ProbeSource& probe, std::int64_t dim, int budget);

// XTrace with `budget` products: k = ⌊budget/2⌋ test vectors ω_i (probes 0..k-1), Y = AΩ = QR, Z = AQ
// (k products each). For each i, Q_(i) spans AΩ without column i (Q_(i) = Q·orth(R without column i)),
// and est_i = tr(Q_(i)ᵀAQ_(i)) + ω_iᵀ(I − Q_(i)Q_(i)ᵀ)A(I − Q_(i)Q_(i)ᵀ)ω_i, all from Y, Q, Z and R in
// k×k algebra; the estimate is mean_i est_i. Unbiased; exact when rank(A) < k. k is capped at dim.
// Throws hessgap::Error for budget < 4.
SketchedTrace xtrace_trace(const TensorOperator& A, const ProbeSource& probe, std::int64_t dim, int budget);

}  // namespace hessgap::hessian
