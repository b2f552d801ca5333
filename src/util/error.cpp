#include "util/error.h"

#include <cstdio>
#include <cstdlib>

namespace hessgap::detail {

void assert_fail(const char* expr, const char* file, int line, const std::string& msg) {
  std::fprintf(stderr, "hessgap: internal error at %s:%d: assertion `%s` failed: %s\n", file, line, expr,
               msg.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace hessgap::detail
