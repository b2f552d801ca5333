// The training-time image augmentation of SPEC.md §3.2: torchvision 0.14 RandomResizedCrop(size) →
// RandomHorizontalFlip → ToTensor → Normalize on PIL images, with every random number taken from the
// counter-based stream of (seed, Stream::kAugment, epoch, sample id) instead of torch's global
// generator, so that a sample's augmentation is the same at any rank count, thread count or batch order.
#pragma once

#include <torch/types.h>

#include <array>
#include <cstdint>
#include <vector>

#include "data/batch.h"
#include "data/image.h"

namespace hessgap::data {

class ImageFolderDataset;

// Defaults are the reference's: RandomResizedCrop(224) (scale (0.08, 1), ratio (3/4, 4/3), bilinear),
// RandomHorizontalFlip(0.5), ImageNet statistics.
struct TrainTransform {
  int size = 224;                                      // output side in pixels (square), >= 1
  std::array<double, 2> scale{0.08, 1.0};              // crop area / image area, 0 <= lo <= hi
  std::array<double, 2> ratio{3.0 / 4.0, 4.0 / 3.0};   // crop width / height, 0 < lo <= hi
  double flip_probability = 0.5;                       // in [0, 1]
  std::array<double, 3> mean{0.485, 0.456, 0.406};    // per channel, on the [0, 1] scale
  std::array<double, 3> stddev{0.229, 0.224, 0.225};  // per channel, > 0
  void validate() const;  // throws hessgap::Error naming the field
};

// Where a sample's random numbers sit in its stream. Attempt k (0..9) of RandomResizedCrop uses
// elements 2k (area scale) and 2k + 1 (log aspect ratio); the accepted crop's top and left use 20 and
// 21; the flip uses 22. Fixed positions, not "the next draw", so that element i means the same thing
// whichever attempt succeeds.
constexpr int kAugmentAttempts = 10;
constexpr int kAugmentDraws = 2 * kAugmentAttempts + 3;
constexpr int kAugmentDrawTop = 2 * kAugmentAttempts;
constexpr int kAugmentDrawLeft = kAugmentDrawTop + 1;
constexpr int kAugmentDrawFlip = kAugmentDrawTop + 2;

// rng::make_key(seed, Stream::kAugment, epoch, sample_id): the stream of one sample in one epoch.
std::uint64_t augment_key(std::uint64_t seed, std::int64_t epoch, std::int64_t sample_id);

// The kAugmentDraws uniforms in [0, 1) of stream `key` (rng::uniform(key, i), i = 0..kAugmentDraws-1).
std::array<double, kAugmentDraws> augment_draws(std::uint64_t key);

// A crop box in pixels of the input image (rows top..top+height-1, columns left..left+width-1) and
// whether the output is mirrored left-right.
struct CropParams {
  int top = 0;
  int left = 0;
  int height = 0;
  int width = 0;
  bool flip = false;
  int attempt = -1;  // the accepted attempt (0..9), or -1 for torchvision's fallback central crop
};

// torchvision's RandomResizedCrop.get_params plus RandomHorizontalFlip's coin, given the draws u:
//   for attempt k in 0..9:
//     target_area = W*H * (scale[0] + u[2k] * (scale[1] - scale[0]))
//     aspect      = exp(log ratio[0] + u[2k+1] * (log ratio[1] - log ratio[0]))
//     w = round(sqrt(target_area * aspect)), h = round(sqrt(target_area / aspect))   (halves to even)
//     if 0 < w <= W and 0 < h <= H: top = floor(u[20] * (H - h + 1)), left = floor(u[21] * (W - w + 1))
//   otherwise the fallback: the whole image when W/H lies within [ratio[0], ratio[1]], else the central
//   crop of the clamped ratio (w = W, h = round(W / ratio[0]), or h = H, w = round(H * ratio[1])),
//   top = (H - h) / 2, left = (W - w) / 2 (floor).
//   flip = u[22] < flip_probability.
// torchvision computes the draws in float32 from torch's generator; here they are doubles from the
// counter-based stream (a different but equally distributed sequence), and the control flow, rounding and
// bounds are torchvision's (checked against its own get_params in tests/unit/data). Throws hessgap::Error
// for width or height < 1 and for an invalid transform.
CropParams train_crop_params(int width, int height, const TrainTransform& t,
                             const std::array<double, kAugmentDraws>& u);
CropParams train_crop_params(int width, int height, const TrainTransform& t, std::uint64_t key);

// The geometric part: Pillow's img.crop((left, top, left + width, top + height)).resize((size, size),
// BILINEAR), then mirrored when p.flip: a size x size image, bit-identical to torchvision on PIL.
// Throws hessgap::Error when the box is not inside the image.
Image apply_train_geometry(const Image& img, const CropParams& p, int size);

// The whole transform of one image with stream `key`: float32 [3, size, size], bit-identical to
// torchvision's Compose([RandomResizedCrop, RandomHorizontalFlip, ToTensor, Normalize]) given the same
// crop parameters. Requires an RGB image (decode_image's output).
torch::Tensor apply_train_transform(const Image& img, const TrainTransform& t, std::uint64_t key);

// Samples `ids` of an image folder, decoded and augmented for epoch `epoch`: inputs float32
// [B', 3, size, size], labels int64 [B'], sample_ids the ids kept (B' = B unless the dataset's
// skip_unreadable option drops unreadable files, which it then counts). Decodes with the dataset's
// num_threads; the result does not depend on it. Errors as ImageFolderDataset::get_batch.
Batch augmented_batch(const ImageFolderDataset& dataset, const std::vector<std::int64_t>& ids,
                      const TrainTransform& t, std::uint64_t seed, std::int64_t epoch);

}  // namespace hessgap::data
