// Shared by the fuzz harnesses: the parsers take paths, so each input is written to a private
// temporary file; a parser may reject it only with hessgap::Error (the user error that names the
// file). Anything else — another exception, an abort, a sanitizer report, a leak, a hang or an
// allocation beyond libFuzzer's -rss_limit_mb — is a finding.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "util/error.h"

namespace hessgap::fuzz {

class TempFile {
 public:
  TempFile(const std::uint8_t* data, std::size_t size, const std::string& suffix) {
    path_ = "/tmp/hessgap-fuzz-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++) + suffix;
    std::FILE* f = std::fopen(path_.c_str(), "wb");
    if (f == nullptr) std::abort();
    if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
    std::fclose(f);
  }
  TempFile(const std::string& bytes, const std::string& suffix)
      : TempFile(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), suffix) {}
  ~TempFile() { ::unlink(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  std::string path_;
};

// Runs `parse`; a hessgap::Error is the expected way to refuse an input.
template <class F>
void refuse_cleanly(F&& parse) {
  try {
    parse();
  } catch (const hessgap::Error&) {
  }
}

}  // namespace hessgap::fuzz
