#include "data/caltech.h"

#include <algorithm>
#include <sstream>

#include "util/error.h"

namespace hessgap::data {

Caltech256Dataset::Caltech256Dataset(std::string root, std::string split, EvalTransform transform,
                                     std::int64_t max_per_class, int num_threads)
    : root_(std::move(root)), split_(std::move(split)), max_per_class_(max_per_class) {
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
  HG_CHECK(split_ == "train" || split_ == "val" || split_ == "test",
           "Caltech-256 '" << root_ << "': unknown split '" << split_ << "' (expected train, val or test)");
  HG_CHECK(max_per_class_ >= 0, "Caltech-256 '" << root_ << "': max_per_class must be >= 0, got " << max_per_class_);
  const std::int64_t begin = split_ == "train" ? 0 : split_ == "val" ? kTrain : kTrain + kVal;
  const std::int64_t end = begin + (split_ == "train" ? kTrain : split_ == "val" ? kVal : kTest);
  std::int64_t take = end - begin;
  if (max_per_class_ > 0 && max_per_class_ < take) take = max_per_class_;

  ImageFolderOptions options;
  options.transform = transform;
  options.num_threads = num_threads;
  folder_ = std::make_unique<ImageFolderDataset>(root_, options);

  // The folder's samples are grouped by class, in class order.
  const std::vector<std::string> folder_classes = folder_->class_names();
  std::vector<std::int64_t> first(folder_classes.size() + 1, folder_->size());
  for (std::int64_t i = folder_->size() - 1; i >= 0; --i) first[static_cast<std::size_t>(folder_->label(i))] = i;
  for (std::size_t c = folder_classes.size(); c-- > 0;) first[c] = std::min(first[c], first[c + 1]);
  for (std::size_t c = 0; c < folder_classes.size(); ++c) {
    if (folder_classes[c] == kClutter) continue;
    const std::int64_t count = first[c + 1] - first[c];
    HG_CHECK(count >= end, "Caltech-256 '" << root_ << "': class '" << folder_classes[c] << "' has " << count
                                           << " images, but the " << split_ << " split needs " << end
                                           << " (files " << begin << ".." << end - 1 << " of the class)");
    const auto label = static_cast<std::int64_t>(classes_.size());
    classes_.push_back(folder_classes[c]);
    for (std::int64_t k = 0; k < take; ++k) {
      index_.push_back(first[c] + begin + k);
      labels_.push_back(label);
    }
  }
  HG_CHECK(!classes_.empty(), "Caltech-256 '" << root_ << "' has no class folder other than " << kClutter);
}

std::int64_t Caltech256Dataset::label(std::int64_t i) const {
  HG_CHECK(i >= 0 && i < size(), "Caltech-256 '" << root_ << "': sample id " << i << " out of range [0, " << size() << ")");
  return labels_[static_cast<std::size_t>(i)];
}

const std::string& Caltech256Dataset::file(std::int64_t i) const {
  HG_CHECK(i >= 0 && i < size(), "Caltech-256 '" << root_ << "': sample id " << i << " out of range [0, " << size() << ")");
  return folder_->file(index_[static_cast<std::size_t>(i)]);
}

Batch Caltech256Dataset::get_batch(const std::vector<std::int64_t>& ids) const {
  std::vector<std::int64_t> folder_ids;
  folder_ids.reserve(ids.size());
  for (std::int64_t id : ids) {
    HG_CHECK(id >= 0 && id < size(), "Caltech-256 '" << root_ << "': sample id " << id << " out of range [0, " << size() << ")");
    folder_ids.push_back(index_[static_cast<std::size_t>(id)]);
  }
  Batch batch = folder_->get_batch(folder_ids);
  batch.sample_ids = ids;
  std::int64_t* labels = batch.labels.data_ptr<std::int64_t>();
  for (std::size_t k = 0; k < ids.size(); ++k) labels[k] = labels_[static_cast<std::size_t>(ids[k])];
  return batch;
}

std::string Caltech256Dataset::describe() const {
  std::ostringstream os;
  const EvalTransform& t = folder_->options().transform;
  os << "Caltech-256 " << root_ << " " << split_ << " (" << size() << " images, " << num_classes() << " classes";
  if (max_per_class_ > 0) os << ", at most " << max_per_class_ << " per class";
  os << "; resize " << t.resize << ", crop " << t.crop << ")";
  return os.str();
}

}  // namespace hessgap::data
