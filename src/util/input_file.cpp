#include "util/input_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "util/error.h"

namespace hessgap {

std::uint64_t require_regular_file(const std::string& path, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    HG_CHECK(err != ENOENT && err != ENOTDIR, what << " '" << path << "' not found");
    HG_FAIL("cannot read " << what << " '" << path << "': " << std::strerror(err));
  }
  if (S_ISREG(st.st_mode)) return static_cast<std::uint64_t>(st.st_size);
  const char* kind = S_ISDIR(st.st_mode)    ? "a directory"
                     : S_ISFIFO(st.st_mode) ? "a FIFO"
                     : S_ISCHR(st.st_mode)  ? "a character device"
                     : S_ISBLK(st.st_mode)  ? "a block device"
                     : S_ISSOCK(st.st_mode) ? "a socket"
                                            : "a special file";
  HG_FAIL(what << " '" << path << "' is not a regular file: it is " << kind);
}

void refuse_special_file(const std::string& path, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) require_regular_file(path, what);
}

}  // namespace hessgap
