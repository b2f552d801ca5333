#include "sweep/store.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/atomic_output.h"
#include "io/h5.h"
#include "util/error.h"
#include "util/input_file.h"
#include "util/json_bounded.h"
#include "util/log.h"

namespace hessgap::sweep {

namespace fs = std::filesystem;

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Owner Owner::self() {
  Owner o;
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  o.host = host;
  o.pid = static_cast<long>(::getpid());
  if (const char* j = std::getenv("SLURM_JOB_ID")) o.job_id = j;
  const char* r = std::getenv("SLURM_RESTART_COUNT");
  o.restart = r ? r : "0";
  return o;
}

nlohmann::json Owner::to_json() const {
  return {{"host", host}, {"pid", pid}, {"job_id", job_id}, {"restart", restart}, {"since", utc_now()}};
}

namespace {

// `what` names the file in messages. A FIFO (it blocked here forever) or a device is refused first; a
// file gone meanwhile (a claim released by its holder) reads as "", as before.
std::string read_text(const fs::path& p, const std::string& what) {
  refuse_special_file(p.string(), what);
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Writes `text` to `path` through a temporary file and a rename: readers see the old or the new file.
void write_atomically(const fs::path& path, const std::string& text) {
  io::AtomicOutput out(path.string());
  {
    std::ofstream o(out.temp_path());
    o << text;
    HG_CHECK(o.good(), "cannot write '" << path.string() << "'");
  }
  out.commit();
}

bool process_exists(long pid) { return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM); }

double age_seconds(const fs::path& p) {
  std::error_code ec;
  const auto t = fs::last_write_time(p, ec);
  if (ec) return 0.0;
  return std::chrono::duration<double>(fs::file_time_type::clock::now() - t).count();
}

}  // namespace

SweepStore::SweepStore(std::string dir, double lease_seconds) : dir_(std::move(dir)), lease_seconds_(lease_seconds) {}

std::string SweepStore::run_dir(const std::string& run_id) const { return (fs::path(dir_) / "runs" / run_id).string(); }

void SweepStore::check_identity(const nlohmann::json& identity) const {
  const fs::path p = fs::path(dir_) / "sweep.json";
  if (!fs::exists(p)) return;
  nlohmann::json existing;
  try {
    existing = parse_json_bounded(read_text(p, "sweep file"), "sweep file '" + p.string() + "'");
  } catch (const nlohmann::json::exception& e) {
    HG_FAIL("--out-dir '" << dir_ << "': sweep.json is not valid JSON (" << e.what() << ")");
  }
  HG_CHECK(existing.is_object(), "--out-dir '" << dir_ << "': '" << p.string()
                                               << "' must hold a JSON object with the sweep's spec (got "
                                               << existing.type_name() << "); is it a sweep folder?");
  HG_CHECK(existing.value("sweep", nlohmann::json()) == identity["sweep"],
           "--out-dir '" << dir_ << "' holds a different sweep (its sweep.json has another base, grid or runs): "
                         << "choose another --out-dir, or rerun that sweep's own spec there");
}

void SweepStore::open_or_create(const nlohmann::json& identity) {
  if (fs::exists(dir_)) {
    HG_CHECK(fs::is_directory(dir_), "--out-dir '" << dir_ << "' exists and is not a folder");
    HG_CHECK(fs::exists(fs::path(dir_) / "sweep.json") || fs::is_empty(dir_) ||
                 (!fs::exists(fs::path(dir_) / "run.h5") && !fs::exists(fs::path(dir_) / "last.h5")),
             "--out-dir '" << dir_ << "' holds a training run, not a sweep");
  }
  check_identity(identity);
  fs::create_directories(fs::path(dir_) / "runs");
  if (!fs::exists(fs::path(dir_) / "sweep.json")) write_atomically(fs::path(dir_) / "sweep.json", json_text(identity, 2) + "\n");
}

RunState SweepStore::read_state(const std::string& run_id) const {
  RunState s;
  const fs::path p = fs::path(run_dir(run_id)) / "state.json";
  if (!fs::exists(p)) return s;
  try {
    const auto j = parse_json_bounded(read_text(p, "run state file"), "run state file '" + p.string() + "'");
    HG_CHECK(j.is_object(), "run state file '" << p.string() << "' must hold a JSON object (got " << j.type_name() << ")");
    s.status = j.value("status", s.status);
    s.attempts = j.value("attempts", s.attempts);
    s.final = j.value("final", s.final);
    s.message = j.value("message", s.message);
    s.host = j.value("host", s.host);
    s.ranks = j.value("ranks", s.ranks);
    s.start_time = j.value("start_time", s.start_time);
    s.end_time = j.value("end_time", s.end_time);
    s.seconds = j.value("seconds", s.seconds);
  } catch (const nlohmann::json::exception& e) {
    HG_FAIL("run state file '" << p.string() << "' is not valid JSON or holds a value of the wrong type (" << e.what()
                                 << ")");
  }
  return s;
}

void SweepStore::write_state(const std::string& run_id, const RunState& s) const {
  const nlohmann::json j = {{"status", s.status},         {"attempts", s.attempts}, {"final", s.final},
                            {"message", s.message},       {"host", s.host},         {"ranks", s.ranks},
                            {"start_time", s.start_time}, {"end_time", s.end_time}, {"seconds", s.seconds}};
  fs::create_directories(run_dir(run_id));
  write_atomically(fs::path(run_dir(run_id)) / "state.json", json_text(j, 2) + "\n");
}

bool SweepStore::stale(const nlohmann::json& claim, const std::string& path) const {
  const Owner me = Owner::self();
  const std::string host = claim.value("host", "");
  const long pid = claim.value("pid", 0L);
  if (host == me.host && !process_exists(pid)) return true;
  if (!me.job_id.empty() && claim.value("job_id", "") == me.job_id && claim.value("restart", "0") != me.restart) {
    return true;  // an earlier incarnation of this (requeued) Slurm job
  }
  return age_seconds(path) > lease_seconds_;
}

std::optional<nlohmann::json> SweepStore::live_claim(const std::string& run_id) const {
  const fs::path p = fs::path(run_dir(run_id)) / "claim";
  if (!fs::exists(p)) return std::nullopt;
  nlohmann::json claim;
  try {
    claim = parse_json_bounded(read_text(p, "claim file"), "claim file '" + p.string() + "'");
  } catch (const nlohmann::json::exception&) {
    // Being written right now (created, not yet filled): live unless it is old.
    return age_seconds(p) > lease_seconds_ ? std::nullopt : std::optional<nlohmann::json>(nlohmann::json::object());
  }
  // Written by Owner::to_json; anything else is not a claim of ours (stale() reads these fields).
  HG_CHECK(claim.is_object(), "claim file '" << p.string() << "' must hold a JSON object (got " << claim.type_name()
                                             << "); remove it if no job of this sweep is running that run");
  for (const char* key : {"host", "job_id", "restart", "since"}) {
    HG_CHECK(!claim.contains(key) || claim[key].is_string(),
             "claim file '" << p.string() << "': '" << key << "' must be a string (got " << claim[key].type_name()
                            << "); remove it if no job of this sweep is running that run");
  }
  HG_CHECK(!claim.contains("pid") || claim["pid"].is_number_integer(),
           "claim file '" << p.string() << "': 'pid' must be an integer (got " << claim["pid"].type_name()
                          << "); remove it if no job of this sweep is running that run");
  if (stale(claim, p.string())) return std::nullopt;
  return claim;
}

bool SweepStore::try_claim(const std::string& run_id, const Owner& owner) const {
  fs::create_directories(run_dir(run_id));
  const fs::path p = fs::path(run_dir(run_id)) / "claim";
  for (int tries = 0; tries < 2; ++tries) {
    const int fd = ::open(p.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, 0644);
    if (fd >= 0) {
      const std::string text = json_text(owner.to_json()) + "\n";
      const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
      ::close(fd);
      HG_CHECK(ok, "cannot write the claim '" << p.string() << "'");
      remove_stale_temporaries({run_id});
      return true;
    }
    HG_CHECK(errno == EEXIST, "cannot create the claim '" << p.string() << "': " << std::strerror(errno));
    if (live_claim(run_id)) return false;
    // Stale: move it aside under a name of our own (atomic; of two breakers only one finds it), then retry.
    const std::string text = read_text(p, "claim file");
    const fs::path aside = p.string() + ".stale-" + owner.host + "-" + std::to_string(owner.pid);
    std::error_code ec;
    fs::rename(p, aside, ec);
    if (ec) continue;
    if (read_text(aside, "claim file") != text) {
      // Someone claimed it between our check and the rename: give theirs back.
      fs::rename(aside, p, ec);
      return false;
    }
    log::info("run " + run_id + ": broke the stale claim " + text.substr(0, text.find('\n')));
    fs::remove(aside, ec);
  }
  return false;
}

void SweepStore::release(const std::string& run_id) const {
  std::error_code ec;
  fs::remove(fs::path(run_dir(run_id)) / "claim", ec);
}

void SweepStore::heartbeat(const std::string& run_id) const {
  std::error_code ec;
  fs::last_write_time(fs::path(run_dir(run_id)) / "claim", fs::file_time_type::clock::now(), ec);
}

void SweepStore::remove_stale_temporaries(const std::vector<std::string>& run_ids) const {
  auto sweep_folder = [&](const fs::path& folder) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(folder, ec)) {
      const std::string name = entry.path().filename().string();
      const auto at = name.rfind(".tmp-");
      if (at == std::string::npos) continue;
      char* end = nullptr;
      const long pid = std::strtol(name.c_str() + at + 5, &end, 10);
      // AtomicOutput names temporaries <final>.tmp-<pid>-<random>: a writer of this host that is gone left
      // it. (A writer on another host cannot be checked; its file is kept until that run is claimed again.)
      if (end != nullptr && (*end == '\0' || *end == '-') && !process_exists(pid)) fs::remove_all(entry.path(), ec);
    }
  };
  sweep_folder(dir_);
  for (const auto& id : run_ids) {
    sweep_folder(run_dir(id));
    sweep_folder(fs::path(run_dir(id)) / "dual_t");
  }
}

void SweepStore::rebuild_index(const std::vector<std::string>& run_ids, const std::vector<nlohmann::json>& overrides,
                               const std::vector<std::string>& configs) const {
  const std::size_t n = run_ids.size();
  std::vector<std::string> status(n), message(n), host(n), start(n), end(n), over(n), path(n);
  std::vector<std::int64_t> attempts(n), ranks(n);
  std::vector<double> seconds(n);
  const std::vector<std::pair<std::string, std::string>> results = {
      {"test_accuracy", "/train/final/test_accuracy"},       {"test_loss", "/train/final/test_loss"},
      {"train_loss_clean", "/train/final/train_loss_clean"}, {"train_loss_noisy", "/train/final/train_loss_noisy"},
      {"gap_loss_clean", "/train/final/gap_loss_clean"},     {"gap_loss_noisy", "/train/final/gap_loss_noisy"},
      {"gap_accuracy", "/train/final/gap_accuracy"},         {"measure", "/measures/sum_sqrt"},
      {"bound", "/measures/bound"}};
  std::vector<std::vector<double>> values(results.size(), std::vector<double>(n, std::nan("")));
  for (std::size_t i = 0; i < n; ++i) {
    const RunState s = read_state(run_ids[i]);
    status[i] = live_claim(run_ids[i]) ? "running" : s.status;
    attempts[i] = s.attempts;
    message[i] = s.message;
    host[i] = s.host;
    ranks[i] = s.ranks;
    start[i] = s.start_time;
    end[i] = s.end_time;
    seconds[i] = s.seconds;
    over[i] = json_text(overrides[i]);
    path[i] = "runs/" + run_ids[i];
    const fs::path run_file = fs::path(run_dir(run_ids[i])) / "run.h5";
    if (s.status == "complete" && fs::exists(run_file)) {
      try {
        const io::H5File f = io::H5File::open_read(run_file.string());
        for (std::size_t r = 0; r < results.size(); ++r) {
          if (f.is_dataset(results[r].second)) values[r][i] = f.read_double(results[r].second);
        }
      } catch (const Error& e) {
        log::warn("index: cannot read " + run_file.string() + ": " + e.what());
      }
    }
  }
  const fs::path index = fs::path(dir_) / "index.h5";
  io::AtomicOutput out(index.string());
  {
    io::H5File f = io::H5File::create(out.temp_path());
    f.set_attr("/", "format", "hessgap-sweep-index");
    f.set_attr("/", "format_version", static_cast<std::int64_t>(1));
    f.set_attr("/", "updated", utc_now());
    // The sweep's spec (base, grid, runs; flag names normalised), as sweep.json holds it.
    std::string spec = "{}";
    try {
      const fs::path sweep_file = fs::path(dir_) / "sweep.json";
      const nlohmann::json j = parse_json_bounded(read_text(sweep_file, "sweep file"), "sweep file '" + sweep_file.string() + "'");
      if (j.is_object()) spec = json_text(j.value("sweep", nlohmann::json::object()));
    } catch (const nlohmann::json::exception&) {
    }
    f.set_attr("/", "spec", spec);
    f.create_group("/runs");
    const std::vector<std::int64_t> shape = {static_cast<std::int64_t>(n)};
    f.write_strings("/runs/run_id", run_ids, "the run id: hash of the run's resolved configuration");
    f.write_strings("/runs/status", status, "complete | failed | pending | running (a live claim)");
    f.write("/runs/attempts", attempts, shape, "runs started that failed, were interrupted or completed");
    f.write_strings("/runs/message", message, "the last error of a failed attempt");
    f.write_strings("/runs/host", host, "host of the group leader of the last attempt");
    f.write("/runs/ranks", ranks, shape, "ranks of the last attempt's group");
    f.write_strings("/runs/start_time", start, "start of the last attempt, ISO 8601 UTC");
    f.write_strings("/runs/end_time", end, "end of the last attempt, ISO 8601 UTC");
    f.write("/runs/seconds", seconds, shape, "wall time of the last attempt", "s");
    f.write_strings("/runs/overrides", over, "JSON: the grid values (or explicit run entries) of this run, by flag");
    f.write_strings("/runs/config", configs, "JSON: the run's typed configuration (as run.h5's config)");
    f.write_strings("/runs/path", path, "the run folder, relative to the sweep folder");
    for (std::size_t r = 0; r < results.size(); ++r) {
      f.write("/runs/" + results[r].first, values[r], shape, "from " + results[r].second + " of run.h5 (NaN: none)");
    }
    f.close();
  }
  out.commit();
}

}  // namespace hessgap::sweep
