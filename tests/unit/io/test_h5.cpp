// H5File: round trips through our own reader, and h5py as the independent oracle.
#include "io/h5.h"

#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>

#include "io_test_util.h"

namespace hessgap::io {
namespace {

using test::error_of;
using test::tmp_path;

// The file that check_h5_file.py verifies; keep the two in sync.
void write_sample(const std::string& path) {
  H5File f = H5File::create(path);
  std::vector<double> curve = {0, 0.25, 0.5, 0.75, 1.0, 1.25};
  f.write("/results/curve", curve, {2, 3}, "a curve", "nats");
  f.write("/results/weights", std::vector<float>{1.5f, -2.f, 0.f, 3.f}, {4}, "weights");
  f.write("/results/counts", std::vector<int64_t>{1, -2, 3, int64_t{1} << 40}, {2, 2}, "counts");
  f.write("/scalars/lr", 0.125, "learning rate");
  f.write("/scalars/steps", 7, "steps");
  f.write_strings("/names", {"alpha", "", "naïve µ"}, "some names");
  f.set_attr("/", "version", "0.1.0");
  f.set_attr("/", "world_size", int64_t{4});
  f.set_attr("/", "tolerance", 1e-6);
  f.set_attr("/results", "kind", std::string("group attr"));
  f.close();
}

TEST(ioH5File, RoundTrip) {
  const std::string path = tmp_path("sample.h5");
  write_sample(path);
  H5File f = H5File::open_read(path);
  EXPECT_FALSE(f.writable());

  std::vector<int64_t> shape;
  EXPECT_EQ(f.read_doubles("/results/curve", &shape), (std::vector<double>{0, 0.25, 0.5, 0.75, 1.0, 1.25}));
  EXPECT_EQ(shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.attr_string("/results/curve", "description"), "a curve");
  EXPECT_EQ(f.attr_string("/results/curve", "units"), "nats");
  EXPECT_FALSE(f.has_attr("/results/counts", "units"));
  EXPECT_EQ(f.attr_names("/results/curve"), (std::vector<std::string>{"description", "units"}));

  EXPECT_EQ(f.read_floats("/results/weights"), (std::vector<float>{1.5f, -2.f, 0.f, 3.f}));
  EXPECT_EQ(f.read_int64("/results/counts", &shape), (std::vector<int64_t>{1, -2, 3, int64_t{1} << 40}));
  EXPECT_EQ(shape, (std::vector<int64_t>{2, 2}));
  // Integers convert to doubles on read.
  EXPECT_EQ(f.read_doubles("/results/counts")[3], 1099511627776.0);

  EXPECT_EQ(f.read_double("/scalars/lr"), 0.125);
  EXPECT_EQ(f.read_int64_scalar("/scalars/steps"), 7);
  EXPECT_EQ(f.read_doubles("/scalars/lr", &shape).size(), 1u);
  EXPECT_TRUE(shape.empty());
  EXPECT_TRUE(f.info("/scalars/steps").shape.empty());
  EXPECT_EQ(f.info("/results/weights").kind, DatasetInfo::Kind::Float);
  EXPECT_EQ(f.info("/results/weights").element_size, 4u);

  EXPECT_EQ(f.read_strings("/names"), (std::vector<std::string>{"alpha", "", "naïve µ"}));
  EXPECT_EQ(f.attr_string("/names", "description"), "some names");

  EXPECT_EQ(f.attr_string("/", "version"), "0.1.0");
  EXPECT_EQ(f.attr_int64("/", "world_size"), 4);
  EXPECT_EQ(f.attr_double("/", "world_size"), 4.0);
  EXPECT_EQ(f.attr_double("/", "tolerance"), 1e-6);
  EXPECT_EQ(f.attr_string("results", "kind"), "group attr");  // relative paths start at the root

  EXPECT_EQ(f.list("/"), (std::vector<std::string>{"names", "results", "scalars"}));
  EXPECT_EQ(f.list("/results"), (std::vector<std::string>{"counts", "curve", "weights"}));
  EXPECT_TRUE(f.has("/"));
  EXPECT_TRUE(f.has("/results/curve"));
  EXPECT_FALSE(f.has("/results/nope"));
  EXPECT_FALSE(f.has("/nope/deeper/still"));
  EXPECT_FALSE(f.has("/results/curve/below_a_dataset"));
  EXPECT_TRUE(f.is_group("/results"));
  EXPECT_FALSE(f.is_group("/results/curve"));
  EXPECT_TRUE(f.is_dataset("/results/curve"));
}

TEST(ioH5File, ReadableByH5py) {
  const std::string path = tmp_path("sample.h5");
  write_sample(path);
  // The script exits with 77 when h5py or numpy cannot be imported; the shell gives 127 without python3.
  std::string cmd = "/usr/bin/python3 " HG_SOURCE_DIR "/tests/unit/io/check_h5_file.py '" + path + "'";
  int status = std::system(cmd.c_str());
  int rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (rc == 77 || rc == 127) GTEST_SKIP() << "/usr/bin/python3 with h5py and numpy not available";
  EXPECT_EQ(rc, 0) << cmd;
}

TEST(ioH5File, ReadErrorsNameFileAndObject) {
  const std::string path = tmp_path("sample.h5");
  write_sample(path);
  H5File f = H5File::open_read(path);
  std::string msg = error_of([&] { f.read_doubles("/results/missing"); });
  EXPECT_HAS(msg, "/results/missing");
  EXPECT_HAS(msg, path);
  EXPECT_HAS(error_of([&] { f.read_int64("/results/curve"); }), "floating point");
  EXPECT_HAS(error_of([&] { f.read_doubles("/names"); }), "string");
  EXPECT_HAS(error_of([&] { f.read_strings("/results/curve"); }), "/results/curve");
  EXPECT_HAS(error_of([&] { f.read_double("/results/curve"); }), "expected 1 elements");
  EXPECT_HAS(error_of([&] { f.attr_string("/", "nope"); }), "no attribute 'nope'");
  EXPECT_HAS(error_of([&] { f.attr_int64("/", "tolerance"); }), "tolerance");
  EXPECT_HAS(error_of([&] { f.list("/results/curve"); }), "no group");
  EXPECT_HAS(error_of([&] { f.write("/x", 1.0, "d"); }), "read-only");
  EXPECT_HAS(error_of([&] { f.set_attr("/", "a", "b"); }), "read-only");
}

TEST(ioH5File, WriteErrors) {
  const std::string path = tmp_path("w.h5");
  H5File f = H5File::create(path);
  f.write("/a/b", std::vector<double>{1, 2}, {2}, "d");
  EXPECT_HAS(error_of([&] { f.write("/a/b", 3.0, "again"); }), "already exists");
  EXPECT_HAS(error_of([&] { f.write("/a/c", std::vector<double>{1, 2, 3}, {2, 2}, "d"); }), "do not fill shape [2, 2]");
  f.write("/a/d", std::vector<double>{1}, {}, "one-element vector with an empty shape is a scalar");
  EXPECT_HAS(error_of([&] { f.write("/a/b/under", 1.0, "d"); }), "'/a/b' is a dataset, not a group");
  EXPECT_HAS(error_of([&] { f.set_attr("/nope", "x", 1.0); }), "no object '/nope'");
  EXPECT_HAS(error_of([&] { f.create_group("/a/b"); }), "a dataset of that name exists");
}

TEST(ioH5File, OpenErrors) {
  const std::string missing = tmp_path("missing.h5");
  EXPECT_HAS(error_of([&] { H5File::open_read(missing); }), "'" + missing + "' not found");
  const std::string text = tmp_path("text.h5");
  test::write_bytes(text, "not hdf5 at all");
  EXPECT_HAS(error_of([&] { H5File::open_read(text); }), "'" + text + "' is not an HDF5 file");
  const std::string nodir = tmp_path("no/such/dir/x.h5");
  EXPECT_HAS(error_of([&] { H5File::create(nodir); }), "cannot create HDF5 file '" + nodir + "'");
}

TEST(ioH5File, EmptyDatasetsAttrOverwriteAndMove) {
  const std::string path = tmp_path("e.h5");
  {
    H5File f = H5File::create(path);
    f.write("/empty", std::vector<double>{}, {0, 3}, "nothing");
    f.write_strings("/no_strings", {}, "none");
    f.create_group("/g/h");
    f.create_group("/g/h");  // exists: no-op
    f.set_attr("/g/h", "x", 1.0);
    f.set_attr("/g/h", "x", std::string("now a string"));
    H5File moved = std::move(f);
    EXPECT_FALSE(f.is_open());
    moved.write("/after_move", int64_t{5}, "five", "items");
    moved.close();
    moved.close();  // idempotent
  }
  H5File f = H5File::open_read(path);
  std::vector<int64_t> shape;
  EXPECT_TRUE(f.read_doubles("/empty", &shape).empty());
  EXPECT_EQ(shape, (std::vector<int64_t>{0, 3}));
  EXPECT_TRUE(f.read_strings("/no_strings").empty());
  EXPECT_EQ(f.attr_string("/g/h", "x"), "now a string");
  EXPECT_EQ(f.read_int64_scalar("/after_move"), 5);
  EXPECT_EQ(f.attr_string("/after_move", "units"), "items");
  EXPECT_EQ(f.list("/g/h"), std::vector<std::string>{});
}

}  // namespace
}  // namespace hessgap::io
