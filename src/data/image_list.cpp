#include "data/image_list.h"

#include <sstream>

#include "data/image_folder.h"
#include "util/error.h"

namespace hessgap::data {

ImageListDataset::ImageListDataset(ImageList list, std::string what, ImageListOptions options)
    : what_(std::move(what)), options_(std::move(options)), classes_(std::move(list.classes)) {
  HG_CHECK(list.files.size() == list.labels.size(), what_ << ": " << list.files.size() << " files but "
                                                          << list.labels.size() << " labels");
  HG_CHECK(!classes_.empty(), what_ << ": no class");
  HG_CHECK(options_.max_per_class >= 0, what_ << ": max_per_class must be >= 0, got " << options_.max_per_class);
  HG_CHECK(options_.num_threads >= 1, what_ << ": num_threads must be >= 1, got " << options_.num_threads);
  const auto k = static_cast<std::int64_t>(classes_.size());
  std::vector<std::int64_t> per_class(classes_.size(), 0);
  for (std::size_t i = 0; i < list.files.size(); ++i) {
    const std::int64_t c = list.labels[i];
    HG_CHECK(c >= 0 && c < k, what_ << ": label " << c << " of '" << list.files[i] << "' is outside [0, " << k << ")");
    if (options_.max_per_class > 0 && per_class[static_cast<std::size_t>(c)] >= options_.max_per_class) continue;
    ++per_class[static_cast<std::size_t>(c)];
    files_.push_back(std::move(list.files[i]));
    labels_.push_back(c);
  }
}

std::int64_t ImageListDataset::label(std::int64_t i) const {
  HG_CHECK(i >= 0 && i < size(), what_ << ": sample id " << i << " out of range [0, " << size() << ")");
  return labels_[static_cast<std::size_t>(i)];
}

const std::string& ImageListDataset::file(std::int64_t i) const {
  HG_CHECK(i >= 0 && i < size(), what_ << ": sample id " << i << " out of range [0, " << size() << ")");
  return files_[static_cast<std::size_t>(i)];
}

Batch ImageListDataset::get_batch(const std::vector<std::int64_t>& ids) const {
  std::vector<std::string> paths;
  paths.reserve(ids.size());
  for (std::int64_t id : ids) paths.push_back(file(id));  // checks the range
  Batch batch;
  batch.inputs = load_image_batch(paths, options_.transform, options_.num_threads, what_);
  batch.labels = torch::empty({static_cast<std::int64_t>(ids.size())}, torch::kInt64);
  std::int64_t* labels = batch.labels.data_ptr<std::int64_t>();
  for (std::size_t k = 0; k < ids.size(); ++k) labels[k] = labels_[static_cast<std::size_t>(ids[k])];
  batch.sample_ids = ids;
  return batch;
}

std::string ImageListDataset::describe() const {
  std::ostringstream os;
  const EvalTransform& t = options_.transform;
  os << what_ << " (" << size() << " images, " << num_classes() << " classes";
  if (options_.max_per_class > 0) os << ", at most " << options_.max_per_class << " per class";
  os << "; resize " << t.resize << ", crop " << t.crop << ")";
  return os.str();
}

}  // namespace hessgap::data
