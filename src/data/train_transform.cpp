// get_params follows torchvision 0.14 transforms.RandomResizedCrop line by line (the order of the
// checks, Python's round, the floor division of the fallback) because the crop box, not just its
// distribution, is what the oracle test compares.
#include "data/train_transform.h"

#include <cmath>

#include "data/image_folder.h"
#include "data/transforms.h"
#include "util/error.h"
#include "util/rng.h"

namespace hessgap::data {
namespace {

// Python's int(round(x)) for the non-negative values here: halves go to even, as nearbyint does in
// the default rounding mode.
int py_round(double x) { return static_cast<int>(std::nearbyint(x)); }

// torch.randint(0, n) from one uniform: floor(u * n), in [0, n) since u < 1.
int draw_index(double u, int n) {
  const int v = static_cast<int>(u * n);
  return v < n ? v : n - 1;
}

}  // namespace

void TrainTransform::validate() const {
  HG_CHECK(size >= 1, "train transform: size must be >= 1, got " << size);
  HG_CHECK(scale[0] >= 0.0 && scale[0] <= scale[1],
           "train transform: scale must satisfy 0 <= lo <= hi, got (" << scale[0] << ", " << scale[1] << ")");
  HG_CHECK(ratio[0] > 0.0 && ratio[0] <= ratio[1],
           "train transform: ratio must satisfy 0 < lo <= hi, got (" << ratio[0] << ", " << ratio[1] << ")");
  HG_CHECK(flip_probability >= 0.0 && flip_probability <= 1.0,
           "train transform: flip_probability must be in [0, 1], got " << flip_probability);
  for (int c = 0; c < 3; ++c) {
    HG_CHECK(stddev[c] > 0.0, "train transform: stddev[" << c << "] must be > 0, got " << stddev[c]);
  }
}

std::uint64_t augment_key(std::uint64_t seed, std::int64_t epoch, std::int64_t sample_id) {
  return rng::make_key(seed, rng::Stream::kAugment, static_cast<std::uint64_t>(epoch),
                       static_cast<std::uint64_t>(sample_id));
}

std::array<double, kAugmentDraws> augment_draws(std::uint64_t key) {
  std::array<double, kAugmentDraws> u{};
  for (int i = 0; i < kAugmentDraws; ++i) u[i] = rng::uniform(key, static_cast<std::uint64_t>(i));
  return u;
}

CropParams train_crop_params(int width, int height, const TrainTransform& t,
                             const std::array<double, kAugmentDraws>& u) {
  t.validate();
  HG_CHECK(width >= 1 && height >= 1, "train transform: expected a non-empty image, got " << width << "x" << height);
  CropParams p;
  p.flip = u[kAugmentDrawFlip] < t.flip_probability;
  const double area = static_cast<double>(width) * height;
  const double log_lo = std::log(t.ratio[0]);
  const double log_hi = std::log(t.ratio[1]);
  for (int k = 0; k < kAugmentAttempts; ++k) {
    const double target_area = area * (t.scale[0] + u[2 * k] * (t.scale[1] - t.scale[0]));
    const double aspect = std::exp(log_lo + u[2 * k + 1] * (log_hi - log_lo));
    // Compared as doubles: a large scale bound must be rejected, not overflow an int.
    const double w = std::nearbyint(std::sqrt(target_area * aspect));
    const double h = std::nearbyint(std::sqrt(target_area / aspect));
    if (0 < w && w <= width && 0 < h && h <= height) {
      p.height = static_cast<int>(h);
      p.width = static_cast<int>(w);
      p.top = draw_index(u[kAugmentDrawTop], height - p.height + 1);
      p.left = draw_index(u[kAugmentDrawLeft], width - p.width + 1);
      p.attempt = k;
      return p;
    }
  }
  const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
  int w = width, h = height;
  if (in_ratio < t.ratio[0]) {
    h = py_round(w / t.ratio[0]);
  } else if (in_ratio > t.ratio[1]) {
    w = py_round(h * t.ratio[1]);
  }
  p.top = (height - h) / 2;
  p.left = (width - w) / 2;
  p.height = h;
  p.width = w;
  return p;
}

CropParams train_crop_params(int width, int height, const TrainTransform& t, std::uint64_t key) {
  return train_crop_params(width, height, t, augment_draws(key));
}

Image apply_train_geometry(const Image& img, const CropParams& p, int size) {
  HG_CHECK(p.top >= 0 && p.left >= 0 && p.height >= 1 && p.width >= 1 && p.top + p.height <= img.height &&
               p.left + p.width <= img.width,
           "train transform: crop box (top " << p.top << ", left " << p.left << ", " << p.width << "x" << p.height
                                             << ") is not inside the " << img.width << "x" << img.height << " image");
  const int ch = img.channels;
  Image crop;
  crop.width = p.width;
  crop.height = p.height;
  crop.channels = ch;
  crop.pixels.resize(static_cast<std::size_t>(p.width) * p.height * ch);
  const std::size_t row = static_cast<std::size_t>(p.width) * ch;
  for (int y = 0; y < p.height; ++y) {
    std::copy_n(img.pixels.data() + (static_cast<std::size_t>(p.top + y) * img.width + p.left) * ch, row,
                crop.pixels.data() + y * row);
  }
  Image out = resize_bilinear(crop, size, size);
  if (p.flip) {
    for (int y = 0; y < out.height; ++y) {
      std::uint8_t* r = out.pixels.data() + static_cast<std::size_t>(y) * out.width * ch;
      for (int a = 0, b = out.width - 1; a < b; ++a, --b) std::swap_ranges(r + a * ch, r + (a + 1) * ch, r + b * ch);
    }
  }
  return out;
}

torch::Tensor apply_train_transform(const Image& img, const TrainTransform& t, std::uint64_t key) {
  const CropParams p = train_crop_params(img.width, img.height, t, key);
  return to_tensor_normalized(apply_train_geometry(img, p, t.size), t.mean, t.stddev);
}

Batch augmented_batch(const ImageFolderDataset& dataset, const std::vector<std::int64_t>& ids,
                      const TrainTransform& t, std::uint64_t seed, std::int64_t epoch) {
  t.validate();
  return dataset.get_batch(
      ids,
      [&](const Image& img, std::int64_t id) { return apply_train_transform(img, t, augment_key(seed, epoch, id)); },
      t.size);
}

}  // namespace hessgap::data
