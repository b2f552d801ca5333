// Learning-rate schedules, optimizers and early stopping as the reference configures them (SPEC §3.1, §3.3).
// The schedules are pure functions of the step/epoch count, so a resumed job recomputes the rate instead of
// restoring scheduler state.
#pragma once

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <cstdint>
#include <memory>
#include <string>

namespace hessgap::train {

// torch.optim.lr_scheduler.StepLR(step_size, gamma) stepped once per epoch: the rate during epoch e
// (0-based) is base · gamma^floor(e / step_size). The image reference: 1e-4, StepLR(10, 0.1) -> 1e-4 for
// epochs 0-9, 1e-5 for 10-19, 1e-6 for 20-29. Throws hessgap::Error unless step_size >= 1 and e >= 0.
double step_lr(double base, std::int64_t epoch, std::int64_t step_size, double gamma);

// transformers' get_scheduler("linear", warmup, total) stepped every optimizer step: the rate for step s
// (0-based, the s-th optimizer step) is base · s / max(1, warmup) while s < warmup, then
// base · max(0, (total − s) / max(1, total − warmup)). Throws unless 0 <= warmup, 0 <= s, total >= 1.
double linear_warmup_lr(double base, std::int64_t step, std::int64_t warmup, std::int64_t total);

struct OptimizerSpec {
  std::string name = "adam";  // "adam" (image: amsgrad) | "adamw" (text) | "sgd"
  double lr = 1e-4;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;           // text reference: 1e-6
  double weight_decay = 0.0;   // adamw: applied to every parameter except biases and LayerNorm weights
  bool amsgrad = true;         // adam only (the image reference passes amsgrad=True)
  double momentum = 0.0;       // sgd only
};

// Builds the optimizer over the module's parameters that require grad. adamw puts names ending in "bias"
// or containing "LayerNorm.weight" in a group without weight decay, as the text reference does.
// Throws hessgap::Error for an unknown name or lr <= 0.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(torch::nn::Module& module, const OptimizerSpec& spec);

// Sets every parameter group's learning rate.
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

// The reference's early stopping (§3.1, §3.3): monitor "max val_accuracy" (image) or "min val_loss" (text).
// A value at least as good as the best so far counts as an improvement (so ties move the best epoch later);
// training stops when the number of epochs since the last improvement exceeds `patience`.
class EarlyStopping {
 public:
  // mode "max" | "min"; patience >= 0. Throws hessgap::Error otherwise.
  EarlyStopping(const std::string& mode, std::int64_t patience);
  // Records one epoch's value; returns true when it is the new best (the caller saves model_best).
  bool update(double value);
  bool should_stop() const { return since_best_ > patience_; }
  double best() const { return best_; }
  std::int64_t best_epoch() const { return best_epoch_; }  // 0-based index of update calls; -1 before any
  std::int64_t epochs_seen() const { return seen_; }
  std::int64_t epochs_since_best() const { return since_best_; }
  // A resumed run puts back what a checkpoint recorded of the four counters above.
  void restore(double best, std::int64_t best_epoch, std::int64_t seen, std::int64_t since_best) {
    best_ = best;
    best_epoch_ = best_epoch;
    seen_ = seen;
    since_best_ = since_best;
  }

 private:
  bool maximize_;
  std::int64_t patience_;
  double best_;
  std::int64_t best_epoch_ = -1, seen_ = 0, since_best_ = 0;
};

}  // namespace hessgap::train
