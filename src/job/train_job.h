// The training job behind `hessgap train` and the main job (`hessgap run`): flags -> a
// train::TrainerOptions and the data it trains on, train::fine_tune on the communicator it is given, and
// the run folder (run.h5, epoch_0.h5, best.h5, last.h5). The flags follow the reference's train scripts
// (SPEC §1.1, §1.5) with their defaults per model family (image: Adam amsgrad + StepLR, max val accuracy;
// text: AdamW + linear warm-up/decay, min val loss).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <string>

#include "job/session.h"
#include "measures/distance.h"
#include "measures/stability.h"
#include "measures/traces.h"
#include "train/trainer.h"

namespace hessgap::job {

// Every flag of `hessgap train` (train_command.cpp registers them).
struct TrainConfig {
  CommonOptions common;
  std::int64_t epochs = -1;  // -1: the family's default (image 30, text 5)
  double lr = -1;            // -1: the family's default (image 1e-4, text 2e-5)
  double weight_decay = 0;
  std::string optimizer = "auto", schedule = "auto", monitor = "auto";
  std::int64_t step_size = 10;
  double gamma = 0.1, warm_up = 0;
  std::int64_t early_stop = 10;
  std::string reg_method = "none", reg_norm = "frob";
  double reg_extractor = 1, reg_predictor = 1, scale_factor = 1, reg_attention = 1, reg_linear = 1;
  bool constraint_reweight = false;
  double reweight_noise_rate = 0.8;
  std::int64_t reweight_epoch = 1;
  bool reset_head = false, resume = false, sync_bn = false;
  std::int64_t train_subset = 0, test_subset = 0, eval_batch_size = 100;
  std::string test_split = "auto";
  std::string out_dir;
  std::int64_t stop_after_epochs = 0;
  // After training, the best weights are measured against W(s) (SPEC §7.3) on a seeded random subset of
  // the test split: the distance measure in joint and block mode and the bound (n = training ids).
  std::int64_t measure_samples = 100;  // 0: no measurement
  std::int64_t measure_batch_size = 4;
  // On the same subset, also: per-layer Hessian traces (the reference's joint probes and stopping rule,
  // at most measure_trace_probes per batch; 0: none) and noise stability (measure_stability_repeats draws
  // of N(0, 1e-3²) weight noise; 0: none).
  int measure_trace_probes = 0;
  int measure_stability_repeats = 0;
  // Training augmentation (SPEC §3.2): "auto" = on for image folders (the reference's RandomResizedCrop +
  // horizontal flip), off otherwise; "on" requires an image folder; "off".
  std::string augment = "auto";
  int augment_size = 0;  // side of the crop; 0: --crop, else --resize, else 224
  // --load-matrix: reweight with the Dual-T estimate of C instead of the synthetic one (SPEC §5.3), read
  // from matrix_file ("" = <out-dir>/transition_matrix.h5) or estimated after a plain first pass.
  bool load_matrix = false;
  std::string matrix_file;
  std::string subcommand = "train";  // recorded in run.h5 ("run" for the main job's runs)
};

struct TrainOutcome {
  train::TrainResult result;
  Session session;                       // the model (holding the best weights) and the training split
  std::unique_ptr<data::Dataset> test;   // the test split
  std::map<std::string, torch::Tensor> init;  // W(s) of every Hessian layer (epoch_0), by name
  std::int64_t num_train = 0;            // training ids (n of the bound)
  // Joint and block distance measures of the best weights (empty when measure_samples = 0).
  std::vector<measures::DistanceResult> distance;
  std::optional<measures::TracesResult> traces;        // measure_trace_probes > 0
  std::optional<measures::StabilityResult> stability;  // measure_stability_repeats > 0
  std::string run_id;
};

// What a caller may hook into a training job (not part of its configuration or results).
struct TrainHooks {
  // See train::TrainerOptions::stop_requested: polled before every step, the same answer on every rank;
  // true makes run_train throw signals::Interrupted with last.h5 intact.
  std::function<bool()> stop_requested;
};

// Collective over `world`: the job is the same whoever calls it (`hessgap train`, the main job, a sweep's
// group). The typed configuration (to_json) is stored in run.h5 and every checkpoint, and its run id names
// the run. Refuses (hessgap::Error, before anything is written) an out_dir holding another run's files
// unless f.resume; resumes a run of the same configuration from its last.h5. Rank 0 writes run.h5 and
// prints the summary line. `command_line` is recorded as given.
TrainOutcome run_train(comm::Communicator& world, const TrainConfig& f, const std::string& command_line,
                       const TrainHooks& hooks = {});

// The configuration as JSON in sections — model, data (the dataset description under "dataset"), compute,
// train, measure, output — each value with its type; and back (missing keys keep their defaults; a
// value of the wrong type is a hessgap::Error naming it).
nlohmann::json to_json(const TrainConfig& c);
TrainConfig train_config_from_json(const nlohmann::json& j);

// The checks of flag values that need no file (ranges, names, radii > 0 when constraining): what a sweep
// checks before any run starts, and run_train first. Throws hessgap::Error naming the flag.
void validate(const TrainConfig& c);

// The stable id of a configuration: FNV-1a of the canonical JSON (sorted keys) without the output
// section (out_dir, resume, stop_after_epochs, subcommand) and the compute section's verbosity and
// threads; 16 hex digits. Runs that would compute the same results share it.
std::string run_id_of(const TrainConfig& c);

}  // namespace hessgap::job
