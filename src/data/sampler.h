// Which samples train and which validate, in which order each epoch, and which rank handles which
// part of each global batch. Torch-free. Everything is keyed by (seed, epoch) and global sample ids, so
// the global batches are the same whatever the number of ranks; ranks only split each batch.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace hessgap::data {

// The reference's validation split (SPEC.md §3.2, BaseDataLoader with valid_split > 0): of a
// permutation p of [0, n), the first int(n * valid_split) entries validate and the rest train.
// The reference permutes with np.random.seed(0); here p = rng::permutation(n, make_key(seed,
// Stream::kShuffle, kValidSplitTag)) — the same rule on hessgap's generator, so a different but fixed
// subset of the same size (and the rule MitIndoorDataset applies to TrainImages.txt). Both lists are
// returned ascending: the split fixes membership, the per-epoch order comes from ShardedSampler.
// valid_split = 0 keeps every id for training. Throws hessgap::Error unless n >= 0 and
// 0 <= valid_split < 1.
constexpr std::uint64_t kValidSplitTag = 0x1D0012;
struct TrainValidSplit {
  std::vector<std::int64_t> train;  // ascending
  std::vector<std::int64_t> valid;  // ascending, size int(n * valid_split)
};
TrainValidSplit split_train_valid(std::int64_t n, double valid_split, std::uint64_t seed);

// Positions [begin, end) of global batch positions 0..batch_size-1 that `rank` of `world_size` takes:
// contiguous, balanced shares, begin = floor(rank * batch_size / world_size). Shares differ by at most
// one sample and may be empty (batch_size < world_size). Concatenated in rank order they give the
// batch back. Throws hessgap::Error unless 0 <= rank < world_size and batch_size >= 0.
std::pair<std::int64_t, std::int64_t> shard_range(std::int64_t batch_size, int rank, int world_size);

struct SamplerOptions {
  std::int64_t batch_size = 32;  // GLOBAL batch size, over all ranks; >= 1
  bool shuffle = true;           // false: the ids in the given order every epoch (evaluation)
  bool drop_last = false;        // drop a last global batch smaller than batch_size (the reference keeps it)
  std::uint64_t seed = 0;
  void validate() const;         // throws hessgap::Error naming the field
};

// Per-epoch order and per-rank shards of a list of sample ids (e.g. TrainValidSplit::train).
// Epoch order: ids[π[k]] where π = rng::permutation(ids.size(), make_key(seed, Stream::kShuffle, epoch,
// kEpochTag)) (the identity without shuffle). Global batch b is positions [b * batch_size, ...) of it,
// the last one possibly smaller; rank r takes shard_range(size of batch b, r, world_size) of batch b.
// So over the ranks every id of an epoch appears exactly once, and what forms batch b does not depend on
// world_size. Every rank sees the same num_batches(), including batches where its shard is empty: a
// training step's collectives must still be reached with a zero count (reduce sums and counts, divide
// once). Not collective; every rank builds its own.
class ShardedSampler {
 public:
  static constexpr std::uint64_t kEpochTag = 1;  // keeps epoch keys apart from the split key

  // Throws hessgap::Error for invalid options, a rank outside [0, world_size), or a negative id.
  ShardedSampler(std::vector<std::int64_t> ids, SamplerOptions options, int rank = 0, int world_size = 1);

  std::int64_t num_samples() const { return static_cast<std::int64_t>(ids_.size()); }
  // Global batches per epoch: ceil(n / batch_size), or floor with drop_last.
  std::int64_t num_batches() const;
  // All ids of epoch `epoch` in order (before drop_last). epoch is any number the caller counts with.
  std::vector<std::int64_t> epoch_order(std::int64_t epoch) const;
  // The num_batches() global batches of the epoch (every rank's part): the same at any world_size.
  std::vector<std::vector<std::int64_t>> global_batches(std::int64_t epoch) const;
  // This rank's part of every global batch of the epoch: num_batches() lists, some possibly empty.
  std::vector<std::vector<std::int64_t>> shards(std::int64_t epoch) const;

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  const SamplerOptions& options() const { return options_; }
  const std::vector<std::int64_t>& ids() const { return ids_; }

 private:
  std::vector<std::int64_t> ids_;
  SamplerOptions options_;
  int rank_;
  int world_size_;
};

}  // namespace hessgap::data
