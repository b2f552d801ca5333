// Errors: a caller's mistake throws hessgap::Error (exit code 2, message names what is wrong);
// a broken internal invariant aborts via HG_ASSERT. Torch-free.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace hessgap {

// A problem with the user's input (flag, file, tensor, config). main() prints the message and
// exits with code 2; in a multi-rank run it ends every rank.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
[[noreturn]] void assert_fail(const char* expr, const char* file, int line, const std::string& msg);
}  // namespace detail

}  // namespace hessgap

// HG_CHECK(cond, "message " << value): throw hessgap::Error when a user-controlled condition fails.
#define HG_CHECK(cond, msg)                                   \
  do {                                                        \
    if (!(cond)) {                                            \
      std::ostringstream hg_check_os_;                        \
      hg_check_os_ << msg;                                    \
      throw ::hessgap::Error(hg_check_os_.str());             \
    }                                                         \
  } while (0)

// HG_FAIL("message " << value): throw hessgap::Error unconditionally.
#define HG_FAIL(msg) HG_CHECK(false, msg)

// HG_ASSERT(cond, "context"): an internal invariant; prints file and line and aborts.
#define HG_ASSERT(cond, msg)                                                  \
  do {                                                                        \
    if (!(cond)) {                                                            \
      std::ostringstream hg_assert_os_;                                       \
      hg_assert_os_ << msg;                                                   \
      ::hessgap::detail::assert_fail(#cond, __FILE__, __LINE__, hg_assert_os_.str()); \
    }                                                                         \
  } while (0)
