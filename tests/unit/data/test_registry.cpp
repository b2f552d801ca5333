// open_dataset: kinds, paths, normalisation names, and its errors.
#include <gtest/gtest.h>

#include "data/image.h"
#include "data/registry.h"
#include "test_helpers.h"
#include "util/error.h"

namespace hessgap::data {
namespace {
using namespace testing;

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
