// An image classification dataset read from a folder laid out as torchvision's ImageFolder expects
// (root/<class>/<image>), with the same class and sample order, decoded and transformed on demand.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/transforms.h"

namespace hessgap::data {

struct ImageFolderOptions {
  EvalTransform transform;         // applied to every image; see transforms.h
  std::int64_t max_per_class = 0;  // keep the first N files (in sample order) of each class; 0 = all
  int num_threads = 4;             // decoding threads per get_batch call (1 = decode in the caller)
  // false: an unreadable or corrupt image file makes get_batch throw, naming the file.
  // true: such samples are left out of the batch (inputs, labels and sample_ids alike, so a batch may
  // come out smaller, even empty), counted (ImageFolderDataset::num_skipped) and logged once per file.
  // Only decoding failures are skipped; a transform error (e.g. images of one batch differing in size)
  // still throws.
  bool skip_unreadable = false;
};

// The per-image transform of load_images: the decoded RGB image and its position k in `paths`, to a
// float32 [3,H,W] tensor.
using ImageTransformFn = std::function<torch::Tensor(const Image& img, std::size_t k)>;

struct LoadedImages {
  torch::Tensor inputs;              // float32 [N - skipped.size(), 3, H, W], in `paths` order
  std::vector<std::size_t> skipped;  // positions in `paths` whose file could not be decoded, ascending
  std::vector<std::string> reasons;  // the decoder's message for each skipped position
};

// Decodes the images at `paths` and transforms them with up to `num_threads` threads (the result does
// not depend on the count), stacked in order. A decoding failure throws the error of the first failing
// path (in `paths` order, whatever the threads) unless `skip_unreadable`, when those positions are left
// out and listed instead. Transform failures always throw (the first in order), as does, naming `what`
// and two files, a batch whose images differ in size after the transform. When no image is left, inputs
// is [0, 3, empty_side, empty_side].
LoadedImages load_images(const std::vector<std::string>& paths, const ImageTransformFn& transform, int num_threads,
                         bool skip_unreadable, std::int64_t empty_side, const std::string& what);

// Decodes and transforms the images at `paths` with up to `num_threads` threads and stacks them,
// in order, into float32 [N,3,H,W]. Shared by every dataset of image files. Throws the error of the
// first failing path (in `paths` order, whatever the threads), or, naming `what` and two files, when
// the images differ in size after the transform. N = 0 gives [0,3,crop,crop].
torch::Tensor load_image_batch(const std::vector<std::string>& paths, const EvalTransform& transform, int num_threads,
                               const std::string& what);

// Index order is torchvision ImageFolder's: class sub-folders of `root` sorted by name (byte order)
// give labels 0..K-1; within a class, files are listed as sorted(os.walk(class folder)) and then
// sorted by name, i.e. nested folders are included and ordered by their path. Files whose name ends
// (case-insensitively) in .jpg, .jpeg or .png are samples; other files are skipped, except the other
// extensions torchvision treats as images (.ppm .bmp .pgm .tif .tiff .webp), which throw rather than
// silently shifting the indices relative to the reference. Symbolic links are followed.
//
// Errors (hessgap::Error, thrown by the constructor): `root` missing or not a folder; no class
// sub-folders; a class folder without images ("empty data folder '<root>/<class>'", as torchvision
// refuses it too); an unsupported image extension. get_batch throws naming the file when an image is
// unreadable or corrupt (unless options.skip_unreadable), and when the transformed images of one batch
// differ in size.
class ImageFolderDataset : public Dataset {
 public:
  explicit ImageFolderDataset(std::string root, ImageFolderOptions options = {});

  std::int64_t size() const override { return static_cast<std::int64_t>(files_.size()); }
  std::int64_t num_classes() const override { return static_cast<std::int64_t>(classes_.size()); }
  std::vector<std::string> class_names() const override { return classes_; }
  std::int64_t label(std::int64_t i) const override;
  // inputs float32 [B,3,H,W] (H, W from the transform, or the images' own size when it has no crop),
  // labels int64 [B], sample_ids = ids. Decodes with up to options.num_threads threads; the result
  // does not depend on the thread count. When several images fail, the error of the first in `ids`
  // order is thrown.
  Batch get_batch(const std::vector<std::int64_t>& ids) const override;
  // get_batch with another per-image transform (e.g. the training augmentation, train_transform.h):
  // transform(image, id) receives the sample id. Same ordering, skipping and errors as get_batch; an
  // empty result has inputs [0, 3, empty_side, empty_side].
  using SampleTransformFn = std::function<torch::Tensor(const Image& img, std::int64_t id)>;
  Batch get_batch(const std::vector<std::int64_t>& ids, const SampleTransformFn& transform,
                  std::int64_t empty_side) const;
  std::string describe() const override;

  // With options.skip_unreadable: samples left out so far by get_batch, counting every time (a file
  // that fails in each of 3 epochs counts 3), and the distinct ids among them, ascending. Thread-safe;
  // never reset. Both 0 / empty without the option.
  std::int64_t num_skipped() const { return num_skipped_.load(); }
  std::vector<std::int64_t> skipped_ids() const;

  const std::string& root() const { return root_; }
  const std::string& file(std::int64_t i) const;  // full path of sample i
  const ImageFolderOptions& options() const { return options_; }

 private:
  std::string root_;
  ImageFolderOptions options_;
  std::vector<std::string> classes_;
  std::vector<std::string> files_;
  std::vector<std::int64_t> labels_;
  mutable std::atomic<std::int64_t> num_skipped_{0};
  mutable std::mutex skipped_mutex_;
  mutable std::set<std::int64_t> skipped_ids_;
};

}  // namespace hessgap::data
