// The sweep controller: the world split into groups of ranks_per_run ranks, each group's leader claiming
// the next open run (SweepStore's exclusive claim files) and broadcasting it to its group, which trains and
// measures it with job::run_train on the group's communicator. Runs are handed out as groups free up, so
// long and short runs balance, and several jobs (or a requeued one) can work on one sweep folder at once.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "job/train_job.h"
#include "sweep/store.h"

namespace hessgap::comm {
class Communicator;
}

namespace hessgap::sweep {

struct SweepRun {
  std::string run_id;
  nlohmann::json overrides;   // the grid values that make this run (by flag)
  job::TrainConfig config;    // out_dir = the store's run folder
  std::string invalid;        // non-empty: job::validate's message; the run is failed for good, never started
};

struct SweepOptions {
  std::int64_t ranks_per_run = 1;
  std::int64_t max_attempts = 2;  // attempts that fail before a run is given up
  std::string command_line;       // recorded in each run.h5
};

// How the sweep ended, the same on every rank.
struct SweepSummary {
  std::int64_t complete = 0, failed = 0, pending = 0;
  bool interrupted = false;  // a stop signal ended it; rerun the same command to resume
  std::int64_t ran = 0;      // runs this job trained (all groups)
};

// Collective over `world` (world.size() must be a multiple of ranks_per_run; the caller checks). Rank 0
// marks invalid runs failed, then every group works until no run is open or a stop signal arrives
// (SIGTERM, SIGUSR1: the group stops at the next training step with last.h5 intact, the run stays pending).
// A run that throws a hessgap::Error (on every rank of its group, as input errors do) is recorded as
// failed with its message, and retried by a later claim until max_attempts. Each leader rebuilds the
// index after each run; rank 0 once more at the end, and removes temporaries left by killed processes.
SweepSummary run_sweep(comm::Communicator& world, const SweepStore& store, const std::vector<SweepRun>& runs,
                       const SweepOptions& opts);

}  // namespace hessgap::sweep
