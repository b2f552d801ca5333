// IDX reading: the real Fashion-MNIST t10k files (checked against Python's gzip + numpy), small
// files written here (closed form), and corrupt files.
#include <gtest/gtest.h>

#include <functional>

#include "data/idx_dataset.h"
#include "test_helpers.h"
#include "tests/support/error_of.h"
#include "util/error.h"

namespace hessgap::data {
namespace {
using namespace testing;

const std::string kFashion = "/usr/share/datasets/fashion-mnist";

std::vector<std::uint8_t> idx_bytes(std::vector<std::uint32_t> dims, const std::vector<std::uint8_t>& data) {
  std::vector<std::uint8_t> out = {0, 0, 0x08, static_cast<std::uint8_t>(dims.size())};
  for (std::uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(d >> s));
  }
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

void write_gz(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_TRUE(f);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  gzclose(f);
}

using ::hessgap::testing::error_of;  // tests/support/error_of.h

// 6 images of 2 x 3 with pixel j of image i = 10 i + j; labels 0 1 2 0 1 0.
void write_small(const std::string& dir, bool gzip) {
  std::vector<std::uint8_t> pixels;
  for (int i = 0; i < 6; ++i) {
    for (int j = 0; j < 6; ++j) pixels.push_back(static_cast<std::uint8_t>(10 * i + j));
  }
  const auto images = idx_bytes({6, 2, 3}, pixels);
  const auto labels = idx_bytes({6}, {0, 1, 2, 0, 1, 0});
  if (gzip) {
    write_gz(dir + "/images.gz", images);
    write_gz(dir + "/labels.gz", labels);
  } else {
    write_bytes(dir + "/images", images);
    write_bytes(dir + "/labels", labels);
  }
}

TEST(Idx, SmallFilesPlainAndGzip) {
  const std::string dir = fresh_dir("small");
  write_small(dir, false);
  write_small(dir, true);
  IdxOptions options;
  options.mean = 0.0;
  options.stddev = 1.0;
  const IdxDataset plain(dir + "/images", dir + "/labels", options);
  const IdxDataset gz(dir + "/images.gz", dir + "/labels.gz", options);
  for (const IdxDataset* ds : {&plain, &gz}) {
    ASSERT_EQ(ds->size(), 6);
    EXPECT_EQ(ds->num_classes(), 3);
    EXPECT_EQ(ds->class_names(), (std::vector<std::string>{"0", "1", "2"}));
    EXPECT_EQ(ds->height(), 2);
    EXPECT_EQ(ds->width(), 3);
    const Batch b = ds->get_batch({4, 2});
    ASSERT_EQ(b.inputs.sizes(), torch::IntArrayRef({2, 1, 2, 3}));
    EXPECT_EQ(b.labels[0].item<std::int64_t>(), 1);
    EXPECT_EQ(b.labels[1].item<std::int64_t>(), 2);
    EXPECT_EQ(b.inputs[0][0][1][2].item<float>(), 45.0f / 255.0f);  // image 4, pixel 5
    EXPECT_EQ(b.inputs[1][0][0][0].item<float>(), 20.0f / 255.0f);
  }
  const IdxDataset normed(dir + "/images", dir + "/labels");  // Fashion-MNIST statistics
  EXPECT_EQ(normed.get_batch({1}).inputs[0][0][0][1].item<float>(),
            (11.0f / 255.0f - static_cast<float>(0.2860)) / static_cast<float>(0.3530));
}

TEST(Idx, MaxPerClass) {
  const std::string dir = fresh_dir("small");
  write_small(dir, false);
  IdxOptions options;
  options.max_per_class = 1;
  const IdxDataset ds(dir + "/images", dir + "/labels", options);
  ASSERT_EQ(ds.size(), 3);  // file rows 0, 1, 2
  EXPECT_EQ(ds.label(0), 0);
  EXPECT_EQ(ds.label(1), 1);
  EXPECT_EQ(ds.label(2), 2);
  EXPECT_EQ(ds.get_batch({2}).sample_ids, std::vector<std::int64_t>{2});
  EXPECT_THROW(ds.get_batch({3}), Error);
}

// Padding and grey-to-RGB against the closed form: pixel (r, c) of image i is 10 i + 3 r + c inside, 0 in
// the padding, scaled and normalised per channel in float32 (torchvision's Pad, ToTensor, Normalize).
TEST(Idx, PaddingAndGreyToRgb) {
  const std::string dir = fresh_dir("pad");
  write_small(dir, false);
  IdxOptions options;
  options.pad = 2;
  options.grey_to_rgb = true;
  options.rgb_mean = {0.1, 0.2, 0.3};
  options.rgb_stddev = {0.5, 0.25, 0.125};
  const IdxDataset ds(dir + "/images", dir + "/labels", options);
  EXPECT_EQ(ds.height(), 2);  // the file's size
  const Batch b = ds.get_batch({4, 1});
  ASSERT_EQ(b.inputs.sizes(), torch::IntArrayRef({2, 3, 6, 7}));
  EXPECT_EQ(b.labels[0].item<std::int64_t>(), 1);
  const auto x = b.inputs.accessor<float, 4>();
  const std::int64_t image[2] = {4, 1};
  for (int k = 0; k < 2; ++k) {
    for (int c = 0; c < 3; ++c) {
      const auto mean = static_cast<float>(options.rgb_mean[static_cast<std::size_t>(c)]);
      const auto sd = static_cast<float>(options.rgb_stddev[static_cast<std::size_t>(c)]);
      for (int r = 0; r < 6; ++r) {
        for (int col = 0; col < 7; ++col) {
          const bool inside = r >= 2 && r < 4 && col >= 2 && col < 5;
          const int p = inside ? static_cast<int>(10 * image[k] + 3 * (r - 2) + (col - 2)) : 0;
          EXPECT_EQ(x[k][c][r][col], (static_cast<float>(p) / 255.0f - mean) / sd) << k << " " << c << " " << r << " " << col;
        }
      }
    }
  }
  // Padding alone keeps one channel and the grey statistics.
  IdxOptions grey;
  grey.pad = 1;
  const Batch g = IdxDataset(dir + "/images", dir + "/labels", grey).get_batch({2});
  ASSERT_EQ(g.inputs.sizes(), torch::IntArrayRef({1, 1, 4, 5}));
  const float black = (0.0f - static_cast<float>(0.2860)) / static_cast<float>(0.3530);
  EXPECT_EQ(g.inputs[0][0][0][0].item<float>(), black);
  EXPECT_EQ(g.inputs[0][0][3][4].item<float>(), black);
  EXPECT_EQ(g.inputs[0][0][1][1].item<float>(), (20.0f / 255.0f - static_cast<float>(0.2860)) / static_cast<float>(0.3530));
  grey.pad = -1;
  EXPECT_NE(error_of([&] { IdxDataset(dir + "/images", dir + "/labels", grey); }).find("--pad"), std::string::npos);
}

TEST(Idx, CorruptFilesNameTheFile) {
  const std::string dir = fresh_dir("bad");
  write_small(dir, false);
  std::vector<std::uint8_t> images = read_bytes(dir + "/images");

  write_bytes(dir + "/cut", std::vector<std::uint8_t>(images.begin(), images.end() - 5));
  std::string msg = error_of([&] { read_idx(dir + "/cut", 3); });
  EXPECT_NE(msg.find(dir + "/cut' is truncated"), std::string::npos) << msg;

  write_gz(dir + "/cut.gz", std::vector<std::uint8_t>(images.begin(), images.end() - 5));
  msg = error_of([&] { read_idx(dir + "/cut.gz", 3); });
  EXPECT_NE(msg.find(dir + "/cut.gz' is truncated"), std::string::npos) << msg;

  // A gzip stream cut in the middle (compressed bytes missing).
  write_gz(dir + "/whole.gz", images);
  std::vector<std::uint8_t> gz = read_bytes(dir + "/whole.gz");
  write_bytes(dir + "/cutgz.gz", std::vector<std::uint8_t>(gz.begin(), gz.begin() + static_cast<long>(gz.size() / 2)));
  msg = error_of([&] { read_idx(dir + "/cutgz.gz", 3); });
  EXPECT_NE(msg.find(dir + "/cutgz.gz'"), std::string::npos) << msg;

  write_bytes(dir + "/long", [&] { auto v = images; v.push_back(1); return v; }());
  msg = error_of([&] { read_idx(dir + "/long", 3); });
  EXPECT_NE(msg.find("longer than its header"), std::string::npos) << msg;

  msg = error_of([&] { read_idx(dir + "/labels", 3); });  // a labels file where images are expected
  EXPECT_NE(msg.find(dir + "/labels': expected the magic number 0x00000803"), std::string::npos) << msg;

  msg = error_of([&] { read_idx(dir + "/missing", 1); });
  EXPECT_NE(msg.find(dir + "/missing"), std::string::npos) << msg;

  write_bytes(dir + "/labels5", idx_bytes({5}, {0, 1, 2, 0, 1}));
  msg = error_of([&] { IdxDataset ds(dir + "/images", dir + "/labels5"); });
  EXPECT_NE(msg.find("6 images but 5 labels"), std::string::npos) << msg;
}

TEST(Idx, FashionMnistTestSetMatchesNumpy) {
  const std::string images = kFashion + "/t10k-images-idx3-ubyte.gz";
  const std::string labels = kFashion + "/t10k-labels-idx1-ubyte.gz";
  if (!fs::exists(images) || !fs::exists(labels)) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const IdxDataset ds(images, labels);
  ASSERT_EQ(ds.size(), 10000);
  EXPECT_EQ(ds.num_classes(), 10);
  EXPECT_EQ(ds.class_names()[0], "T-shirt/top");
  EXPECT_EQ(ds.class_names()[9], "Ankle boot");
  HG_ORACLE_OR_SKIP(ref_labels, "idx " + quote(labels) + " 32");
  HG_ORACLE_OR_SKIP(ref_sums, "idx " + quote(images) + " 4");
  EXPECT_EQ(ref_labels["dims"][0].get<int>(), 10000);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(ds.label(i), ref_labels["values"][i].get<std::int64_t>()) << i;
  IdxOptions raw;
  raw.mean = 0.0;
  raw.stddev = 1.0;
  const Batch b = IdxDataset(images, labels, raw).get_batch({0, 1, 2, 3});
  ASSERT_EQ(b.inputs.sizes(), torch::IntArrayRef({4, 1, 28, 28}));
  for (int i = 0; i < 4; ++i) {
    const double sum = (b.inputs[i] * 255.0).round().sum().item<double>();
    EXPECT_EQ(sum, ref_sums["values"][i].get<double>()) << i;
  }
}

}  // namespace
}  // namespace hessgap::data
