#include "hessian/power_iteration.h"

#include <torch/torch.h>

#include <cmath>

#include "hessian/hvp_engine.h"
#include "util/error.h"

namespace hessgap::hessian {

namespace {

// v minus its components along the (unit) vectors found before.
BlockVector deflate(BlockVector v, const std::vector<PowerPair>& found) {
  for (const auto& p : found) {
    const double c = dot64(p.vector, v);
    for (std::size_t i = 0; i < v.size(); ++i) v[i].add_(p.vector[i], -c);
  }
  return v;
}

BlockVector normalised(const BlockVector& v) {
  const double n = norm64(v);
  HG_CHECK(n > 0 && std::isfinite(n), "power iteration: the iterate vanished or is not finite");
  return axpby(1.0 / n, v, 0.0, v);
}

}  // namespace

std::vector<PowerPair> power_iteration(const Operator& op, const PowerOptions& opts) {
  HG_CHECK(opts.count >= 1 && opts.max_iter >= 1, "power iteration: count and --max-iter must be >= 1");
  std::vector<PowerPair> found;
  for (int k = 0; k < opts.count; ++k) {
    PowerPair p;
    p.vector = normalised(deflate(opts.start(k), found));
    double previous = 0;
    for (int it = 0; it < opts.max_iter; ++it) {
      const BlockVector w = op(p.vector);
      p.value = dot64(p.vector, w);
      p.residual = norm64(axpby(1.0, w, -p.value, p.vector));
      p.iterations = it + 1;
      const bool settled = it > 0 && std::abs(p.value - previous) / (std::abs(previous) + 1e-6) < opts.tol;
      previous = p.value;
      if (settled) {
        p.converged = true;
        break;
      }
      if (it + 1 == opts.max_iter) break;
      p.vector = normalised(deflate(w, found));
    }
    found.push_back(std::move(p));
  }
  return found;
}

}  // namespace hessgap::hessian
