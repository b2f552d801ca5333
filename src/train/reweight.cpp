#include "train/reweight.h"

#include <torch/torch.h>

#include <cmath>

#include "util/error.h"

namespace hessgap::train {

torch::Tensor synthetic_transition_matrix(std::int64_t num_classes, double rho) {
  HG_CHECK(num_classes >= 2, "transition matrix: the number of classes must be >= 2 (got " << num_classes << ")");
  HG_CHECK(std::isfinite(rho) && rho >= 0.0 && rho <= 1.0, "--reweight-noise-rate must be in [0, 1] (got " << rho << ")");
  const double off = rho / static_cast<double>(num_classes - 1);
  auto c = torch::full({num_classes, num_classes}, off, torch::kFloat64);
  c.diagonal().fill_(1.0 - rho);
  return c / c.sum(1, /*keepdim=*/true);
}

torch::Tensor reweight_matrix(const torch::Tensor& transition) {
  HG_CHECK(transition.dim() == 2 && transition.size(0) == transition.size(1) && transition.size(0) >= 1,
           "transition matrix must be square [K, K] (got " << transition.sizes() << ")");
  const auto c = transition.to(torch::kCPU, torch::kFloat64);
  HG_CHECK(torch::isfinite(c).all().item<bool>(), "transition matrix has non-finite entries");
  return torch::linalg_pinv(c);  // the ATen op: torch::linalg:: needs <torch/linalg.h> in LibTorch 2.x
}

bool degenerate_reweight_rate(std::int64_t num_classes, double rho) {
  return rho >= static_cast<double>(num_classes - 1) / static_cast<double>(num_classes);
}

torch::Tensor reweighted_cross_entropy_sum(const torch::Tensor& logits, const torch::Tensor& noisy_labels,
                                           const torch::Tensor& reweight) {
  HG_CHECK(logits.dim() == 2, "reweighted loss: logits must be [B, K] (got " << logits.sizes() << ")");
  const std::int64_t k = logits.size(1);
  HG_CHECK(noisy_labels.dim() == 1 && noisy_labels.size(0) == logits.size(0),
           "reweighted loss: labels must be [B] = [" << logits.size(0) << "] (got " << noisy_labels.sizes() << ")");
  HG_CHECK(reweight.dim() == 2 && reweight.size(0) == k && reweight.size(1) == k,
           "reweighted loss: the reweight matrix must be [K, K] = [" << k << ", " << k << "] (got "
                                                                     << reweight.sizes() << ")");
  const auto log_p = torch::log_softmax(logits, 1);
  // Row ỹ_b of R for every sample: [B, K].
  const auto rows = reweight.to(logits.device(), logits.scalar_type()).index_select(0, noisy_labels.to(logits.device()));
  return -(rows * log_p).sum();
}

torch::Tensor reweighted_cross_entropy(const torch::Tensor& logits, const torch::Tensor& noisy_labels,
                                       const torch::Tensor& reweight) {
  HG_CHECK(logits.dim() == 2 && logits.size(0) > 0, "reweighted loss: logits must be [B, K] with B > 0 (got "
                                                       << logits.sizes() << ")");
  return reweighted_cross_entropy_sum(logits, noisy_labels, reweight) / static_cast<double>(logits.size(0));
}

}  // namespace hessgap::train
