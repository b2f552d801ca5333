#include "data/mit_indoor.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "util/error.h"
#include "util/excerpt.h"
#include "util/input_file.h"
#include "util/rng.h"

namespace hessgap::data {
namespace fs = std::filesystem;

MitIndoorDataset::MitIndoorDataset(std::string root, std::string split, MitIndoorOptions options)
    : root_(std::move(root)), split_(std::move(split)), options_(std::move(options)) {
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
  HG_CHECK(split_ == "train" || split_ == "val" || split_ == "test",
           "MIT-Indoor '" << root_ << "': unknown split '" << split_ << "' (expected train, val or test)");
  HG_CHECK(options_.valid_split >= 0.0 && options_.valid_split < 1.0,
           "MIT-Indoor '" << root_ << "': valid_split must be in [0, 1), got " << options_.valid_split);
  HG_CHECK(options_.max_per_class >= 0,
           "MIT-Indoor '" << root_ << "': max_per_class must be >= 0, got " << options_.max_per_class);
  const std::string list = root_ + (split_ == "test" ? "/TestImages.txt" : "/TrainImages.txt");
  HG_CHECK(fs::exists(list), "MIT-Indoor '" << root_ << "': list file '" << list << "' does not exist");
  HG_CHECK(fs::is_directory(root_ + "/Images"), "MIT-Indoor '" << root_ << "': image folder '" << root_
                                                              << "/Images' does not exist");
  ImageFolderOptions fo;
  fo.transform = options_.transform;
  fo.num_threads = options_.num_threads;
  folder_ = std::make_unique<ImageFolderDataset>(root_ + "/Images", fo);
  std::unordered_map<std::string, std::int64_t> by_name;
  const std::string prefix = root_ + "/Images/";
  for (std::int64_t i = 0; i < folder_->size(); ++i) by_name.emplace(folder_->file(i).substr(prefix.size()), i);

  std::vector<std::int64_t> entries;  // folder index of each list line
  std::vector<std::int64_t> lines;    // its line number
  {
    refuse_special_file(list, "MIT-Indoor list");
    std::ifstream in(list);
    HG_CHECK(in, "cannot open '" << list << "'");
    std::string line;
    for (std::int64_t no = 0; std::getline(in, line); ++no) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      const auto it = by_name.find(line);
      HG_CHECK(it != by_name.end(), "MIT-Indoor list '" << list << "', line " << no + 1 << ": image '" << excerpt(line)
                                                        << "' is not in '" << root_ << "/Images'");
      entries.push_back(it->second);
      lines.push_back(no);
    }
  }
  HG_CHECK(!entries.empty(), "MIT-Indoor list '" << list << "' is empty");

  std::vector<char> keep(entries.size(), 1);
  if (split_ != "test") {
    const auto n = static_cast<std::int64_t>(entries.size());
    std::vector<std::int64_t> perm(static_cast<std::size_t>(n));
    rng::permutation(perm.data(), n, rng::make_key(options_.split_seed, rng::Stream::kShuffle, kSplitTag));
    const auto n_val = static_cast<std::int64_t>(static_cast<double>(n) * options_.valid_split);
    std::fill(keep.begin(), keep.end(), split_ == "train" ? 1 : 0);
    for (std::int64_t k = 0; k < n_val; ++k) keep[static_cast<std::size_t>(perm[static_cast<std::size_t>(k)])] = split_ == "val";
  }
  std::vector<std::int64_t> per_class(static_cast<std::size_t>(folder_->num_classes()), 0);
  for (std::size_t k = 0; k < entries.size(); ++k) {
    if (!keep[k]) continue;
    const auto c = static_cast<std::size_t>(folder_->label(entries[k]));
    if (options_.max_per_class > 0 && per_class[c] >= options_.max_per_class) continue;
    ++per_class[c];
    index_.push_back(entries[k]);
    positions_.push_back(lines[k]);
  }
}

std::int64_t MitIndoorDataset::label(std::int64_t i) const {
  HG_CHECK(i >= 0 && i < size(), "MIT-Indoor '" << root_ << "': sample id " << i << " out of range [0, " << size() << ")");
  return folder_->label(index_[static_cast<std::size_t>(i)]);
}

const std::string& MitIndoorDataset::file(std::int64_t i) const {
  HG_CHECK(i >= 0 && i < size(), "MIT-Indoor '" << root_ << "': sample id " << i << " out of range [0, " << size() << ")");
  return folder_->file(index_[static_cast<std::size_t>(i)]);
}

Batch MitIndoorDataset::get_batch(const std::vector<std::int64_t>& ids) const {
  std::vector<std::int64_t> folder_ids;
  folder_ids.reserve(ids.size());
  for (std::int64_t id : ids) {
    HG_CHECK(id >= 0 && id < size(), "MIT-Indoor '" << root_ << "': sample id " << id << " out of range [0, " << size() << ")");
    folder_ids.push_back(index_[static_cast<std::size_t>(id)]);
  }
  Batch batch = folder_->get_batch(folder_ids);
  batch.sample_ids = ids;
  return batch;  // labels are the folder's, which are this dataset's
}

std::string MitIndoorDataset::describe() const {
  std::ostringstream os;
  const EvalTransform& t = options_.transform;
  os << "MIT-Indoor-67 " << root_ << " " << split_ << " (" << size() << " images, " << num_classes() << " classes";
  if (split_ != "test") os << ", valid_split " << options_.valid_split << " seed " << options_.split_seed;
  if (options_.max_per_class > 0) os << ", at most " << options_.max_per_class << " per class";
  os << "; resize " << t.resize << ", crop " << t.crop << ")";
  return os.str();
}

}  // namespace hessgap::data
