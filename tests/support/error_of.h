// Test support: the message of the hessgap::Error a call throws, for tests of user-facing errors.
#pragma once

#include <functional>
#include <string>

#include "util/error.h"

namespace hessgap::testing {

// e.what() of the hessgap::Error that f throws, or "(no error)" when it returns normally (other
// exceptions propagate, so that a wrong kind of failure fails the test).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace hessgap::testing
