#include "data/cifar_binary.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "util/error.h"
#include "util/input_file.h"

namespace hessgap::data {
namespace fs = std::filesystem;
namespace {

std::vector<std::string> read_names(const std::string& path) {
  std::vector<std::string> names;
  refuse_special_file(path, "CIFAR class names file");
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  return names;
}

}  // namespace

CifarBinaryDataset::CifarBinaryDataset(std::string root, std::string split, EvalTransform transform, bool cifar100,
                                       bool coarse_labels, std::int64_t max_per_class)
    : root_(std::move(root)),
      split_(std::move(split)),
      transform_(transform),
      cifar100_(cifar100),
      coarse_(coarse_labels),
      max_per_class_(max_per_class) {
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
  const std::string what = cifar100_ ? "CIFAR-100" : "CIFAR-10";
  HG_CHECK(split_ == "train" || split_ == "test",
           what << " '" << root_ << "': unknown split '" << split_ << "' (expected train or test)");
  HG_CHECK(max_per_class_ >= 0, what << " '" << root_ << "': max_per_class must be >= 0, got " << max_per_class_);
  HG_CHECK(coarse_labels == false || cifar100_, "CIFAR-10 '" << root_ << "': coarse labels exist only for CIFAR-100");
  HG_CHECK(fs::is_directory(root_), what << " folder '" << root_ << "' does not exist or is not a folder");
  const std::string sub = cifar100_ ? "cifar-100-binary" : "cifar-10-batches-bin";
  const std::string dir = fs::is_directory(root_ + "/" + sub) ? root_ + "/" + sub : root_;

  if (cifar100_) {
    files_.push_back(dir + "/" + split_ + ".bin");
  } else if (split_ == "train") {
    for (int b = 1; b <= 5; ++b) files_.push_back(dir + "/data_batch_" + std::to_string(b) + ".bin");
  } else {
    files_.push_back(dir + "/test_batch.bin");
  }
  num_classes_ = cifar100_ ? (coarse_ ? 20 : 100) : 10;
  const std::size_t header = cifar100_ ? 2 : 1;
  const std::size_t record = header + kPixels;
  const std::size_t label_at = cifar100_ && !coarse_ ? 1 : 0;
  for (const std::string& f : files_) {
    HG_CHECK(fs::is_regular_file(f), what << " file '" << f << "' does not exist (expected the official binary "
                                          << "layout " << sub << "/ under '" << root_ << "')");
    std::ifstream in(f, std::ios::binary);
    HG_CHECK(in, what << " file '" << f << "' cannot be opened");
    const std::vector<char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    HG_CHECK(!bytes.empty() && bytes.size() % record == 0,
             what << " file '" << f << "' has " << bytes.size() << " bytes, not a positive multiple of the record size "
                  << record << " (truncated or not a " << what << " binary file)");
    const std::size_t n = bytes.size() / record;
    pixels_.reserve(pixels_.size() + n * kPixels);
    for (std::size_t r = 0; r < n; ++r) {
      const auto* rec = reinterpret_cast<const std::uint8_t*>(bytes.data() + r * record);
      const int lim[2] = {cifar100_ ? 20 : 10, 100};
      for (std::size_t h = 0; h < header; ++h) {
        const int limit = cifar100_ ? lim[h] : 10;
        HG_CHECK(rec[h] < limit, what << " file '" << f << "': record " << r << " has "
                                      << (cifar100_ ? (h == 0 ? "coarse label " : "fine label ") : "label ")
                                      << static_cast<int>(rec[h]) << ", out of range [0, " << limit << ")");
      }
      labels_.push_back(rec[label_at]);
      pixels_.insert(pixels_.end(), rec + header, rec + record);
    }
  }
  std::vector<std::int64_t> per_class(static_cast<std::size_t>(num_classes_), 0);
  for (std::size_t r = 0; r < labels_.size(); ++r) {
    if (max_per_class_ > 0 && per_class[labels_[r]]++ >= max_per_class_) continue;
    index_.push_back(static_cast<std::int64_t>(r));
  }

  const std::string names_file = dir + "/" + (cifar100_ ? (coarse_ ? "coarse_label_names.txt" : "fine_label_names.txt")
                                                       : "batches.meta.txt");
  if (fs::is_regular_file(names_file)) class_names_ = read_names(names_file);
  HG_CHECK(class_names_.empty() || static_cast<std::int64_t>(class_names_.size()) == num_classes_,
           what << " class names file '" << names_file << "' has " << class_names_.size() << " names, expected "
                << num_classes_);
  if (class_names_.empty()) {
    for (std::int64_t c = 0; c < num_classes_; ++c) class_names_.push_back(std::to_string(c));
  }
}

std::int64_t CifarBinaryDataset::label(std::int64_t i) const {
  HG_CHECK(i >= 0 && i < size(), "CIFAR '" << root_ << "': sample id " << i << " out of range [0, " << size() << ")");
  return labels_[static_cast<std::size_t>(index_[static_cast<std::size_t>(i)])];
}

Image CifarBinaryDataset::image(std::int64_t i) const {
  HG_CHECK(i >= 0 && i < size(), "CIFAR '" << root_ << "': sample id " << i << " out of range [0, " << size() << ")");
  const std::uint8_t* src = pixels_.data() + static_cast<std::size_t>(index_[static_cast<std::size_t>(i)]) * kPixels;
  Image img;
  img.width = kSide;
  img.height = kSide;
  img.channels = 3;
  img.pixels.resize(kPixels);
  constexpr int plane = kSide * kSide;
  for (int p = 0; p < plane; ++p) {
    for (int c = 0; c < 3; ++c) img.pixels[static_cast<std::size_t>(p) * 3 + c] = src[c * plane + p];
  }
  return img;
}

Batch CifarBinaryDataset::get_batch(const std::vector<std::int64_t>& ids) const {
  const std::size_t n = ids.size();
  std::vector<torch::Tensor> inputs;
  inputs.reserve(n);
  Batch batch;
  batch.sample_ids = ids;
  batch.labels = torch::empty({static_cast<std::int64_t>(n)}, torch::kInt64);
  std::int64_t* labels = batch.labels.data_ptr<std::int64_t>();
  for (std::size_t k = 0; k < n; ++k) {
    inputs.push_back(apply_eval_transform(image(ids[k]), transform_));
    labels[k] = label(ids[k]);
  }
  if (n == 0) {
    const std::int64_t side = transform_.crop > 0 ? transform_.crop : (transform_.resize > 0 ? transform_.resize : kSide);
    batch.inputs = torch::empty({0, 3, side, side}, torch::kFloat32);
  } else {
    batch.inputs = torch::stack(inputs);
  }
  return batch;
}

std::string CifarBinaryDataset::describe() const {
  std::ostringstream os;
  os << (cifar100_ ? "CIFAR-100" : "CIFAR-10") << " binary " << root_ << " " << split_ << " (" << size() << " images, "
     << num_classes() << (coarse_ ? " coarse" : "") << " classes";
  if (max_per_class_ > 0) os << ", at most " << max_per_class_ << " per class";
  os << "; resize " << transform_.resize << ", crop " << transform_.crop << ")";
  return os.str();
}

}  // namespace hessgap::data
