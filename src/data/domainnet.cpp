#include "data/domainnet.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "data/image.h"
#include "data/image_folder.h"
#include "data/npy.h"
#include "util/error.h"
#include "util/excerpt.h"
#include "util/input_file.h"

namespace hessgap::data {
namespace fs = std::filesystem;
namespace {

std::vector<std::string> read_lines(const std::string& path) {
  refuse_special_file(path, "DomainNet list");
  std::ifstream in(path);
  HG_CHECK(in, "cannot open '" << path << "'");
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();  // trailing blank lines
  return lines;
}

std::string image_name(std::int64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%06lld.png", static_cast<long long>(i));
  return buf;
}

std::mutex& stats_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, std::array<std::array<double, 3>, 2>>& stats_cache() {
  static std::map<std::string, std::array<std::array<double, 3>, 2>> c;
  return c;
}

}  // namespace

std::array<std::array<double, 3>, 2> DomainNetDataset::folder_stats(const std::string& folder) {
  {
    std::lock_guard<std::mutex> lock(stats_mutex());
    const auto it = stats_cache().find(folder);
    if (it != stats_cache().end()) return it->second;
  }
  std::array<std::array<double, 3>, 2> out{};
  const std::string json_path = folder + "/norm_stats.json";
  if (fs::exists(json_path)) {
    refuse_special_file(json_path, "DomainNet statistics file");
    std::ifstream in(json_path);
    nlohmann::json j;
    try {
      in >> j;
      for (int c = 0; c < 3; ++c) {
        out[0][c] = j.at("mean").at(c).get<double>();
        out[1][c] = j.at("std").at(c).get<double>();
      }
      HG_CHECK(j.at("mean").size() == 3 && j.at("std").size() == 3, "expected 3 values each");
    } catch (const nlohmann::json::exception& e) {
      HG_FAIL("DomainNet statistics file '" << json_path << "' is malformed (expected {\"mean\": [3 numbers], "
                                            << "\"std\": [3 numbers]}): " << e.what());
    }
    for (int c = 0; c < 3; ++c) {
      HG_CHECK(out[1][c] > 0, "DomainNet statistics file '" << json_path << "': std must be > 0");
    }
  } else {
    const std::int64_t n = static_cast<std::int64_t>(read_lines(folder + "/labels.txt").size());
    HG_CHECK(n > 0, "DomainNet folder '" << folder << "' has no images (labels.txt is empty)");
    std::array<std::uint64_t, 3> sum{}, sum_sq{};
    std::uint64_t pixels = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      const Image img = decode_image(folder + "/" + image_name(i));
      const std::size_t np = static_cast<std::size_t>(img.width) * img.height;
      for (std::size_t p = 0; p < np; ++p) {
        for (int c = 0; c < 3; ++c) {
          const std::uint64_t v = img.pixels[p * 3 + c];
          sum[c] += v;
          sum_sq[c] += v * v;
        }
      }
      pixels += np;
    }
    for (int c = 0; c < 3; ++c) {
      const double mean = static_cast<double>(sum[c]) / static_cast<double>(pixels);  // in 0..255
      // Var = (Q - S^2/n) / n, exact in integers up to the final division.
      const long double num = static_cast<long double>(sum_sq[c]) * pixels -
                              static_cast<long double>(sum[c]) * static_cast<long double>(sum[c]);
      const double var = static_cast<double>(num / (static_cast<long double>(pixels) * pixels));
      out[0][c] = mean / 255.0;
      out[1][c] = std::sqrt(var) / 255.0;
      HG_CHECK(out[1][c] > 0, "DomainNet folder '" << folder << "': channel " << c
                                                   << " is constant over all images (std 0), cannot normalise");
    }
  }
  std::lock_guard<std::mutex> lock(stats_mutex());
  stats_cache()[folder] = out;
  return out;
}

DomainNetDataset::DomainNetDataset(std::string root, DomainNetOptions options)
    : root_(std::move(root)), options_(std::move(options)) {
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
  const DomainNetOptions& o = options_;
  HG_CHECK(o.sample == 1 || o.sample == 2, "DomainNet '" << root_ << "': sample must be 1 or 2, got " << o.sample);
  HG_CHECK(o.partition == "train" || o.partition == "val" || o.partition == "test",
           "DomainNet '" << root_ << "': unknown partition '" << o.partition << "' (expected train, val or test)");
  HG_CHECK(o.label_source.empty() || o.label_source == "weak" || o.label_source == "true",
           "DomainNet '" << root_ << "': unknown label_source '" << o.label_source << "' (expected weak or true)");
  HG_CHECK(!o.domain.empty() && o.domain.find('/') == std::string::npos,
           "DomainNet '" << root_ << "': bad domain '" << o.domain << "'");
  HG_CHECK(o.resize >= 0, "DomainNet '" << root_ << "': resize must be >= 0, got " << o.resize);
  HG_CHECK(o.max_per_class >= 0, "DomainNet '" << root_ << "': max_per_class must be >= 0, got " << o.max_per_class);
  HG_CHECK(o.num_threads >= 1, "DomainNet '" << root_ << "': num_threads must be >= 1, got " << o.num_threads);
  HG_CHECK(fs::is_directory(root_), "DomainNet root '" << root_ << "' does not exist or is not a folder");
  label_source_ = !o.label_source.empty() ? o.label_source : o.partition == "train" ? "weak" : "true";

  const std::string sample_dir = root_ + "/sample_" + std::to_string(o.sample);
  const std::string classes_file = root_ + "/sample_classes_" + std::to_string(o.sample) + ".txt";
  HG_CHECK(fs::exists(classes_file), "DomainNet '" << root_ << "': class list '" << classes_file << "' does not exist");
  classes_ = read_lines(classes_file);
  HG_CHECK(!classes_.empty(), "DomainNet class list '" << classes_file << "' is empty");
  std::map<std::string, std::int64_t> class_id;
  for (std::size_t c = 0; c < classes_.size(); ++c) {
    HG_CHECK(class_id.emplace(classes_[c], static_cast<std::int64_t>(c)).second,
             "DomainNet class list '" << classes_file << "': class '" << classes_[c] << "' appears twice");
  }

  dir_ = sample_dir + "/" + o.partition + "_" + o.domain;
  const std::string labels_file = dir_ + "/labels.txt";
  HG_CHECK(fs::is_directory(dir_), "DomainNet '" << root_ << "': image folder '" << dir_ << "' does not exist "
                                                 << "(convert the pickle with analysis/tools/domainnet_from_pickles.py)");
  HG_CHECK(fs::exists(labels_file), "DomainNet image folder '" << dir_ << "' has no labels.txt ('" << labels_file << "')");
  const std::vector<std::string> names = read_lines(labels_file);
  const auto n = static_cast<std::int64_t>(names.size());
  HG_CHECK(n > 0, "DomainNet labels file '" << labels_file << "' is empty");
  for (std::int64_t i = 0; i < n; ++i) {
    const auto it = class_id.find(names[static_cast<std::size_t>(i)]);
    HG_CHECK(it != class_id.end(), "DomainNet labels file '" << labels_file << "', line " << i + 1 << ": class '"
                                                             << excerpt(names[static_cast<std::size_t>(i)])
                                                             << "' is not in '" << classes_file << "'");
    true_.push_back(it->second);
    files_.push_back(dir_ + "/" + image_name(i));
    HG_CHECK(fs::is_regular_file(files_.back()),
             "DomainNet image '" << files_.back() << "' does not exist (labels.txt lists " << n << " images)");
  }
  HG_CHECK(!fs::exists(dir_ + "/" + image_name(n)),
           "DomainNet image folder '" << dir_ << "' holds '" << image_name(n) << "' but labels.txt lists only " << n
                                      << " images");

  const std::string mv_file = sample_dir + "/" + o.partition + "_" + o.domain + "_mv_labels.npy";
  if (fs::exists(mv_file)) {
    weak_ = read_npy_int_vector(mv_file);
    HG_CHECK(static_cast<std::int64_t>(weak_.size()) == n,
             "DomainNet weak labels '" << mv_file << "' do not match the images: " << n << " images in '" << dir_
                                       << "' but " << weak_.size() << " labels");
    for (std::size_t i = 0; i < weak_.size(); ++i) {
      HG_CHECK(weak_[i] >= 0 && weak_[i] < num_classes(), "DomainNet weak labels '" << mv_file << "': label "
                                                                                    << weak_[i] << " at index " << i
                                                                                    << " is outside [0, "
                                                                                    << num_classes() << ")");
    }
  } else {
    HG_CHECK(label_source_ != "weak", "DomainNet '" << root_ << "': weak labels '" << mv_file << "' do not exist "
                                                    << "(label_source weak" << (o.label_source.empty() ? ", the train default" : "")
                                                    << ")");
  }

  const std::vector<std::int64_t>& used = label_source_ == "weak" ? weak_ : true_;
  std::vector<std::int64_t> per_class(classes_.size(), 0);
  for (std::int64_t i = 0; i < n; ++i) {
    const auto c = static_cast<std::size_t>(used[static_cast<std::size_t>(i)]);
    if (o.max_per_class > 0 && per_class[c] >= o.max_per_class) continue;
    ++per_class[c];
    index_.push_back(i);
  }

  const auto stats = folder_stats(sample_dir + "/train_" + o.domain);
  transform_.resize = o.resize;
  transform_.crop = 0;
  transform_.mean = stats[0];
  transform_.stddev = stats[1];
}

std::int64_t DomainNetDataset::label(std::int64_t i) const {
  return label_source_ == "weak" ? weak_label(i) : true_label(i);
}

std::int64_t DomainNetDataset::true_label(std::int64_t i) const {
  HG_CHECK(i >= 0 && i < size(), "DomainNet '" << dir_ << "': sample id " << i << " out of range [0, " << size() << ")");
  return true_[static_cast<std::size_t>(index_[static_cast<std::size_t>(i)])];
}

std::int64_t DomainNetDataset::weak_label(std::int64_t i) const {
  HG_CHECK(has_weak_labels(), "DomainNet '" << dir_ << "' has no weak labels (no mv_labels.npy file)");
  HG_CHECK(i >= 0 && i < size(), "DomainNet '" << dir_ << "': sample id " << i << " out of range [0, " << size() << ")");
  return weak_[static_cast<std::size_t>(index_[static_cast<std::size_t>(i)])];
}

double DomainNetDataset::weak_noise_rate() const {
  HG_CHECK(has_weak_labels(), "DomainNet '" << dir_ << "' has no weak labels (no mv_labels.npy file)");
  if (index_.empty()) return 0.0;
  std::int64_t wrong = 0;
  for (std::int64_t k : index_) wrong += weak_[static_cast<std::size_t>(k)] != true_[static_cast<std::size_t>(k)];
  return static_cast<double>(wrong) / static_cast<double>(index_.size());
}

const std::string& DomainNetDataset::file(std::int64_t i) const {
  HG_CHECK(i >= 0 && i < size(), "DomainNet '" << dir_ << "': sample id " << i << " out of range [0, " << size() << ")");
  return files_[static_cast<std::size_t>(index_[static_cast<std::size_t>(i)])];
}

Batch DomainNetDataset::get_batch(const std::vector<std::int64_t>& ids) const {
  std::vector<std::string> paths;
  paths.reserve(ids.size());
  for (std::int64_t id : ids) paths.push_back(file(id));  // checks the range
  Batch batch;
  batch.sample_ids = ids;
  batch.labels = torch::empty({static_cast<std::int64_t>(ids.size())}, torch::kInt64);
  std::int64_t* labels = batch.labels.data_ptr<std::int64_t>();
  for (std::size_t k = 0; k < ids.size(); ++k) labels[k] = label(ids[k]);
  batch.inputs = load_image_batch(paths, transform_, options_.num_threads, "DomainNet '" + dir_ + "'");
  return batch;
}

std::string DomainNetDataset::describe() const {
  std::ostringstream os;
  os << "DomainNet " << root_ << " sample " << options_.sample << " " << options_.domain << " " << options_.partition
     << " (" << size() << " images, " << num_classes() << " classes, " << label_source_ << " labels";
  if (has_weak_labels()) os << ", weak-label noise " << weak_noise_rate();
  if (options_.max_per_class > 0) os << ", at most " << options_.max_per_class << " per class";
  os << "; resize " << transform_.resize << ", mean (" << transform_.mean[0] << "," << transform_.mean[1] << ","
     << transform_.mean[2] << "), std (" << transform_.stddev[0] << "," << transform_.stddev[1] << ","
     << transform_.stddev[2] << "))";
  return os.str();
}

}  // namespace hessgap::data
