// Output files appear complete or not at all: write under a temporary name in the destination
// directory, then rename (atomic within one file system). Torch-free.
#pragma once

#include <string>

namespace hessgap::io {

// Validates an output path before any work is done, so that a long run does not fail at the end.
// Throws hessgap::Error "cannot write output 'P': ..." when `path` is empty, exists and is not a regular
// file (a directory, FIFO, device or socket, or a symbolic link to one: the output would replace it), or
// when its directory does not exist, is not a directory or is not writable. Creates nothing.
void check_writable_output(const std::string& path);

// Usage: AtomicOutput out(path); write to out.temp_path(); close the file; out.commit();
// The constructor runs check_writable_output(final_path) and creates the temporary file, empty, as
// "<final_path>.tmp-<pid>-<8 random hex digits>" in the same directory (so the rename cannot cross
// file systems) with O_CREAT|O_EXCL|O_NOFOLLOW; writers then truncate and fill it. commit() refuses an
// empty temporary file (nothing was written). Without commit(), the destructor removes the temporary file
// (an exception during writing leaves no partial output behind). Movable, not copyable.
// Not collective: in a multi-rank run exactly one rank should own a given output.
class AtomicOutput {
 public:
  explicit AtomicOutput(std::string final_path);
  AtomicOutput(AtomicOutput&& other) noexcept;
  AtomicOutput& operator=(AtomicOutput&& other) noexcept;
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;
  ~AtomicOutput();

  const std::string& final_path() const { return final_path_; }
  const std::string& temp_path() const { return temp_path_; }
  bool committed() const { return committed_; }

  // Renames the temporary file over final_path (replacing an existing file). Throws hessgap::Error
  // if the temporary file was never written or the rename fails; a second call is an Error too.
  void commit();

 private:
  void discard() noexcept;

  std::string final_path_;
  std::string temp_path_;
  bool committed_ = false;
  int cleanup_slot_ = -1;  // signals' registry of files to remove on a fatal signal (-1: none)
};

}  // namespace hessgap::io
