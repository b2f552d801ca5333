// The resampling code follows Pillow's libImaging/Resample.c (precompute_coeffs,
// normalize_coeffs_8bpc, ImagingResampleHorizontal_8bpc / Vertical_8bpc, ImagingResampleInner)
// step by step, including its float/double mix and fixed-point rounding, because the reference
// inputs are whatever Pillow produced and a one-ulp difference changes them.
#include "data/transforms.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "data/image.h"
#include "util/error.h"

namespace hessgap::data {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

double bilinear_filter(double x) {
  if (x < 0.0) x = -x;
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

// Per output position: the first input index, the number of taps, and `ksize` fixed-point weights.
struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;       // 2 per output: xmin, count
  std::vector<std::int32_t> kk;  // ksize per output
};

Coeffs precompute_coeffs(int in_size, float in0, float in1, int out_size) {
  const double support_base = 1.0;  // bilinear
  double scale = static_cast<double>(in1 - in0) / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = support_base * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(2 * static_cast<std::size_t>(out_size));
  c.kk.assign(static_cast<std::size_t>(out_size) * c.ksize, 0);
  std::vector<double> k(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double w = bilinear_filter((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < c.ksize; ++x) {
      double v = x < xmax ? k[x] : 0.0;
      if (x < xmax && ww != 0.0) v /= ww;
      // normalize_coeffs_8bpc
      c.kk[static_cast<std::size_t>(xx) * c.ksize + x] =
          v < 0 ? static_cast<std::int32_t>(-0.5 + v * (1 << kPrecisionBits))
                : static_cast<std::int32_t>(0.5 + v * (1 << kPrecisionBits));
    }
    c.bounds[2 * xx] = xmin;
    c.bounds[2 * xx + 1] = xmax;
  }
  return c;
}

inline std::uint8_t clip8(std::int32_t in) {
  if (in >= (1 << kPrecisionBits << 8)) return 255;
  if (in <= 0) return 0;
  return static_cast<std::uint8_t>(in >> kPrecisionBits);
}

// Rows [offset, offset + out.height) of `in`, resampled along x into `out`.
void resample_horizontal(Image& out, const Image& in, int offset, const Coeffs& c) {
  const int ch = in.channels;
  for (int yy = 0; yy < out.height; ++yy) {
    const std::uint8_t* row = in.pixels.data() + static_cast<std::size_t>(yy + offset) * in.width * ch;
    std::uint8_t* dst = out.pixels.data() + static_cast<std::size_t>(yy) * out.width * ch;
    for (int xx = 0; xx < out.width; ++xx) {
      const int xmin = c.bounds[2 * xx];
      const int xmax = c.bounds[2 * xx + 1];
      const std::int32_t* k = c.kk.data() + static_cast<std::size_t>(xx) * c.ksize;
      for (int b = 0; b < ch; ++b) {
        std::int32_t ss = 1 << (kPrecisionBits - 1);
        for (int x = 0; x < xmax; ++x) ss += row[(x + xmin) * ch + b] * k[x];
        dst[xx * ch + b] = clip8(ss);
      }
    }
  }
}

void resample_vertical(Image& out, const Image& in, const Coeffs& c, int shift) {
  const int ch = in.channels;
  const std::size_t stride = static_cast<std::size_t>(in.width) * ch;
  for (int yy = 0; yy < out.height; ++yy) {
    const int ymin = c.bounds[2 * yy] - shift;
    const int ymax = c.bounds[2 * yy + 1];
    const std::int32_t* k = c.kk.data() + static_cast<std::size_t>(yy) * c.ksize;
    std::uint8_t* dst = out.pixels.data() + static_cast<std::size_t>(yy) * out.width * ch;
    for (int xx = 0; xx < out.width * ch; ++xx) {
      std::int32_t ss = 1 << (kPrecisionBits - 1);
      for (int y = 0; y < ymax; ++y) ss += in.pixels[(y + ymin) * stride + xx] * k[y];
      dst[xx] = clip8(ss);
    }
  }
}

Image blank(int width, int height, int channels) {
  Image img;
  img.width = width;
  img.height = height;
  img.channels = channels;
  img.pixels.assign(static_cast<std::size_t>(width) * height * channels, 0);
  return img;
}

void check_image(const Image& img, const char* what) {
  HG_CHECK(img.width >= 1 && img.height >= 1 && img.channels >= 1 &&
               img.pixels.size() == static_cast<std::size_t>(img.width) * img.height * img.channels,
           what << ": expected a non-empty image with width*height*channels pixels, got " << img.width << "x"
                << img.height << "x" << img.channels << " with " << img.pixels.size() << " values");
}

}  // namespace

Image resize_bilinear(const Image& img, int width, int height) {
  check_image(img, "resize_bilinear");
  HG_CHECK(width >= 1 && height >= 1,
           "resize_bilinear: expected an output size >= 1, got " << width << "x" << height);
  if (width == img.width && height == img.height) return img;
  // ImagingResampleInner with box (0, 0, in width, in height): horizontal pass over the rows the
  // vertical pass needs, then the vertical pass, each only when that dimension changes.
  const Coeffs horiz = precompute_coeffs(img.width, 0.0f, static_cast<float>(img.width), width);
  const Coeffs vert = precompute_coeffs(img.height, 0.0f, static_cast<float>(img.height), height);
  const bool need_horizontal = width != img.width;
  const bool need_vertical = height != img.height;
  const int ybox_first = vert.bounds[0];
  const int ybox_last = vert.bounds[2 * height - 2] + vert.bounds[2 * height - 1];
  Image tmp;
  const Image* src = &img;
  int shift = 0;
  if (need_horizontal) {
    tmp = blank(width, ybox_last - ybox_first, img.channels);
    resample_horizontal(tmp, img, ybox_first, horiz);
    src = &tmp;
    shift = ybox_first;
  }
  if (!need_vertical) return tmp;
  Image out = blank(src->width, height, img.channels);
  resample_vertical(out, *src, vert, shift);
  return out;
}

Image resize_shorter(const Image& img, int size) {
  check_image(img, "resize_shorter");
  HG_CHECK(size >= 1, "resize_shorter: expected a size >= 1, got " << size);
  const int h = img.height, w = img.width;
  const int shorter = w <= h ? w : h;
  const int longer = w <= h ? h : w;
  // torchvision _compute_resized_output_size: int(size * long / short), in double.
  const double new_long_d = std::floor(static_cast<double>(static_cast<std::int64_t>(size) * longer) / shorter);
  // The output is bounded by the same limit as a decoded image (a 1x20000 image resized to a shorter
  // side of 224 would otherwise allocate 224x4480000 pixels, 3 GB, and more in the passes; issue #12).
  // The caller (load_images) prefixes the image's path.
  const std::uint64_t max_pixels = max_image_pixels();
  HG_CHECK(new_long_d <= static_cast<double>(std::numeric_limits<int>::max()) &&
               new_long_d * size <= static_cast<double>(max_pixels),
           "--resize " << size << " would make this " << w << "x" << h << " image "
                       << (w <= h ? std::to_string(size) : std::to_string(static_cast<std::uint64_t>(new_long_d))) << "x"
                       << (w <= h ? std::to_string(static_cast<std::uint64_t>(new_long_d)) : std::to_string(size))
                       << " pixels, more than the limit of " << max_pixels
                       << " pixels (the environment variable HESSGAP_MAX_IMAGE_PIXELS raises it)");
  const int new_long = static_cast<int>(new_long_d);
  const int new_w = w <= h ? size : new_long;
  const int new_h = w <= h ? new_long : size;
  if (new_w == w && new_h == h) return img;
  return resize_bilinear(img, new_w, new_h);
}

Image center_crop(const Image& img, int height, int width) {
  check_image(img, "center_crop");
  HG_CHECK(height >= 1 && width >= 1, "center_crop: expected a crop size >= 1, got " << height << "x" << width);
  const Image* src = &img;
  Image padded;
  if (width > img.width || height > img.height) {
    const int pad_left = width > img.width ? (width - img.width) / 2 : 0;
    const int pad_top = height > img.height ? (height - img.height) / 2 : 0;
    const int pad_right = width > img.width ? (width - img.width + 1) / 2 : 0;
    const int pad_bottom = height > img.height ? (height - img.height + 1) / 2 : 0;
    padded = blank(img.width + pad_left + pad_right, img.height + pad_top + pad_bottom, img.channels);
    const std::size_t row = static_cast<std::size_t>(img.width) * img.channels;
    for (int y = 0; y < img.height; ++y) {
      std::copy_n(img.pixels.data() + y * row, row,
                  padded.pixels.data() + (static_cast<std::size_t>(y + pad_top) * padded.width + pad_left) * img.channels);
    }
    src = &padded;
  }
  // Python's round() rounds halves to even, as nearbyint does in the default rounding mode.
  const int top = static_cast<int>(std::nearbyint((src->height - height) / 2.0));
  const int left = static_cast<int>(std::nearbyint((src->width - width) / 2.0));
  Image out = blank(width, height, img.channels);
  const std::size_t row = static_cast<std::size_t>(width) * img.channels;
  for (int y = 0; y < height; ++y) {
    std::copy_n(src->pixels.data() + (static_cast<std::size_t>(y + top) * src->width + left) * img.channels, row,
                out.pixels.data() + y * row);
  }
  return out;
}

torch::Tensor to_tensor_normalized(const Image& img, const std::array<double, 3>& mean,
                                   const std::array<double, 3>& stddev) {
  check_image(img, "to_tensor_normalized");
  HG_CHECK(img.channels == 3, "to_tensor_normalized: expected an RGB image (3 channels), got " << img.channels);
  const std::int64_t plane = static_cast<std::int64_t>(img.width) * img.height;
  torch::Tensor out = torch::empty({3, img.height, img.width}, torch::kFloat32);
  float* dst = out.data_ptr<float>();
  for (int c = 0; c < 3; ++c) {
    HG_CHECK(stddev[c] != 0.0, "to_tensor_normalized: stddev[" << c << "] is 0");
    // torch keeps Normalize's statistics as float32 tensors and divides (not multiplies by 1/x). A pixel
    // has 256 values, so the exact float32 result of each is tabulated once instead of divided per pixel.
    const float m = static_cast<float>(mean[c]);
    const float s = static_cast<float>(stddev[c]);
    std::array<float, 256> table;
    for (int v = 0; v < 256; ++v) table[v] = (static_cast<float>(v) / 255.0f - m) / s;
    float* d = dst + c * plane;
    const std::uint8_t* src = img.pixels.data() + c;
    for (std::int64_t i = 0; i < plane; ++i) d[i] = table[src[3 * i]];
  }
  return out;
}

Image apply_geometry(const Image& img, const EvalTransform& t) {
  HG_CHECK(t.resize >= 0 && t.crop >= 0,
           "eval transform: expected resize >= 0 and crop >= 0, got " << t.resize << " and " << t.crop);
  if (t.resize == 0 && t.crop == 0) return img;
  const std::uint64_t max_pixels = max_image_pixels();
  HG_CHECK(static_cast<std::uint64_t>(t.crop) * static_cast<std::uint64_t>(t.crop) <= max_pixels,
           "--crop " << t.crop << " makes images of " << t.crop << "x" << t.crop << " pixels, more than the limit of "
                     << max_pixels << " pixels (the environment variable HESSGAP_MAX_IMAGE_PIXELS raises it)");
  Image out = t.resize > 0 ? resize_shorter(img, t.resize) : img;
  if (t.crop > 0) out = center_crop(out, t.crop, t.crop);
  return out;
}

torch::Tensor apply_eval_transform(const Image& img, const EvalTransform& t) {
  return to_tensor_normalized(apply_geometry(img, t), t.mean, t.stddev);
}

}  // namespace hessgap::data
