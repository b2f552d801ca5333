#include "hessian/psd_forms.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "hessian/hvp_engine.h"
#include "hessian/lanczos.h"
#include "util/error.h"

namespace hessgap::hessian {

void PsdOptions::validate() const {
  HG_CHECK(steps >= 1, "--psd-steps must be >= 1 (got " << steps << ")");
  HG_CHECK(tol >= 0 && std::isfinite(tol), "--psd-tol must be >= 0 (got " << tol << ")");
}

namespace {

// ‖v‖² Σ_j (e₁ᵀs_j)² max(θ_j, 0) from T's eigenpairs.
double psd_quadrature(const RitzPairs& rp, double norm2) {
  const auto s = rp.vectors.accessor<double, 2>();
  double sum = 0;
  for (std::size_t j = 0; j < rp.values.size(); ++j) {
    const double w = s[0][static_cast<std::int64_t>(j)];
    sum += w * w * std::max(rp.values[j], 0.0);
  }
  return norm2 * sum;
}

}  // namespace

double psd_quadrature(const std::vector<double>& alpha, const std::vector<double>& beta, double norm2) {
  return psd_quadrature(ritz_pairs(alpha, beta), norm2);
}

std::vector<PsdForm> psd_quadratic_forms(HvpEngine& engine, const std::vector<torch::Tensor>& v,
                                         const PsdOptions& opts) {
  opts.validate();
  HG_CHECK(v.size() == engine.num_layers(), "PSD measure: " << v.size() << " directions for " << engine.num_layers() << " layers");
  std::vector<PsdForm> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double norm2 = dot64(v[i], v[i]);
    PsdForm& f = out[i];
    if (norm2 == 0) {  // W_i = W_i⁽ˢ⁾: both forms are 0, no product needed
      f.converged = true;
      continue;
    }
    LanczosOptions lo;
    lo.steps = static_cast<int>(std::min<std::int64_t>(opts.steps, v[i].numel()));
    lo.keep_basis = false;
    double previous = 0;
    lo.stop = [&](const std::vector<double>& alpha, const std::vector<double>& beta, double next_beta) {
      const RitzPairs rp = ritz_pairs(alpha, beta);  // one eigendecomposition for both tests
      const double value = psd_quadrature(rp, norm2);
      f.change = alpha.size() < 2 ? INFINITY
                                  : std::abs(value - previous) / std::max(std::abs(value), 1e-300);
      previous = value;
      if (opts.tol <= 0 || alpha.size() < 2 || f.change > opts.tol) return false;
      // While every Ritz value is positive the quadrature is the block form α₀‖v‖² at every step, so an
      // unchanged value proves nothing until the negative end is resolved: the smallest Ritz value must
      // have converged too (its residual bound |β_j s_j,0| within tol of the spectrum's scale).
      const double scale = std::max(std::abs(rp.values.front()), std::abs(rp.values.back()));
      const double last_component = rp.vectors[static_cast<std::int64_t>(alpha.size()) - 1][0].item<double>();
      return std::abs(next_beta * last_component) <= opts.tol * std::max(scale, 1e-300);
    };
    const auto run = lanczos([&](const BlockVector& x) { return BlockVector{engine.block_hvp(i, x[0])}; },
                             {v[i]}, lo);
    f.steps = run.steps;
    f.block = norm2 * run.alpha[0];
    f.psd = psd_quadrature(run.alpha, run.beta, norm2);
    f.converged = run.converged || run.invariant;
    if (run.invariant) f.change = 0;  // the Krylov space is exhausted: the quadrature is exact
  }
  return out;
}

}  // namespace hessgap::hessian
