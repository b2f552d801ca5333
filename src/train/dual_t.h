// The Dual-T estimator of the noise transition matrix (SPEC §5.3, after Yao et al. 2020), as the
// reference's utils/dual_t.py computes it, including its in-place quirk.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace hessgap::train {

// numpy.percentile(column, q, interpolation="higher") for q in [0, 100]: the element at index
// ceil(n·q' + (1 − q') − 1) of the sorted values, q' = q / 100 (numpy's virtual index for alpha = beta = 1,
// evaluated in the same floating-point order), clipped to [0, n − 1]. Throws hessgap::Error for n = 0.
double percentile_higher(std::vector<double> values, double q);

struct DualT {
  torch::Tensor t_spade;  // [K, K] float64: counts [argmax p][noisy label], rows normalised (empty rows 0)
  torch::Tensor t_club;   // [K, K] float64: anchor rows (see estimate_dual_t)
  torch::Tensor c;        // t_club · t_spade: the estimated C[y_true][y_noisy]
};

// probs [N, K] (predicted probabilities, e.g. exp of log-softmax), noisy_labels [N] in [0, K).
// T♣: for each class i in order, the column probs[:, i] has every entry >= its 97th percentile ("higher")
// set to 0 IN PLACE on the shared matrix, the anchor n* = argmax of that column (first on ties), and row i
// = probs[n*, :] as it stands then. So rows for later classes see the earlier columns' zeroing and need not
// sum to 1 — the reference's (and upstream's) behaviour, reproduced on purpose (§10). `probs` is not
// modified (a float64 copy is). Throws hessgap::Error on shape mismatches, N = 0 or labels out of range.
DualT estimate_dual_t(const torch::Tensor& probs, const std::vector<std::int64_t>& noisy_labels);

}  // namespace hessgap::train
