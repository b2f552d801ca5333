#include "hessian/trace_estimators.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <vector>

#include "util/error.h"

namespace hessgap::hessian {

TraceEstimator parse_trace_estimator(const std::string& name) {
  if (name == "hutchinson") return TraceEstimator::kHutchinson;
  if (name == "hutch++") return TraceEstimator::kHutchPlusPlus;
  if (name == "xtrace") return TraceEstimator::kXTrace;
  HG_FAIL("unknown trace estimator '" << name << "' (expected hutchinson, hutch++ or xtrace)");
}

std::string to_string(TraceEstimator e) {
  switch (e) {
    case TraceEstimator::kHutchinson: return "hutchinson";
    case TraceEstimator::kHutchPlusPlus: return "hutch++";
    case TraceEstimator::kXTrace: return "xtrace";
  }
  return "?";
}

int minimum_budget(TraceEstimator e) {
  return e == TraceEstimator::kHutchPlusPlus ? 3 : e == TraceEstimator::kXTrace ? 4 : 1;
}

namespace {

// The operator on float64 columns: a column is reshaped and cast to the input's shape and dtype, A
// applied, and the product returned as a float64 column on the same device.
class ColumnOperator {
 public:
  ColumnOperator(const TensorOperator& A, torch::Tensor like) : A_(A), like_(std::move(like)) {}
  torch::Tensor column(const torch::Tensor& x) const { return x.reshape({-1}).to(torch::kFloat64); }
  torch::Tensor apply(const torch::Tensor& col) {
    ++products_;
    const torch::Tensor out = A_(col.view(like_.sizes()).to(like_.scalar_type()));
    const torch::Tensor c = column(out);
    HG_CHECK(torch::isfinite(c).all().item<bool>(), "trace estimator: the operator returned a non-finite product");
    return c;
  }
  std::int64_t products() const { return products_; }

 private:
  const TensorOperator& A_;
  torch::Tensor like_;
  std::int64_t products_ = 0;
};

double mean_of(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v;
  return s / static_cast<double>(x.size());
}

double std_error_of(const std::vector<double>& x) {
  if (x.size() < 2) return std::numeric_limits<double>::quiet_NaN();
  const double m = mean_of(x);
  double ss = 0;
  for (double v : x) ss += (v - m) * (v - m);
  return std::sqrt(ss / static_cast<double>(x.size() - 1) / static_cast<double>(x.size()));
}

double item(const torch::Tensor& t) { return t.item<double>(); }

// The checks both sketches start with: a budget of at least minimum_budget(e) and a nonempty operator.
void check_budget(TraceEstimator e, std::int64_t dim, int budget) {
  HG_CHECK(budget >= minimum_budget(e), to_string(e) << " needs a budget of at least " << minimum_budget(e)
                                                     << " products per layer (got " << budget << ")");
  HG_CHECK(dim >= 1, to_string(e) << ": empty operator");
}

}  // namespace

SketchedTrace hutchpp_trace(const TensorOperator& A, const ProbeSource& probe, std::int64_t dim, int budget) {
  check_budget(TraceEstimator::kHutchPlusPlus, dim, budget);
  const torch::Tensor first = probe(0);
  ColumnOperator op(A, first);
  const std::int64_t k = std::min<std::int64_t>(budget / 3, dim);
  const std::int64_t g = budget - 2 * k;

  // Range sketch: Q = orth(A S).
  std::vector<torch::Tensor> ys;
  for (std::int64_t j = 0; j < k; ++j) ys.push_back(op.apply(op.column(j == 0 ? first : probe(j))));
  const torch::Tensor Q = std::get<0>(torch::linalg_qr(torch::stack(ys, 1), "reduced"));
  // tr(QᵀAQ), exactly.
  double low_rank = 0;
  for (std::int64_t j = 0; j < k; ++j) {
    const torch::Tensor q = Q.select(1, j);
    low_rank += item(q.dot(op.apply(q)));
  }
  // Hutchinson on the deflated operator (I − QQᵀ)A(I − QQᵀ), probes k .. k+g−1.
  std::vector<double> rest;
  for (std::int64_t j = 0; j < g; ++j) {
    torch::Tensor z = op.column(probe(k + j));
    z = z - Q.mv(Q.t().mv(z));
    rest.push_back(item(z.dot(op.apply(z))));
  }
  SketchedTrace r;
  r.sketch = k;
  r.products = op.products();
  r.estimate = low_rank + (rest.empty() ? 0.0 : mean_of(rest));
  r.std_error = std_error_of(rest);
  return r;
}

SketchedTrace xtrace_trace(const TensorOperator& A, const ProbeSource& probe, std::int64_t dim, int budget) {
  check_budget(TraceEstimator::kXTrace, dim, budget);
  const torch::Tensor first = probe(0);
  ColumnOperator op(A, first);
  const std::int64_t k = std::min<std::int64_t>(budget / 2, dim);

  std::vector<torch::Tensor> omegas, ys;
  for (std::int64_t j = 0; j < k; ++j) {
    omegas.push_back(op.column(j == 0 ? first : probe(j)));
    ys.push_back(op.apply(omegas.back()));
  }
  const torch::Tensor Omega = torch::stack(omegas, 1), Y = torch::stack(ys, 1);  // d × k
  auto [Q, R] = torch::linalg_qr(Y, "reduced");                                   // Q d × k, R k × k
  std::vector<torch::Tensor> zs;
  for (std::int64_t j = 0; j < k; ++j) zs.push_back(op.apply(Q.select(1, j)));
  const torch::Tensor Z = torch::stack(zs, 1);
  // Everything below is k × k: H = QᵀAQ (symmetrised against rounding), W = QᵀΩ, and ωᵢᵀAωᵢ = ωᵢᵀyᵢ.
  torch::Tensor H = Q.t().mm(Z);
  H = (H + H.t()) / 2;
  const torch::Tensor W = Q.t().mm(Omega);
  const torch::Tensor omega_y = (Omega * Y).sum(0).cpu();
  const torch::Tensor Rc = R.cpu(), Hc = H.cpu(), Wc = W.cpu();

  std::vector<double> ests;
  for (std::int64_t i = 0; i < k; ++i) {
    // Q_(i) = Q U with U an orthonormal basis of range(R without column i) (k × (k−1)).
    torch::Tensor Rm = torch::cat({Rc.slice(1, 0, i), Rc.slice(1, i + 1, k)}, 1);
    const torch::Tensor U = k > 1 ? std::get<0>(torch::linalg_qr(Rm, "reduced")) : torch::zeros({k, 0}, Rc.options());
    const torch::Tensor HU = U.t().mm(Hc).mm(U);    // Q_(i)ᵀ A Q_(i)
    const torch::Tensor c = U.t().mv(Wc.select(1, i));  // Q_(i)ᵀ ωᵢ
    const torch::Tensor u_r = U.t().mv(Rc.select(1, i));  // Q_(i)ᵀ A ωᵢ  (Qᵀyᵢ = R eᵢ)
    // ωᵢᵀ(I − P)A(I − P)ωᵢ = ωᵢᵀAωᵢ − 2 cᵀ(Q_(i)ᵀAωᵢ) + cᵀ(Q_(i)ᵀAQ_(i))c, P = Q_(i)Q_(i)ᵀ.
    const double residual = item(omega_y[i]) - 2 * item(c.dot(u_r)) + item(c.dot(HU.mv(c)));
    ests.push_back(item(HU.trace()) + residual);
  }
  SketchedTrace r;
  r.sketch = k;
  r.products = op.products();
  r.estimate = mean_of(ests);
  r.std_error = std_error_of(ests);
  return r;
}

}  // namespace hessgap::hessian
