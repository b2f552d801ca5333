// `hessgap measures`: the Hessian distance measure. Per batch and Hessian layer i, the quadratic
// form of v_i = W_i − W_i⁽ˢ⁾ (joint: ⟨v_i,(Hv)_i⟩ as the reference; block: v_iᵀH_ii v_i), its
// per-layer maximum over batches, and the generalization-bound scalars of SPEC §7.3:
//   sum_sqrt = Σ_i √max(H_i, 0),  bound = sum_sqrt / √n,  bound_c = √C · sum_sqrt / √n
// with n = train_size and C = the largest batch-mean loss seen.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hessian/psd_forms.h"
#include "hessian/quadratic_forms.h"
#include "measures/measure_context.h"

namespace hessgap::measures {

// Where the head's v is measured from. The reference takes the image head around zero (its
// "pred_head" is freshly initialised, so W⁽ˢ⁾ is meaningless for it) and the text head around its
// initialisation.
enum class HeadReference { kZero, kInit };
HeadReference parse_head_reference(const std::string& name);  // "zero" | "init"
std::string to_string(HeadReference h);
// The references' choice for a model family (SPEC §7.3): kInit for text models (BERT, RoBERTa: the
// text reference's head is named "classifier", so it is measured from W^(s)), kZero for every image
// model (the image reference's "pred_head").
HeadReference default_head_reference(const models::Classifier& model);

struct DistanceOptions {
  hessian::MeasureMode mode = hessian::MeasureMode::kJoint;
  HeadReference head_reference = HeadReference::kZero;
  std::int64_t train_size = 0;  // n of the bound; must be > 0
  hessian::PsdOptions psd;      // mode kPsd: Lanczos steps and tolerance per layer and batch
  // --shard-batch: every rank holds a shard of every batch and adds its shard's share of the forms
  // (they are linear in the Hessian). Joint and block modes only: psd's Lanczos is not linear.
  bool shard_batch = false;
  void validate() const;
};

struct DistanceResult {
  std::vector<std::string> layers;
  std::vector<std::int64_t> batch_sizes;  // [B]
  std::vector<double> batch_loss;         // [B]
  std::vector<double> quad;               // [B×L] per-batch quadratic forms
  std::vector<double> layer_max;          // [L] max over batches (initialised with batch 0, so it may be < 0)
  std::vector<double> v_norm;             // [L] ‖v_i‖_F
  double max_loss = 0.0;                  // C
  double sum_sqrt = 0.0;                  // Σ_i √max(layer_max_i, 0)
  double bound = 0.0;                     // sum_sqrt / √n
  double bound_c = 0.0;                   // √C · sum_sqrt / √n
  std::int64_t train_size = 0;
  std::int64_t negative_layers = 0;       // layers whose max is < 0 (clipped to 0 in the bound)
  double seconds = 0.0;
  // Mode kPsd: per batch and layer, the Lanczos steps (block HVPs), the last relative change of the
  // quadrature and whether it converged ([B×L]); and the same summary built from the block forms
  // v_iᵀH_ii v_i (the clipped measure) that the first Lanczos step gives for free.
  std::vector<std::int64_t> psd_steps, psd_converged;
  std::vector<double> psd_change;
  std::shared_ptr<DistanceResult> block;
};

// `init` maps Hessian-layer names to W⁽ˢ⁾ (the initialisation checkpoint's tensors); the head
// entry may be absent when head_reference is kZero. Shapes must match the model's: a mismatch or a
// missing layer is a hessgap::Error naming the tensor. Collective over ctx.world (batches sharded).
DistanceResult compute_distance(const MeasureContext& ctx, const DistanceOptions& opts,
                                const std::map<std::string, torch::Tensor>& init);

}  // namespace hessgap::measures
