// open_dataset: kinds, paths, normalisation names, and its errors.
#include <gtest/gtest.h>

#include <functional>

#include "data/image.h"
#include "data/label_noise.h"
#include "data/registry.h"
#include "test_helpers.h"
#include "tests/support/error_of.h"
#include "util/error.h"

namespace hessgap::data {
namespace {
using namespace testing;

using hessgap::testing::error_of;

TEST(Registry, ImageFolderWithImagenetStatistics) {
  DatasetSpec spec;
  spec.path = assets_path("cifar10-test-100");
  spec.max_per_class = 2;
  const auto ds = open_dataset(spec);
  ASSERT_EQ(ds->size(), 20);
  EXPECT_EQ(ds->num_classes(), 10);
  const Batch b = ds->get_batch({0});
  const Image img = decode_image(assets_path("cifar10-test-100/airplane/0000.jpg"));
  const float expected = (static_cast<float>(img.at(0, 0, 1)) / 255.0f - static_cast<float>(0.456)) /
                         static_cast<float>(0.224);
  EXPECT_EQ(b.inputs[0][1][0][0].item<float>(), expected);
}

TEST(Registry, IdxFolderAndFile) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir + "/t10k-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  DatasetSpec spec;
  spec.kind = "idx";
  spec.path = dir;
  spec.normalize = "fashion-mnist";
  spec.max_per_class = 5;
  const auto by_folder = open_dataset(spec);
  EXPECT_EQ(by_folder->size(), 50);
  spec.path = dir + "/t10k-images-idx3-ubyte.gz";
  const auto by_file = open_dataset(spec);
  EXPECT_TRUE(torch::equal(by_folder->get_batch({7, 3}).inputs, by_file->get_batch({7, 3}).inputs));
}

// The fine-tuning input of the reference for Fashion-MNIST (SPEC §3.2): 28 -> 32 px by zero padding, grey
// replicated to RGB, a 3-channel normalisation; and a subset of the first samples. Oracle: the closed form
// from the raw bytes of the installed files (IDX headers: 16 bytes for images, 8 for labels).
TEST(Registry, FashionMnistPaddedGreyToRgbSubset) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir + "/t10k-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const std::vector<std::uint8_t> images = read_gz(dir + "/t10k-images-idx3-ubyte.gz");
  const std::vector<std::uint8_t> labels = read_gz(dir + "/t10k-labels-idx1-ubyte.gz");
  ASSERT_EQ(images.size(), 16u + 10000u * 784u);
  DatasetSpec spec;
  spec.kind = "idx";
  spec.path = dir;
  spec.pad = 2;
  spec.grey_to_rgb = true;
  spec.normalize = "cifar10";
  spec.limit = 7;
  const auto ds = open_dataset(spec);
  ASSERT_EQ(ds->size(), 7);
  EXPECT_EQ(ds->num_classes(), 10);
  EXPECT_NE(ds->describe().find("first 7 samples"), std::string::npos) << ds->describe();
  EXPECT_THROW(ds->get_batch({7}), Error);  // outside the subset, though the split has it
  const Batch b = ds->get_batch({6, 0, 3});
  ASSERT_EQ(b.inputs.sizes(), torch::IntArrayRef({3, 3, 32, 32}));
  const NormalizeStats cifar = normalize_stats("cifar10");
  const auto x = b.inputs.accessor<float, 4>();
  const std::int64_t ids[3] = {6, 0, 3};
  for (int k = 0; k < 3; ++k) {
    EXPECT_EQ(b.labels[k].item<std::int64_t>(), labels[8 + static_cast<std::size_t>(ids[k])]);
    EXPECT_EQ(ds->label(ids[k]), labels[8 + static_cast<std::size_t>(ids[k])]);
    for (int c = 0; c < 3; ++c) {
      const auto mean = static_cast<float>(cifar.mean[static_cast<std::size_t>(c)]);
      const auto sd = static_cast<float>(cifar.stddev[static_cast<std::size_t>(c)]);
      for (int r = 0; r < 32; ++r) {
        for (int col = 0; col < 32; ++col) {
          const bool inside = r >= 2 && r < 30 && col >= 2 && col < 30;
          const std::uint8_t p =
              inside ? images[16 + static_cast<std::size_t>(ids[k] * 784 + (r - 2) * 28 + (col - 2))] : 0;
          ASSERT_EQ(x[k][c][r][col], (static_cast<float>(p) / 255.0f - mean) / sd)
              << "sample " << ids[k] << " channel " << c << " at " << r << "," << col;
        }
      }
    }
  }
  // Without the padding and replication, the same pixels in the middle (1-channel statistics).
  spec.pad = 0;
  spec.grey_to_rgb = false;
  spec.normalize = "none";
  const Batch plain = open_dataset(spec)->get_batch({6});
  ASSERT_EQ(plain.inputs.sizes(), torch::IntArrayRef({1, 1, 28, 28}));
  EXPECT_EQ(plain.inputs[0][0][13][17].item<float>(), static_cast<float>(images[16 + 6 * 784 + 13 * 28 + 17]) / 255.0f);
}

// Label noise goes on the subset: the first N ids, m = floor(rho N) of them relabelled, exactly as LabelNoise
// over ids 0..N-1 draws them; the clean labels are the split's.
TEST(Registry, SubsetThenLabelNoise) {
  DatasetSpec spec;
  spec.path = assets_path("cifar10-test-100");
  spec.max_per_class = 3;  // 30 images, class by class
  spec.limit = 13;
  spec.noise_rate = 0.5;
  spec.noise_seed = 5;
  const auto noisy = open_dataset(spec);
  ASSERT_EQ(noisy->size(), 13);
  const LabelAudit a = audit_labels(*noisy);
  EXPECT_EQ(a.source, "synthetic");
  ASSERT_EQ(a.clean.size(), 13u);
  LabelNoiseOptions lo;
  lo.rate = 0.5;
  lo.seed = 5;
  std::vector<std::int64_t> ids(13);
  for (std::int64_t i = 0; i < 13; ++i) ids[static_cast<std::size_t>(i)] = i;
  const LabelNoise direct(ids, 10, lo);
  EXPECT_EQ(direct.num_selected(), 6);
  std::int64_t selected = 0;
  for (std::int64_t i = 0; i < 13; ++i) {
    const auto k = static_cast<std::size_t>(i);
    EXPECT_EQ(a.clean[k], i / 3) << i;  // the split's labels: 3 per class
    EXPECT_EQ(a.used[k], direct.label(i, i / 3)) << i;
    EXPECT_EQ(a.relabelled[k], direct.selected(i) ? 1 : 0) << i;
    selected += a.relabelled[k];
  }
  EXPECT_EQ(selected, 6);
  const Batch b = noisy->get_batch({12, 2});
  EXPECT_EQ(b.labels[0].item<std::int64_t>(), a.used[12]);
  EXPECT_EQ(b.labels[1].item<std::int64_t>(), a.used[2]);
  EXPECT_THROW(noisy->label(13), Error);
}

TEST(Registry, PadGreyToRgbAndSubsetErrors) {
  DatasetSpec spec;
  spec.path = assets_path("cifar10-test-100");
  spec.pad = 2;  // image folders: not implemented
  std::string msg = error_of([&] { open_dataset(spec); });
  EXPECT_NE(msg.find("--pad and --grey-to-rgb are only supported for kind idx"), std::string::npos) << msg;
  spec.pad = 0;
  spec.grey_to_rgb = true;
  EXPECT_NE(error_of([&] { open_dataset(spec); }).find("--grey-to-rgb"), std::string::npos);
  spec.grey_to_rgb = false;
  spec.max_per_class = 1;
  spec.limit = 11;  // 10 images
  msg = error_of([&] { open_dataset(spec); });
  EXPECT_NE(msg.find("first 11 samples (--subset)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("the split has 10"), std::string::npos) << msg;
  spec.limit = -1;
  EXPECT_NE(error_of([&] { open_dataset(spec); }).find("--subset"), std::string::npos);
  spec.limit = 10;
  EXPECT_EQ(open_dataset(spec)->size(), 10);

  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir + "/t10k-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  spec = DatasetSpec{};
  spec.kind = "idx";
  spec.path = dir;
  spec.normalize = "cifar10";  // 3-channel statistics for grey images
  msg = error_of([&] { open_dataset(spec); });
  EXPECT_NE(msg.find("give --grey-to-rgb"), std::string::npos) << msg;
  spec.grey_to_rgb = true;
  spec.normalize = "fashion-mnist";  // 1-channel statistics for replicated images
  msg = error_of([&] { open_dataset(spec); });
  EXPECT_NE(msg.find("with --grey-to-rgb IDX images have 3 channels"), std::string::npos) << msg;
  spec.normalize = "none";
  spec.pad = -2;
  EXPECT_NE(error_of([&] { open_dataset(spec); }).find("--pad must be >= 0"), std::string::npos);
}

TEST(Registry, Errors) {
  DatasetSpec spec;
  spec.path = assets_path("cifar10-test-100");
  spec.kind = "lmdb";
  EXPECT_THROW(open_dataset(spec), Error);
  spec.kind = "imagefolder";
  spec.normalize = "fashion-mnist";  // 1-channel statistics for RGB images
  EXPECT_THROW(open_dataset(spec), Error);
  spec.normalize = "imagenett";
  EXPECT_THROW(open_dataset(spec), Error);
  spec.kind = "idx";
  spec.normalize = "imagenet";  // RGB statistics for 1-channel images
  EXPECT_THROW(open_dataset(spec), Error);
  spec.normalize = "none";
  spec.split = "validation";
  EXPECT_THROW(open_dataset(spec), Error);
  spec.path = "";
  EXPECT_THROW(open_dataset(spec), Error);
  EXPECT_EQ(normalize_stats("cifar10").channels, 3);
  EXPECT_EQ(normalize_stats("mnist").mean[0], 0.1307);
}

}  // namespace
}  // namespace hessgap::data
