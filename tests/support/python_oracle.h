// Running a Python oracle script from a GoogleTest: /usr/bin/python3 SCRIPT ARGS, stdout captured.
// The oracles (Pillow, torchvision, numpy) live beside the tests that use them; they exit 3 when a module
// they need is missing, which the tests turn into a skip.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>

namespace hessgap::testing_support {

// Runs `/usr/bin/python3 script args` (args is passed to the shell as is, e.g. "< request.json") and returns
// its stdout, or nullopt when Python is absent or the script exits 3 (a module missing) or 127. Any other
// non-zero exit fails the calling test (and the output so far is returned).
inline std::optional<std::string> run_python_oracle(const std::string& script, const std::string& args = "") {
  if (!std::filesystem::exists("/usr/bin/python3")) return std::nullopt;
  const std::string cmd = "/usr/bin/python3 " + script + " " + args;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return std::nullopt;
  std::string out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == 3 || code == 127) return std::nullopt;
  EXPECT_EQ(code, 0) << "oracle failed: " << cmd << "\n" << out;
  return out;
}

}  // namespace hessgap::testing_support
