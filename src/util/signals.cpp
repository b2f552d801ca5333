#include "util/signals.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>

namespace hessgap::signals {
namespace {

volatile std::sig_atomic_t g_signal = 0;

constexpr int kSlots = 8;
constexpr std::size_t kPathMax = 4096;
char g_paths[kSlots][kPathMax];
volatile std::sig_atomic_t g_used[kSlots] = {};

// Async-signal-safe: unlink and _exit only.
[[noreturn]] void remove_files_and_exit() {
  for (int i = 0; i < kSlots; ++i) {
    if (g_used[i]) ::unlink(g_paths[i]);
  }
  ::_exit(kExitInterrupted);
}

extern "C" void on_exit_signal(int) { remove_files_and_exit(); }

extern "C" void on_stop_signal(int signo) {
  if (g_signal != 0 && signo == SIGTERM) {
    // Asked twice: the user (or the scheduler) wants the process gone now.
    remove_files_and_exit();
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

void install_exit_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_exit_signal;
  sigemptyset(&sa.sa_mask);
  for (int signo : {SIGINT, SIGTERM, SIGUSR1, SIGHUP}) sigaction(signo, &sa, nullptr);
}

int register_cleanup_file(const std::string& path) {
  if (path.size() >= kPathMax) return -1;
  for (int i = 0; i < kSlots; ++i) {
    if (g_used[i]) continue;
    std::memcpy(g_paths[i], path.c_str(), path.size() + 1);
    std::atomic_signal_fence(std::memory_order_seq_cst);  // the path is complete before the slot is used
    g_used[i] = 1;
    return i;
  }
  return -1;
}

void unregister_cleanup_file(int slot) {
  if (slot >= 0 && slot < kSlots) g_used[slot] = 0;
}

int stop_signal() { return static_cast<int>(g_signal); }

void request_stop(int signo) { g_signal = signo; }

}  // namespace hessgap::signals
