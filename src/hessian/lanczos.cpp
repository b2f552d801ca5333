#include "hessian/lanczos.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "hessian/hvp_engine.h"
#include "util/error.h"

namespace hessgap::hessian {

double dot64(const BlockVector& a, const BlockVector& b) {
  double s = 0;
  for (double d : dots64(a, b)) s += d;
  return s;
}

double norm64(const BlockVector& v) { return std::sqrt(dot64(v, v)); }

BlockVector axpby(double a, const BlockVector& v, double b, const BlockVector& w) {
  BlockVector out;
  for (std::size_t i = 0; i < v.size(); ++i) out.push_back(v[i] * a + w[i] * b);
  return out;
}

RitzPairs ritz_pairs(const std::vector<double>& alpha, const std::vector<double>& beta) {
  const auto m = static_cast<std::int64_t>(alpha.size());
  torch::Tensor t = torch::zeros({m, m}, torch::kFloat64);
  auto a = t.accessor<double, 2>();
  for (std::int64_t i = 0; i < m; ++i) {
    a[i][i] = alpha[static_cast<std::size_t>(i)];
    if (i + 1 < m) a[i][i + 1] = a[i + 1][i] = beta[static_cast<std::size_t>(i)];
  }
  auto [values, vectors] = torch::linalg_eigh(t);
  RitzPairs r;
  r.values.assign(values.data_ptr<double>(), values.data_ptr<double>() + m);
  r.vectors = vectors.contiguous();
  return r;
}

BlockVector combine(const std::vector<BlockVector>& basis, const torch::Tensor& s) {
  HG_CHECK(!basis.empty() && s.numel() == static_cast<std::int64_t>(basis.size()),
           "Ritz vector: " << s.numel() << " coefficients for a basis of " << basis.size());
  const auto c = s.to(torch::kFloat64).contiguous();
  BlockVector out;
  for (const auto& q : basis[0]) out.push_back(torch::zeros_like(q));
  for (std::size_t j = 0; j < basis.size(); ++j) {
    const double w = c[static_cast<std::int64_t>(j)].item<double>();
    for (std::size_t i = 0; i < out.size(); ++i) out[i].add_(basis[j][i], w);
  }
  return out;
}

LanczosResult lanczos(const Operator& op, const BlockVector& start, const LanczosOptions& opts) {
  HG_CHECK(opts.steps >= 1, "--lanczos-steps must be >= 1 (got " << opts.steps << ")");
  const double start_norm = norm64(start);
  HG_CHECK(start_norm > 0 && std::isfinite(start_norm), "Lanczos: the start vector is zero or not finite");
  LanczosResult r;
  // Every basis vector is kept for the reorthogonalisation (full, twice: Gram-Schmidt's second pass
  // removes what rounding left of the first), which is what keeps the Ritz values free of ghosts.
  std::vector<BlockVector> q = {axpby(1.0 / start_norm, start, 0.0, start)};
  for (int j = 0; j < opts.steps; ++j) {
    BlockVector w = op(q[static_cast<std::size_t>(j)]);
    const double a = dot64(q[static_cast<std::size_t>(j)], w);
    r.alpha.push_back(a);
    for (int pass = 0; pass < 2; ++pass) {
      for (const auto& qi : q) {
        const double c = dot64(qi, w);
        for (std::size_t i = 0; i < w.size(); ++i) w[i].add_(qi[i], -c);
      }
    }
    const double b = norm64(w);
    r.steps = j + 1;
    const RitzPairs rp = ritz_pairs(r.alpha, r.beta);
    if (opts.on_step) opts.on_step(r.steps, rp.values);
    // Breakdown: the Krylov space is invariant, T's eigenvalues are eigenvalues of the operator.
    double scale = 0;
    for (double v : rp.values) scale = std::max(scale, std::abs(v));
    if (b <= 1e-12 * std::max(scale, 1e-300) || !std::isfinite(b)) {
      HG_CHECK(std::isfinite(b), "Lanczos: the operator returned a non-finite vector at step " << r.steps);
      r.invariant = true;
      break;
    }
    if (opts.tol > 0 && opts.watch > 0 && r.steps >= opts.watch) {
      bool all = true;
      const auto s = rp.vectors.accessor<double, 2>();
      for (int k = 0; k < opts.watch && all; ++k) {
        const int i = opts.smallest ? k : r.steps - 1 - k;
        all = std::abs(b * s[r.steps - 1][i]) <= opts.tol * std::max(std::abs(rp.values[static_cast<std::size_t>(i)]), 1.0);
      }
      if (all) {
        r.converged = true;
        break;
      }
    }
    if (opts.stop && opts.stop(r.alpha, r.beta, b)) {
      r.converged = true;
      break;
    }
    if (j + 1 == opts.steps) break;
    r.beta.push_back(b);
    q.push_back(axpby(1.0 / b, w, 0.0, w));
  }
  if (opts.keep_basis) {
    q.resize(static_cast<std::size_t>(r.steps));
    r.basis = std::move(q);
  }
  return r;
}

}  // namespace hessgap::hessian
