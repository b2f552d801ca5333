#include "measures/batch_plan.h"

#include <algorithm>

#include "util/error.h"
#include "util/rng.h"

namespace hessgap::measures {

SampleRule parse_sample_rule(const std::string& name) {
  if (name == "reference") return SampleRule::kReference;
  if (name == "exact") return SampleRule::kExact;
  HG_FAIL("unknown sample rule '" << name << "' (expected reference or exact)");
}
std::string to_string(SampleRule r) { return r == SampleRule::kReference ? "reference" : "exact"; }

void PlanOptions::validate() const {
  HG_CHECK(batch_size > 0, "--batch-size must be > 0 (got " << batch_size << ")");
  HG_CHECK(sample_size >= 0, "--sample-size must be >= 0 (got " << sample_size << "; 0 means all)");
}

std::int64_t BatchPlan::num_samples() const {
  std::int64_t n = 0;
  for (const auto& b : batches) n += static_cast<std::int64_t>(b.size());
  return n;
}

std::vector<std::int64_t> BatchPlan::batch_sizes() const {
  std::vector<std::int64_t> out;
  for (const auto& b : batches) out.push_back(static_cast<std::int64_t>(b.size()));
  return out;
}

BatchPlan plan_batches(std::int64_t dataset_size, const PlanOptions& opts) {
  opts.validate();
  HG_CHECK(dataset_size > 0, "the dataset is empty");
  std::vector<std::int64_t> order(static_cast<std::size_t>(dataset_size));
  if (opts.shuffle) {
    rng::permutation(order.data(), dataset_size, rng::make_key(opts.seed, rng::Stream::kShuffle, 0));
  } else {
    for (std::int64_t i = 0; i < dataset_size; ++i) order[static_cast<std::size_t>(i)] = i;
  }
  std::int64_t limit = dataset_size;
  if (opts.sample_size > 0) {
    if (opts.rule == SampleRule::kExact) {
      limit = std::min(dataset_size, opts.sample_size);
    } else {
      // Whole batches until the cumulative count exceeds sample_size: ⌊s/bs⌋+1 batches.
      limit = std::min(dataset_size, (opts.sample_size / opts.batch_size + 1) * opts.batch_size);
    }
  }
  BatchPlan plan;
  for (std::int64_t start = 0; start < limit; start += opts.batch_size) {
    const std::int64_t end = std::min(limit, start + opts.batch_size);
    plan.batches.emplace_back(order.begin() + start, order.begin() + end);
  }
  return plan;
}

std::vector<std::int64_t> owned_batches(const BatchPlan& plan, int part, int num_parts) {
  std::vector<std::int64_t> out;
  for (std::int64_t b = part; b < static_cast<std::int64_t>(plan.batches.size()); b += num_parts) out.push_back(b);
  return out;
}

BatchPlan plan_ids(const std::vector<std::int64_t>& ids, std::int64_t batch_size) {
  HG_CHECK(batch_size >= 1, "batch size must be >= 1 (got " << batch_size << ")");
  BatchPlan plan;
  for (std::size_t at = 0; at < ids.size(); at += static_cast<std::size_t>(batch_size)) {
    const std::size_t end = std::min(ids.size(), at + static_cast<std::size_t>(batch_size));
    plan.batches.emplace_back(ids.begin() + static_cast<std::ptrdiff_t>(at), ids.begin() + static_cast<std::ptrdiff_t>(end));
  }
  return plan;
}

}  // namespace hessgap::measures
