// IDX reading through zlib's gz* functions, which read gzip and plain files alike.
#include "data/idx_dataset.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <sstream>

#include "util/error.h"
#include "util/input_file.h"
#include "util/limits.h"

namespace hessgap::data {
namespace {

class GzFile {
 public:
  explicit GzFile(const std::string& path)
      : path_(path), file_size_(require_regular_file(path, "IDX file")), f_(gzopen(path.c_str(), "rb")) {
    HG_CHECK(f_, "cannot open IDX file '" << path << "'");
  }

  std::uint64_t file_size() const { return file_size_; }
  // True once a read has shown the file to be plain rather than gzip.
  bool plain() const { return gzdirect(f_) != 0; }
  ~GzFile() { gzclose(f_); }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;

  // Reads up to n bytes; returns how many were read (fewer only at the end of the data).
  std::size_t read(std::uint8_t* dst, std::size_t n) {
    std::size_t done = 0;
    while (done < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n - done, INT_MAX / 2));
      const int got = gzread(f_, dst + done, chunk);
      if (got < 0) {
        int code = 0;
        const char* msg = gzerror(f_, &code);
        HG_FAIL("cannot read IDX file '" << path_ << "': " << (msg ? msg : "read error"));
      }
      if (got == 0) break;
      done += static_cast<std::size_t>(got);
    }
    // A gzip stream cut short ends in a short read with Z_BUF_ERROR rather than a failed gzread.
    int code = Z_OK;
    const char* msg = gzerror(f_, &code);
    HG_CHECK(code == Z_OK || code == Z_STREAM_END,
             "cannot read IDX file '" << path_ << "': " << (msg ? msg : "gzip error") << " (truncated or corrupt)");
    return done;
  }

 private:
  std::string path_;
  std::uint64_t file_size_ = 0;
  gzFile f_;
};

std::string dims_text(const std::vector<std::int64_t>& dims) {
  std::string s;
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? "x" : "") + std::to_string(dims[i]);
  return s;
}

}  // namespace

IdxArray read_idx(const std::string& path, int expected_ndim) {
  GzFile f(path);
  std::uint8_t magic[4];
  HG_CHECK(f.read(magic, 4) == 4, "IDX file '" << path << "' is truncated: no 4-byte magic number");
  HG_CHECK(magic[0] == 0 && magic[1] == 0 && magic[2] == 0x08 && magic[3] == expected_ndim,
           "IDX file '" << path << "': expected the magic number 0x0000080" << expected_ndim << " (unsigned bytes, "
                        << expected_ndim << " dimensions), got 0x" << std::hex << (magic[0] << 24 | magic[1] << 16 | magic[2] << 8 | magic[3]));
  IdxArray out;
  for (int d = 0; d < expected_ndim; ++d) {
    std::uint8_t b[4];
    HG_CHECK(f.read(b, 4) == 4, "IDX file '" << path << "' is truncated in its header (dimension " << d << ")");
    out.dims.push_back(std::int64_t{b[0]} << 24 | std::int64_t{b[1]} << 16 | std::int64_t{b[2]} << 8 | b[3]);
  }
  // The declared size is checked against what the file can hold before anything is allocated: the
  // bytes after the header of a plain file, 1032 times the file (deflate's maximum ratio) for gzip.
  const std::uint64_t header = 4 + 4 * static_cast<std::uint64_t>(expected_ndim);
  const std::uint64_t room = f.plain() ? f.file_size() - std::min(f.file_size(), header)
                                       : checked_mul(f.file_size(), 1032).value_or(UINT64_MAX);
  const auto declared = checked_numel(out.dims);
  HG_CHECK(declared && static_cast<std::uint64_t>(*declared) <= room,
           "IDX file '" << path << "' is truncated or forged: its header declares dimensions "
                        << dims_text(out.dims) << " ("
                        << (declared ? std::to_string(*declared) : std::string("more than 2^63")) << " bytes of data), "
                        << (f.plain() ? "the file holds " + std::to_string(room) + " after its header"
                                      : "more than its " + std::to_string(f.file_size()) + "-byte gzip stream can hold"));
  const std::int64_t total = *declared;
  // Read in pieces, so that memory follows the data actually present rather than the header's claim.
  constexpr std::size_t kPiece = std::size_t{64} << 20;
  std::size_t got = 0;
  while (got < static_cast<std::size_t>(total)) {
    const std::size_t want = std::min(kPiece, static_cast<std::size_t>(total) - got);
    out.data.resize(got + want);
    const std::size_t n = f.read(out.data.data() + got, want);
    got += n;
    if (n < want) break;
  }
  out.data.resize(got);
  HG_CHECK(got == static_cast<std::size_t>(total), "IDX file '" << path << "' is truncated: its header declares " << total
                                                << " bytes of data, the file holds " << got);
  std::uint8_t extra;
  HG_CHECK(f.read(&extra, 1) == 0,
           "IDX file '" << path << "' is longer than its header declares (" << total << " bytes of data)");
  return out;
}

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                              "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

IdxDataset::IdxDataset(std::string images_path, std::string labels_path, IdxOptions options)
    : images_path_(std::move(images_path)), labels_path_(std::move(labels_path)), options_(std::move(options)) {
  HG_CHECK(options_.stddev > 0.0, "IDX dataset '" << images_path_ << "': stddev must be > 0, got " << options_.stddev);
  for (double s : options_.rgb_stddev) {
    HG_CHECK(!options_.grey_to_rgb || s > 0.0, "IDX dataset '" << images_path_ << "': stddev must be > 0, got " << s);
  }
  HG_CHECK(options_.pad >= 0, "IDX dataset '" << images_path_ << "': padding must be >= 0 (--pad), got " << options_.pad);
  HG_CHECK(options_.max_per_class >= 0,
           "IDX dataset '" << images_path_ << "': max_per_class must be >= 0, got " << options_.max_per_class);
  IdxArray images = read_idx(images_path_, 3);
  IdxArray labels = read_idx(labels_path_, 1);
  HG_CHECK(images.dims[0] == labels.dims[0], "IDX files '" << images_path_ << "' and '" << labels_path_
                                                           << "' disagree: " << images.dims[0] << " images but "
                                                           << labels.dims[0] << " labels");
  // A 0-pixel image would reach the model and fail in a convolution (exit 1) instead of here.
  HG_CHECK(images.dims[1] >= 1 && images.dims[2] >= 1,
           "IDX file '" << images_path_ << "': its header declares images of " << images.dims[1] << "x"
                        << images.dims[2] << " pixels (expected at least 1x1)");
  height_ = images.dims[1];
  width_ = images.dims[2];
  pixels_ = std::move(images.data);
  labels_ = std::move(labels.data);
  for (std::uint8_t l : labels_) num_classes_ = std::max<std::int64_t>(num_classes_, std::int64_t{l} + 1);
  std::vector<std::int64_t> per_class(static_cast<std::size_t>(num_classes_), 0);
  for (std::size_t i = 0; i < labels_.size(); ++i) {
    if (options_.max_per_class > 0 && per_class[labels_[i]]++ >= options_.max_per_class) continue;
    index_.push_back(static_cast<std::int64_t>(i));
  }
  if (!options_.class_names.empty()) {
    HG_CHECK(static_cast<std::int64_t>(options_.class_names.size()) >= num_classes_,
             "IDX dataset '" << labels_path_ << "': " << options_.class_names.size() << " class names given, "
                             << "the labels need " << num_classes_);
    class_names_ = options_.class_names;
    class_names_.resize(static_cast<std::size_t>(num_classes_));
  } else if (num_classes_ == 10) {
    class_names_ = fashion_mnist_classes();
  } else {
    for (std::int64_t c = 0; c < num_classes_; ++c) class_names_.push_back(std::to_string(c));
  }
}

std::int64_t IdxDataset::label(std::int64_t i) const {
  HG_CHECK(i >= 0 && i < size(), "IDX dataset '" << images_path_ << "': sample id " << i << " out of range [0, " << size() << ")");
  return labels_[static_cast<std::size_t>(index_[static_cast<std::size_t>(i)])];
}

Batch IdxDataset::get_batch(const std::vector<std::int64_t>& ids) const {
  const std::int64_t n = static_cast<std::int64_t>(ids.size());
  const std::int64_t pad = options_.pad;
  const std::int64_t channels = options_.grey_to_rgb ? 3 : 1;
  const std::int64_t out_h = height_ + 2 * pad, out_w = width_ + 2 * pad;
  const std::int64_t plane = out_h * out_w;
  Batch batch;
  batch.sample_ids = ids;
  batch.inputs = torch::empty({n, channels, out_h, out_w}, torch::kFloat32);
  batch.labels = torch::empty({n}, torch::kInt64);
  float* x = batch.inputs.data_ptr<float>();
  std::int64_t* y = batch.labels.data_ptr<std::int64_t>();
  // Per channel: the value of every byte, (p / 255 - mean) / stddev in float32 as torch computes it.
  std::vector<std::array<float, 256>> lut(static_cast<std::size_t>(channels));
  for (std::int64_t c = 0; c < channels; ++c) {
    const auto k = static_cast<std::size_t>(c);
    const float mean = static_cast<float>(options_.grey_to_rgb ? options_.rgb_mean[k] : options_.mean);
    const float stddev = static_cast<float>(options_.grey_to_rgb ? options_.rgb_stddev[k] : options_.stddev);
    for (int p = 0; p < 256; ++p) lut[k][static_cast<std::size_t>(p)] = (static_cast<float>(p) / 255.0f - mean) / stddev;
  }
  for (std::int64_t k = 0; k < n; ++k) {
    HG_CHECK(ids[k] >= 0 && ids[k] < size(),
             "IDX dataset '" << images_path_ << "': sample id " << ids[k] << " out of range [0, " << size() << ")");
    const std::int64_t row = index_[static_cast<std::size_t>(ids[k])];
    const std::uint8_t* p = pixels_.data() + row * height_ * width_;
    for (std::int64_t c = 0; c < channels; ++c) {
      const auto& v = lut[static_cast<std::size_t>(c)];
      float* dst = x + (k * channels + c) * plane;
      std::fill(dst, dst + plane, v[0]);  // the padding: pixel value 0
      for (std::int64_t r = 0; r < height_; ++r) {
        float* line = dst + (r + pad) * out_w + pad;
        for (std::int64_t j = 0; j < width_; ++j) line[j] = v[p[r * width_ + j]];
      }
    }
    y[k] = labels_[static_cast<std::size_t>(row)];
  }
  return batch;
}

std::string IdxDataset::describe() const {
  std::ostringstream os;
  os << "IDX " << images_path_ << " + " << labels_path_ << " (" << size() << " images " << height_ << "x" << width_
     << ", " << num_classes_ << " classes";
  if (options_.max_per_class > 0) os << ", at most " << options_.max_per_class << " per class";
  if (options_.pad > 0) os << ", padded by " << options_.pad << " to " << height_ + 2 * options_.pad << "x" << width_ + 2 * options_.pad;
  if (options_.grey_to_rgb) os << ", grey replicated to 3 channels";
  os << ")";
  return os.str();
}

}  // namespace hessgap::data
