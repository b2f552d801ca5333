// The first N samples of a dataset (DatasetSpec::limit: --subset, the trainer's --train-subset /
// --test-subset), and finding the dataset that reads the files under the wrappers open_dataset adds.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace hessgap::data {

// Samples 0 .. limit-1 of `base`, in the split's natural order, with their ids unchanged: sample i
// here is sample i of the base, so output files, label noise keys and skipped-file ids mean the same
// thing with and without the subset. Everything but size() is forwarded.
class SubsetDataset : public Dataset {
 public:
  // Throws hessgap::Error when base is null, limit < 1, or limit exceeds base->size() (naming both).
  SubsetDataset(std::unique_ptr<Dataset> base, std::int64_t limit);

  std::int64_t size() const override { return limit_; }
  std::int64_t num_classes() const override { return base_->num_classes(); }
  std::vector<std::string> class_names() const override { return base_->class_names(); }
  // Throws hessgap::Error for i outside [0, size()).
  std::int64_t label(std::int64_t i) const override;
  // Throws hessgap::Error for an id outside [0, size()) (the base would accept it).
  Batch get_batch(const std::vector<std::int64_t>& ids) const override;
  std::string describe() const override;

  const Dataset& base() const { return *base_; }

 private:
  std::unique_ptr<Dataset> base_;
  std::int64_t limit_;
};

// The dataset that reads the files: `d` with every NoisyLabelDataset and SubsetDataset layer peeled
// off (both keep sample ids, so an id of `d` is the same id there). `d` itself when it is neither.
const Dataset& source_dataset(const Dataset& d);

}  // namespace hessgap::data
