// Power iteration with deflation, the reference's eigenvalue algorithm (SPEC §7.4, compute_eigenvalue):
// kept beside Lanczos for comparison. It finds eigenvalues in order of magnitude, not algebraically,
// and converges at the rate |λ_{k+1}/λ_k| per product. Not collective by itself (see lanczos.h).
#pragma once

#include <functional>
#include <vector>

#include "hessian/lanczos.h"

namespace hessgap::hessian {

struct PowerOptions {
  int count = 1;        // eigenpairs, one after the other
  int max_iter = 200;   // products per eigenpair at most (the reference's maxIter: image 200, text 100)
  // The reference's rule: stop when |λ − λ_prev| / (|λ_prev| + 1e-6) < tol (0: run max_iter).
  double tol = 1e-8;
  // Start vector of eigenpair k (the reference draws Gaussian starts).
  std::function<BlockVector(int k)> start;
};

struct PowerPair {
  double value = 0.0;      // Rayleigh quotient vᵀHv of the last iterate
  double residual = 0.0;   // ‖Hv − λv‖ of that iterate (from its own product: no extra one)
  BlockVector vector;      // the unit iterate
  int iterations = 0;
  bool converged = false;
};

// The reference's iteration for the operator itself (the reference differentiates −loss and so returns
// −λ_min; that sign slip is not reproduced): v ← Hv, orthogonalised against the pairs found before,
// normalised. Throws hessgap::Error for a zero start or a non-finite product.
std::vector<PowerPair> power_iteration(const Operator& op, const PowerOptions& opts);

}  // namespace hessgap::hessian
