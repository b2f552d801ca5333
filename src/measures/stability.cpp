#include "measures/stability.h"

#include <torch/torch.h>

#include <cmath>

#include "comm/communicator.h"
#include "data/dataset.h"
#include "hessian/probes.h"
#include "measures/batch_loop.h"
#include "models/classifier.h"
#include "util/error.h"
#include "util/log.h"
#include "util/timer.h"

namespace hessgap::measures {

namespace {
// eps is the absolute standard deviation of the noise added to every weight; trained weights are
// O(0.01-1), so noise above 1 measures nothing but the noise, and far above it the perturbed loss
// overflows (--eps 1e308 gave NaN deltas).
constexpr double kMaxEps = 1.0;
}  // namespace

void StabilityOptions::validate() const {
  HG_CHECK(eps > 0 && std::isfinite(eps) && eps <= kMaxEps,
           "--eps must be > 0 and at most " << kMaxEps << " (the absolute standard deviation of the weight noise), got "
                                            << eps);
  HG_CHECK(repeats >= 1, "--repeats must be >= 1 (got " << repeats << ")");
}

StabilityResult compute_stability(const MeasureContext& ctx, const StabilityOptions& opts) {
  comm::Communicator& world = *ctx.world;
  opts.validate();
  Stopwatch clock;
  const BatchPlan plan = plan_batches(ctx.dataset->size(), ctx.plan);
  require_labels(*ctx.dataset, plan, "noise stability");
  auto params = prepare_hessian_params(*ctx.model);
  // The subset is small (the reference uses 1000 images): decode this rank's batches once and keep them.
  std::vector<data::Batch> batches;
  for_each_batch(ctx, plan, {}, [&](std::int64_t, const data::Batch& batch) {
    batches.push_back(batch);
    return std::string();
  });
  // f(W) on this rank's batches: the sums of loss_sums, all-reduced.
  auto f = [&] {
    LossSums s;
    for (const auto& batch : batches) s += loss_sums(*ctx.model, batch);
    return all_reduce(world, s);
  };

  StabilityResult r;
  r.layers = ctx.model->hessian_layers();
  const LossSums base = f();
  r.num_samples = base.count;
  r.base_loss = base.loss / static_cast<double>(base.count);
  r.base_accuracy = static_cast<double>(base.correct) / static_cast<double>(base.count);

  std::vector<torch::Tensor> saved;
  for (auto& p : params) saved.push_back(p.detach().clone());
  log::Progress progress("stability", opts.repeats);
  for (int rep = 0; rep < opts.repeats; ++rep) {
    {
      torch::NoGradGuard no_grad;
      for (std::size_t i = 0; i < params.size(); ++i) {
        params[i].add_(hessian::draw_weight_noise(params[i], opts.eps, opts.seed, rep, static_cast<std::int64_t>(i)));
      }
    }
    const LossSums s = f();
    // All-reduced, so every rank takes the same branch.
    HG_CHECK(!std::isfinite(r.base_loss) || std::isfinite(s.loss),
             "--eps " << opts.eps << ": the loss under weight noise is not finite (repeat " << rep
                      << "); use a smaller --eps");
    r.deltas.push_back(s.loss / static_cast<double>(s.count) - r.base_loss);
    {
      torch::NoGradGuard no_grad;
      for (std::size_t i = 0; i < params.size(); ++i) params[i].copy_(saved[i]);
    }
    progress.update(rep + 1, "delta " + std::to_string(r.deltas.back()));
  }
  progress.finish();
  for (double d : r.deltas) r.mean += d;
  r.mean /= static_cast<double>(r.deltas.size());
  for (double d : r.deltas) r.std += (d - r.mean) * (d - r.mean);
  r.std = std::sqrt(r.std / static_cast<double>(r.deltas.size()));
  r.seconds = world.max(clock.seconds());
  return r;
}

}  // namespace hessgap::measures
