// A labelled list of image files, decoded and transformed on demand: the dataset the benchmark layouts
// of image_benchmarks.h produce (each reads its own annotation files into an ImageList).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/transforms.h"

namespace hessgap::data {

struct ImageList {
  std::vector<std::string> files;    // full paths, in sample (index) order
  std::vector<std::int64_t> labels;  // one per file, each in [0, classes.size())
  std::vector<std::string> classes;  // class names in label order
};

struct ImageListOptions {
  EvalTransform transform;         // applied to every image (transforms.h)
  std::int64_t max_per_class = 0;  // keep the first N samples (index order) of each class; 0 = all
  int num_threads = 4;             // decoding threads per get_batch call (1 = decode in the caller)
};

// Samples are the list's entries in order (after max_per_class). `what` names the dataset in describe()
// and in errors, e.g. "CUB-200-2011 /data/CUB_200_2011 test". Decoding, the transform and the batch
// errors are those of ImageFolderDataset (load_image_batch: the first unreadable file in `ids` order is
// named; images of one batch must have one size after the transform). An empty list is allowed.
//
// Constructor errors (hessgap::Error): files and labels of different lengths, a label outside
// [0, classes.size()), no class, max_per_class < 0, num_threads < 1.
class ImageListDataset : public Dataset {
 public:
  ImageListDataset(ImageList list, std::string what, ImageListOptions options = {});

  std::int64_t size() const override { return static_cast<std::int64_t>(files_.size()); }
  std::int64_t num_classes() const override { return static_cast<std::int64_t>(classes_.size()); }
  std::vector<std::string> class_names() const override { return classes_; }
  std::int64_t label(std::int64_t i) const override;
  // inputs float32 [B,3,H,W], labels int64 [B], sample_ids = ids.
  Batch get_batch(const std::vector<std::int64_t>& ids) const override;
  // "<what> (N images, K classes[, at most M per class]; resize R, crop C)".
  std::string describe() const override;

  const std::string& file(std::int64_t i) const;  // full path of sample i
  const ImageListOptions& options() const { return options_; }

 private:
  std::string what_;
  ImageListOptions options_;
  std::vector<std::string> files_;
  std::vector<std::int64_t> labels_;
  std::vector<std::string> classes_;
};

}  // namespace hessgap::data
