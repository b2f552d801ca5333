#include "train/dual_t.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace hessgap::train {

double percentile_higher(std::vector<double> values, double q) {
  HG_CHECK(!values.empty(), "percentile of an empty column");
  HG_CHECK(q >= 0.0 && q <= 100.0, "percentile must be in [0, 100] (got " << q << ")");
  const double qq = q / 100.0;
  const double n = static_cast<double>(values.size());
  // numpy's _compute_virtual_index(n, q, alpha=1, beta=1) = n*q + (alpha + q*(1 - alpha - beta)) - 1.
  const double virtual_index = n * qq + (1.0 + qq * (1.0 - 1.0 - 1.0)) - 1.0;
  auto index = static_cast<std::int64_t>(std::ceil(virtual_index));
  index = std::clamp<std::int64_t>(index, 0, static_cast<std::int64_t>(values.size()) - 1);
  std::nth_element(values.begin(), values.begin() + index, values.end());
  return values[static_cast<std::size_t>(index)];
}

DualT estimate_dual_t(const torch::Tensor& probs, const std::vector<std::int64_t>& noisy_labels) {
  HG_CHECK(probs.dim() == 2 && probs.size(0) > 0 && probs.size(1) > 0,
           "Dual-T: probabilities must be [N, K] with N, K > 0 (got " << probs.sizes() << ")");
  const std::int64_t n = probs.size(0), k = probs.size(1);
  HG_CHECK(static_cast<std::int64_t>(noisy_labels.size()) == n,
           "Dual-T: " << noisy_labels.size() << " labels for " << n << " rows of probabilities");
  auto p = probs.detach().to(torch::kCPU, torch::kFloat64).contiguous().clone();
  double* pd = p.data_ptr<double>();

  DualT out;
  out.t_spade = torch::zeros({k, k}, torch::kFloat64);
  double* ts = out.t_spade.data_ptr<double>();
  const auto predicted = p.argmax(1);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t y = noisy_labels[static_cast<std::size_t>(i)];
    HG_CHECK(y >= 0 && y < k, "Dual-T: label " << y << " of row " << i << " is outside [0, " << k << ")");
    ts[predicted[i].item<std::int64_t>() * k + y] += 1.0;
  }
  const auto row_sums = out.t_spade.sum(1, true);
  out.t_spade = torch::where(row_sums > 0, out.t_spade / row_sums, torch::zeros_like(out.t_spade));

  out.t_club = torch::zeros({k, k}, torch::kFloat64);
  double* tc = out.t_club.data_ptr<double>();
  for (std::int64_t i = 0; i < k; ++i) {
    std::vector<double> column(static_cast<std::size_t>(n));
    for (std::int64_t r = 0; r < n; ++r) column[static_cast<std::size_t>(r)] = pd[r * k + i];
    const double threshold = percentile_higher(column, 97.0);
    std::int64_t anchor = 0;
    double best = 0.0;
    for (std::int64_t r = 0; r < n; ++r) {
      double& v = pd[r * k + i];
      if (v >= threshold) v = 0.0;  // in place: later classes see it
      if (r == 0 || v > best) {
        best = v;
        anchor = r;
      }
    }
    for (std::int64_t j = 0; j < k; ++j) tc[i * k + j] = pd[anchor * k + j];
  }
  out.c = torch::matmul(out.t_club, out.t_spade);
  return out;
}

}  // namespace hessgap::train
