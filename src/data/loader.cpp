#include "data/loader.h"

#include <algorithm>
#include <memory>

#include "util/error.h"

namespace hessgap::data {

void LoaderOptions::validate() const {
  HG_CHECK(num_workers >= 0, "loader: num_workers must be >= 0, got " << num_workers);
  HG_CHECK(prefetch >= 1, "loader: prefetch must be >= 1, got " << prefetch);
}

PrefetchLoader::PrefetchLoader(std::int64_t num_batches, BatchFn fn, LoaderOptions options)
    : num_batches_(num_batches), fn_(std::move(fn)), options_(options) {
  options_.validate();
  HG_CHECK(num_batches_ >= 0, "loader: num_batches must be >= 0, got " << num_batches_);
  HG_CHECK(fn_ != nullptr, "loader: no batch function");
  const std::int64_t useful = std::min<std::int64_t>({options_.num_workers, options_.prefetch, num_batches_});
  workers_.reserve(static_cast<std::size_t>(useful));
  try {
    for (std::int64_t t = 0; t < useful; ++t) workers_.emplace_back([this] { work(); });
  } catch (...) {
    stop_workers();
    throw;
  }
}

PrefetchLoader::~PrefetchLoader() { stop_workers(); }

void PrefetchLoader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) {
    if (t.joinable()) t.join();
  }
}

void PrefetchLoader::work() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    // Bounded: claim b only while fewer than `prefetch` batches are ahead of the consumer.
    work_cv_.wait(lock, [&] {
      return stop_ || next_claim_ >= num_batches_ || next_claim_ < next_out_ + options_.prefetch;
    });
    if (stop_ || next_claim_ >= num_batches_) return;
    const std::int64_t b = next_claim_++;
    lock.unlock();
    Slot slot;
    try {
      slot.batch = fn_(b);
    } catch (...) {
      slot.error = std::current_exception();
    }
    lock.lock();
    const bool failed = slot.error != nullptr;
    ready_.emplace(b, std::move(slot));
    // Batches after a failure would be thrown away: stop claiming.
    if (failed) stop_ = true;
    ready_cv_.notify_all();
  }
}

std::optional<Batch> PrefetchLoader::next() {
  if (failed_) std::rethrow_exception(failed_);
  if (next_out_ >= num_batches_) return std::nullopt;
  Slot slot;
  if (workers_.empty()) {
    try {
      slot.batch = fn_(next_out_);
    } catch (...) {
      failed_ = std::current_exception();
      throw;
    }
    ++next_out_;
    return std::move(slot.batch);
  }
  {
    std::unique_lock<std::mutex> lock(mutex_);
    // Every claimed batch is finished and stored even after a stop, so this wait ends: batch next_out_ was
    // claimed by a worker unless a failure stopped the claiming before it — and then the failed batch is
    // earlier and was taken (and rethrown) already.
    ready_cv_.wait(lock, [&] { return ready_.count(next_out_) != 0; });
    auto it = ready_.find(next_out_);
    slot = std::move(it->second);
    ready_.erase(it);
    ++next_out_;
  }
  work_cv_.notify_all();
  if (slot.error) {
    failed_ = slot.error;
    std::rethrow_exception(failed_);
  }
  return std::move(slot.batch);
}

BatchFn dataset_batches(const Dataset& dataset, std::vector<std::vector<std::int64_t>> batches) {
  auto lists = std::make_shared<const std::vector<std::vector<std::int64_t>>>(std::move(batches));
  return [&dataset, lists](std::int64_t b) {
    HG_CHECK(b >= 0 && b < static_cast<std::int64_t>(lists->size()),
             "loader: batch " << b << " out of range [0, " << lists->size() << ")");
    return dataset.get_batch((*lists)[static_cast<std::size_t>(b)]);
  };
}

}  // namespace hessgap::data
