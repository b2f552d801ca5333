#include "io/atomic_output.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include "util/error.h"

namespace hessgap::io {

namespace fs = std::filesystem;

void check_writable_output(const std::string& path) {
  HG_CHECK(!path.empty(), "cannot write output '': the path is empty");
  std::error_code ec;
  HG_CHECK(!fs::is_directory(path, ec), "cannot write output '" << path << "': it is a directory");
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  HG_CHECK(fs::exists(dir, ec), "cannot write output '" << path << "': directory '" << dir.string()
                                                        << "' does not exist");
  HG_CHECK(fs::is_directory(dir, ec), "cannot write output '" << path << "': '" << dir.string()
                                                              << "' is not a directory");
  HG_CHECK(::access(dir.c_str(), W_OK | X_OK) == 0,
           "cannot write output '" << path << "': directory '" << dir.string() << "' is not writable ("
                                   << std::strerror(errno) << ")");
}

AtomicOutput::AtomicOutput(std::string final_path) : final_path_(std::move(final_path)) {
  check_writable_output(final_path_);
  temp_path_ = final_path_ + ".tmp-" + std::to_string(static_cast<long>(::getpid()));
}

AtomicOutput::AtomicOutput(AtomicOutput&& o) noexcept
    : final_path_(std::move(o.final_path_)), temp_path_(std::move(o.temp_path_)), committed_(o.committed_) {
  o.committed_ = true;  // the moved-from object owns nothing
}

AtomicOutput& AtomicOutput::operator=(AtomicOutput&& o) noexcept {
  if (this != &o) {
    discard();
    final_path_ = std::move(o.final_path_);
    temp_path_ = std::move(o.temp_path_);
    committed_ = o.committed_;
    o.committed_ = true;
  }
  return *this;
}

AtomicOutput::~AtomicOutput() { discard(); }

void AtomicOutput::discard() noexcept {
  if (!committed_ && !temp_path_.empty()) {
    std::error_code ec;
    fs::remove(temp_path_, ec);
  }
}

void AtomicOutput::commit() {
  HG_CHECK(!committed_, "output '" << final_path_ << "' was already committed");
  std::error_code ec;
  HG_CHECK(fs::is_regular_file(temp_path_, ec),
           "cannot commit output '" << final_path_ << "': temporary file '" << temp_path_ << "' was not written");
  fs::rename(temp_path_, final_path_, ec);
  HG_CHECK(!ec, "cannot rename '" << temp_path_ << "' to '" << final_path_ << "': " << ec.message());
  committed_ = true;
}

}  // namespace hessgap::io
