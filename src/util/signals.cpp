#include "util/signals.h"

#include <csignal>

namespace hessgap::signals {
namespace {

volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_stop_signal(int signo) {
  if (g_signal != 0 && signo == SIGTERM) {
    // Asked twice: the user (or the scheduler) wants the process gone now.
    std::signal(SIGTERM, SIG_DFL);
    std::raise(SIGTERM);
    return;
  }
  g_signal = signo;
}

}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // blocking reads and MPI progress continue; the flag is polled
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);
}

int stop_signal() { return static_cast<int>(g_signal); }

void request_stop(int signo) { g_signal = signo; }

}  // namespace hessgap::signals
