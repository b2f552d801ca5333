// Logging to stderr with a rank prefix, and a progress line for long loops. Torch-free.
#pragma once

#include <chrono>
#include <string>

namespace hessgap::log {

// Set once at start-up; every message carries "[rank r/size host]" when size > 1.
void set_identity(int rank, int size, const std::string& host);
// The run every later line belongs to (a short run id; "" = none): lines then read
// "[run 3f2a19c0 rank 1/4 host] ..." so that a sweep's interleaved logs can be told apart.
void set_run(const std::string& run_id);
int rank();
// Whether this rank prints info lines and progress (default: rank 0 only; a sweep makes each group's
// leader speak, since its groups run different jobs).
void set_speaker(bool speaks);

// Verbosity: 0 quiet (errors only), 1 normal (default), 2 debug.
void set_verbosity(int level);
int verbosity();

void info(const std::string& msg);   // the speaker only (rank 0 unless set_speaker)
void debug(const std::string& msg);  // every rank, verbosity >= 2
void warn(const std::string& msg);   // every rank
void error(const std::string& msg);  // every rank, always

// Progress of a loop of `total` steps, printed by rank 0 at most every `interval` seconds,
// with rate and estimated time left. Not collective.
class Progress {
 public:
  Progress(std::string what, long total, double interval_s = 2.0);
  void update(long done, const std::string& detail = "");
  void finish(const std::string& detail = "");

 private:
  std::string what_;
  long total_;
  double interval_s_;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace hessgap::log
