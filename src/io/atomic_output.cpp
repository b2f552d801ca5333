#include "io/atomic_output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <random>
#include <sstream>
#include <system_error>
#include <utility>

#include "util/error.h"
#include "util/signals.h"

namespace hessgap::io {

namespace fs = std::filesystem;

namespace {

const char* kind_of(const fs::file_status& st) {
  switch (st.type()) {
    case fs::file_type::directory: return "a directory";
    case fs::file_type::fifo: return "a FIFO";
    case fs::file_type::character: return "a character device";
    case fs::file_type::block: return "a block device";
    case fs::file_type::socket: return "a socket";
    default: return "not a regular file";
  }
}

}  // namespace

void check_writable_output(const std::string& path) {
  HG_CHECK(!path.empty(), "cannot write output '': the path is empty");
  std::error_code ec;
  HG_CHECK(!fs::is_directory(path, ec), "cannot write output '" << path << "': it is a directory");
  // The output replaces what is there by a rename: only a regular file (or a link to one) may be there.
  // A FIFO, a device or a socket — /dev/null, /proc/self/fd/1 — would be replaced by a regular file.
  const fs::file_status link = fs::symlink_status(path, ec);
  if (!ec && fs::exists(link)) {
    if (fs::is_symlink(link)) {
      // A link that cannot be resolved (a loop: `ln -s loop loop`) reads as "no target" below and was
      // replaced by the output. Only a dangling link (its target missing) may be.
      struct stat resolved {};
      if (::stat(path.c_str(), &resolved) != 0 && errno != ENOENT && errno != ENOTDIR) {
        const int err = errno;
        HG_FAIL("cannot write output '" << path << "': it is a symbolic link that cannot be resolved ("
                                        << std::strerror(err)
                                        << (err == ELOOP ? ", a loop of links" : "") << ")");
      }
    }
    const fs::file_status target = fs::status(path, ec);
    HG_CHECK(fs::is_symlink(link) ? (!fs::exists(target) || fs::is_regular_file(target)) : fs::is_regular_file(link),
             "cannot write output '" << path << "': it is "
                                     << (fs::is_symlink(link) ? std::string("a symbolic link to ") + kind_of(target)
                                                              : std::string(kind_of(link)))
                                     << ", not a regular file (the output is written beside it and renamed over it)");
    // The rename would replace a read-only file even where writing to it is refused (and as root always):
    // a file made read-only is one the user meant to keep.
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && (st.st_mode & (S_IWUSR | S_IWGRP | S_IWOTH)) == 0) {
      HG_FAIL("cannot write output '" << path << "': it exists and is read-only (mode " << std::oct
                                      << (st.st_mode & 07777) << std::dec << "); remove it or make it writable to replace it");
    }
  }
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
  // A fresh name created exclusively and without following links: a file or a symbolic link planted
  // under a predictable name cannot make us write elsewhere, and two writers never share a name.
  std::random_device entropy;
  for (int attempt = 0;; ++attempt) {
    std::ostringstream name;
    name << final_path_ << ".tmp-" << static_cast<long>(::getpid()) << "-" << std::hex << std::setw(8)
         << std::setfill('0') << entropy();
    const int fd = ::open(name.str().c_str(), O_CREAT | O_EXCL | O_NOFOLLOW | O_WRONLY | O_CLOEXEC, 0644);
    if (fd >= 0) {
      ::close(fd);
      temp_path_ = name.str();
      // A signal that ends the process (signals::install_exit_handlers) removes it too.
      cleanup_slot_ = signals::register_cleanup_file(temp_path_);
      return;
    }
    HG_CHECK(errno == EEXIST && attempt < 100, "cannot create a temporary file for output '"
                                                   << final_path_ << "' (" << name.str() << "): " << std::strerror(errno));
  }
}

AtomicOutput::AtomicOutput(AtomicOutput&& o) noexcept
    : final_path_(std::move(o.final_path_)), temp_path_(std::move(o.temp_path_)), committed_(o.committed_),
      cleanup_slot_(o.cleanup_slot_) {
  o.committed_ = true;  // the moved-from object owns nothing
  o.cleanup_slot_ = -1;
}

AtomicOutput& AtomicOutput::operator=(AtomicOutput&& o) noexcept {
  if (this != &o) {
    discard();
    final_path_ = std::move(o.final_path_);
    temp_path_ = std::move(o.temp_path_);
    committed_ = o.committed_;
    cleanup_slot_ = o.cleanup_slot_;
    o.committed_ = true;
    o.cleanup_slot_ = -1;
  }
  return *this;
}

AtomicOutput::~AtomicOutput() { discard(); }

void AtomicOutput::discard() noexcept {
  if (!committed_ && !temp_path_.empty()) {
    std::error_code ec;
    fs::remove(temp_path_, ec);
  }
  signals::unregister_cleanup_file(cleanup_slot_);
  cleanup_slot_ = -1;
}

void AtomicOutput::commit() {
  HG_CHECK(!committed_, "output '" << final_path_ << "' was already committed");
  std::error_code ec;
  // The constructor created the temporary file empty; no writer leaves it so.
  HG_CHECK(fs::is_regular_file(temp_path_, ec) && fs::file_size(temp_path_, ec) > 0 && !ec,
           "cannot commit output '" << final_path_ << "': temporary file '" << temp_path_ << "' was not written");
  fs::rename(temp_path_, final_path_, ec);
  HG_CHECK(!ec, "cannot rename '" << temp_path_ << "' to '" << final_path_ << "': " << ec.message());
  committed_ = true;
  signals::unregister_cleanup_file(cleanup_slot_);
  cleanup_slot_ = -1;
}

}  // namespace hessgap::io
