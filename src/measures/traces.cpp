#include "measures/traces.h"

#include <torch/torch.h>

#include <cmath>
#include <memory>
#include <sstream>

#include "comm/communicator.h"
#include "data/dataset.h"
#include "hessian/device_graph.h"
#include "hessian/hvp_engine.h"
#include "measures/batch_loop.h"
#include "models/classifier.h"
#include "util/error.h"
#include "util/timer.h"

namespace hessgap::measures {

void TracesOptions::validate(int world_size) const {
  trace.validate();
  HG_CHECK(probe_ranks >= 1, "--probe-ranks must be >= 1 (got " << probe_ranks << ")");
  HG_CHECK(world_size % probe_ranks == 0,
           "--probe-ranks " << probe_ranks << " must divide the number of ranks (" << world_size << ")");
  HG_CHECK(!shard_batch || probe_ranks == 1,
           "--shard-batch splits every batch's samples over all ranks; it cannot be combined with --probe-ranks "
               << probe_ranks << " (which splits the probes instead)");
  HG_CHECK(probe_ranks == 1 || trace.estimator == hessian::TraceEstimator::kHutchinson,
           "--estimator " << hessian::to_string(trace.estimator) << " computes a batch on one rank: use --probe-ranks 1 "
                          << "(the batches are still sharded over the ranks)");
}

TracesResult compute_traces(const MeasureContext& ctx, const TracesOptions& opts) {
  comm::Communicator& world = *ctx.world;
  opts.validate(world.size());
  Stopwatch clock;
  const BatchPlan plan = plan_batches(ctx.dataset->size(), ctx.plan);
  require_labels(*ctx.dataset, plan, "traces");
  auto params = prepare_hessian_params(*ctx.model);
  const std::size_t L = params.size();
  const std::size_t B = plan.batches.size();

  const int groups = world.size() / opts.probe_ranks;
  const int group_id = world.rank() / opts.probe_ranks;
  auto group = world.split(group_id, world.rank());

  TracesResult r;
  r.layers = ctx.model->hessian_layers();
  r.batch_sizes = plan.batch_sizes();
  r.batch_loss.assign(B, 0.0);
  r.mean.assign(B * L, 0.0);
  r.std_error.assign(B * L, 0.0);
  r.probes.assign(B * L, 0);
  r.converged.assign(B, 0);

  std::int64_t hvps = 0;
  BatchLoopOptions loop;
  loop.label = "traces";
  loop.part = group_id;  // a batch belongs to a probe group; its ranks share the batch's probes
  loop.num_parts = groups;
  if (opts.shard_batch) loop.shard_every_batch(world);
  // --cuda-graphs checked here, where the device is known (a build without them: SideStreamScope says so).
  HG_CHECK(!opts.trace.cuda_graphs || params[0].is_cuda(), "--cuda-graphs needs --device cuda (CUDA graphs capture GPU work)");
  // A capture needs a side stream, and each batch's forward pass and first-order graph on it (the autograd
  // engine runs a backward op on its forward op's stream): the whole computation runs there.
  const hessian::SideStreamScope side(params[0].device(), opts.trace.cuda_graphs);
  for_each_batch(ctx, plan, loop, [&](std::int64_t b, const data::Batch& batch) {
    std::unique_ptr<hessian::HvpEngine> engine;
    hessian::LayerTraces t;
    double loss = 0.0;  // the batch-mean loss, or with shards this shard's share of it
    if (opts.shard_batch) {
      if (batch.size() > 0) {
        const auto n = static_cast<std::int64_t>(plan.batches[static_cast<std::size_t>(b)].size());
        engine = std::make_unique<hessian::HvpEngine>(shard_loss(*ctx.model, batch, n), params);
        loss = engine->loss();
      }
      t = hessian::estimate_traces_sharded(engine.get(), params, opts.trace, b, world);
    } else {
      engine = std::make_unique<hessian::HvpEngine>(batch_loss(*ctx.model, batch), params);
      loss = engine->loss();
      t = hessian::estimate_traces(*engine, opts.trace, b, *group);
    }
    hvps += t.hvps_computed;
    // Summed over the ranks below: every shard adds its share of the loss; the estimates (the same on
    // every rank of the group, or with shards of the world) are written by its first rank, the others
    // leaving zeros.
    if (opts.shard_batch || group->rank() == 0) r.batch_loss[static_cast<std::size_t>(b)] = loss;
    if (opts.shard_batch ? world.rank() == 0 : group->rank() == 0) {
      r.converged[static_cast<std::size_t>(b)] = t.converged ? 1 : 0;
      for (std::size_t i = 0; i < L; ++i) {
        r.mean[b * L + i] = t.mean[i];
        r.std_error[b * L + i] = t.std_error[i];
        r.probes[b * L + i] = t.probes[i];
      }
    }
    double total = 0;
    for (double m : t.mean) total += m;
    std::ostringstream detail;
    detail << "batch " << b << ": " << (opts.shard_batch ? "shard loss " : "loss ") << loss << ", total trace "
           << total << ", probes " << *std::max_element(t.probes.begin(), t.probes.end());
    return detail.str();
  });

  world.all_reduce_sum(r.batch_loss.data(), B);
  world.all_reduce_sum(r.mean.data(), B * L);
  world.all_reduce_sum(r.std_error.data(), B * L);
  world.all_reduce_sum(r.probes.data(), B * L);
  world.all_reduce_sum(r.converged.data(), B);
  r.hvps = world.sum(hvps);

  // Reductions over batches, computed identically on every rank from the summed arrays.
  r.layer_max.assign(L, -INFINITY);
  r.layer_mean.assign(L, 0.0);
  r.layer_mean_std_error.assign(L, 0.0);
  const double n = static_cast<double>(plan.num_samples());
  for (std::size_t b = 0; b < B; ++b) {
    const double w = static_cast<double>(r.batch_sizes[b]) / n;
    for (std::size_t i = 0; i < L; ++i) {
      r.layer_max[i] = std::max(r.layer_max[i], r.mean[b * L + i]);
      r.layer_mean[i] += w * r.mean[b * L + i];
      const double se = r.std_error[b * L + i];
      r.layer_mean_std_error[i] += std::isnan(se) ? NAN : w * w * se * se;
    }
  }
  for (auto& v : r.layer_mean_std_error) v = std::sqrt(v);
  r.seconds = world.max(clock.seconds());
  return r;
}

}  // namespace hessgap::measures
