// Caltech-256 with the reference scripts' per-class train / validation / test split (SPEC.md §3.2).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/image_folder.h"
#include "data/transforms.h"

namespace hessgap::data {

// `root` holds one folder per class, "NNN.name" (001.ak47 ... 256.toad); a "257.clutter" folder is
// excluded (the reference assumes it was removed: n_classes = 256). Classes are sorted by name and
// numbered 0..K-1 after the exclusion; files are listed exactly as ImageFolderDataset lists them
// (.jpg/.jpeg/.png, sorted by name; other files skipped). Within each class:
//   train = files [0, 30), val = files [30, 50), test = files [50, 70).
// Deviation: the reference takes these positions in os.listdir order, which is file-system
// dependent and not reproducible; hessgap uses the sorted order. Index order: class by class,
// file order within a class. Decoding and the transform are ImageFolderDataset's.
//
// Constructor errors (hessgap::Error): unknown split; every error of ImageFolderDataset on `root`;
// no class left after excluding 257.clutter; a class with fewer images than the split needs (30,
// 50 or 70; naming the class, its count and the split); max_per_class < 0.
class Caltech256Dataset : public Dataset {
 public:
  static constexpr std::int64_t kTrain = 30, kVal = 20, kTest = 20;
  static constexpr const char* kClutter = "257.clutter";

  // split: "train", "val" or "test". max_per_class: keep the first N samples of the split in each
  // class; 0 = all. num_threads: decoding threads per get_batch call.
  Caltech256Dataset(std::string root, std::string split, EvalTransform transform = {},
                    std::int64_t max_per_class = 0, int num_threads = 4);

  std::int64_t size() const override { return static_cast<std::int64_t>(index_.size()); }
  std::int64_t num_classes() const override { return static_cast<std::int64_t>(classes_.size()); }
  std::vector<std::string> class_names() const override { return classes_; }
  std::int64_t label(std::int64_t i) const override;
  // As ImageFolderDataset::get_batch, with this dataset's labels and sample ids.
  Batch get_batch(const std::vector<std::int64_t>& ids) const override;
  std::string describe() const override;

  const std::string& file(std::int64_t i) const;  // full path of sample i

 private:
  std::string root_, split_;
  std::int64_t max_per_class_;
  std::unique_ptr<ImageFolderDataset> folder_;  // all classes (257.clutter included), all images
  std::vector<std::string> classes_;
  std::vector<std::int64_t> index_;   // dataset index -> folder_ index
  std::vector<std::int64_t> labels_;  // dataset index -> label
};

}  // namespace hessgap::data
