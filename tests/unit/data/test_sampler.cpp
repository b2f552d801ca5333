// Validation split, per-epoch order and sharding: closed forms, and for every world size the union of
// the shards is the epoch order exactly once, with global batches that do not depend on the rank count.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "data/sampler.h"
#include "util/error.h"
#include "util/rng.h"

namespace hessgap::data {
namespace {

std::vector<std::int64_t> iota(std::int64_t n, std::int64_t from = 0) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), from);
  return v;
}

TEST(Sampler, ValidSplitIsTheReferenceRuleOnTheKeyedPermutation) {
  for (const std::int64_t n : {0, 1, 9, 10, 1000, 1001}) {
    for (const double split : {0.0, 0.1, 0.25, 0.5}) {
      SCOPED_TRACE("n " + std::to_string(n) + " split " + std::to_string(split));
      const TrainValidSplit s = split_train_valid(n, split, 7);
      const auto n_valid = static_cast<std::int64_t>(static_cast<double>(n) * split);
      ASSERT_EQ(static_cast<std::int64_t>(s.valid.size()), n_valid);
      ASSERT_EQ(static_cast<std::int64_t>(s.train.size()), n - n_valid);
      EXPECT_TRUE(std::is_sorted(s.valid.begin(), s.valid.end()));
      EXPECT_TRUE(std::is_sorted(s.train.begin(), s.train.end()));
      // Closed form: the first int(n * split) entries of the keyed permutation validate.
      std::vector<std::int64_t> perm(static_cast<std::size_t>(n));
      rng::permutation(perm.data(), n, rng::make_key(7, rng::Stream::kShuffle, kValidSplitTag));
      std::vector<std::int64_t> expected(perm.begin(), perm.begin() + n_valid);
      std::sort(expected.begin(), expected.end());
      EXPECT_EQ(s.valid, expected);
      std::vector<std::int64_t> all = s.train;
      all.insert(all.end(), s.valid.begin(), s.valid.end());
      std::sort(all.begin(), all.end());
      EXPECT_EQ(all, iota(n));
    }
  }
  EXPECT_EQ(split_train_valid(1000, 0.1, 7).valid, split_train_valid(1000, 0.1, 7).valid);
  EXPECT_NE(split_train_valid(1000, 0.1, 7).valid, split_train_valid(1000, 0.1, 8).valid);
  EXPECT_EQ(split_train_valid(1000, 0.1, 7).valid.size(), 100u);  // int(1000 * 0.1), not 99
  EXPECT_THROW(split_train_valid(10, 1.0, 0), Error);
  EXPECT_THROW(split_train_valid(10, -0.1, 0), Error);
  EXPECT_THROW(split_train_valid(-1, 0.1, 0), Error);
}

TEST(Sampler, ShardRangeIsContiguousAndBalanced) {
  for (std::int64_t b = 0; b <= 17; ++b) {
    for (int w = 1; w <= 5; ++w) {
      std::int64_t expect_begin = 0, lo = b, hi = 0;
      for (int r = 0; r < w; ++r) {
        const auto [begin, end] = shard_range(b, r, w);
        EXPECT_EQ(begin, expect_begin) << "b " << b << " w " << w << " r " << r;
        EXPECT_LE(begin, end);
        expect_begin = end;
        lo = std::min(lo, end - begin);
        hi = std::max(hi, end - begin);
      }
      EXPECT_EQ(expect_begin, b);
      EXPECT_LE(hi - lo, 1);
    }
  }
  using Range = std::pair<std::int64_t, std::int64_t>;
  EXPECT_EQ(shard_range(1, 0, 4), Range(0, 0));  // empty shares exist
  EXPECT_EQ(shard_range(1, 3, 4), Range(0, 1));
  EXPECT_THROW(shard_range(4, 2, 2), Error);
  EXPECT_THROW(shard_range(4, -1, 2), Error);
  EXPECT_THROW(shard_range(-1, 0, 2), Error);
}

// For n not divisible by the batch size and by the world size: at each world size 1..4, concatenating
// the ranks' shards of batch b in rank order gives global batch b, the batches in order give the epoch
// order, that order holds every id exactly once, and the global batches equal those of world size 1.
TEST(Sampler, ShardsCoverEachEpochExactlyOnceAtAnyWorldSize) {
  const std::vector<std::int64_t> ids = [] {
    std::vector<std::int64_t> v;
    for (std::int64_t i = 0; i < 103; ++i) v.push_back(3 * i + 1);  // sparse ids, as after a split
    return v;
  }();
  for (const std::int64_t bs : {1, 4, 10, 32, 103, 200}) {
    for (const bool drop_last : {false, true}) {
      SamplerOptions o;
      o.batch_size = bs;
      o.drop_last = drop_last;
      o.seed = 5;
      const ShardedSampler reference(ids, o, 0, 1);
      for (const std::int64_t epoch : {0, 1, 7}) {
        const auto global = reference.global_batches(epoch);
        const std::vector<std::int64_t> order = reference.epoch_order(epoch);
        std::vector<std::int64_t> sorted = order;
        std::sort(sorted.begin(), sorted.end());
        ASSERT_EQ(sorted, ids);
        std::vector<std::int64_t> concat;
        for (const auto& b : global) concat.insert(concat.end(), b.begin(), b.end());
        const std::int64_t kept = drop_last ? (103 / bs) * bs : 103;
        ASSERT_EQ(concat, std::vector<std::int64_t>(order.begin(), order.begin() + kept));
        for (int world = 1; world <= 4; ++world) {
          SCOPED_TRACE("bs " + std::to_string(bs) + " world " + std::to_string(world) + " epoch " +
                       std::to_string(epoch) + (drop_last ? " drop_last" : ""));
          std::vector<std::vector<std::vector<std::int64_t>>> per_rank;
          for (int r = 0; r < world; ++r) {
            const ShardedSampler s(ids, o, r, world);
            ASSERT_EQ(s.num_batches(), reference.num_batches());  // every rank runs every step
            EXPECT_EQ(s.global_batches(epoch), global);
            per_rank.push_back(s.shards(epoch));
          }
          for (std::size_t b = 0; b < global.size(); ++b) {
            std::vector<std::int64_t> joined;
            for (int r = 0; r < world; ++r) joined.insert(joined.end(), per_rank[r][b].begin(), per_rank[r][b].end());
            EXPECT_EQ(joined, global[b]) << "batch " << b;
          }
        }
      }
    }
  }
}

TEST(Sampler, EpochOrder) {
  const std::vector<std::int64_t> ids = iota(50, 100);
  SamplerOptions o;
  o.batch_size = 8;
  o.seed = 1;
  const ShardedSampler s(ids, o);
  EXPECT_EQ(s.epoch_order(3), s.epoch_order(3));
  EXPECT_NE(s.epoch_order(3), s.epoch_order(4));
  EXPECT_NE(s.epoch_order(3), ids);
  o.seed = 2;
  EXPECT_NE(ShardedSampler(ids, o).epoch_order(3), s.epoch_order(3));
  // Closed form of the order.
  std::vector<std::int64_t> perm(50);
  rng::permutation(perm.data(), 50, rng::make_key(1, rng::Stream::kShuffle, 3, ShardedSampler::kEpochTag));
  for (std::size_t k = 0; k < perm.size(); ++k) EXPECT_EQ(s.epoch_order(3)[k], ids[static_cast<std::size_t>(perm[k])]);
  // Without shuffle: the given order every epoch (evaluation).
  o.shuffle = false;
  const ShardedSampler plain(ids, o);
  EXPECT_EQ(plain.epoch_order(0), ids);
  EXPECT_EQ(plain.epoch_order(9), ids);
  EXPECT_EQ(plain.num_batches(), 7);
  EXPECT_EQ(plain.global_batches(0).back(), std::vector<std::int64_t>({148, 149}));
  o.drop_last = true;
  EXPECT_EQ(ShardedSampler(ids, o).num_batches(), 6);
}

// Fewer samples than ranks: some ranks get empty shards, yet all see the same number of batches.
TEST(Sampler, SmallBatchesLeaveSomeRanksEmpty) {
  SamplerOptions o;
  o.batch_size = 3;
  o.shuffle = false;
  const std::vector<std::int64_t> ids = {4, 5, 6, 7};  // batches {4,5,6}, {7}
  std::vector<std::int64_t> sizes;
  for (int r = 0; r < 4; ++r) {
    const ShardedSampler s(ids, o, r, 4);
    const auto shards = s.shards(0);
    ASSERT_EQ(shards.size(), 2u);
    sizes.push_back(static_cast<std::int64_t>(shards[0].size()));
    sizes.push_back(static_cast<std::int64_t>(shards[1].size()));
  }
  EXPECT_EQ(sizes, std::vector<std::int64_t>({0, 0, 1, 0, 1, 0, 1, 1}));
  EXPECT_EQ(ShardedSampler({}, o, 1, 2).num_batches(), 0);
}

TEST(Sampler, Errors) {
  SamplerOptions o;
  o.batch_size = 0;
  EXPECT_THROW(ShardedSampler({1, 2}, o), Error);
  EXPECT_THROW(ShardedSampler({1, 2}, SamplerOptions{}, 2, 2), Error);
  EXPECT_THROW(ShardedSampler({1, -2}, SamplerOptions{}), Error);
}

}  // namespace
}  // namespace hessgap::data
