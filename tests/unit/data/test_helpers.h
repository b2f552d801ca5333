// Shared helpers of the hg_data tests: paths, temporary folders, and the Python oracle
// (pil_oracle.py, run with /usr/bin/python3; tests skip when it or Pillow is missing).
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/python_oracle.h"

namespace hessgap::data::testing {

namespace fs = std::filesystem;

inline std::string source_path(const std::string& rel) { return std::string(HG_SOURCE_DIR) + "/" + rel; }
inline std::string assets_path(const std::string& rel) { return source_path("assets/" + rel); }
inline std::string fixture_path(const std::string& name) { return source_path("tests/unit/data/fixtures/" + name); }

// A fresh, empty folder under the build tree's test-tmp, unique per test.
inline std::string fresh_dir(const std::string& tag) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path dir = fs::path(HG_TEST_TMP) / "data" / (std::string(info->test_suite_name()) + "." + info->name() + "." + tag);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

inline std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// Whole content of a gzip (or plain) file.
inline std::vector<std::uint8_t> read_gz(const std::string& path) {
  std::vector<std::uint8_t> out;
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) return out;
  std::uint8_t buf[65536];
  int n;
  while ((n = gzread(f, buf, sizeof(buf))) > 0) out.insert(out.end(), buf, buf + n);
  gzclose(f);
  return out;
}

// Runs `pil_oracle.py ARGS` and returns its stdout, or nullopt when Python or Pillow is missing
// (exit code 3 or 127). Any other failure fails the calling test.
inline std::optional<std::string> run_oracle(const std::string& args) {
  return testing_support::run_python_oracle(source_path("tests/unit/data/pil_oracle.py"), args);
}

#define HG_ORACLE_OR_SKIP(var, args)                                          \
  const std::optional<std::string> var##_opt = run_oracle(args);            \
  if (!var##_opt) GTEST_SKIP() << "/usr/bin/python3 with Pillow is missing"; \
  const nlohmann::json var = nlohmann::json::parse(*var##_opt)

inline std::string quote(const std::string& s) { return "'" + s + "'"; }

}  // namespace hessgap::data::testing
