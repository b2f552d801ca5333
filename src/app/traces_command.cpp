// `hessgap traces`: per-layer Hessian traces by Hutchinson's estimator (SPEC §7.2).
#include <CLI/CLI.hpp>

#include "app/commands.h"
#include "app/options.h"
#include "app/summary.h"
#include "job/measure_job.h"

namespace hessgap::app {

RunFn add_traces_command(CLI::App& app) {
  auto c = std::make_shared<job::MeasureConfig>();
  c->kind = "traces";
  auto* cmd = app.add_subcommand("traces", "Per-layer Hessian traces by Hutchinson's estimator (compute_hessian_traces)");
  add_common_options(cmd, c->common);
  auto& t = c->traces.trace;
  auto* scope = cmd->add_option("--probe-scope", c->probe_scope,
                  "joint: one probe over all layers (the reference); layer: one layer at a time (no cross-layer variance)");
  cmd->add_option("--estimator", c->estimator,
                  "hutchinson (probe by probe, with a stopping rule); hutch++ or xtrace: variance-reduced, on each "
                  "layer's block with a fixed budget of --max-probes block HVPs (implies --probe-scope layer)");
  cmd->add_option("--stop-rule", c->stop_rule,
                  "reference: relative change of the running mean total trace < --tol; stderr: every layer's relative standard error < --rel-se");
  cmd->add_option("--distribution", c->distribution, "Probe entries: rademacher | gaussian");
  cmd->add_option("--tol", t.tol, "Tolerance of the reference stopping rule (image 1e-3, text 1e-4)");
  cmd->add_option("--rel-se", t.rel_se, "Target relative standard error of the stderr rule");
  cmd->add_option("--min-probes", t.min_probes, "Probes before a stopping rule may fire");
  cmd->add_option("--max-probes", t.max_probes, "Probe limit per batch (the reference's maxIter)");
  cmd->add_option("--probes-in-flight", t.in_flight,
                  "Joint probes whose HVPs run as one batched backward pass (the same estimate; more memory, and up "
                  "to K-1 products past the stopping point; pays where one small batch leaves the device idle)");
  cmd->add_option("--probe-batching", c->probe_batching,
                  "How --probes-in-flight batches: functorch (batching rules for convolution and batch-norm "
                  "backward too) or legacy (autograd.grad(is_grads_batched=True)'s vmap, which loops over them)");
  cmd->add_flag("--cuda-graphs", t.cuda_graphs,
                "CUDA only: capture each batch's joint probe (draw, HVP, per-layer values) once as a CUDA graph and "
                "replay it for the batch's later probes, saving kernel-launch and autograd overhead on small "
                "batches (the same values; needs the joint scope, Rademacher probes, --probes-in-flight 1)");
  cmd->add_option("--probe-ranks", c->traces.probe_ranks, "Ranks sharing the probes of one batch (must divide the rank count)");
  cmd->add_flag("--shard-batch", c->shard_batch,
                "Every rank takes a shard of every batch's samples and the probe values are summed over the ranks "
                "(for batches too large for one device, or more ranks than batches); not with --probe-ranks");
  const RunFn run = measure_command(c, [](const job::MeasureOutcome& o) { print_traces(*o.traces); });
  return [c, scope, run](comm::Communicator& world, const std::string& command_line) {
    // The sketching estimators work per layer: their scope unless the user chose one (then validate() says).
    if (c->estimator != "hutchinson" && scope->count() == 0) c->probe_scope = "layer";
    return run(world, command_line);
  };
}

}  // namespace hessgap::app
