// A sweep folder on a shared file system, written by many processes of many jobs at once:
//
//   DIR/sweep.json              the spec and the run ids (refuses a different sweep in the same folder)
//   DIR/index.h5                one row per run, rebuilt from the run folders (atomically, by any rank)
//   DIR/runs/<run_id>/          the run's `hessgap train` folder (run.h5, epoch_0.h5, best.h5, last.h5)
//   DIR/runs/<run_id>/claim     who runs it now: created with O_CREAT|O_EXCL by a group leader
//   DIR/runs/<run_id>/state.json  status, attempts, last message, host, ranks, times (atomic rewrite)
//
// Claims are the only coordination: exclusive creation is atomic on local file systems and on NFS v3+.
// A claim is stale when its process is gone: the same host and a pid that no longer exists, the same
// Slurm job at an earlier restart (a requeued job), or no heartbeat (mtime) for longer than the lease.
// Torch-free; not collective (callers are group leaders or rank 0).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace hessgap::sweep {

// What state.json holds. status: "pending" (never run, or interrupted), "complete", "failed".
struct RunState {
  std::string status = "pending";
  std::int64_t attempts = 0;    // runs started that did not complete (failed or interrupted) or did
  bool final = false;           // failed for good: invalid configuration, or max attempts reached
  std::string message;          // the last error
  std::string host;
  std::int64_t ranks = 0;
  std::string start_time, end_time;  // ISO 8601 UTC
  double seconds = 0.0;
};

// Where this process runs, as recorded in claims: host name, pid, Slurm job id and restart count.
struct Owner {
  std::string host;
  long pid = 0;
  std::string job_id;       // $SLURM_JOB_ID ("" outside Slurm)
  std::string restart;      // $SLURM_RESTART_COUNT ("0" when unset)
  static Owner self();
  nlohmann::json to_json() const;
};

class SweepStore {
 public:
  explicit SweepStore(std::string dir, double lease_seconds = 600.0);

  const std::string& dir() const { return dir_; }
  std::string run_dir(const std::string& run_id) const;

  // Creates DIR and DIR/runs, and DIR/sweep.json from `identity` when absent; when present, it must hold
  // the same identity (throws hessgap::Error: the folder holds a different sweep). Rank 0 only.
  void open_or_create(const nlohmann::json& identity);
  // Throws hessgap::Error when DIR/sweep.json exists with another identity (any rank: a read-only check).
  void check_identity(const nlohmann::json& identity) const;

  RunState read_state(const std::string& run_id) const;  // the default (pending) when absent
  void write_state(const std::string& run_id, const RunState& s) const;

  // Tries to claim the run for `owner`: true when this call created the claim (after breaking a stale
  // one). Also removes temporary files a killed writer left in the run folder (no one else writes there
  // while the claim is held).
  bool try_claim(const std::string& run_id, const Owner& owner) const;
  void release(const std::string& run_id) const;
  void heartbeat(const std::string& run_id) const;  // refreshes the claim's mtime
  // The live claim's owner (nullopt: none, or a stale one).
  std::optional<nlohmann::json> live_claim(const std::string& run_id) const;

  // Rewrites DIR/index.h5 from sweep.json and every run folder: status (running when a live claim exists),
  // attempts, message, host, ranks, times, the overrides and config, and the key results read from run.h5.
  // Atomic (temporary file + rename): concurrent rebuilds leave one complete index.
  void rebuild_index(const std::vector<std::string>& run_ids, const std::vector<nlohmann::json>& overrides,
                     const std::vector<std::string>& configs) const;

  // Removes temporary files (<name>.tmp-<pid>-<random>) left in DIR and the run folders by processes of this host
  // that no longer exist. Safe while others work: a live writer's file is kept.
  void remove_stale_temporaries(const std::vector<std::string>& run_ids) const;

 private:
  bool stale(const nlohmann::json& claim, const std::string& path) const;
  std::string dir_;
  double lease_seconds_;
};

// The current time as ISO 8601 UTC ("2026-11-28T09:30:00Z").
std::string utc_now();

}  // namespace hessgap::sweep
