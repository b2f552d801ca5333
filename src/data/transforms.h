// Evaluation-time image transforms, reproducing torchvision 0.14 on PIL images (Resize, CenterCrop,
// ToTensor, Normalize) so that inputs match the reference scripts' (SPEC.md §3.2) exactly.
#pragma once

#include <torch/types.h>

#include <array>

#include "data/image.h"

namespace hessgap::data {

// Pillow's ImagingResample with the bilinear (triangle) filter on 8-bit images — what
// `img.resize((width, height), Image.BILINEAR)` computes: a separable convolution whose support is
// widened by the scale factor when shrinking (antialiasing), fixed-point coefficients of 22 bits,
// a horizontal pass rounded and clipped to uint8, then a vertical pass likewise. Bit-identical to
// Pillow 9 (checked in tests/unit/data). Returns a copy when the size is unchanged.
// Throws hessgap::Error unless width, height >= 1 and the input is non-empty.
Image resize_bilinear(const Image& img, int width, int height);

// torchvision `Resize(size)` with an int size: the shorter side becomes `size`, the longer one
// int(size * long / short) (truncated), then resize_bilinear. Unchanged when the shorter side is
// already `size`. Throws hessgap::Error unless size >= 1.
Image resize_shorter(const Image& img, int size);

// torchvision `CenterCrop((height, width))`: top = round((H - height) / 2) and left likewise, with
// Python's round (halves to even). A crop larger than the image first pads it with zeros as
// torchvision does (left/top get the smaller half). Throws hessgap::Error unless height, width >= 1.
Image center_crop(const Image& img, int height, int width);

// torchvision `ToTensor` then `Normalize(mean, stddev)`: float32 [C,H,W] with
// ((float)p / 255 - mean[c]) / stddev[c] evaluated in float32 as torch does, so values are
// bit-identical. Requires img.channels == 3; throws hessgap::Error otherwise or if a stddev is 0.
torch::Tensor to_tensor_normalized(const Image& img, const std::array<double, 3>& mean,
                                   const std::array<double, 3>& stddev);

// The eval transform of SPEC.md §3.2, each step optional: resize (shorter side) → center crop
// (square) → ToTensor → Normalize. Defaults: no resize, no crop, ImageNet statistics.
// The reference eval pipeline is {resize = 256, crop = 224}; DomainNet uses {resize = 224} with its
// own mean/stddev; CIFAR-10 JPEGs for the pretrained ResNet-20 use the defaults (32 x 32 as is).
struct EvalTransform {
  int resize = 0;  // shorter side in pixels; 0 = keep the image size
  int crop = 0;    // side of the square center crop in pixels; 0 = no crop
  std::array<double, 3> mean{0.485, 0.456, 0.406};    // per channel, on the [0, 1] scale
  std::array<double, 3> stddev{0.229, 0.224, 0.225};  // per channel, > 0
};

// The geometric part (resize, crop) of `t`: an RGB image of the final size.
Image apply_geometry(const Image& img, const EvalTransform& t);

// The whole transform: float32 [3,H,W] (H = W = t.crop when crop > 0).
torch::Tensor apply_eval_transform(const Image& img, const EvalTransform& t);

}  // namespace hessgap::data
