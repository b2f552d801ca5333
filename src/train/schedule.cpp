#include "train/schedule.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "util/error.h"

namespace hessgap::train {

double step_lr(double base, std::int64_t epoch, std::int64_t step_size, double gamma) {
  HG_CHECK(step_size >= 1, "StepLR step size must be >= 1 (got " << step_size << ")");
  HG_CHECK(epoch >= 0, "StepLR epoch must be >= 0 (got " << epoch << ")");
  return base * std::pow(gamma, static_cast<double>(epoch / step_size));
}

double linear_warmup_lr(double base, std::int64_t step, std::int64_t warmup, std::int64_t total) {
  HG_CHECK(warmup >= 0 && step >= 0 && total >= 1,
           "linear schedule needs warmup >= 0, step >= 0, total >= 1 (got " << warmup << ", " << step << ", " << total << ")");
  if (step < warmup) return base * static_cast<double>(step) / static_cast<double>(std::max<std::int64_t>(1, warmup));
  return base * std::max(0.0, static_cast<double>(total - step) /
                                  static_cast<double>(std::max<std::int64_t>(1, total - warmup)));
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(torch::nn::Module& module, const OptimizerSpec& spec) {
  HG_CHECK(spec.lr > 0 && std::isfinite(spec.lr), "learning rate must be > 0 (got " << spec.lr << ")");
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& p : module.named_parameters(true)) {
    if (!p.value().requires_grad()) continue;
    const std::string& n = p.key();
    const bool exempt = (n.size() >= 4 && n.compare(n.size() - 4, 4, "bias") == 0) ||
                        n.find("LayerNorm.weight") != std::string::npos;
    (exempt ? no_decay : decay).push_back(p.value());
  }
  if (spec.name == "adam") {
    auto o = torch::optim::AdamOptions(spec.lr).betas({spec.beta1, spec.beta2}).eps(spec.eps)
                 .weight_decay(spec.weight_decay).amsgrad(spec.amsgrad);
    decay.insert(decay.end(), no_decay.begin(), no_decay.end());
    return std::make_unique<torch::optim::Adam>(decay, o);
  }
  if (spec.name == "adamw") {
    auto with = torch::optim::AdamWOptions(spec.lr).betas({spec.beta1, spec.beta2}).eps(spec.eps)
                    .weight_decay(spec.weight_decay);
    auto without = with;
    without.weight_decay(0.0);
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(with));
    groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(without));
    return std::make_unique<torch::optim::AdamW>(std::move(groups), with);
  }
  if (spec.name == "sgd") {
    auto o = torch::optim::SGDOptions(spec.lr).momentum(spec.momentum).weight_decay(spec.weight_decay);
    decay.insert(decay.end(), no_decay.begin(), no_decay.end());
    return std::make_unique<torch::optim::SGD>(decay, o);
  }
  HG_FAIL("unknown optimizer '" << spec.name << "' (expected adam, adamw or sgd)");
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

EarlyStopping::EarlyStopping(const std::string& mode, std::int64_t patience)
    : maximize_(mode == "max"), patience_(patience) {
  HG_CHECK(mode == "max" || mode == "min", "early stopping mode must be max or min (got '" << mode << "')");
  HG_CHECK(patience >= 0, "early stopping patience must be >= 0 (got " << patience << ")");
  best_ = maximize_ ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
}

bool EarlyStopping::update(double value) {
  const bool improved = maximize_ ? value >= best_ : value <= best_;
  if (improved) {
    best_ = value;
    best_epoch_ = seen_;
    since_best_ = 0;
  } else {
    ++since_best_;
  }
  ++seen_;
  return improved;
}

}  // namespace hessgap::train
