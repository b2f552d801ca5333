#include "data/subset_dataset.h"

#include <sstream>
#include <utility>

#include "data/label_noise.h"
#include "util/error.h"

namespace hessgap::data {

SubsetDataset::SubsetDataset(std::unique_ptr<Dataset> base, std::int64_t limit)
    : base_(std::move(base)), limit_(limit) {
  HG_CHECK(base_, "subset of a dataset: no dataset given");
  HG_CHECK(limit_ >= 1, "subset of " << base_->describe() << ": the number of samples must be >= 1 (got " << limit_
                                     << ")");
  HG_CHECK(limit_ <= base_->size(), "subset of the first " << limit_ << " samples of " << base_->describe()
                                                           << ": the split has only " << base_->size());
}

std::int64_t SubsetDataset::label(std::int64_t i) const {
  HG_CHECK(i >= 0 && i < limit_, "sample id " << i << " out of range [0, " << limit_ << ") of " << describe());
  return base_->label(i);
}

Batch SubsetDataset::get_batch(const std::vector<std::int64_t>& ids) const {
  for (std::int64_t id : ids) {
    HG_CHECK(id >= 0 && id < limit_, "sample id " << id << " out of range [0, " << limit_ << ") of " << describe());
  }
  return base_->get_batch(ids);
}

std::string SubsetDataset::describe() const {
  std::ostringstream os;
  os << base_->describe() << ", first " << limit_ << " samples";
  return os.str();
}

const Dataset& source_dataset(const Dataset& d) {
  if (const auto* noisy = dynamic_cast<const NoisyLabelDataset*>(&d)) return source_dataset(noisy->base());
  if (const auto* subset = dynamic_cast<const SubsetDataset*>(&d)) return source_dataset(subset->base());
  return d;
}

}  // namespace hessgap::data
