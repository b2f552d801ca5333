#include "train/constraints.h"

#include <torch/torch.h>

#include <cmath>

#include "util/error.h"

namespace hessgap::train {
namespace {

bool contains(const std::string& s, const std::string& key) { return s.find(key) != std::string::npos; }

bool passes_keys(const std::string& name, const ConstraintGroup& g) {
  if (!g.excluding_key.empty() && contains(name, g.excluding_key)) return false;
  if (!g.including_key.empty() && !contains(name, g.including_key)) return false;
  return true;
}

const torch::Tensor& reference_of(const Reference& ref, const std::string& name, const torch::Tensor& like,
                                  const ConstraintGroup& g) {
  const auto it = ref.find(name);
  HG_CHECK(it != ref.end(), "constraint group '" << g.name << "': no reference (pretrained) value for '" << name << "'");
  HG_CHECK(it->second.sizes() == like.sizes(), "constraint group '" << g.name << "': reference '" << name << "' has shape "
                                                                    << it->second.sizes() << ", the model "
                                                                    << like.sizes());
  return it->second;
}

void check_radius(const ConstraintGroup& g) {
  HG_CHECK(std::isfinite(g.radius) && g.radius >= 0.0,
           "constraint group '" << g.name << "': radius must be >= 0 (got " << g.radius << ")");
}

constexpr double kBnEps = 1e-6;  // the reference's, not BatchNorm's own 1e-5

}  // namespace

Norm parse_norm(const std::string& name) {
  if (name == "frob") return Norm::kFrobenius;
  if (name == "inf-op") return Norm::kMars;
  HG_FAIL("unknown constraint norm '" << name << "' (expected frob or inf-op)");
}

std::string to_string(Norm norm) { return norm == Norm::kFrobenius ? "frob" : "inf-op"; }

bool eligible(const std::string& name, std::int64_t dims, const ConstraintGroup& group) {
  if (contains(name, "bias")) return false;
  if (!passes_keys(name, group)) return false;
  return dims == 0 || dims == 2 || dims == 4;
}

Reference capture_reference(const torch::nn::Module& module) {
  Reference ref;
  for (const auto& p : module.named_parameters(true)) ref[p.key()] = p.value().detach().clone();
  for (const auto& b : module.named_buffers(true)) ref[b.key()] = b.value().detach().clone();
  return ref;
}

ProjectionStats project(torch::nn::Module& module, Norm norm, const std::vector<ConstraintGroup>& groups,
                        const Reference& reference) {
  torch::NoGradGuard no_grad;
  ProjectionStats stats;
  const auto params = module.named_parameters(true);
  for (const ConstraintGroup& g : groups) {
    check_radius(g);
    for (const auto& item : params) {
      torch::Tensor w = item.value();
      if (!eligible(item.key(), w.dim(), g)) continue;
      ++stats.tensors;
      const torch::Tensor w0 = g.around_reference ? reference_of(reference, item.key(), w, g).to(w.options())
                                                  : torch::zeros_like(w);
      torch::Tensor t = w - w0;
      if (g.radius == 0.0) {  // the ball is the point W0 (t / (||t|| / 0) would be NaN for t = 0)
        if (t.ne(0).any().item<bool>()) ++stats.projected;
        w.copy_(w0);
        continue;
      }
      torch::Tensor scale;
      if (norm == Norm::kFrobenius) {
        scale = torch::clamp_min(t.norm() / g.radius, 1.0);  // a 0-d tensor
      } else {
        // Row sums over everything but the output dimension: [out, 1, ...] to broadcast.
        const auto rows = t.abs().reshape({t.size(0), -1}).sum(1);
        std::vector<std::int64_t> shape(static_cast<std::size_t>(t.dim()), 1);
        shape[0] = t.size(0);
        scale = torch::clamp_min(rows / g.radius, 1.0).reshape(shape);
      }
      if (scale.gt(1.0).any().item<bool>()) ++stats.projected;
      w.copy_(w0 + t / scale);
    }
    // BatchNorm2d: a per-channel box on the effective scale γ / sqrt(running_var + 1e-6).
    for (const auto& sub : module.named_modules("", /*include_self=*/false)) {
      if (!sub.value()->as<torch::nn::BatchNorm2dImpl>() || !passes_keys(sub.key(), g)) continue;
      auto* bn = sub.value()->as<torch::nn::BatchNorm2dImpl>();
      if (!bn->weight.defined() || !bn->running_var.defined()) continue;
      ++stats.bn_modules;
      const auto denom = torch::sqrt(bn->running_var + kBnEps);
      const auto d = bn->weight / denom;
      torch::Tensor d0 = torch::zeros_like(d);
      if (g.around_reference) {
        const auto& gamma0 = reference_of(reference, sub.key() + ".weight", bn->weight, g);
        const auto& var0 = reference_of(reference, sub.key() + ".running_var", bn->running_var, g);
        d0 = gamma0.to(d.options()) / torch::sqrt(var0.to(d.options()) + kBnEps);
      }
      const auto t = torch::clamp(d - d0, -g.radius, g.radius);
      bn->weight.copy_((d0 + t) * denom);
    }
  }
  return stats;
}

torch::Tensor penalty(const torch::nn::Module& module, Norm norm, const std::vector<ConstraintGroup>& groups,
                      const Reference& reference) {
  const auto params = module.named_parameters(true);
  HG_CHECK(!params.is_empty(), "penalty: the model has no parameters");
  torch::Tensor total = torch::zeros({}, params.begin()->value().options().dtype(torch::kFloat64));
  for (const ConstraintGroup& g : groups) {
    HG_CHECK(std::isfinite(g.radius), "penalty group '" << g.name << "': coefficient must be finite");
    for (const auto& item : params) {
      const torch::Tensor& w = item.value();
      if (!eligible(item.key(), 0, g)) continue;  // no shape test (§4.4): 1-D norm weights count
      const torch::Tensor t = g.around_reference ? w - reference_of(reference, item.key(), w, g).to(w.options()) : w;
      torch::Tensor d;
      if (norm == Norm::kFrobenius) {
        d = t.pow(2).sum();
      } else if (t.dim() >= 2) {
        d = t.abs().reshape({t.size(0), -1}).sum(1).max();
      } else {
        d = t.abs().max();
      }
      total = total + g.radius * d.to(torch::kFloat64);
    }
  }
  return total.to(params.begin()->value().scalar_type());
}

std::vector<ConstraintGroup> resnet_groups(double reg_extractor, double reg_predictor, double scale_factor,
                                           const std::string& head_key) {
  return {
      {"layer1", "layer1", head_key, reg_extractor, true},
      {"layer2", "layer2", head_key, reg_extractor, true},
      {"layer3", "layer3", head_key, reg_extractor * scale_factor, true},
      {"layer4", "layer4", head_key, reg_extractor * scale_factor * scale_factor, true},
      {"head", head_key, "", reg_predictor, false},
  };
}

std::vector<ConstraintGroup> vit_groups(double reg_extractor, double reg_predictor, const std::string& head_key) {
  return {{"encoder", "encoder", head_key, reg_extractor, true}, {"head", head_key, "", reg_predictor, false}};
}

std::vector<ConstraintGroup> text_groups(double reg_attention, double reg_linear, double reg_predictor) {
  return {
      {"attention", "attention", "LayerNorm", reg_attention, true},
      {"linear", "encoder", "attention", reg_linear, true},
      {"classifier", "classifier", "", reg_predictor, false},
  };
}

std::vector<ConstraintGroup> text_penalty_groups(double reg_penalty_encoder, double reg_penalty_predictor) {
  return {{"encoder", "encoder", "LayerNorm", reg_penalty_encoder, true},
          {"classifier", "classifier", "", reg_penalty_predictor, false}};
}

}  // namespace hessgap::train
