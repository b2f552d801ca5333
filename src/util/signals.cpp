#include "util/signals.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <string>

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

// CrashGuard's message (complete before a guard is armed) and the handlers it displaced.
constexpr std::size_t kMessageMax = 1024;
char g_crash_message[kMessageMax];
volatile std::sig_atomic_t g_crash_length = 0;
int g_guard_depth = 0;
struct sigaction g_previous_segv, g_previous_bus;

extern "C" void on_crash_signal(int) {
  // Async-signal-safe: write, unlink and _exit only.
  ssize_t ignored = ::write(STDERR_FILENO, g_crash_message, static_cast<std::size_t>(g_crash_length));
  (void)ignored;
  for (int i = 0; i < kSlots; ++i) {
    if (g_used[i]) ::unlink(g_paths[i]);
  }
  ::_exit(2);
}

void set_crash_message(const char* text, std::size_t length) {
  g_crash_length = 0;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  length = length < kMessageMax ? length : kMessageMax;
  std::memcpy(g_crash_message, text, length);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  g_crash_length = static_cast<std::sig_atomic_t>(length);
}

}  // namespace

CrashGuard::CrashGuard(const std::string& what, const char* library)
    : outermost_(g_guard_depth == 0), previous_length_(static_cast<int>(g_crash_length)) {
  std::memcpy(previous_, g_crash_message, kMessageMax);
  std::string message = "error: " + what + ": " + library + " crashed on its contents (a damaged or hostile file)\n";
  if (message.size() > kMessageMax) message = message.substr(0, kMessageMax - 1) + "\n";
  set_crash_message(message.data(), message.size());
  if (outermost_) {
    struct sigaction sa {};
    sa.sa_handler = on_crash_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_previous_segv);
    sigaction(SIGBUS, &sa, &g_previous_bus);
  }
  ++g_guard_depth;
}

CrashGuard::~CrashGuard() {
  --g_guard_depth;
  if (outermost_) {
    sigaction(SIGSEGV, &g_previous_segv, nullptr);
    sigaction(SIGBUS, &g_previous_bus, nullptr);
  }
  set_crash_message(previous_, static_cast<std::size_t>(previous_length_));
}

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
