// Decoding JPEG and PNG files into 8-bit RGB pixels, bit-identical to Pillow's
// `Image.open(path).convert("RGB")` (the reference scripts' loader). Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hessgap::data {

// An 8-bit image, rows top to bottom, pixels interleaved (HWC): the value of channel c at (y, x) is
// pixels[(y * width + x) * channels + c]. decode_image always returns channels == 3 (RGB).
struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<std::uint8_t> pixels;  // size width * height * channels

  std::uint8_t at(int y, int x, int c) const {
    return pixels[(static_cast<std::size_t>(y) * width + x) * channels + c];
  }
};

// Decodes a JPEG or PNG file into RGB; the format is chosen by the file's magic bytes, not its name.
// Matches Pillow 9 `Image.open(path).convert("RGB")` pixel for pixel:
//   JPEG  libjpeg(-turbo) defaults as Pillow uses them (islow DCT, fancy upsampling, no scaling);
//         greyscale is replicated to 3 channels; CMYK/YCCK is converted as Pillow does (Adobe
//         inverted CMYK, then r = (255-k) - c*(255-k)/255 rounded). EXIF orientation is ignored.
//   PNG   alpha (RGBA, LA) and tRNS transparency are dropped, never composited; palettes are
//         expanded; greyscale of 1/2/4 bits is scaled to 0..255; 16-bit colour keeps the high byte;
//         16-bit greyscale is clipped to 255 (Pillow opens it as mode "I" and clips on convert);
//         gamma and colour profiles are ignored. Interlaced files are supported.
// Throws hessgap::Error naming `path` when the file cannot be opened or is not a regular file (a FIFO,
// a device), is neither JPEG nor PNG, is corrupt or truncated, or declares more pixels (width x
// height, read from the header before anything is decoded or allocated) than max_image_pixels().
Image decode_image(const std::string& path);

// The most pixels decode_image accepts: kDefaultMaxImagePixels (100 megapixels, 300 MB of RGB), or
// the environment variable HESSGAP_MAX_IMAGE_PIXELS when set (a positive integer; hessgap::Error
// naming it otherwise). Pillow has the same kind of guard (Image.MAX_IMAGE_PIXELS).
constexpr std::uint64_t kDefaultMaxImagePixels = 100'000'000;
std::uint64_t max_image_pixels();

// The largest side a flag may ask images to be resized or cropped to (--resize, --crop, --augment-size):
// a 4096 x 4096 RGB float32 input is 200 MB per image already; larger values only ended in bad_alloc.
constexpr std::int64_t kMaxImageSide = 4096;

}  // namespace hessgap::data
