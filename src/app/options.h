// Flags shared by the subcommands, bound to the job layer's options (job/session.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "app/commands.h"
#include "job/measure_job.h"
#include "job/session.h"
#include "job/train_job.h"

namespace CLI {
class App;
}
namespace hessgap::data {
class Dataset;
}
namespace hessgap::models {
class Classifier;
}

namespace hessgap::app {

// The model and data options, the session and checkpoint loading live in the job layer.
using job::CommonOptions;
using job::device_world;
using job::load_weights;
using job::open_session;
using job::Session;
using job::WeightsLoad;

// Registers the common flags on `cmd` (with `o`'s current values as the defaults).
void add_common_options(CLI::App* cmd, CommonOptions& o, bool needs_checkpoint = true);

// The dataset flags alone (--data, --data-format, --split, transforms, glue, label noise), bound to `d`.
void add_dataset_options(CLI::App* cmd, data::DatasetSpec& d);

// The run function of a measuring subcommand whose flags are bound to `config`: job::run_measure on the
// world, then `print` of its outcome on rank 0 (every rank holds the same numbers; one table is enough).
RunFn measure_command(std::shared_ptr<job::MeasureConfig> config,
                      std::function<void(const job::MeasureOutcome&)> print);

// `hessgap train`'s flags bound to `c` (without --runs), and the values they default to (train_defaults
// first): the sweep parses each of its runs with exactly these flags.
void train_defaults(job::TrainConfig& c);
void add_train_flags(CLI::App* cmd, job::TrainConfig& c);

// Default locations of the embedded assets (CMake's HG_ASSETS_DIR, overridable by $HESSGAP_ASSETS).
std::string assets_dir();

}  // namespace hessgap::app
