// `hessgap sweep SPEC.json --out-dir DIR`: every run of a grid of `hessgap train` configurations, trained and
// measured by groups of ranks that claim runs as they free up (sweep/controller.h); resumable, and shareable
// by several jobs at once.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <map>

#include "app/commands.h"
#include "app/options.h"
#include "comm/communicator.h"
#include "sweep/controller.h"
#include "sweep/spec.h"
#include "sweep/store.h"
#include "util/error.h"
#include "util/json_bounded.h"
#include "util/log.h"
#include "util/signals.h"

namespace hessgap::app {

namespace {

// Exit code of a sweep that ended with runs failed for good (all others complete or running elsewhere).
constexpr int kExitRunsFailed = 4;

// Flags a sweep sets itself, or that make no sense per run.
bool reserved(const std::string& flag) {
  return flag == "out-dir" || flag == "resume" || flag == "stop-after-epochs" || flag == "runs" || flag == "config" ||
         flag == "set" || flag == "help";
}

// Every key of the spec must be one of train's flags (checked before anything runs, naming where it is).
void check_keys(const sweep::SweepSpec& spec, CLI::App* train) {
  auto check = [&](const nlohmann::json& flags, const std::string& where) {
    for (const auto& [flag, value] : flags.items()) {
      HG_CHECK(!reserved(flag), "sweep spec " << spec.path << ": '" << flag << "' (in " << where
                                              << ") is set by the sweep itself and may not be given");
      HG_CHECK(train->get_option_no_throw("--" + flag) != nullptr,
               "sweep spec " << spec.path << ": '" << flag << "' (in " << where
                             << ") is not a configuration key: not a flag of hessgap train (see hessgap train --help)");
    }
  };
  check(spec.base, "base");
  for (const auto& [key, values] : spec.grid.items()) {
    if (!sweep::is_group(values)) {
      check({{key, values}}, "grid");
      continue;
    }
    HG_CHECK(train->get_option_no_throw("--" + key) == nullptr,
             "sweep spec " << spec.path << ": grid '" << key << "' is a group of flags, so its name must not be a flag");
    for (const auto& [name, flags] : values.items()) check(flags, "grid '" + key + "': '" + name + "'");
  }
  for (std::size_t k = 0; k < spec.runs.size(); ++k) check(spec.runs[k], "runs[" + std::to_string(k) + "]");
}

// One run's configuration: its flags parsed exactly as `hessgap train` parses its command line.
job::TrainConfig parse_run(const sweep::SweepPoint& point, const sweep::SweepSpec& spec) {
  CLI::App parser("sweep run");
  parser.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  CLI::App* cmd = parser.add_subcommand("train");
  job::TrainConfig c;
  train_defaults(c);
  add_train_flags(cmd, c);
  std::vector<std::string> args = {"train"};
  for (const auto& a : sweep::to_arguments(point.flags)) args.push_back(a);
  args.push_back("--out-dir");
  args.push_back("(set by the sweep)");
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    parser.parse(reversed);
  } catch (const CLI::ParseError& e) {
    HG_FAIL("sweep spec " << spec.path << ": the run " << json_text(point.overrides) << " is not a valid train command: "
                          << e.what());
  }
  return c;
}

}  // namespace

RunFn add_sweep_command(CLI::App& app) {
  struct Flags {
    std::string spec, out_dir;
    std::int64_t ranks_per_run = 0, max_attempts = 2;
    double lease_minutes = 10;
    bool dry_run = false;
    int verbosity = 1;
  };
  auto st = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand(
      "sweep",
      "Train and measure every run of a grid of hessgap train configurations: groups of --ranks-per-run ranks claim "
      "runs as they free up; complete runs are skipped and interrupted ones resumed when the command is run again");
  cmd->add_option("spec", st->spec,
                  "SPEC.json: {\"base\": {flag: value}, \"grid\": {flag: [values]}, \"runs\": [{flag: value}] (optional), "
                  "\"ranks_per_run\": N}, with hessgap train's flag names")
      ->required();
  cmd->add_option("--out-dir", st->out_dir,
                  "Sweep folder: sweep.json, index.h5 and runs/<run_id>/ (the train layout); shared by every job of the sweep")
      ->required();
  cmd->add_option("--ranks-per-run", st->ranks_per_run, "Ranks per group (0: the spec's ranks_per_run, default 1)");
  cmd->add_option("--max-attempts", st->max_attempts, "Failed attempts after which a run is given up");
  cmd->add_option("--lease-minutes", st->lease_minutes,
                  "A claim whose holder shows no sign of life (heartbeat every 30 s while training) for this long is "
                  "taken over; claims of dead processes on this host, or of an earlier start of this Slurm job, at once");
  cmd->add_flag("--dry-run", st->dry_run, "List the runs (run_id, state, overrides) and compute nothing");
  cmd->add_option("--verbosity", st->verbosity, "0 quiet, 1 progress, 2 debug");

  return [st](comm::Communicator& world, const std::string& command_line) {
    // Everything below up to run_sweep is read-only and the same on every rank: a bad spec fails every rank
    // alike, before any file is touched.
    HG_CHECK(!st->out_dir.empty(), "--out-dir must not be empty");
    const sweep::SweepSpec spec = sweep::read_spec(st->spec);
    const std::int64_t rpr = st->ranks_per_run > 0 ? st->ranks_per_run : spec.ranks_per_run;
    HG_CHECK(st->max_attempts >= 1, "--max-attempts must be >= 1 (got " << st->max_attempts << ")");
    HG_CHECK(st->lease_minutes > 0, "--lease-minutes must be > 0 (got " << st->lease_minutes << ")");
    {
      CLI::App probe("sweep keys");
      job::TrainConfig c;
      add_train_flags(probe.add_subcommand("train"), c);
      check_keys(spec, probe.get_subcommand("train"));
    }
    // Absolute, so that every job of the sweep (started from any folder) names the same run folders.
    const std::string dir = std::filesystem::absolute(st->out_dir).lexically_normal().string();
    const sweep::SweepStore store(dir, st->lease_minutes * 60.0);
    std::vector<sweep::SweepRun> runs;
    std::map<std::string, std::size_t> seen;
    for (const auto& point : sweep::expand(spec)) {
      sweep::SweepRun r;
      r.overrides = point.overrides;
      r.config = parse_run(point, spec);
      r.config.common.verbosity = st->verbosity;
      r.run_id = job::run_id_of(r.config);
      r.config.out_dir = store.run_dir(r.run_id);
      try {
        job::validate(r.config);
      } catch (const Error& e) {
        r.invalid = e.what();
      }
      const auto [it, fresh] = seen.emplace(r.run_id, runs.size());
      HG_CHECK(fresh, "sweep spec " << spec.path << ": the runs " << json_text(runs[it->second].overrides) << " and "
                                    << json_text(r.overrides) << " have the same configuration (run " << r.run_id
                                    << "): a grid key that does not change the results?");
      runs.push_back(std::move(r));
    }
    nlohmann::json identity;
    identity["sweep"] = {{"base", spec.base}, {"grid", spec.grid}, {"runs", spec.runs}};
    identity["run_ids"] = nlohmann::json::array();
    for (const auto& r : runs) identity["run_ids"].push_back(r.run_id);
    store.check_identity(identity);

    if (st->dry_run) {
      if (world.rank() == 0) {
        for (const auto& r : runs) {
          const sweep::RunState s = store.read_state(r.run_id);
          std::printf("%s  %-8s  %s%s\n", r.run_id.c_str(), r.invalid.empty() ? s.status.c_str() : "invalid",
                      json_text(r.overrides).c_str(), r.invalid.empty() ? "" : ("  (" + r.invalid + ")").c_str());
        }
        std::printf("%zu runs, %lld rank(s) per run\n", runs.size(), static_cast<long long>(rpr));
        std::fflush(stdout);
      }
      return 0;
    }
    HG_CHECK(world.size() % rpr == 0, "ranks_per_run " << rpr << " must divide the number of ranks (" << world.size()
                                                       << "): start a multiple of it, or change --ranks-per-run");
    if (world.rank() == 0) {
      sweep::SweepStore writer(dir, st->lease_minutes * 60.0);
      writer.open_or_create(identity);
    }
    world.barrier();
    log::info("sweep: " + std::to_string(runs.size()) + " runs in " + st->out_dir + ", " +
              std::to_string(world.size() / rpr) + " group(s) of " + std::to_string(rpr) + " rank(s)");

    sweep::SweepOptions o;
    o.ranks_per_run = rpr;
    o.max_attempts = st->max_attempts;
    o.command_line = command_line;
    const sweep::SweepSummary sum = sweep::run_sweep(world, store, runs, o);
    if (world.rank() == 0) {
      std::printf("sweep %s: %lld complete, %lld failed, %lld not done (%lld trained by this job)%s; index: %s/index.h5\n",
                  st->out_dir.c_str(), static_cast<long long>(sum.complete), static_cast<long long>(sum.failed),
                  static_cast<long long>(sum.pending), static_cast<long long>(sum.ran),
                  sum.interrupted ? ", interrupted: run the same command again to resume" : "", st->out_dir.c_str());
      std::fflush(stdout);
    }
    if (sum.interrupted) return signals::kExitInterrupted;
    return sum.failed > 0 ? kExitRunsFailed : 0;
  };
}

}  // namespace hessgap::app
