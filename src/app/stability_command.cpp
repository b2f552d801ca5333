// `hessgap stability`: noise stability, the loss change under N(0, eps²) weight noise (SPEC §7.1).
#include <CLI/CLI.hpp>

#include "app/commands.h"
#include "app/options.h"
#include "app/summary.h"
#include "job/measure_job.h"

namespace hessgap::app {

RunFn add_stability_command(CLI::App& app) {
  auto c = std::make_shared<job::MeasureConfig>();
  c->kind = "stability";
  c->common.sample_size = 1000;
  c->common.sample_rule = "exact";
  auto* cmd = app.add_subcommand("stability", "Noise stability: loss change under N(0, eps^2) weight noise (compute_noise_stability)");
  add_common_options(cmd, c->common);
  cmd->add_option("--eps", c->stability.eps, "Standard deviation of the weight noise");
  cmd->add_option("--repeats", c->stability.repeats, "Number of noise draws R (image reference 20, text 100)");
  return measure_command(c, [c](const job::MeasureOutcome& o) { print_stability(*o.stability, c->stability.eps); });
}

}  // namespace hessgap::app
