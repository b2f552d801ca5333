// The IDX format of MNIST and Fashion-MNIST (plain or gzip-compressed) and a dataset over an
// images file plus a labels file.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace hessgap::data {

// An IDX array of unsigned bytes (type code 0x08): magic 0x00 0x00 0x08 <ndim>, then ndim big-endian
// uint32 dimensions, then prod(dims) bytes in row-major order.
struct IdxArray {
  std::vector<std::int64_t> dims;
  std::vector<std::uint8_t> data;  // size prod(dims)
};

// Reads an IDX file, gzip-compressed or not (detected by zlib, not by the name). `expected_ndim`
// (> 0) is checked against the magic: 3 for an images file (magic 0x00000803), 1 for a labels
// file (0x00000801). Throws hessgap::Error naming `path` when the file cannot be opened or is not a
// regular file (a FIFO, a device), the magic is wrong, the header declares more data than the file
// can hold (checked before allocating: the bytes after a plain file's header, 1032 times a gzip
// file's size), the data is shorter or longer than the header declares, or the gzip stream is corrupt.
IdxArray read_idx(const std::string& path, int expected_ndim);

// Fashion-MNIST's class names, label order (T-shirt/top = 0 ... Ankle boot = 9).
const std::vector<std::string>& fashion_mnist_classes();

struct IdxOptions {
  // Normalisation after scaling to [0, 1]: (x - mean) / stddev. The defaults are the Fashion-MNIST
  // training-set statistics (mean 0.2860, std 0.3530 of the 60,000 train images / 255); MNIST's
  // are 0.1307 / 0.3081; mean 0, stddev 1 leaves x in [0, 1].
  double mean = 0.2860;
  double stddev = 0.3530;
  // The grey channel replicated to 3 (the reference's grey-to-3-channel step; torchvision's
  // Grayscale(num_output_channels=3)), for networks made for RGB: inputs [B,3,H,W] whose channel c is
  // normalised with rgb_mean[c] / rgb_stddev[c] (mean / stddev are then unused).
  bool grey_to_rgb = false;
  std::array<double, 3> rgb_mean{0.0, 0.0, 0.0};
  std::array<double, 3> rgb_stddev{1.0, 1.0, 1.0};
  // Zero padding of `pad` pixels on every side (28 -> 32 for pad 2), in pixel space before scaling and
  // normalisation, as torchvision's Pad(pad, fill=0) before ToTensor/Normalize: a padded pixel is
  // (0 - mean) / stddev, black after normalisation rather than 0.
  int pad = 0;
  std::int64_t max_per_class = 0;  // keep the first N samples (file order) of each class; 0 = all
  // Names for labels 0..K-1. Empty: Fashion-MNIST's names when K == 10, else "0", "1", ...
  std::vector<std::string> class_names;
};

// Samples of an images file [N,H,W] and a labels file [N], in file order (after max_per_class).
// num_classes() = 1 + the largest label in the labels file. All data is held in memory as bytes.
// Constructor errors (hessgap::Error naming the file): those of read_idx; image and label counts
// differ; class_names has fewer entries than num_classes(); pad < 0; a stddev <= 0.
class IdxDataset : public Dataset {
 public:
  IdxDataset(std::string images_path, std::string labels_path, IdxOptions options = {});

  std::int64_t size() const override { return static_cast<std::int64_t>(index_.size()); }
  std::int64_t num_classes() const override { return num_classes_; }
  std::vector<std::string> class_names() const override { return class_names_; }
  std::int64_t label(std::int64_t i) const override;
  // inputs float32 [B,C,H+2·pad,W+2·pad] with C = 1 (3 with grey_to_rgb): (p / 255 - mean_c) / stddev_c
  // computed in float32 (as torchvision's ToTensor + Normalize), p = 0 in the padding; labels int64
  // [B], sample_ids = ids. Throws for an id out of range.
  Batch get_batch(const std::vector<std::int64_t>& ids) const override;
  std::string describe() const override;

  // The images' size in the file (without the padding).
  std::int64_t height() const { return height_; }
  std::int64_t width() const { return width_; }

 private:
  std::string images_path_, labels_path_;
  IdxOptions options_;
  std::int64_t height_ = 0, width_ = 0, num_classes_ = 0;
  std::vector<std::uint8_t> pixels_;  // all N images of the file
  std::vector<std::uint8_t> labels_;  // all N labels of the file
  std::vector<std::int64_t> index_;   // dataset index -> row of the file
  std::vector<std::string> class_names_;
};

}  // namespace hessgap::data
