// `hessgap measures`: the Hessian distance measure v_i^T H v_i around W(s) and the bound (SPEC §7.3).
#include <CLI/CLI.hpp>

#include "app/commands.h"
#include "app/options.h"
#include "app/summary.h"
#include "job/measure_job.h"

namespace hessgap::app {

RunFn add_measures_command(CLI::App& app) {
  auto c = std::make_shared<job::MeasureConfig>();
  c->kind = "measures";
  auto* cmd = app.add_subcommand("measures", "The Hessian distance measure v_i^T H v_i and the bound (compute_hessian_measures)");
  add_common_options(cmd, c->common);
  cmd->add_option("--init-checkpoint", c->init_checkpoint,
                  "W^(s): the weights before fine-tuning (model_epoch_0), any format --checkpoint reads, adapted alike")
      ->required();
  cmd->add_option("--mode", c->mode,
                  "joint: <v_i,(Hv)_i> with one HVP (the reference); block: v_i^T H_ii v_i; psd: v_i^T H_ii+ v_i with the "
                  "PSD part of the block by Lanczos quadrature from v_i (the block measure is written beside it)");
  cmd->add_option("--psd-steps", c->psd.steps, "--mode psd: Lanczos steps (block HVPs) per layer and batch, at most");
  cmd->add_option("--psd-tol", c->psd.tol,
                  "--mode psd: stop a layer when its quadrature changes by at most this much (relative) in one step "
                  "(0: always --psd-steps)");
  cmd->add_option("--head-reference", c->head_reference,
                  "Measure the head around zero or around its value in --init-checkpoint (init); auto: init for text "
                  "models (BERT, RoBERTa), zero for image models, as the references do");
  cmd->add_option("--train-size", c->train_size, "n of the bound: number of training samples")->required();
  cmd->add_flag("--shard-batch", c->shard_batch,
                "Every rank takes a shard of every batch's samples and adds its share of the forms (--mode joint "
                "and block; for batches too large for one device, or more ranks than batches)");
  return measure_command(c, [](const job::MeasureOutcome& o) { print_distance(*o.distance); });
}

}  // namespace hessgap::app
