#include "data/sampler.h"

#include <algorithm>

#include "util/error.h"
#include "util/rng.h"

namespace hessgap::data {

TrainValidSplit split_train_valid(std::int64_t n, double valid_split, std::uint64_t seed) {
  HG_CHECK(n >= 0, "validation split: expected n >= 0, got " << n);
  HG_CHECK(valid_split >= 0.0 && valid_split < 1.0,
           "validation split: valid_split must be in [0, 1), got " << valid_split);
  std::vector<std::int64_t> perm(static_cast<std::size_t>(n));
  rng::permutation(perm.data(), n, rng::make_key(seed, rng::Stream::kShuffle, kValidSplitTag));
  // int(N * split) in double, as the reference computes it.
  const auto n_valid = static_cast<std::int64_t>(static_cast<double>(n) * valid_split);
  TrainValidSplit out;
  out.valid.assign(perm.begin(), perm.begin() + n_valid);
  out.train.assign(perm.begin() + n_valid, perm.end());
  std::sort(out.valid.begin(), out.valid.end());
  std::sort(out.train.begin(), out.train.end());
  return out;
}

std::pair<std::int64_t, std::int64_t> shard_range(std::int64_t batch_size, int rank, int world_size) {
  HG_CHECK(world_size >= 1 && rank >= 0 && rank < world_size,
           "shard_range: expected 0 <= rank < world_size, got rank " << rank << " of " << world_size);
  HG_CHECK(batch_size >= 0, "shard_range: expected batch_size >= 0, got " << batch_size);
  return {batch_size * rank / world_size, batch_size * (rank + 1) / world_size};
}

void SamplerOptions::validate() const {
  HG_CHECK(batch_size >= 1, "sampler: batch_size must be >= 1, got " << batch_size);
}

ShardedSampler::ShardedSampler(std::vector<std::int64_t> ids, SamplerOptions options, int rank, int world_size)
    : ids_(std::move(ids)), options_(options), rank_(rank), world_size_(world_size) {
  options_.validate();
  HG_CHECK(world_size_ >= 1 && rank_ >= 0 && rank_ < world_size_,
           "sampler: expected 0 <= rank < world_size, got rank " << rank_ << " of " << world_size_);
  for (std::int64_t id : ids_) HG_CHECK(id >= 0, "sampler: sample ids must be >= 0, got " << id);
}

std::int64_t ShardedSampler::num_batches() const {
  const std::int64_t n = num_samples(), bs = options_.batch_size;
  return options_.drop_last ? n / bs : (n + bs - 1) / bs;
}

std::vector<std::int64_t> ShardedSampler::epoch_order(std::int64_t epoch) const {
  if (!options_.shuffle) return ids_;
  const std::int64_t n = num_samples();
  std::vector<std::int64_t> perm(static_cast<std::size_t>(n));
  rng::permutation(perm.data(), n,
                   rng::make_key(options_.seed, rng::Stream::kShuffle, static_cast<std::uint64_t>(epoch), kEpochTag));
  for (std::int64_t& p : perm) p = ids_[static_cast<std::size_t>(p)];
  return perm;
}

std::vector<std::vector<std::int64_t>> ShardedSampler::global_batches(std::int64_t epoch) const {
  const std::vector<std::int64_t> order = epoch_order(epoch);
  const std::int64_t n = num_samples(), bs = options_.batch_size;
  std::vector<std::vector<std::int64_t>> out;
  out.reserve(static_cast<std::size_t>(num_batches()));
  for (std::int64_t b = 0; b < num_batches(); ++b) {
    const std::int64_t end = std::min(n, (b + 1) * bs);
    out.emplace_back(order.begin() + b * bs, order.begin() + end);
  }
  return out;
}

std::vector<std::vector<std::int64_t>> ShardedSampler::shards(std::int64_t epoch) const {
  std::vector<std::vector<std::int64_t>> out = global_batches(epoch);
  for (std::vector<std::int64_t>& batch : out) {
    const auto [begin, end] = shard_range(static_cast<std::int64_t>(batch.size()), rank_, world_size_);
    batch = std::vector<std::int64_t>(batch.begin() + begin, batch.begin() + end);
  }
  return out;
}

}  // namespace hessgap::data
