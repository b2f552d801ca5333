// Stop requests by signal, for long jobs on clusters: SIGTERM (scancel, a job's time limit) and SIGUSR1
// (Slurm's warning signal, `#SBATCH --signal=USR1@T`) set a flag that training polls at every step, so a
// job ends at a step boundary with its last checkpoint intact and exits with kExitInterrupted; a rerun of
// the same command resumes. Torch-free, async-signal-safe handlers.
#pragma once

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

// Sets the flag as if `signo` had arrived (tests; a controller that wants its groups to stop).
void request_stop(int signo);

// What the trainer throws when a stop was requested: not a hessgap::Error (nothing is wrong with the
// input). Carries the signal number.
struct Interrupted {
  int signo = 0;
};

}  // namespace hessgap::signals
