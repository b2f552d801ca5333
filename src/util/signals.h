// Stop requests by signal, for long jobs on clusters: SIGTERM (scancel, a job's time limit) and SIGUSR1
// (Slurm's warning signal, `#SBATCH --signal=USR1@T`) set a flag that training polls at every step, so a
// job ends at a step boundary with its last checkpoint intact and exits with kExitInterrupted; a rerun of
// the same command resumes. Torch-free, async-signal-safe handlers.
#pragma once

#include <string>

namespace hessgap::signals {

// The exit code of a job that stopped on request: "interrupted, rerun to resume" (slurm/*.sbatch requeue
// on it). Distinct from 0 (done), 1 (internal error) and 2 (bad input).
constexpr int kExitInterrupted = 3;

// Installs the handlers for SIGTERM and SIGUSR1 (idempotent). The first signal only sets the flag; a
// second SIGTERM restores the default action and ends the process at once.
void install_stop_handlers();

// The signal number received since install (0: none). Not collective: ranks poll it and agree through
// an all-reduce.
int stop_signal();

// For every other subcommand: SIGINT, SIGTERM, SIGUSR1 and SIGHUP remove the registered files (the
// temporary outputs being written) and end the process at once with kExitInterrupted, so an interrupted
// measurement leaves neither an output nor a temporary file. train and sweep replace the SIGTERM/SIGUSR1
// handlers with install_stop_handlers afterwards (a second SIGTERM there ends the same way).
void install_exit_handlers();

// Registers a file for removal by a fatal signal (above); returns its slot, or -1 when the registry (8
// files of up to 4095 bytes of path) is full. unregister_cleanup_file(-1) is a no-op. Not thread-safe
// among callers; safe against the handler (which reads only completed entries).
int register_cleanup_file(const std::string& path);
void unregister_cleanup_file(int slot);

// Sets the flag as if `signo` had arrived (tests; a controller that wants its groups to stop).
void request_stop(int signo);

// A scope around a call into a system library that parses an untrusted file. libhdf5 1.10 trusts the
// object sizes recorded in a global heap: one flipped byte in a variable-length string attribute makes
// H5Aread copy past the heap (SIGSEGV in H5HG_read), which no check of ours can see beforehand. A SIGSEGV
// or SIGBUS inside the scope removes the registered files, writes "error: <what>: <library> crashed on its
// contents (a damaged or hostile file)" to stderr and exits with 2 (bad input) instead of dumping core
// behind Open MPI's backtrace; under mpirun the other ranks are ended as for any failed rank. Nestable
// (the innermost message wins); the previous handlers come back on leaving. Main thread only. Keep our own
// code out of the scope: a bug there would be reported as a bad file. `what` names the file; messages
// longer than 1 KB are cut.
class CrashGuard {
 public:
  CrashGuard(const std::string& what, const char* library);
  ~CrashGuard();
  CrashGuard(const CrashGuard&) = delete;
  CrashGuard& operator=(const CrashGuard&) = delete;

 private:
  bool outermost_;
  char previous_[1024];
  int previous_length_;
};

// What the trainer throws when a stop was requested: not a hessgap::Error (nothing is wrong with the
// input). Carries the signal number.
struct Interrupted {
  int signo = 0;
};

}  // namespace hessgap::signals
