// CIFAR-10 and CIFAR-100 in their official binary format (the "binary version" archives of
// https://www.cs.toronto.edu/~kriz/cifar.html), decoded and transformed on demand.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/transforms.h"

namespace hessgap::data {

// Layouts (`root` is either the archive's folder itself or a folder holding it):
//   CIFAR-10   root/cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin; each record is 1 label
//              byte (0..9) + 3072 pixel bytes (1024 R, 1024 G, 1024 B, each 32 x 32 row-major).
//              Class names: batches.meta.txt (one per line, blank lines ignored) when present.
//   CIFAR-100  root/cifar-100-binary/{train,test}.bin; each record is 1 coarse label byte (0..19),
//              1 fine label byte (0..99) + the same 3072 pixel bytes. The fine label is used unless
//              `coarse_labels`. Class names: fine_label_names.txt (coarse_label_names.txt) when
//              present.
// Without a names file, classes are named "0", "1", ... Sample order is file order (the train
// split of CIFAR-10 concatenates data_batch_1..5), as torchvision's CIFAR10 / CIFAR100 give it.
// Each image goes through the same path as an ImageFolder image (an RGB data::Image, then
// apply_eval_transform), so inputs equal torchvision's on the PIL image of the same array.
//
// Constructor errors (hessgap::Error): unknown split; a missing file (named); a file whose size is
// not a positive multiple of the record size (naming the file and its size); a label out of range
// (naming the file, the record index and the label); max_per_class < 0.
class CifarBinaryDataset : public Dataset {
 public:
  // split: "train" or "test". max_per_class: keep the first N samples (file order) of each class;
  // 0 = all. All records of the split are held in memory as bytes (150 MB for a train split).
  CifarBinaryDataset(std::string root, std::string split, EvalTransform transform = {}, bool cifar100 = false,
                     bool coarse_labels = false, std::int64_t max_per_class = 0);

  std::int64_t size() const override { return static_cast<std::int64_t>(index_.size()); }
  std::int64_t num_classes() const override { return num_classes_; }
  std::vector<std::string> class_names() const override { return class_names_; }
  std::int64_t label(std::int64_t i) const override;
  // inputs float32 [B,3,H,W] (32 x 32 unless the transform resizes or crops), labels int64 [B],
  // sample_ids = ids. Throws for an id out of range.
  Batch get_batch(const std::vector<std::int64_t>& ids) const override;
  std::string describe() const override;

  // The untransformed 32 x 32 RGB image of sample i.
  Image image(std::int64_t i) const;
  const std::vector<std::string>& files() const { return files_; }

  static constexpr int kSide = 32;
  static constexpr int kPixels = 3 * kSide * kSide;  // 3072

 private:
  std::string root_, split_;
  EvalTransform transform_;
  bool cifar100_, coarse_;
  std::int64_t max_per_class_;
  std::int64_t num_classes_ = 0;
  std::vector<std::string> files_;      // the .bin files read, in order
  std::vector<std::uint8_t> pixels_;    // kPixels bytes (CHW) per record of all files
  std::vector<std::uint8_t> labels_;    // one label per record
  std::vector<std::int64_t> index_;     // dataset index -> record
  std::vector<std::string> class_names_;
};

}  // namespace hessgap::data
