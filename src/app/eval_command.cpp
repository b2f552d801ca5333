// `hessgap eval`: loss and accuracy of a checkpoint on a dataset, or predictions on unlabelled data.
#include <CLI/CLI.hpp>

#include "app/commands.h"
#include "app/options.h"
#include "app/summary.h"
#include "job/measure_job.h"

namespace hessgap::app {

RunFn add_eval_command(CLI::App& app) {
  auto c = std::make_shared<job::MeasureConfig>();
  c->kind = "eval";
  c->common.sample_size = 0;
  c->common.batch_size = 100;
  c->common.sample_rule = "exact";
  c->common.sample_order = "natural";  // per-sample rows in dataset order; every sample by default
  auto* cmd = app.add_subcommand("eval", "Loss and accuracy of a checkpoint on a dataset (predictions only on unlabelled data)");
  add_common_options(cmd, c->common);
  cmd->add_flag("--per-sample", c->per_sample,
                "Also write every sample's logits, label, prediction and loss to --out (/eval/samples); always on for "
                "unlabelled data (a GLUE test split), whose predictions are the result");
  return measure_command(c, [](const job::MeasureOutcome& o) { print_eval(*o.eval); });
}

}  // namespace hessgap::app
