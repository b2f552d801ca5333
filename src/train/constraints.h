// Distance-based regularisation around the pretrained weights (SPEC §4): projections applied after every
// optimizer step, and the penalty variant. Each eligible tensor is constrained on its own (no joint norm
// over a group), with plain substring matching on full parameter names, as the reference does.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <map>
#include <string>
#include <vector>

namespace hessgap::train {

enum class Norm {
  kFrobenius,  // "frob": exact projection onto the ball ||W − W0||_F <= r
  kMars,       // "inf-op": each output row j rescaled so that Σ_k |t[j,k]| <= r (MARS, Gouk et al.)
};
Norm parse_norm(const std::string& name);  // "frob" | "inf-op"; hessgap::Error otherwise
std::string to_string(Norm norm);

// One constraint object of the reference.
struct ConstraintGroup {
  std::string name;            // for logs and output, e.g. "layer3", "head"
  std::string including_key;   // "" = every name; else the name must contain it
  std::string excluding_key;   // "" = none; names containing it are skipped
  double radius = 0.0;         // r >= 0 (projection), or the coefficient λ (penalty)
  bool around_reference = true;  // false: around 0 (heads: the reference passes no state dict)
};

// Whether a parameter takes part in `group`'s projection: its name has no "bias", passes the include /
// exclude test, and it is 2-D or 4-D (dims == 0: the shape test is skipped, as the penalty does).
bool eligible(const std::string& name, std::int64_t dims, const ConstraintGroup& group);

// Reference tensors by full name (the pretrained state captured before training, including the run's
// head init, and BatchNorm running_var buffers). Aliases are fine: they are read, never written.
using Reference = std::map<std::string, torch::Tensor>;

// Snapshot of `module`'s parameters and buffers (detached clones) to serve as the Reference.
Reference capture_reference(const torch::nn::Module& module);

struct ProjectionStats {
  std::int64_t tensors = 0;     // eligible weight tensors visited
  std::int64_t projected = 0;   // of those, changed (outside the ball / a row over the radius)
  std::int64_t bn_modules = 0;  // BatchNorm2d modules visited
};

// Applies the groups in order to `module` in place, under NoGradGuard (SPEC §4.1):
//  weights: t = W − W0 (W0 = 0 when !around_reference); frob: t ← t / max(1, ||t||_F / r);
//           inf-op: per output row j (dim 0; conv rows sum over in, kh, kw) t_j ← t_j / max(1, ||t_j||_1 / r);
//           W ← W0 + t.
//  BatchNorm2d modules whose module name passes the include/exclude test (both norms): with
//           d = γ / sqrt(running_var + 1e-6) and d0 from the reference's γ0 and running_var0 (the
//           CURRENT running_var for d, the reference's for d0, as the reference does), t = clamp(d − d0,
//           −r, r) elementwise and γ ← (d0 + t)·sqrt(running_var + 1e-6). Bias and running mean untouched.
//           Around 0 (no reference): d0 = 0.
// Collectiveness: none (every rank holds identical weights after an all-reduced step and projects alike).
// Throws hessgap::Error when a needed reference tensor is missing or mis-shaped, or a radius is negative.
ProjectionStats project(torch::nn::Module& module, Norm norm, const std::vector<ConstraintGroup>& groups,
                        const Reference& reference);

// The penalty variant (§4.4): Σ_groups λ_g · Σ_{params p eligible by name (no shape test)} D(p − p0), a
// differentiable [] scalar (float64 accumulation cast to the parameters' dtype). D: frob = Σ (·)², the
// squared Frobenius norm; inf-op = max over rows of Σ|row| for 2-D/4-D tensors, max |·| for 1-D.
// Throws hessgap::Error when a reference tensor is missing.
torch::Tensor penalty(const torch::nn::Module& module, Norm norm, const std::vector<ConstraintGroup>& groups,
                      const Reference& reference);

// The reference's groups (§4.2, §4.3). `head_key` is the head's name prefix (Classifier::head_prefix(),
// e.g. "fc." or "classifier.").
//  ResNet: layer1 r = λe, layer2 λe, layer3 λe·s, layer4 λe·s² (excluding the head, around the
//          reference), then the head r = λp around 0.
//  ViT:    "encoder" r = λe around the reference, then the head r = λp around 0.
std::vector<ConstraintGroup> resnet_groups(double reg_extractor, double reg_predictor, double scale_factor,
                                           const std::string& head_key);
std::vector<ConstraintGroup> vit_groups(double reg_extractor, double reg_predictor, const std::string& head_key);
//  Text:   "attention" minus "LayerNorm" r = reg_attention; "encoder" minus "attention" r = reg_linear
//          (both around the reference); "classifier" r = reg_predictor around 0.
std::vector<ConstraintGroup> text_groups(double reg_attention, double reg_linear, double reg_predictor);
//  Text penalty (§4.4): "encoder" minus "LayerNorm" λ = reg_penalty_encoder around the reference, then
//          "classifier" λ = reg_penalty_predictor around 0.
std::vector<ConstraintGroup> text_penalty_groups(double reg_penalty_encoder, double reg_penalty_predictor);

}  // namespace hessgap::train
