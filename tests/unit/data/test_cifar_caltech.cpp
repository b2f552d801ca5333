// CIFAR-10 / CIFAR-100 binary files and the Caltech-256 split, on small trees in the official
// layouts written here (closed-form pixel values; fixture images copied for Caltech).
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>

#include "data/caltech.h"
#include "data/cifar_binary.h"
#include "data/image.h"
#include "data/registry.h"
#include "test_helpers.h"
#include "tests/support/error_of.h"
#include "util/error.h"

namespace hessgap::data {
namespace {
using namespace testing;

using ::hessgap::testing::error_of;  // tests/support/error_of.h

// Pixel byte of record `r` (a global tag), channel c, position p (row-major 32 x 32).
std::uint8_t cifar_pixel(int r, int c, int p) { return static_cast<std::uint8_t>((r * 37 + c * 85 + p * 3) % 256); }

// Records with the given labels (each label list entry is the header bytes) and tags tag0, tag0+1, ...
std::vector<std::uint8_t> cifar_records(const std::vector<std::vector<std::uint8_t>>& headers, int tag0) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i < headers.size(); ++i) {
    out.insert(out.end(), headers[i].begin(), headers[i].end());
    for (int c = 0; c < 3; ++c) {
      for (int p = 0; p < 1024; ++p) out.push_back(cifar_pixel(tag0 + static_cast<int>(i), c, p));
    }
  }
  return out;
}

// The expected input of the record with tag `tag`: ToTensor + Normalize in float32, as torch.
torch::Tensor cifar_expected(int tag, const EvalTransform& t) {
  auto bytes = torch::empty({3, 32, 32}, torch::kUInt8);
  auto* d = bytes.data_ptr<std::uint8_t>();
  for (int c = 0; c < 3; ++c) {
    for (int p = 0; p < 1024; ++p) d[c * 1024 + p] = cifar_pixel(tag, c, p);
  }
  const auto mean = torch::tensor({t.mean[0], t.mean[1], t.mean[2]}, torch::kFloat32).view({3, 1, 1});
  const auto stddev = torch::tensor({t.stddev[0], t.stddev[1], t.stddev[2]}, torch::kFloat32).view({3, 1, 1});
  return (bytes.to(torch::kFloat32).div(255) - mean) / stddev;
}

// CIFAR-10 tree: data_batch_b holds 2 records (tags 10b, 10b+1) with labels (b, b+1) % 10; test_batch
// 3 records (tags 100..102) with labels 9, 0, 9.
std::string write_cifar10(const std::string& dir, bool names) {
  const std::string bin = dir + "/cifar-10-batches-bin";
  fs::create_directories(bin);
  for (int b = 1; b <= 5; ++b) {
    write_bytes(bin + "/data_batch_" + std::to_string(b) + ".bin",
                cifar_records({{static_cast<std::uint8_t>(b % 10)}, {static_cast<std::uint8_t>((b + 1) % 10)}}, 10 * b));
  }
  write_bytes(bin + "/test_batch.bin", cifar_records({{9}, {0}, {9}}, 100));
  if (names) {
    std::ofstream out(bin + "/batches.meta.txt");
    for (const char* n : {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}) {
      out << n << "\n";
    }
    out << "\n";  // the official file ends with blank lines
  }
  return bin;
}

TEST(Cifar, Cifar10TrainAndTest) {
  const std::string dir = fresh_dir("c10");
  const std::string bin = write_cifar10(dir, true);
  EvalTransform t;
  t.mean = {0.4914, 0.4822, 0.4465};
  t.stddev = {0.2470, 0.2435, 0.2616};
  const CifarBinaryDataset train(dir, "train", t);
  ASSERT_EQ(train.size(), 10);
  EXPECT_EQ(train.num_classes(), 10);
  EXPECT_EQ(train.class_names().front(), "airplane");
  EXPECT_EQ(train.class_names().back(), "truck");
  for (int b = 1; b <= 5; ++b) {
    EXPECT_EQ(train.label(2 * (b - 1)), b % 10);
    EXPECT_EQ(train.label(2 * (b - 1) + 1), (b + 1) % 10);
  }
  const Batch batch = train.get_batch({9, 0, 4});
  ASSERT_EQ(batch.inputs.sizes(), torch::IntArrayRef({3, 3, 32, 32}));
  EXPECT_EQ(batch.inputs.dtype(), torch::kFloat32);
  EXPECT_EQ(batch.sample_ids, (std::vector<std::int64_t>{9, 0, 4}));
  EXPECT_TRUE(torch::equal(batch.labels, torch::tensor({6, 1, 3}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(batch.inputs[0], cifar_expected(51, t)));  // data_batch_5, record 1
  EXPECT_TRUE(torch::equal(batch.inputs[1], cifar_expected(10, t)));
  EXPECT_TRUE(torch::equal(batch.inputs[2], cifar_expected(30, t)));
  // The image is the RGB array of the record (HWC), as PIL would see it.
  const Image img = train.image(0);
  EXPECT_EQ(img.at(0, 1, 2), cifar_pixel(10, 2, 1));
  EXPECT_EQ(img.at(3, 5, 0), cifar_pixel(10, 0, 3 * 32 + 5));

  // The archive folder itself works too; the test split; a crop is the centre of the full image.
  EvalTransform crop = t;
  crop.crop = 28;
  const CifarBinaryDataset test(bin, "test", crop);
  ASSERT_EQ(test.size(), 3);
  EXPECT_EQ(test.label(0), 9);
  EXPECT_EQ(test.label(1), 0);
  const Batch tb = test.get_batch({1});
  ASSERT_EQ(tb.inputs.sizes(), torch::IntArrayRef({1, 3, 28, 28}));
  EXPECT_TRUE(torch::equal(tb.inputs[0], cifar_expected(101, t).slice(1, 2, 30).slice(2, 2, 30)));
  EXPECT_EQ(test.get_batch({}).inputs.sizes(), torch::IntArrayRef({0, 3, 28, 28}));
  EXPECT_NE(test.describe().find("CIFAR-10"), std::string::npos);
}

TEST(Cifar, Cifar10NumbersWithoutNamesAndMaxPerClass) {
  const std::string dir = fresh_dir("c10n");
  write_cifar10(dir, false);
  const CifarBinaryDataset test(dir, "test", {}, false, false, 1);
  EXPECT_EQ(test.class_names()[3], "3");
  ASSERT_EQ(test.size(), 2);  // labels 9, 0, 9: the second 9 is dropped
  EXPECT_EQ(test.label(0), 9);
  EXPECT_EQ(test.label(1), 0);
}

TEST(Cifar, Cifar100FineAndCoarse) {
  const std::string dir = fresh_dir("c100");
  const std::string bin = dir + "/cifar-100-binary";
  fs::create_directories(bin);
  write_bytes(bin + "/train.bin", cifar_records({{19, 99}, {0, 42}}, 7));
  write_bytes(bin + "/test.bin", cifar_records({{3, 5}}, 9));
  {
    std::ofstream out(bin + "/fine_label_names.txt");
    for (int i = 0; i < 100; ++i) out << "fine" << i << "\n";
  }
  const CifarBinaryDataset fine(dir, "train", {}, true);
  EXPECT_EQ(fine.num_classes(), 100);
  EXPECT_EQ(fine.class_names()[42], "fine42");
  ASSERT_EQ(fine.size(), 2);
  EXPECT_EQ(fine.label(0), 99);
  EXPECT_EQ(fine.label(1), 42);
  EXPECT_TRUE(torch::equal(fine.get_batch({1}).inputs[0], cifar_expected(8, EvalTransform{})));
  const CifarBinaryDataset coarse(bin, "test", {}, true, true);
  EXPECT_EQ(coarse.num_classes(), 20);
  EXPECT_EQ(coarse.class_names()[19], "19");  // no coarse_label_names.txt
  EXPECT_EQ(coarse.label(0), 3);
  // Through the registry.
  DatasetSpec spec;
  spec.kind = "cifar100";
  spec.path = dir;
  spec.split = "test";
  const auto ds = open_dataset(spec);
  EXPECT_EQ(ds->size(), 1);
  EXPECT_EQ(ds->label(0), 5);
}

TEST(Cifar, Errors) {
  const std::string dir = fresh_dir("err");
  const std::string bin = write_cifar10(dir, true);
  EXPECT_NE(error_of([&] { CifarBinaryDataset(dir, "val"); }).find("unknown split 'val'"), std::string::npos);
  // Truncated file: 2 records + 5 bytes.
  auto bytes = cifar_records({{1}, {2}}, 0);
  bytes.resize(bytes.size() + 5, 0);
  write_bytes(bin + "/data_batch_2.bin", bytes);
  std::string e = error_of([&] { CifarBinaryDataset(dir, "train"); });
  EXPECT_NE(e.find("data_batch_2.bin' has 6151 bytes"), std::string::npos) << e;
  EXPECT_NE(e.find("3073"), std::string::npos) << e;
  // Label out of range in record 1 of data_batch_2.
  write_bytes(bin + "/data_batch_2.bin", cifar_records({{1}, {10}}, 0));
  e = error_of([&] { CifarBinaryDataset(dir, "train"); });
  EXPECT_NE(e.find("data_batch_2.bin': record 1 has label 10"), std::string::npos) << e;
  // Missing file.
  fs::remove(bin + "/data_batch_2.bin");
  e = error_of([&] { CifarBinaryDataset(dir, "train"); });
  EXPECT_NE(e.find("data_batch_2.bin' does not exist"), std::string::npos) << e;
  // CIFAR-100 fine label out of range; coarse label out of range.
  fs::create_directories(dir + "/cifar-100-binary");
  write_bytes(dir + "/cifar-100-binary/test.bin", cifar_records({{1, 2}, {3, 4}, {5, 100}}, 0));
  e = error_of([&] { CifarBinaryDataset(dir, "test", {}, true); });
  EXPECT_NE(e.find("test.bin': record 2 has fine label 100"), std::string::npos) << e;
  write_bytes(dir + "/cifar-100-binary/test.bin", cifar_records({{20, 2}}, 0));
  e = error_of([&] { CifarBinaryDataset(dir, "test", {}, true); });
  EXPECT_NE(e.find("record 0 has coarse label 20"), std::string::npos) << e;
  // Record size of CIFAR-100 is 3074.
  write_bytes(dir + "/cifar-100-binary/test.bin", cifar_records({{1}}, 0));
  e = error_of([&] { CifarBinaryDataset(dir, "test", {}, true); });
  EXPECT_NE(e.find("has 3073 bytes, not a positive multiple of the record size 3074"), std::string::npos) << e;
}

// A Caltech tree: `counts` images per class (alternating two fixture images, created in reverse name
// order so that listing order differs from sorted order), a stray non-image file per class.
void write_caltech(const std::string& root, const std::vector<std::pair<std::string, int>>& counts) {
  for (const auto& [name, n] : counts) {
    const std::string dir = root + "/" + name;
    fs::create_directories(dir);
    for (int i = n; i-- > 0;) {
      char file[64];
      std::snprintf(file, sizeof(file), "%s_%04d.%s", name.substr(0, 3).c_str(), i + 1, i % 2 ? "png" : "jpg");
      // Content sniffed from bytes: the .jpg names hold a PNG, which decode_image accepts.
      fs::copy_file(fixture_path(i % 2 ? "interlaced.png" : "grey.png"), dir + "/" + file);
    }
    write_bytes(dir + "/notes.txt", {'x'});
  }
}

TEST(Caltech, SplitsAndClutterExcluded) {
  const std::string root = fresh_dir("tree");
  write_caltech(root, {{"001.ak47", 71}, {"002.american-flag", 75}, {"003.backpack", 70}, {"257.clutter", 3}});
  EvalTransform t;
  t.crop = 5;
  const Caltech256Dataset train(root, "train", t);
  const Caltech256Dataset val(root, "val", t);
  const Caltech256Dataset test(root + "/", "test", t, 0, 1);
  EXPECT_EQ(train.size(), 90);
  EXPECT_EQ(val.size(), 60);
  EXPECT_EQ(test.size(), 60);
  for (const Caltech256Dataset* ds : {&train, &val, &test}) {
    EXPECT_EQ(ds->class_names(), (std::vector<std::string>{"001.ak47", "002.american-flag", "003.backpack"}));
  }
  EXPECT_EQ(train.file(0), root + "/001.ak47/001_0001.jpg");
  EXPECT_EQ(train.file(29), root + "/001.ak47/001_0030.png");
  EXPECT_EQ(train.file(30), root + "/002.american-flag/002_0001.jpg");
  EXPECT_EQ(val.file(0), root + "/001.ak47/001_0031.jpg");
  EXPECT_EQ(val.file(59), root + "/003.backpack/003_0050.png");
  EXPECT_EQ(test.file(0), root + "/001.ak47/001_0051.jpg");
  EXPECT_EQ(test.file(59), root + "/003.backpack/003_0070.png");
  EXPECT_EQ(train.label(29), 0);
  EXPECT_EQ(train.label(30), 1);
  EXPECT_EQ(test.label(59), 2);
  const Batch b = val.get_batch({59, 0, 21});
  ASSERT_EQ(b.inputs.sizes(), torch::IntArrayRef({3, 3, 5, 5}));
  EXPECT_EQ(b.sample_ids, (std::vector<std::int64_t>{59, 0, 21}));
  EXPECT_TRUE(torch::equal(b.labels, torch::tensor({2, 0, 1}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(b.inputs[0], apply_eval_transform(decode_image(val.file(59)), t)));
  EXPECT_TRUE(torch::equal(b.inputs[2], apply_eval_transform(decode_image(val.file(21)), t)));
  EXPECT_FALSE(torch::equal(b.inputs[0], b.inputs[1]));  // .png (interlaced) vs .jpg (grey)
  // max_per_class within the split, and the registry.
  DatasetSpec spec;
  spec.kind = "caltech256";
  spec.path = root;
  spec.split = "val";
  spec.crop = 5;
  spec.max_per_class = 4;
  const auto ds = open_dataset(spec);
  ASSERT_EQ(ds->size(), 12);
  EXPECT_EQ(ds->label(4), 1);
  EXPECT_NE(ds->describe().find("Caltech-256"), std::string::npos);
}

TEST(Caltech, ShortClassAndErrors) {
  const std::string root = fresh_dir("short");
  write_caltech(root, {{"001.ak47", 70}, {"002.american-flag", 60}});
  EXPECT_EQ(Caltech256Dataset(root, "train").size(), 60);
  EXPECT_EQ(Caltech256Dataset(root, "val").size(), 40);
  const std::string e = error_of([&] { Caltech256Dataset(root, "test"); });
  EXPECT_NE(e.find("class '002.american-flag' has 60 images, but the test split needs 70"), std::string::npos) << e;
  EXPECT_NE(error_of([&] { Caltech256Dataset(root, "validation"); }).find("unknown split 'validation'"),
            std::string::npos);
  const std::string only = fresh_dir("clutter");
  write_caltech(only, {{"257.clutter", 2}});
  EXPECT_NE(error_of([&] { Caltech256Dataset(only, "train"); }).find("no class folder other than 257.clutter"),
            std::string::npos);
}

}  // namespace
}  // namespace hessgap::data
