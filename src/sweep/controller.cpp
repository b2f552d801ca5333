#include "sweep/controller.h"

#include <chrono>
#include <filesystem>

#include "comm/communicator.h"
#include "io/h5.h"
#include "util/error.h"
#include "util/json_bounded.h"
#include "util/log.h"
#include "util/signals.h"

namespace hessgap::sweep {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

// run.h5 of a finished run (written last, atomically): its root attribute complete is 1.
bool run_file_complete(const std::string& dir) {
  const fs::path p = fs::path(dir) / "run.h5";
  if (!fs::exists(p)) return false;
  try {
    const io::H5File f = io::H5File::open_read(p.string());
    return f.has_attr("/", "complete") && f.attr_int64("/", "complete") == 1;
  } catch (const Error&) {
    return false;
  }
}

// Whether a run may be started by a new claim.
bool open_run(const RunState& s, std::int64_t max_attempts) {
  if (s.status == "complete" || s.final) return false;
  return s.attempts < max_attempts;
}

// The leader's choice: the index of the next run it claimed, or -1 when none is open. A run found complete
// on disk but not in its state (a job killed between the two writes) is marked complete on the way.
std::int64_t claim_next(const SweepStore& store, const std::vector<SweepRun>& runs, const SweepOptions& opts) {
  const Owner me = Owner::self();
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const std::string& id = runs[i].run_id;
    if (!open_run(store.read_state(id), opts.max_attempts) || store.live_claim(id)) continue;
    if (!store.try_claim(id, me)) continue;
    // Another group may have finished it between our read and our claim.
    RunState s = store.read_state(id);
    if (open_run(s, opts.max_attempts) && run_file_complete(store.run_dir(id))) {
      s.status = "complete";
      store.write_state(id, s);
    }
    if (!open_run(s, opts.max_attempts)) {
      store.release(id);
      continue;
    }
    return static_cast<std::int64_t>(i);
  }
  return -1;
}

std::vector<nlohmann::json> overrides_of(const std::vector<SweepRun>& runs) {
  std::vector<nlohmann::json> out;
  for (const auto& r : runs) out.push_back(r.overrides);
  return out;
}

std::vector<std::string> configs_of(const std::vector<SweepRun>& runs) {
  std::vector<std::string> out;
  for (const auto& r : runs) out.push_back(json_text(job::to_json(r.config)));
  return out;
}

std::vector<std::string> ids_of(const std::vector<SweepRun>& runs) {
  std::vector<std::string> out;
  for (const auto& r : runs) out.push_back(r.run_id);
  return out;
}

}  // namespace

SweepSummary run_sweep(comm::Communicator& world, const SweepStore& store, const std::vector<SweepRun>& runs,
                       const SweepOptions& opts) {
  HG_CHECK(opts.ranks_per_run >= 1 && world.size() % opts.ranks_per_run == 0,
           "ranks_per_run " << opts.ranks_per_run << " must divide the number of ranks (" << world.size() << ")");
  HG_CHECK(opts.max_attempts >= 1, "--max-attempts must be >= 1 (got " << opts.max_attempts << ")");
  const auto ids = ids_of(runs);
  const auto overrides = overrides_of(runs);
  const auto configs = configs_of(runs);
  if (world.rank() == 0) {
    for (const auto& r : runs) {
      if (r.invalid.empty()) continue;
      RunState s = store.read_state(r.run_id);
      if (s.final) continue;
      s.status = "failed";
      s.final = true;
      s.message = r.invalid;
      store.write_state(r.run_id, s);
      log::warn("run " + r.run_id + " is invalid and will not run: " + r.invalid);
    }
    store.remove_stale_temporaries(ids);
  }
  world.barrier();

  const int group_id = world.rank() / static_cast<int>(opts.ranks_per_run);
  auto group = world.split(group_id, world.rank());
  const bool leader = group->rank() == 0;
  log::set_speaker(leader);
  signals::install_stop_handlers();

  // Polled before every training step: the signal flag agreed over the group, and the claim's heartbeat.
  std::string current;
  auto last_beat = Clock::now();
  job::TrainHooks hooks;
  hooks.stop_requested = [&] {
    if (leader && std::chrono::duration<double>(Clock::now() - last_beat).count() > 30.0) {
      store.heartbeat(current);
      last_beat = Clock::now();
    }
    std::int64_t requested = signals::stop_signal() != 0 ? 1 : 0;
    group->all_reduce_sum(&requested, 1);
    return requested > 0;
  };

  std::int64_t ran = 0;
  bool interrupted = false;
  while (true) {
    std::int64_t pick = -1;
    std::int64_t stop = signals::stop_signal() != 0 ? 1 : 0;
    group->all_reduce_sum(&stop, 1);
    if (stop > 0) {
      interrupted = true;
      break;
    }
    if (leader) pick = claim_next(store, runs, opts);
    std::string message = std::to_string(pick);
    group->broadcast(message, 0);
    pick = std::stoll(message);
    if (pick < 0) break;
    const SweepRun& run = runs[static_cast<std::size_t>(pick)];
    current = run.run_id;
    last_beat = Clock::now();
    RunState state;
    if (leader) {
      state = store.read_state(run.run_id);
      state.attempts += 1;
      state.host = Owner::self().host;
      state.ranks = group->size();
      state.start_time = utc_now();
      state.end_time.clear();
      store.write_state(run.run_id, state);
      log::info("sweep: run " + run.run_id + " " + json_text(run.overrides) + " (attempt " + std::to_string(state.attempts) +
                " of " + std::to_string(opts.max_attempts) + ", " + std::to_string(group->size()) + " rank(s))");
    }
    const auto t0 = Clock::now();
    std::string error;
    bool stopped = false;
    try {
      job::run_train(*group, run.config, opts.command_line, hooks);
    } catch (const signals::Interrupted&) {
      stopped = true;
    } catch (const Error& e) {
      error = e.what();
    }
    log::set_run("");
    ++ran;
    if (leader) {
      state.end_time = utc_now();
      state.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      if (stopped) {
        state.attempts -= 1;  // not the run's fault
        state.status = "pending";
        log::info("sweep: run " + run.run_id + " interrupted; it resumes from its last.h5 on the next start");
      } else if (!error.empty()) {
        state.status = "failed";
        state.message = error;
        state.final = state.attempts >= opts.max_attempts;
        log::warn("sweep: run " + run.run_id + " failed (attempt " + std::to_string(state.attempts) + "): " + error);
      } else {
        state.status = "complete";
        state.message.clear();
      }
      store.write_state(run.run_id, state);
      store.release(run.run_id);
      store.rebuild_index(ids, overrides, configs);
    }
    if (stopped) {
      interrupted = true;
      break;
    }
  }
  log::set_speaker(world.rank() == 0);

  world.barrier();
  SweepSummary sum;
  std::int64_t flags[2] = {interrupted ? 1 : 0, leader ? ran : 0};
  world.all_reduce_sum(flags, 2);
  sum.interrupted = flags[0] > 0;
  sum.ran = flags[1];
  if (world.rank() == 0) {
    store.rebuild_index(ids, overrides, configs);
    store.remove_stale_temporaries(ids);
  }
  for (const auto& id : ids) {
    const RunState s = store.read_state(id);
    if (s.status == "complete") {
      ++sum.complete;
    } else if (s.status == "failed" && (s.final || s.attempts >= opts.max_attempts)) {
      ++sum.failed;
    } else {
      ++sum.pending;
    }
  }
  world.barrier();  // every rank counted before anyone starts anew
  return sum;
}

}  // namespace hessgap::sweep
