// PrefetchLoader: the same batches as the synchronous path at any thread count, the bounded queue,
// errors reaching the consumer in order, early destruction; and ImageFolderOptions::skip_unreadable.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "data/image_folder.h"
#include "data/loader.h"
#include "data/sampler.h"
#include "data/train_transform.h"
#include "test_helpers.h"
#include "util/error.h"
#include "util/rng.h"

namespace hessgap::data {
namespace {
using namespace testing;
using namespace std::chrono_literals;

// A batch that depends on the index only, produced after an index-dependent pause so that workers
// finish out of order.
Batch synthetic_batch(std::int64_t b) {
  std::this_thread::sleep_for(std::chrono::microseconds(rng::bits(99, static_cast<std::uint64_t>(b)) % 3000));
  Batch batch;
  batch.inputs = torch::full({2, 3}, static_cast<float>(b));
  batch.labels = torch::tensor({b, b + 1});
  batch.sample_ids = {2 * b, 2 * b + 1};
  return batch;
}

std::vector<std::int64_t> iota_ids(std::int64_t n) {
  std::vector<std::int64_t> v;
  for (std::int64_t i = 0; i < n; ++i) v.push_back(i * 16);  // spread over the 10 classes of the assets
  return v;
}

std::vector<Batch> drain(PrefetchLoader& loader) {
  std::vector<Batch> out;
  while (std::optional<Batch> b = loader.next()) out.push_back(std::move(*b));
  return out;
}

void expect_same(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t k = 0; k < a.size(); ++k) {
    EXPECT_TRUE(torch::equal(a[k].inputs, b[k].inputs)) << "batch " << k;
    EXPECT_TRUE(torch::equal(a[k].labels, b[k].labels)) << "batch " << k;
    EXPECT_EQ(a[k].sample_ids, b[k].sample_ids) << "batch " << k;
  }
}

TEST(Loader, SameBatchesAsSynchronousAtAnyThreadCount) {
  PrefetchLoader sync(40, synthetic_batch, LoaderOptions{0, 1});
  const std::vector<Batch> expected = drain(sync);
  ASSERT_EQ(expected.size(), 40u);
  EXPECT_EQ(expected[17].sample_ids, std::vector<std::int64_t>({34, 35}));
  for (const auto& [workers, prefetch] : std::vector<std::pair<int, int>>{{1, 1}, {1, 3}, {4, 1}, {4, 4}, {4, 16}}) {
    SCOPED_TRACE(std::to_string(workers) + " workers, prefetch " + std::to_string(prefetch));
    PrefetchLoader loader(40, synthetic_batch, LoaderOptions{workers, prefetch});
    expect_same(drain(loader), expected);
    EXPECT_EQ(loader.consumed(), 40);
    EXPECT_FALSE(loader.next().has_value());  // stays exhausted
  }
}

// The real path: an epoch of augmented CIFAR batches from the sampler, 1 and 4 workers against the
// synchronous loader.
TEST(Loader, AugmentedImageBatchesMatchSynchronousPath) {
  ImageFolderOptions fo;
  fo.num_threads = 1;
  const ImageFolderDataset ds(assets_path("cifar10-test-100"), fo);
  SamplerOptions so;
  so.batch_size = 7;
  so.seed = 3;
  const ShardedSampler sampler(iota_ids(60), so);
  TrainTransform t;
  t.size = 40;
  const auto shards = sampler.shards(2);
  BatchFn fn = [&](std::int64_t b) { return augmented_batch(ds, shards[static_cast<std::size_t>(b)], t, 3, 2); };
  PrefetchLoader sync(static_cast<std::int64_t>(shards.size()), fn, LoaderOptions{0, 1});
  const std::vector<Batch> expected = drain(sync);
  ASSERT_EQ(expected.size(), 9u);
  EXPECT_EQ(expected.back().size(), 60 - 8 * 7);
  for (const int workers : {1, 4}) {
    PrefetchLoader loader(static_cast<std::int64_t>(shards.size()), fn, LoaderOptions{workers, 3});
    expect_same(drain(loader), expected);
  }
  // dataset_batches: the eval path through the same loader.
  PrefetchLoader eval(static_cast<std::int64_t>(shards.size()), dataset_batches(ds, shards), LoaderOptions{4, 2});
  const std::vector<Batch> got = drain(eval);
  ASSERT_EQ(got.size(), shards.size());
  EXPECT_TRUE(torch::equal(got[3].inputs, ds.get_batch(shards[3]).inputs));
}

// The loader never runs more than `prefetch` batches ahead of a consumer that does not take them.
TEST(Loader, PrefetchIsBounded) {
  std::atomic<int> started{0};
  PrefetchLoader loader(
      50,
      [&](std::int64_t b) {
        ++started;
        return synthetic_batch(b);
      },
      LoaderOptions{4, 3});
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(started.load(), 3);
  ASSERT_TRUE(loader.next().has_value());
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(started.load(), 4);
}

// An error of batch b reaches the consumer at b (earlier batches arrive), unchanged, and again on later calls.
TEST(Loader, ErrorsReachTheConsumerInOrder) {
  for (const int workers : {0, 1, 4}) {
    SCOPED_TRACE(std::to_string(workers) + " workers");
    std::atomic<int> calls{0};
    PrefetchLoader loader(
        100,
        [&](std::int64_t b) {
          ++calls;
          if (b == 5) HG_FAIL("cannot decode '/data/x/cat/0005.jpg'");
          return synthetic_batch(b);
        },
        LoaderOptions{workers, 4});
    for (int b = 0; b < 5; ++b) {
      std::optional<Batch> batch = loader.next();
      ASSERT_TRUE(batch.has_value());
      EXPECT_EQ(batch->sample_ids[0], 2 * b);
    }
    for (int again = 0; again < 2; ++again) {
      try {
        loader.next();
        ADD_FAILURE() << "expected an error";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("/data/x/cat/0005.jpg"), std::string::npos) << e.what();
      }
    }
    EXPECT_LE(calls.load(), 5 + 1 + 4);  // claiming stops after the failure
  }
}

// A corrupt JPEG in an image folder: the loader's error names the file.
TEST(Loader, UnreadableImageErrorNamesTheFile) {
  const std::string root = fresh_dir("tree");
  fs::create_directories(root + "/a");
  fs::copy_file(assets_path("cifar10-test-100/cat/0000.jpg"), root + "/a/0.jpg");
  write_bytes(root + "/a/1.jpg", {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0, 1, 2, 3, 4, 5, 6, 7});
  ImageFolderOptions fo;
  fo.num_threads = 1;
  const ImageFolderDataset ds(root, fo);
  PrefetchLoader loader(2, dataset_batches(ds, {{0}, {0, 1}}), LoaderOptions{2, 2});
  EXPECT_TRUE(loader.next().has_value());
  try {
    loader.next();
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(root + "/a/1.jpg"), std::string::npos) << e.what();
  }
}

// Destroying the loader early (before, during and after consumption, after an error) returns promptly
// without running the remaining batches.
TEST(Loader, EarlyDestruction) {
  std::atomic<int> calls{0};
  auto slow = [&](std::int64_t b) {
    ++calls;
    std::this_thread::sleep_for(5ms);
    return synthetic_batch(b);
  };
  const auto t0 = std::chrono::steady_clock::now();
  {
    PrefetchLoader untouched(1000, slow, LoaderOptions{4, 8});
  }
  {
    PrefetchLoader loader(1000, slow, LoaderOptions{4, 8});
    ASSERT_TRUE(loader.next().has_value());
    ASSERT_TRUE(loader.next().has_value());
  }
  {
    PrefetchLoader failing(
        1000, [](std::int64_t b) -> Batch { HG_FAIL("batch " << b); }, LoaderOptions{4, 8});
    EXPECT_THROW(failing.next(), Error);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_LE(calls.load(), 8 + 2 + 8);
  PrefetchLoader empty(0, slow, LoaderOptions{4, 8});
  EXPECT_FALSE(empty.next().has_value());
}

TEST(Loader, Errors) {
  EXPECT_THROW(PrefetchLoader(3, synthetic_batch, LoaderOptions{-1, 1}), Error);
  EXPECT_THROW(PrefetchLoader(3, synthetic_batch, LoaderOptions{1, 0}), Error);
  EXPECT_THROW(PrefetchLoader(-1, synthetic_batch, LoaderOptions{}), Error);
  EXPECT_THROW(PrefetchLoader(3, BatchFn{}, LoaderOptions{}), Error);
}

// skip_unreadable: corrupt files are dropped from the batch (inputs, labels, ids) and counted; without it
// the batch throws naming the file. Transform errors are not skipped.
TEST(SkipUnreadable, CorruptImagesAreDroppedAndCounted) {
  const std::string root = fresh_dir("tree");
  fs::create_directories(root + "/a");
  fs::create_directories(root + "/b");
  fs::copy_file(assets_path("cifar10-test-100/cat/0000.jpg"), root + "/a/0.jpg");
  write_bytes(root + "/a/1.jpg", {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0, 1, 2, 3, 4, 5, 6, 7});
  fs::copy_file(assets_path("cifar10-test-100/dog/0000.jpg"), root + "/b/0.jpg");
  std::vector<std::uint8_t> truncated = read_bytes(assets_path("cifar10-test-100/dog/0001.jpg"));
  truncated.resize(truncated.size() / 3);
  write_bytes(root + "/b/1.jpg", truncated);
  write_bytes(root + "/b/2.png", {'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'});
  // ids: 0 a/0.jpg, 1 a/1.jpg (corrupt), 2 b/0.jpg, 3 b/1.jpg (truncated), 4 b/2.png (not an image)

  ImageFolderOptions fo;
  for (const std::int64_t bad : {1, 3, 4}) {
    try {
      ImageFolderDataset(root, fo).get_batch({0, bad, 2});
      ADD_FAILURE() << "expected an error for id " << bad;
    } catch (const Error& e) {
      const ImageFolderDataset ds(root, fo);
      EXPECT_NE(std::string(e.what()).find(ds.file(bad)), std::string::npos) << e.what();
    }
  }

  fo.skip_unreadable = true;
  for (const int threads : {1, 3}) {
    fo.num_threads = threads;
    const ImageFolderDataset ds(root, fo);
    EXPECT_NE(ds.describe().find("skipped"), std::string::npos);
    const Batch batch = ds.get_batch({4, 0, 1, 2, 3});
    EXPECT_EQ(batch.sample_ids, std::vector<std::int64_t>({0, 2}));
    ASSERT_EQ(batch.inputs.sizes(), torch::IntArrayRef({2, 3, 32, 32}));
    EXPECT_TRUE(torch::equal(batch.labels, torch::tensor({0, 1}, torch::kInt64)));
    EXPECT_TRUE(torch::equal(batch.inputs, ImageFolderDataset(root).get_batch({0, 2}).inputs));
    EXPECT_EQ(ds.num_skipped(), 3);
    EXPECT_EQ(ds.skipped_ids(), std::vector<std::int64_t>({1, 3, 4}));
    // Counted every time, listed once; an all-bad batch is empty.
    const Batch empty = ds.get_batch({1});
    EXPECT_EQ(empty.size(), 0);
    EXPECT_EQ(empty.inputs.sizes(), torch::IntArrayRef({0, 3, 0, 0}));
    EXPECT_EQ(ds.num_skipped(), 4);
    EXPECT_EQ(ds.skipped_ids().size(), 3u);
    // The training path skips the same way.
    TrainTransform t;
    t.size = 16;
    const Batch aug = augmented_batch(ds, {3, 2, 1, 0}, t, 1, 1);
    EXPECT_EQ(aug.sample_ids, std::vector<std::int64_t>({2, 0}));
    EXPECT_EQ(aug.inputs.sizes(), torch::IntArrayRef({2, 3, 16, 16}));
    EXPECT_EQ(ds.num_skipped(), 6);
    EXPECT_EQ(augmented_batch(ds, {1}, t, 1, 1).inputs.sizes(), torch::IntArrayRef({0, 3, 16, 16}));
  }

  // A transform error is not a decoding error: it still throws.
  const ImageFolderDataset ds(root, fo);
  EXPECT_THROW(ds.get_batch({0, 2}, [](const Image&, std::int64_t) -> torch::Tensor { HG_FAIL("bad transform"); }, 0),
               Error);
}

}  // namespace
}  // namespace hessgap::data
