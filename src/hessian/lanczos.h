// The Lanczos process with full reorthogonalisation on a symmetric operator over block vectors (one
// tensor per Hessian layer), and the Ritz pairs of its tridiagonal matrix: what `hessgap spectrum` uses
// for the top eigenvalues and for stochastic Lanczos quadrature (SLQ). Not collective by itself: the
// operator may be (a distributed HVP), and then every rank must run the same steps, which it does when
// the operator returns the same vector on every rank.
#pragma once

#include <torch/types.h>

#include <functional>
#include <vector>

namespace hessgap::hessian {

using BlockVector = std::vector<torch::Tensor>;
using Operator = std::function<BlockVector(const BlockVector&)>;

struct LanczosOptions {
  int steps = 20;           // m: at most this many operator applications
  // Stop early when every wanted Ritz value has converged: the residual bound |β_j s_ji| ≤ tol·max(|θ_i|, 1)
  // for the `watch` largest (or, with smallest, smallest) Ritz values. 0: always run `steps`.
  double tol = 0.0;
  int watch = 0;
  bool smallest = false;
  bool keep_basis = true;   // needed for Ritz vectors; SLQ does not need it (the basis still reorthogonalises)
  // Called after each step with (step, newest Ritz values, ascending); throw to stop (a NaN, say).
  std::function<void(int, const std::vector<double>&)> on_step;
  // Called after each step with T so far (α [j], β [j−1]) and the norm of the next residual β_j (the
  // Ritz residual bounds are |β_j s_ji|); returning true stops the run as converged (the PSD quadrature's
  // own convergence test, say).
  std::function<bool(const std::vector<double>&, const std::vector<double>&, double)> stop;
};

struct LanczosResult {
  std::vector<double> alpha;   // [j] diagonal of T
  std::vector<double> beta;    // [j-1] off-diagonal of T
  std::vector<BlockVector> basis;  // q_0 .. q_{j-1} (keep_basis)
  int steps = 0;               // j: steps run
  bool invariant = false;      // stopped because the Krylov space is exhausted (β ≈ 0): the Ritz values are exact
  bool converged = false;      // stopped by tol
};

// Runs Lanczos from `start` (any nonzero block vector; normalised here). Dot products accumulate in
// float64 (dots64); T is kept in float64. Throws hessgap::Error for a zero start or m < 1.
LanczosResult lanczos(const Operator& op, const BlockVector& start, const LanczosOptions& opts);

// Eigenvalues (ascending) and eigenvectors (columns, float64 [j, j]) of the tridiagonal T.
struct RitzPairs {
  std::vector<double> values;
  torch::Tensor vectors;
};
RitzPairs ritz_pairs(const std::vector<double>& alpha, const std::vector<double>& beta);

// Σ_j s_j q_j: the Ritz vector of coefficients s ([j] float64) in the basis (shapes and dtype of q).
BlockVector combine(const std::vector<BlockVector>& basis, const torch::Tensor& s);

// ⟨a, b⟩ over all blocks and ‖v‖, with float64 accumulation, and a·v + b·w.
double dot64(const BlockVector& a, const BlockVector& b);
double norm64(const BlockVector& v);
BlockVector axpby(double a, const BlockVector& v, double b, const BlockVector& w);

}  // namespace hessgap::hessian
