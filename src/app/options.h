// Flags shared by the subcommands, bound to the job layer's options (job/session.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "job/session.h"

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

// Default locations of the embedded assets (CMake's HG_ASSETS_DIR, overridable by $HESSGAP_ASSETS).
std::string assets_dir();

}  // namespace hessgap::app
