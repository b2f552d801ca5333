// A prefetching batch loader: worker threads produce batches 0..n-1 (decoding, augmentation,
// tokenisation — whatever the per-batch function does) up to K batches ahead of the consumer, who
// receives them strictly in order. Works with any Dataset, because it only calls a function.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "data/batch.h"
#include "data/dataset.h"

namespace hessgap::data {

// Produces batch `index` (0 <= index < num_batches). Called concurrently from several workers with
// distinct indices, so it must be thread-safe (Dataset::get_batch is); its result must depend on the
// index only, not on the calling thread or the call order, for the output to be deterministic.
using BatchFn = std::function<Batch(std::int64_t index)>;

struct LoaderOptions {
  // Worker threads. 0: no thread; next() produces each batch in the caller (the synchronous path).
  // Batches are produced whole by one worker, so this multiplies with a dataset's own decoding threads
  // (ImageFolderOptions::num_threads): with workers, give the dataset 1 thread.
  int num_workers = 2;
  // At most this many batches are in production or ready but not yet taken (the bounded queue): the
  // loader runs at most `prefetch` batches ahead of the consumer, and holds at most that many in memory.
  // >= 1; values below num_workers leave workers idle.
  int prefetch = 4;
  void validate() const;  // throws hessgap::Error naming the field
};

// Delivers fn(0), fn(1), ..., fn(num_batches - 1) in that order, whatever the thread count and timing.
//
// Errors: when fn(b) throws, next() rethrows that exception (the original, e.g. the hessgap::Error naming
// an unreadable file) when the consumer reaches batch b; batches before b are delivered normally. After
// that the workers stop, and every further next() rethrows the same exception.
// Destruction at any time (also mid-epoch or after an error) stops the workers, waits for the batches they
// are producing to finish (a running fn is not interrupted) and discards the rest; it does not throw.
// Not collective; one consumer thread.
class PrefetchLoader {
 public:
  // Throws hessgap::Error for invalid options or num_batches < 0. Workers start at once.
  PrefetchLoader(std::int64_t num_batches, BatchFn fn, LoaderOptions options = {});
  ~PrefetchLoader();
  PrefetchLoader(const PrefetchLoader&) = delete;
  PrefetchLoader& operator=(const PrefetchLoader&) = delete;

  // The next batch in order, or nullopt after the last one.
  std::optional<Batch> next();
  std::int64_t num_batches() const { return num_batches_; }
  // Batches handed to the consumer so far.
  std::int64_t consumed() const { return next_out_; }

 private:
  void work();
  void stop_workers();

  struct Slot {
    std::optional<Batch> batch;
    std::exception_ptr error;
  };
  const std::int64_t num_batches_;
  const BatchFn fn_;
  const LoaderOptions options_;
  std::mutex mutex_;
  std::condition_variable work_cv_;   // a worker may claim a batch, or stop
  std::condition_variable ready_cv_;  // a batch is ready
  std::int64_t next_claim_ = 0;       // next batch a worker will produce
  std::int64_t next_out_ = 0;         // next batch the consumer takes
  std::map<std::int64_t, Slot> ready_;
  std::exception_ptr failed_;         // set once the consumer has reached a failed batch
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

// The per-batch function of `dataset` over fixed lists of ids: batch b is dataset.get_batch(batches[b]).
// `dataset` must outlive the function.
BatchFn dataset_batches(const Dataset& dataset, std::vector<std::vector<std::int64_t>> batches);

}  // namespace hessgap::data
