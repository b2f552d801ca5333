// Helpers shared by the io unit tests: scratch paths and error-message matching.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "util/error.h"

namespace hessgap::io::test {

// A fresh scratch path under the build tree's test-tmp, unique per test case (ctest runs cases in
// parallel processes).
inline std::string tmp_path(const std::string& leaf) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::filesystem::path dir = std::filesystem::path(HG_TEST_TMP) / "io" /
                              (std::string(info->test_suite_name()) + "." + info->name());
  std::filesystem::create_directories(dir);
  std::filesystem::path p = dir / leaf;
  std::filesystem::remove_all(p);
  return p.string();
}

// Runs f, expects hessgap::Error, and returns its message ("" plus a test failure otherwise).
// With HG_TEST_SHOW_ERRORS=1 in the environment the messages are printed, for reviewing their wording.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ::hessgap::Error& e) {
    if (std::getenv("HG_TEST_SHOW_ERRORS")) std::fprintf(stderr, "hessgap::Error: %s\n", e.what());
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected hessgap::Error, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected hessgap::Error, nothing was thrown";
  return "";
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}


}  // namespace hessgap::io::test

// EXPECT_HAS(message, substring): the message contains the substring (gmock-free HasSubstr).
#define EXPECT_HAS(str, sub)                                                              \
  do {                                                                                    \
    const std::string hg_s_ = (str), hg_sub_ = (sub);                                     \
    EXPECT_NE(hg_s_.find(hg_sub_), std::string::npos) << "'" << hg_sub_ << "' not in: " << hg_s_; \
  } while (0)
