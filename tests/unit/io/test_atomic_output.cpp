// AtomicOutput and check_writable_output: validation up front, temp file lifetime, rename on commit.
#include "io/atomic_output.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "io_test_util.h"
#include "util/signals.h"

namespace hessgap::io {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using test::tmp_path;

TEST(ioAtomicOutput, CommitRenamesTempFile) {
  const std::string path = tmp_path("out.bin");
  AtomicOutput out(path);
  EXPECT_EQ(out.final_path(), path);
  const std::string prefix = path + ".tmp-" + std::to_string(::getpid()) + "-";
  EXPECT_EQ(out.temp_path().substr(0, prefix.size()), prefix);
  EXPECT_EQ(out.temp_path().size(), prefix.size() + 8);  // 8 random hex digits
  EXPECT_TRUE(fs::is_regular_file(out.temp_path()));    // created (empty) by the constructor
  test::write_bytes(out.temp_path(), "payload");
  EXPECT_FALSE(fs::exists(path));
  out.commit();
  EXPECT_TRUE(out.committed());
  EXPECT_FALSE(fs::exists(out.temp_path()));
  EXPECT_EQ(test::read_bytes(path), "payload");
  EXPECT_HAS(error_of([&] { out.commit(); }), "already committed");
}

TEST(ioAtomicOutput, CommitReplacesExistingFile) {
  const std::string path = tmp_path("out.bin");
  test::write_bytes(path, "old");
  {
    AtomicOutput out(path);
    test::write_bytes(out.temp_path(), "new");
    out.commit();
  }
  EXPECT_EQ(test::read_bytes(path), "new");
}

TEST(ioAtomicOutput, DestructorRemovesUncommittedTemp) {
  const std::string path = tmp_path("out.bin");
  std::string temp;
  {
    AtomicOutput out(path);
    temp = out.temp_path();
    test::write_bytes(temp, "partial");
    EXPECT_TRUE(fs::exists(temp));
  }
  EXPECT_FALSE(fs::exists(temp));
  EXPECT_FALSE(fs::exists(path));
}

TEST(ioAtomicOutput, AFatalSignalRemovesTheTemporaryFile) {
  // A child process writes, is signalled before it commits, and exits 3 with the temp file gone.
  for (int signo : {SIGINT, SIGTERM, SIGUSR1}) {
    const std::string path = tmp_path("signalled-" + std::to_string(signo) + ".bin");
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      signals::install_exit_handlers();
      AtomicOutput out(path);
      test::write_bytes(out.temp_path(), "partial");
      const std::string temp = out.temp_path() + "\n";
      if (::write(fds[1], temp.data(), temp.size()) != static_cast<ssize_t>(temp.size())) ::_exit(9);
      ::raise(signo);
      ::_exit(8);  // not reached: the handler exits
    }
    ::close(fds[1]);
    std::string temp;
    char c;
    while (::read(fds[0], &c, 1) == 1 && c != '\n') temp += c;
    ::close(fds[0]);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "signal " << signo;
    EXPECT_EQ(WEXITSTATUS(status), signals::kExitInterrupted) << "signal " << signo;
    ASSERT_FALSE(temp.empty());
    EXPECT_FALSE(fs::exists(temp)) << temp;
    EXPECT_FALSE(fs::exists(path));
  }
}

TEST(ioAtomicOutput, ReadOnlyOutputIsNotReplaced) {
  const std::string path = tmp_path("kept.h5");
  test::write_bytes(path, "precious");
  ::chmod(path.c_str(), 0444);
  EXPECT_HAS(error_of([&] { AtomicOutput out(path); }), "exists and is read-only (mode 444)");
  EXPECT_EQ(test::read_bytes(path), "precious");
  ::chmod(path.c_str(), 0644);
}

TEST(ioAtomicOutput, MoveTransfersOwnership) {
  const std::string path = tmp_path("out.bin");
  AtomicOutput a(path);
  const std::string temp = a.temp_path();
  test::write_bytes(temp, "x");
  {
    AtomicOutput b = std::move(a);
  }  // b discards the temp file; a owns nothing
  EXPECT_FALSE(fs::exists(temp));
}

TEST(ioAtomicOutput, CommitWithoutTempIsAnError) {
  const std::string path = tmp_path("out.bin");
  AtomicOutput out(path);
  std::string msg = error_of([&] { out.commit(); });
  EXPECT_HAS(msg, "was not written");
  EXPECT_HAS(msg, path);
}

TEST(ioAtomicOutput, MissingDirectory) {
  const std::string dir = tmp_path("no_such_dir");
  const std::string path = dir + "/out.h5";
  std::string msg = error_of([&] { AtomicOutput out(path); });
  EXPECT_HAS(msg, "cannot write output '" + path + "': directory '" + dir + "' does not exist");
  EXPECT_HAS(error_of([&] { check_writable_output(path); }), "does not exist");
}

TEST(ioAtomicOutput, PathIsADirectoryOrParentIsAFile) {
  const std::string dir = tmp_path("a_dir");
  fs::create_directories(dir);
  EXPECT_HAS(error_of([&] { check_writable_output(dir); }), "cannot write output '" + dir + "': it is a directory");
  const std::string file = tmp_path("a_file");
  test::write_bytes(file, "x");
  EXPECT_HAS(error_of([&] { check_writable_output(file + "/out.h5"); }), "is not a directory");
  EXPECT_HAS(error_of([&] { check_writable_output(""); }), "empty");
}

TEST(ioAtomicOutput, UnwritableDirectory) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: directory permissions do not apply";
  const std::string dir = tmp_path("read_only");
  fs::create_directories(dir);
  ::chmod(dir.c_str(), 0555);
  std::string msg = error_of([&] { AtomicOutput out(dir + "/out.h5"); });
  ::chmod(dir.c_str(), 0755);
  EXPECT_HAS(msg, "directory '" + dir + "' is not writable");
}

// Issue #12: --out naming a FIFO, a device or a link to one is refused (a rename would replace it with a
// regular file: /dev/null as root); a link to a regular file is fine; two outputs of one process get
// distinct temporary names, and a symbolic link planted where a temporary name of the old scheme
// (<out>.tmp-<pid>) pointed is neither followed nor replaced.
TEST(ioAtomicOutput, SpecialFilesAndPlantedLinks) {
  const std::string fifo = tmp_path("a_fifo");
  fs::remove(fifo);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  EXPECT_HAS(error_of([&] { check_writable_output(fifo); }), "it is a FIFO, not a regular file");
  EXPECT_HAS(error_of([&] { check_writable_output("/dev/null"); }), "it is a character device");
  const std::string to_null = tmp_path("to_null");
  fs::remove(to_null);
  fs::create_symlink("/dev/null", to_null);
  EXPECT_HAS(error_of([&] { AtomicOutput out(to_null); }), "a symbolic link to a character device");
  const std::string regular = tmp_path("regular.bin");
  test::write_bytes(regular, "old");
  const std::string to_regular = tmp_path("to_regular");
  fs::remove(to_regular);
  fs::create_symlink(regular, to_regular);
  EXPECT_NO_THROW(check_writable_output(to_regular));
  EXPECT_NO_THROW(check_writable_output(tmp_path("dangling_ok")));

  const std::string path = tmp_path("planted.bin");
  const std::string victim = tmp_path("victim.txt");
  test::write_bytes(victim, "precious");
  const std::string old_name = path + ".tmp-" + std::to_string(::getpid());
  fs::remove(old_name);
  fs::create_symlink(victim, old_name);
  {
    AtomicOutput a(path), b(path);
    EXPECT_NE(a.temp_path(), b.temp_path());
    EXPECT_FALSE(fs::is_symlink(a.temp_path()));
    test::write_bytes(a.temp_path(), "new");
    a.commit();
  }
  EXPECT_EQ(test::read_bytes(victim), "precious");
  EXPECT_FALSE(fs::is_symlink(path));
  EXPECT_EQ(test::read_bytes(path), "new");
  fs::remove(old_name);
}

TEST(ioAtomicOutput, RelativePathUsesCurrentDirectory) {
  EXPECT_NO_THROW(check_writable_output("relative_name.h5"));
}

}  // namespace
}  // namespace hessgap::io
