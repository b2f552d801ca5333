// ImageFolderDataset: torchvision's ordering, batches, threads, and errors.
#include <gtest/gtest.h>

#include <functional>

#include "data/image_folder.h"
#include "test_helpers.h"
#include "tests/support/error_of.h"
#include "util/error.h"

namespace hessgap::data {
namespace {
using namespace testing;

void put(const std::string& dir, const std::string& rel, const std::string& fixture = "grey.png") {
  fs::create_directories(fs::path(dir + "/" + rel).parent_path());
  fs::copy_file(fixture_path(fixture), dir + "/" + rel);
}

using ::hessgap::testing::error_of;  // tests/support/error_of.h

TEST(ImageFolder, OrderIsTorchvisionsSortedClassesAndFiles) {
  const std::string root = fresh_dir("root");
  // Byte order: "B" < "a" < "b"; "10" < "2"; nested folders follow their path order.
  put(root, "b/2.png");
  put(root, "b/10.png");
  put(root, "b/X.JPG", "rect.jpg");
  put(root, "b/notes.txt");  // not an image extension: skipped
  put(root, "b/sub/1.jpeg", "rect.jpg");
  put(root, "b/sub/deeper/0.png");
  put(root, "b/sub.x/0.png");
  put(root, "b/Sub2/0.png");
  put(root, "a/z.PNG");
  put(root, "B/only.png");
  std::ofstream(root + "/README.md") << "not a class";
  const ImageFolderDataset ds(root);
  EXPECT_EQ(ds.class_names(), (std::vector<std::string>{"B", "a", "b"}));
  // As printed by torchvision 0.14 make_dataset(root, find_classes(root)[1], (".jpg", ".jpeg", ".png")):
  // folders in the order of their full path strings ("sub" < "sub.x" < "sub/deeper").
  const std::vector<std::string> expected = {"B/only.png",   "a/z.PNG",      "b/10.png",      "b/2.png",
                                             "b/X.JPG",      "b/Sub2/0.png", "b/sub/1.jpeg",  "b/sub.x/0.png",
                                             "b/sub/deeper/0.png"};
  ASSERT_EQ(ds.size(), static_cast<std::int64_t>(expected.size()));
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(ds.file(static_cast<std::int64_t>(i)), root + "/" + expected[i]) << i;
  EXPECT_EQ(ds.label(0), 0);
  EXPECT_EQ(ds.label(1), 1);
  EXPECT_EQ(ds.label(5), 2);
}

TEST(ImageFolder, CifarAssetsBatch) {
  const ImageFolderDataset ds(assets_path("cifar10-test-100"));
  ASSERT_EQ(ds.size(), 1000);
  EXPECT_EQ(ds.class_names(), (std::vector<std::string>{"airplane", "automobile", "bird", "cat", "deer", "dog",
                                                        "frog", "horse", "ship", "truck"}));
  EXPECT_EQ(ds.file(0), assets_path("cifar10-test-100/airplane/0000.jpg"));
  EXPECT_EQ(ds.file(999), assets_path("cifar10-test-100/truck/0099.jpg"));
  EXPECT_EQ(ds.label(999), 9);
  const std::vector<std::int64_t> ids = {999, 0, 345, 101, 500, 777, 12};
  const Batch b = ds.get_batch(ids);
  ASSERT_EQ(b.inputs.sizes(), torch::IntArrayRef({7, 3, 32, 32}));
  ASSERT_EQ(b.inputs.dtype(), torch::kFloat32);
  ASSERT_EQ(b.labels.dtype(), torch::kInt64);
  EXPECT_EQ(b.sample_ids, ids);
  for (std::size_t k = 0; k < ids.size(); ++k) {
    EXPECT_EQ(b.labels[static_cast<std::int64_t>(k)].item<std::int64_t>(), ds.label(ids[k]));
    const torch::Tensor one = apply_eval_transform(decode_image(ds.file(ids[k])), EvalTransform{});
    EXPECT_TRUE(torch::equal(b.inputs[static_cast<std::int64_t>(k)], one)) << k;
  }
  ImageFolderOptions serial;
  serial.num_threads = 1;
  const ImageFolderDataset ds1(assets_path("cifar10-test-100"), serial);
  EXPECT_TRUE(torch::equal(ds1.get_batch(ids).inputs, b.inputs));
  EXPECT_EQ(ds.get_batch({}).size(), 0);
}

TEST(ImageFolder, ResizeAndCropGiveOneSize) {
  ImageFolderOptions options;
  options.transform.resize = 40;
  options.transform.crop = 36;
  const ImageFolderDataset ds(assets_path("cifar10-test-100"), options);
  EXPECT_EQ(ds.get_batch({1, 2, 3}).inputs.sizes(), torch::IntArrayRef({3, 3, 36, 36}));
}

TEST(ImageFolder, MaxPerClassKeepsFirstFiles) {
  ImageFolderOptions options;
  options.max_per_class = 3;
  const ImageFolderDataset ds(assets_path("cifar10-test-100"), options);
  ASSERT_EQ(ds.size(), 30);
  EXPECT_EQ(ds.file(3), assets_path("cifar10-test-100/automobile/0000.jpg"));
  EXPECT_EQ(ds.file(29), assets_path("cifar10-test-100/truck/0002.jpg"));
  EXPECT_EQ(ds.label(29), 9);
}

TEST(ImageFolder, ConstructionErrors) {
  const std::string base = fresh_dir("errors");
  std::string msg = error_of([&] { ImageFolderDataset ds(base + "/nope"); });
  EXPECT_NE(msg.find(base + "/nope' does not exist"), std::string::npos) << msg;

  fs::create_directories(base + "/flat");
  put(base, "flat/image.png");
  msg = error_of([&] { ImageFolderDataset ds(base + "/flat"); });
  EXPECT_NE(msg.find("no class sub-folders"), std::string::npos) << msg;

  fs::create_directories(base + "/empty/cls/deeper");
  put(base, "empty/cls/readme.txt");
  msg = error_of([&] { ImageFolderDataset ds(base + "/empty"); });
  EXPECT_NE(msg.find("empty data folder '" + base + "/empty/cls'"), std::string::npos) << msg;

  put(base, "bmp/cls/a.png");
  put(base, "bmp/cls/b.BMP");
  msg = error_of([&] { ImageFolderDataset ds(base + "/bmp"); });
  EXPECT_NE(msg.find(base + "/bmp/cls/b.BMP"), std::string::npos) << msg;
}

TEST(ImageFolder, BatchErrors) {
  const std::string root = fresh_dir("root");
  put(root, "a/0.png");              // 9 x 7
  put(root, "a/1.jpg", "rect.jpg");  // 75 x 50
  std::ofstream(root + "/a/2.jpg") << "definitely not a jpeg";
  const ImageFolderDataset ds(root);
  std::string msg = error_of([&] { ds.get_batch({0, 2}); });
  EXPECT_NE(msg.find(root + "/a/2.jpg"), std::string::npos) << msg;
  msg = error_of([&] { ds.get_batch({0, 1}); });
  EXPECT_NE(msg.find("differ in size"), std::string::npos) << msg;
  EXPECT_NE(msg.find(root + "/a/1.jpg"), std::string::npos) << msg;
  msg = error_of([&] { ds.get_batch({3}); });
  EXPECT_NE(msg.find("out of range"), std::string::npos) << msg;
  // With a crop, mixed sizes are fine.
  ImageFolderOptions options;
  options.transform.crop = 8;
  EXPECT_EQ(ImageFolderDataset(root, options).get_batch({0, 1}).inputs.sizes(), torch::IntArrayRef({2, 3, 8, 8}));
}

}  // namespace
}  // namespace hessgap::data
