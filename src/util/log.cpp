#include "util/log.h"

#include <cstdio>
#include <mutex>

namespace hessgap::log {
namespace {
int g_rank = 0, g_size = 1, g_verbosity = 1;
bool g_speaker = true;  // prints info and progress: rank 0, or a sweep group's leader
std::string g_host, g_run;
std::mutex g_mutex;

void emit(const char* level, const std::string& msg) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_size > 1 || !g_run.empty()) {
    const std::string run = g_run.empty() ? "" : "run " + g_run + " ";
    std::fprintf(stderr, "[%srank %d/%d %s] %s%s\n", run.c_str(), g_rank, g_size, g_host.c_str(), level, msg.c_str());
  } else {
    std::fprintf(stderr, "%s%s\n", level, msg.c_str());
  }
  std::fflush(stderr);
}
}  // namespace

void set_identity(int rank, int size, const std::string& host) {
  g_rank = rank;
  g_speaker = rank == 0;
  g_size = size;
  g_host = host;
}
void set_run(const std::string& run_id) { g_run = run_id; }
int rank() { return g_rank; }

void set_speaker(bool speaks) { g_speaker = speaks; }
void set_verbosity(int level) { g_verbosity = level; }
int verbosity() { return g_verbosity; }

void info(const std::string& msg) {
  if (g_speaker && g_verbosity >= 1) emit("", msg);
}
void debug(const std::string& msg) {
  if (g_verbosity >= 2) emit("debug: ", msg);
}
void warn(const std::string& msg) { emit("warning: ", msg); }
void error(const std::string& msg) { emit("error: ", msg); }

Progress::Progress(std::string what, long total, double interval_s)
    : what_(std::move(what)), total_(total), interval_s_(interval_s) {
  start_ = last_ = std::chrono::steady_clock::now();
}

void Progress::update(long done, const std::string& detail) {
  auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - last_).count() < interval_s_ && done < total_) return;
  last_ = now;
  double elapsed = std::chrono::duration<double>(now - start_).count();
  double left = done > 0 ? elapsed * (total_ - done) / done : 0.0;
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s: %ld/%ld (%.0f%%), %.1f s elapsed, ~%.0f s left", what_.c_str(), done,
                total_, total_ > 0 ? 100.0 * done / total_ : 100.0, elapsed, left);
  info(std::string(buf) + (detail.empty() ? "" : "  " + detail));
}

void Progress::finish(const std::string& detail) {
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s: done, %ld steps in %.1f s", what_.c_str(), total_, elapsed);
  info(std::string(buf) + (detail.empty() ? "" : "  " + detail));
}

}  // namespace hessgap::log
