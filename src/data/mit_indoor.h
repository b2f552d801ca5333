// MIT-Indoor-67 (the reference's IndoorDataLoader, SPEC.md §3.2) with its official train/test lists
// and the reference's validation split taken from train.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/image_folder.h"
#include "data/transforms.h"

namespace hessgap::data {

// Layout (the official archive): <root>/Images/<class>/<file> plus <root>/TrainImages.txt and
// <root>/TestImages.txt, one "class/file.jpg" line each (blank lines and '\r' ignored).
// Classes: the sub-folders of Images/ sorted by name (byte order), numbered 0..66. Deviation: the
// reference maps names through an unshipped name_to_id.json; sorted order is the natural guess
// (and torchvision's ImageFolder order).
// Splits: "test" = TestImages.txt in file order. "train" / "val": let N = lines of TrainImages.txt and
// p = rng::permutation(N, make_key(split_seed, Stream::kShuffle, kSplitTag)); the entries p[0 ..
// int(N * valid_split)) are validation, the rest train (as the reference's BaseDataLoader with
// valid_split 0.1 over np.random.seed(0)'s permutation — numpy's permutation cannot be reproduced,
// so the same rule runs on hessgap's permutation: a different but fixed subset). Within a split,
// samples keep their TrainImages.txt order (dataset index = rank among the split's list entries).
// Decoding and the transform are ImageFolderDataset's (reference eval: resize 256, crop 224).
//
// Errors (hessgap::Error): unknown split; valid_split outside [0, 1); a missing list file or
// Images/ folder (every error of ImageFolderDataset on Images/); a list line naming an image that
// is not in Images/ (naming the list file, the line number and the entry); max_per_class < 0.
struct MitIndoorOptions {
  EvalTransform transform;
  double valid_split = 0.1;
  std::uint64_t split_seed = 0;
  std::int64_t max_per_class = 0;  // first N samples (index order) of each class within the split; 0 = all
  int num_threads = 4;
};

class MitIndoorDataset : public Dataset {
 public:
  static constexpr std::uint64_t kSplitTag = 0x1D0012;  // permutation stream tag of the val split

  MitIndoorDataset(std::string root, std::string split, MitIndoorOptions options = {});

  std::int64_t size() const override { return static_cast<std::int64_t>(index_.size()); }
  std::int64_t num_classes() const override { return folder_->num_classes(); }
  std::vector<std::string> class_names() const override { return folder_->class_names(); }
  std::int64_t label(std::int64_t i) const override;
  Batch get_batch(const std::vector<std::int64_t>& ids) const override;
  std::string describe() const override;

  const std::string& file(std::int64_t i) const;  // full path of sample i
  // Line numbers (0-based) in TrainImages.txt / TestImages.txt of the split's samples, in index order.
  const std::vector<std::int64_t>& list_positions() const { return positions_; }

 private:
  std::string root_, split_;
  MitIndoorOptions options_;
  std::unique_ptr<ImageFolderDataset> folder_;
  std::vector<std::int64_t> index_;      // dataset index -> folder_ index
  std::vector<std::int64_t> positions_;  // dataset index -> list line
};

}  // namespace hessgap::data
