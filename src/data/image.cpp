// JPEG (libjpeg API, libjpeg-turbo on Debian) and PNG (libpng) decoding into RGB, following the
// conversions Pillow applies in `Image.open(p).convert("RGB")` so that tensors match the Python
// reference bit for bit.
//
// Both libraries report errors by longjmp. Each decoder keeps every C++ object that lives across
// the setjmp on the heap behind a pointer set before setjmp, and no C++ frame with destructors
// sits between the setjmp and the library calls, so the jump skips no destructor and reads no
// indeterminate local.
#include "data/image.h"

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>

// jpeglib.h needs size_t and FILE declared first.
#include <jerror.h>
#include <jpeglib.h>
#if HG_HAVE_PNG
#include <png.h>
#endif

#include "util/error.h"
#include "util/input_file.h"
#include "util/limits.h"

namespace hessgap::data {
namespace {

std::vector<std::uint8_t> read_file(const std::string& path) {
  refuse_special_file(path, "image file");
  std::ifstream in(path, std::ios::binary);
  HG_CHECK(in, "cannot open image file '" << path << "'");
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  HG_CHECK(!in.bad(), "cannot read image file '" << path << "'");
  return bytes;
}

// The dimensions a header declares, checked before the decoder allocates anything for them (a
// few hundred bytes can declare gigapixels). Throws after the caller has freed the decoder.
std::string too_large(const std::string& kind, const std::string& path, std::uint64_t width, std::uint64_t height,
                      std::uint64_t max_pixels) {
  const std::uint64_t pixels = width * height;  // both < 2^32
  if (width > 0 && height > 0 && pixels <= max_pixels) return "";
  std::ostringstream os;
  os << "cannot decode " << kind << " file '" << path << "': it declares " << width << "x" << height << " pixels";
  if (width == 0 || height == 0) {
    os << " (an empty image)";
  } else {
    os << " (" << pixels << "), more than the limit of " << max_pixels
       << " pixels (the environment variable HESSGAP_MAX_IMAGE_PIXELS raises it)";
  }
  return os.str();
}

// Pillow's MULDIV255 (libImaging/ImagingUtils.h): round(a * b / 255) for a, b in 0..255.
inline int muldiv255(int a, int b) {
  int tmp = a * b + 128;
  return ((tmp >> 8) + tmp) >> 8;
}

// ---- JPEG ------------------------------------------------------------------------------------

struct JpegError {
  jpeg_error_mgr pub;  // first member: libjpeg hands back a jpeg_error_mgr*
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

extern "C" void jpeg_on_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Warnings ("corrupt data: extraneous bytes") are ignored as Pillow ignores them, except running
// out of data: libjpeg would pad with grey, Pillow raises "image file is truncated".
extern "C" void jpeg_on_message(j_common_ptr cinfo, int level) {
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_on_error(cinfo);
}

struct JpegState {
  jpeg_decompress_struct cinfo;
  JpegError err;
  std::vector<std::uint8_t> row;  // CMYK scanline
  Image image;
};

Image decode_jpeg(const std::string& path, const std::vector<std::uint8_t>& bytes, std::uint64_t max_pixels) {
  const auto state = std::make_unique<JpegState>();
  jpeg_decompress_struct* cinfo = &state->cinfo;
  cinfo->err = jpeg_std_error(&state->err.pub);
  state->err.pub.error_exit = jpeg_on_error;
  state->err.pub.emit_message = jpeg_on_message;
  state->err.message[0] = '\0';
  if (setjmp(state->err.jump)) {
    jpeg_destroy_decompress(cinfo);
    HG_FAIL("cannot decode JPEG file '" << path << "': " << state->err.message);
  }
  jpeg_create_decompress(cinfo);
  jpeg_mem_src(cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(cinfo, TRUE);
  const std::string refusal = too_large("JPEG", path, cinfo->image_width, cinfo->image_height, max_pixels);
  if (!refusal.empty()) {
    jpeg_destroy_decompress(cinfo);
    throw Error(refusal);
  }
  // Pillow picks its mode from the number of components: 1 "L", 3 "RGB", 4 "CMYK" (read inverted,
  // Adobe convention). Everything else is left at libjpeg's defaults, as Pillow leaves it.
  const int components = cinfo->num_components;
  if (components == 1) {
    cinfo->out_color_space = JCS_GRAYSCALE;
  } else if (components == 3) {
    cinfo->out_color_space = JCS_RGB;
  } else if (components == 4) {
    cinfo->out_color_space = JCS_CMYK;
  } else {
    jpeg_destroy_decompress(cinfo);
    HG_FAIL("cannot decode JPEG file '" << path << "': " << components
                                        << " colour components (expected 1, 3 or 4)");
  }
  jpeg_start_decompress(cinfo);
  Image& img = state->image;
  img.width = static_cast<int>(cinfo->output_width);
  img.height = static_cast<int>(cinfo->output_height);
  img.channels = 3;
  img.pixels.resize(static_cast<std::size_t>(img.width) * img.height * 3);
  const std::size_t width = static_cast<std::size_t>(img.width);
  if (components == 4) state->row.resize(width * 4);
  while (cinfo->output_scanline < cinfo->output_height) {
    std::uint8_t* out = img.pixels.data() + cinfo->output_scanline * width * 3;
    // Grey lands in the row's first third and is spread to RGB from the right end.
    JSAMPROW rows[1] = {components == 4 ? state->row.data() : out};
    jpeg_read_scanlines(cinfo, rows, 1);
    if (components == 1) {
      for (std::size_t x = width; x-- > 0;) out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = out[x];
    } else if (components == 4) {
      // Pillow: rawmode "CMYK;I" stores 255 - v, then cmyk2rgb gives nk - c*nk/255, nk = 255 - k.
      const std::uint8_t* in = state->row.data();
      for (std::size_t x = 0; x < width; ++x) {
        const int nk = in[4 * x + 3];  // 255 - (255 - v_k)
        for (int c = 0; c < 3; ++c) {
          const int v = nk - muldiv255(255 - in[4 * x + c], nk);
          out[3 * x + c] = static_cast<std::uint8_t>(v < 0 ? 0 : v);
        }
      }
    }
  }
  // Not jpeg_finish_decompress: a file whose last marker (EOI) is missing decodes in Pillow too.
  jpeg_destroy_decompress(cinfo);
  return std::move(state->image);
}

// ---- PNG -------------------------------------------------------------------------------------

#if HG_HAVE_PNG
struct PngState {
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;
  std::size_t pos = 0;
  std::string message;
  std::vector<std::uint8_t> buffer;  // decoded rows, before dropping alpha / 16-bit grey
  std::vector<png_bytep> rows;
  Image image;
};

extern "C" void png_on_error(png_structp png, png_const_charp msg) {
  static_cast<PngState*>(png_get_error_ptr(png))->message = msg;
  png_longjmp(png, 1);
}

extern "C" void png_on_warning(png_structp, png_const_charp) {}

extern "C" void png_read_memory(png_structp png, png_bytep out, png_size_t n) {
  auto* s = static_cast<PngState*>(png_get_io_ptr(png));
  if (s->size - s->pos < n) png_error(png, "file is truncated");
  std::memcpy(out, s->data + s->pos, n);
  s->pos += n;
}

Image decode_png(const std::string& path, const std::vector<std::uint8_t>& bytes, std::uint64_t max_pixels) {
  const auto state = std::make_unique<PngState>();
  state->data = bytes.data();
  state->size = bytes.size();
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, state.get(), png_on_error, png_on_warning);
  HG_CHECK(png, "cannot decode PNG file '" << path << "': out of memory");
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    HG_FAIL("cannot decode PNG file '" << path << "': out of memory");
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    HG_FAIL("cannot decode PNG file '" << path << "': " << state->message);
  }
  png_set_read_fn(png, state.get(), png_read_memory);
  png_read_info(png, info);
  const std::string refusal =
      too_large("PNG", path, png_get_image_width(png, info), png_get_image_height(png, info), max_pixels);
  if (!refusal.empty()) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw Error(refusal);
  }
  const int color_type = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  // Pillow opens 16-bit greyscale as mode "I" and clips it to 255 on convert("RGB"); every other
  // 16-bit layout ("RGB;16B", "LA;16B", "RGBA;16B") keeps the high byte, which is png_set_strip_16.
  const bool grey16 = color_type == PNG_COLOR_TYPE_GRAY && bit_depth == 16;
  if (!grey16) {
    png_set_strip_16(png);
    png_set_expand(png);  // palette -> RGB(A), grey 1/2/4 bits -> 0..255 ("1", "L;2", "L;4")
    png_set_gray_to_rgb(png);
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const std::size_t width = png_get_image_width(png, info);
  const std::size_t height = png_get_image_height(png, info);
  const std::size_t rowbytes = png_get_rowbytes(png, info);
  const int channels = png_get_channels(png, info);
  state->buffer.resize(rowbytes * height);
  state->rows.resize(height);
  for (std::size_t y = 0; y < height; ++y) state->rows[y] = state->buffer.data() + y * rowbytes;
  png_read_image(png, state->rows.data());
  png_destroy_read_struct(&png, &info, nullptr);

  Image& img = state->image;
  img.width = static_cast<int>(width);
  img.height = static_cast<int>(height);
  img.channels = 3;
  img.pixels.resize(width * height * 3);
  for (std::size_t y = 0; y < height; ++y) {
    const std::uint8_t* in = state->rows[y];
    std::uint8_t* out = img.pixels.data() + y * width * 3;
    for (std::size_t x = 0; x < width; ++x) {
      if (grey16) {
        const int v = (in[2 * x] << 8) | in[2 * x + 1];
        out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = static_cast<std::uint8_t>(v > 255 ? 255 : v);
      } else {
        // 3 (RGB) or 4 (RGBA: alpha dropped, as Pillow's rgba2rgb does) channels.
        for (int c = 0; c < 3; ++c) out[3 * x + c] = in[channels * x + c];
      }
    }
  }
  return std::move(state->image);
}

#else
// Built without libpng (CMake did not find it): PNG files are refused with a clear message.
Image decode_png(const std::string& path, const std::vector<std::uint8_t>&, std::uint64_t) {
  HG_FAIL("cannot decode PNG file '" << path << "': this hessgap was built without libpng");
}
#endif  // HG_HAVE_PNG

}  // namespace

std::uint64_t max_image_pixels() { return limit_from_env("HESSGAP_MAX_IMAGE_PIXELS", kDefaultMaxImagePixels); }

Image decode_image(const std::string& path) {
  const std::uint64_t max_pixels = max_image_pixels();
  const std::vector<std::uint8_t> bytes = read_file(path);
  static const std::uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) {
    return decode_jpeg(path, bytes, max_pixels);
  }
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), kPng, 8) == 0) return decode_png(path, bytes, max_pixels);
  HG_FAIL("cannot decode image file '" << path << "': not a JPEG or PNG file (expected the magic bytes "
                                       << "FF D8 FF or 89 50 4E 47 0D 0A 1A 0A, " << bytes.size()
                                       << " bytes read)");
}

}  // namespace hessgap::data
