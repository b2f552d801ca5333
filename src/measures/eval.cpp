#include "measures/eval.h"

#include <torch/torch.h>

#include <cmath>

#include "comm/communicator.h"
#include "comm/gather.h"
#include "data/dataset.h"
#include "measures/batch_loop.h"
#include "models/classifier.h"
#include "util/error.h"
#include "util/timer.h"

namespace hessgap::measures {
namespace {

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

}  // namespace

EvalResult evaluate(const MeasureContext& ctx, const EvalOptions& opts) {
  return evaluate(ctx, plan_batches(ctx.dataset->size(), ctx.plan), opts);
}

EvalResult evaluate(const MeasureContext& ctx, const BatchPlan& plan, const EvalOptions& opts) {
  comm::Communicator& world = *ctx.world;
  Stopwatch clock;
  // Labels are read without decoding, on every rank alike, so every rank takes the same path.
  const std::int64_t unlabelled = count_unlabelled(*ctx.dataset, plan);
  const bool labelled = unlabelled == 0;
  HG_CHECK(labelled || unlabelled == plan.num_samples(),
           "eval: " << unlabelled << " of the " << plan.num_samples() << " samples of " << ctx.dataset->describe()
                    << " have no label (-1) and the others have one; expected all or none");
  const bool per_sample = opts.per_sample || !labelled;
  ctx.model->eval();
  LossSums local;
  // per_sample: this rank's rows, per owned batch b: b, n, K, then n records (id, label, loss, K logits),
  // all as doubles (ids and labels are exact below 2^53).
  std::vector<double> rows;
  // Eval is the one measure where reading data costs as much as the model: one worker decodes the next
  // batches while the model runs on this one (the image datasets decode each batch with their own threads).
  BatchLoopOptions loop;
  loop.label = opts.progress;
  loop.prefetch = true;
  std::int64_t f1_counts[3] = {0, 0, 0};  // TP, FP, FN of class 1 (two-class models)
  for_each_batch(ctx, plan, loop, [&](std::int64_t b, const data::Batch& batch) {
    torch::NoGradGuard no_grad;
    const auto logits = ctx.model->forward(batch).to(torch::kFloat64).cpu().contiguous();
    const auto labels = batch.labels.cpu();
    const auto losses = labelled ? torch::nn::functional::cross_entropy(
                                       logits, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone))
                                 : torch::full({batch.size()}, std::nan(""), torch::kFloat64);
    const std::int64_t classes = logits.size(1);
    if (labelled) {
      const auto predicted = logits.argmax(1);
      local.loss += losses.sum().item<double>();
      local.correct += predicted.eq(labels).sum().item<std::int64_t>();
      if (classes == 2) {
        const auto p1 = predicted.eq(1), y1 = labels.eq(1);
        f1_counts[0] += (p1 & y1).sum().item<std::int64_t>();
        f1_counts[1] += (p1 & ~y1).sum().item<std::int64_t>();
        f1_counts[2] += (~p1 & y1).sum().item<std::int64_t>();
      }
    }
    local.count += batch.size();
    if (per_sample) {
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
    }
    return std::string();
  });
  const LossSums g = all_reduce(world, local);
  world.all_reduce_sum(f1_counts, 3);
  EvalResult r;
  r.labelled = labelled;
  r.num_samples = g.count;
  r.correct = g.correct;
  r.loss = labelled ? g.loss / static_cast<double>(g.count) : std::nan("");
  r.accuracy = labelled ? static_cast<double>(g.correct) / static_cast<double>(g.count) : std::nan("");
  const std::int64_t f1_denominator = 2 * f1_counts[0] + f1_counts[1] + f1_counts[2];
  if (labelled && ctx.model->num_classes() == 2) {
    r.f1 = f1_denominator > 0 ? 2.0 * static_cast<double>(f1_counts[0]) / static_cast<double>(f1_denominator) : 0.0;
  }
  if (per_sample) gather_rows(world, plan, rows, r);
  r.seconds = world.max(clock.seconds());
  return r;
}

}  // namespace hessgap::measures
