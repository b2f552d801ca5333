// Which samples form which batch, and which group of ranks processes each batch. Torch-free.
// Batches are formed from the dataset's natural order (or a seeded permutation), so batch b is the
// same set of samples whatever the number of ranks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hessgap::measures {

enum class SampleRule {
  // The reference's loop: take whole batches and stop after the batch at which the cumulative
  // number of samples first exceeds sample_size (100 samples at batch 4 → 26 batches, 104 samples).
  kReference,
  // Exactly the first sample_size samples; the last batch may be smaller.
  kExact,
};

SampleRule parse_sample_rule(const std::string& name);  // "reference" | "exact"
std::string to_string(SampleRule r);

struct PlanOptions {
  std::int64_t batch_size = 4;
  std::int64_t sample_size = 100;  // 0 = the whole dataset
  SampleRule rule = SampleRule::kReference;
  bool shuffle = false;            // a permutation keyed by seed instead of the natural order
  std::uint64_t seed = 0;
  void validate() const;           // throws hessgap::Error naming the flag
};

struct BatchPlan {
  std::vector<std::vector<std::int64_t>> batches;  // global sample ids, in batch order
  std::int64_t num_samples() const;
  std::vector<std::int64_t> batch_sizes() const;
};

// Throws hessgap::Error when the dataset is empty.
BatchPlan plan_batches(std::int64_t dataset_size, const PlanOptions& opts);

// `ids` in their order, cut into batches of batch_size (the last may be smaller); no batches for no ids.
// Throws hessgap::Error for batch_size < 1.
BatchPlan plan_ids(const std::vector<std::int64_t>& ids, std::int64_t batch_size);

// Batches owned by `part` of `num_parts` (round robin: b % num_parts == part).
std::vector<std::int64_t> owned_batches(const BatchPlan& plan, int part, int num_parts);

}  // namespace hessgap::measures
