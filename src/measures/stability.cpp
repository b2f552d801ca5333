#include "measures/stability.h"

#include <torch/torch.h>

#include <cmath>

#include "comm/communicator.h"
#include "comm/gather.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "hessian/probes.h"
#include "models/classifier.h"
#include "util/error.h"
#include "util/log.h"
#include "util/timer.h"

namespace hessgap::measures {

void StabilityOptions::validate() const {
  HG_CHECK(eps > 0 && std::isfinite(eps), "--eps must be > 0 (got " << eps << ")");
  HG_CHECK(repeats >= 1, "--repeats must be >= 1 (got " << repeats << ")");
}

namespace {

struct Sums {
  double loss = 0.0;
  std::int64_t correct = 0, count = 0;
};

// Loss and correct-count sums over this rank's batches (pre-loaded), no autograd.
Sums local_sums(models::Classifier& model, const std::vector<data::Batch>& batches) {
  torch::NoGradGuard no_grad;
  Sums s;
  for (const auto& batch : batches) {
    auto logits = model.forward(batch);
    auto loss = torch::nn::functional::cross_entropy(
        logits, batch.labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    s.loss += loss.to(torch::kFloat64).item<double>();
    s.correct += logits.argmax(1).eq(batch.labels).sum().item<std::int64_t>();
    s.count += batch.size();
  }
  return s;
}

Sums global_sums(comm::Communicator& world, const Sums& s) {
  Sums g = s;
  g.loss = world.sum(s.loss);
  std::int64_t counts[2] = {s.correct, s.count};
  world.all_reduce_sum(counts, 2);
  g.correct = counts[0];
  g.count = counts[1];
  return g;
}

// Every rank's per-sample rows (blocks [b, n, K, n x (id, label, loss, K logits)], see evaluate) to
// every rank, placed in the plan's batch order so that the result does not depend on which rank
// evaluated which batch. Collective (all_gather_values).
void gather_rows(comm::Communicator& world, const BatchPlan& plan, const std::vector<double>& mine, EvalResult& r) {
  std::vector<std::vector<double>> blocks(plan.batches.size());
  for (const std::vector<double>& rows : comm::all_gather_values(world, mine)) {
    for (std::size_t at = 0; at < rows.size();) {
      const auto b = static_cast<std::size_t>(rows[at]);
      const auto n = static_cast<std::size_t>(rows[at + 1]);
      const auto k = static_cast<std::size_t>(rows[at + 2]);
      const std::size_t end = at + 3 + n * (3 + k);
      HG_ASSERT(b < blocks.size() && end <= rows.size(), "malformed per-sample rows");
      blocks[b].assign(rows.begin() + static_cast<std::ptrdiff_t>(at), rows.begin() + static_cast<std::ptrdiff_t>(end));
      at = end;
    }
  }
  for (const auto& block : blocks) {
    if (block.empty()) continue;  // an empty batch (none in practice)
    const auto n = static_cast<std::size_t>(block[1]);
    const auto k = static_cast<std::size_t>(block[2]);
    r.num_classes = static_cast<std::int64_t>(k);
    for (std::size_t i = 0; i < n; ++i) {
      const double* rec = block.data() + 3 + i * (3 + k);
      r.sample_ids.push_back(static_cast<std::int64_t>(rec[0]));
      r.labels.push_back(static_cast<std::int64_t>(rec[1]));
      r.losses.push_back(rec[2]);
      r.logits.insert(r.logits.end(), rec + 3, rec + 3 + k);
    }
  }
}

std::vector<data::Batch> load_my_batches(const MeasureContext& ctx, const BatchPlan& plan) {
  std::vector<data::Batch> out;
  for (std::int64_t b : owned_batches(plan, ctx.world->rank(), ctx.world->size())) {
    out.push_back(load_batch(ctx, plan.batches[static_cast<std::size_t>(b)]));
  }
  return out;
}

}  // namespace

StabilityResult compute_stability(const MeasureContext& ctx, const StabilityOptions& opts) {
  comm::Communicator& world = *ctx.world;
  opts.validate();
  Stopwatch clock;
  const BatchPlan plan = plan_batches(ctx.dataset->size(), ctx.plan);
  require_labels(*ctx.dataset, plan, "noise stability");
  auto params = prepare_hessian_params(*ctx.model);
  // The subset is small (the reference uses 1000 images): decode it once and keep it.
  const auto batches = load_my_batches(ctx, plan);

  StabilityResult r;
  r.layers = ctx.model->hessian_layers();
  const Sums base = global_sums(world, local_sums(*ctx.model, batches));
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
    const Sums s = global_sums(world, local_sums(*ctx.model, batches));
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

EvalResult evaluate(const MeasureContext& ctx, const EvalOptions& opts) {
  comm::Communicator& world = *ctx.world;
  Stopwatch clock;
  const BatchPlan plan = plan_batches(ctx.dataset->size(), ctx.plan);
  // Labels are read without decoding, on every rank alike, so every rank takes the same path.
  const std::int64_t unlabelled = count_unlabelled(*ctx.dataset, plan);
  const bool labelled = unlabelled == 0;
  HG_CHECK(labelled || unlabelled == plan.num_samples(),
           "eval: " << unlabelled << " of the " << plan.num_samples() << " samples of " << ctx.dataset->describe()
                    << " have no label (-1) and the others have one; expected all or none");
  const bool per_sample = opts.per_sample || !labelled;
  ctx.model->eval();
  Sums local;
  const auto mine = owned_batches(plan, world.rank(), world.size());
  // per_sample: this rank's rows, per owned batch b: b, n, K, then n records (id, label, loss, K logits),
  // all as doubles (ids and labels are exact below 2^53).
  std::vector<double> rows;
  log::Progress progress("eval (rank 0's batches)", static_cast<long>(mine.size()));
  long done = 0;
  // Eval is the one measure where reading data costs as much as the model: one worker decodes the next
  // batches while the model runs on this one (the image datasets decode each batch with their own threads).
  data::LoaderOptions prefetch;
  prefetch.num_workers = 1;
  prefetch.prefetch = 2;
  data::PrefetchLoader loader(
      static_cast<std::int64_t>(mine.size()),
      [&](std::int64_t k) { return load_batch(ctx, plan.batches[static_cast<std::size_t>(mine[static_cast<std::size_t>(k)])]); },
      prefetch);
  for (std::int64_t b : mine) {
    const data::Batch batch = *loader.next();
    if (per_sample) {
      torch::NoGradGuard no_grad;
      const auto logits = ctx.model->forward(batch).to(torch::kFloat64).cpu().contiguous();
      const auto labels = batch.labels.cpu();
      const auto losses = labelled ? torch::nn::functional::cross_entropy(
                                         logits, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone))
                                   : torch::full({batch.size()}, std::nan(""), torch::kFloat64);
      const std::int64_t classes = logits.size(1);
      rows.push_back(static_cast<double>(b));
      rows.push_back(static_cast<double>(batch.size()));
      rows.push_back(static_cast<double>(classes));
      const double* z = logits.data_ptr<double>();
      for (std::int64_t k = 0; k < batch.size(); ++k) {
        rows.push_back(static_cast<double>(batch.sample_ids[static_cast<std::size_t>(k)]));
        rows.push_back(static_cast<double>(labels[k].item<std::int64_t>()));
        rows.push_back(losses[k].item<double>());
        rows.insert(rows.end(), z + k * classes, z + (k + 1) * classes);
      }
      if (labelled) {
        local.loss += losses.sum().item<double>();
        local.correct += logits.argmax(1).eq(labels).sum().item<std::int64_t>();
      }
      local.count += batch.size();
    } else {
      const auto s = local_sums(*ctx.model, {batch});
      local.loss += s.loss;
      local.correct += s.correct;
      local.count += s.count;
    }
    progress.update(++done);
  }
  progress.finish();
  const Sums g = global_sums(world, local);
  EvalResult r;
  r.labelled = labelled;
  r.num_samples = g.count;
  r.correct = g.correct;
  r.loss = labelled ? g.loss / static_cast<double>(g.count) : std::nan("");
  r.accuracy = labelled ? static_cast<double>(g.correct) / static_cast<double>(g.count) : std::nan("");
  if (per_sample) gather_rows(world, plan, rows, r);
  r.seconds = world.max(clock.seconds());
  return r;
}

}  // namespace hessgap::measures
