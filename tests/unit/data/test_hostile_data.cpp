// Hostile data files (issue #12): image headers declaring gigapixels and IDX headers declaring more
// data than the file holds are refused before anything is allocated (the limit and the declared
// value named), and inputs that are not regular files are refused at once instead of blocking.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/bpe_tokenizer.h"
#include "data/glue.h"
#include "data/idx_dataset.h"
#include "data/image.h"
#include "data/image_folder.h"
#include "data/mat_file.h"
#include "data/registry.h"
#include "data/npy.h"
#include "data/tokenizer.h"
#include "data/tokenizer_unicode.h"
#include "data/transforms.h"
#include "data/wordpiece_tokenizer.h"
#include "test_helpers.h"
#include "tests/support/error_of.h"
#include "util/excerpt.h"

namespace hessgap::data {
namespace {
using namespace testing;
using hessgap::testing::error_of;

void put_be16(std::vector<std::uint8_t>& b, std::size_t at, unsigned v) {
  b[at] = static_cast<std::uint8_t>(v >> 8);
  b[at + 1] = static_cast<std::uint8_t>(v);
}
void put_be32(std::vector<std::uint8_t>& b, std::size_t at, std::uint32_t v) {
  for (int k = 0; k < 4; ++k) b[at + k] = static_cast<std::uint8_t>(v >> (24 - 8 * k));
}

// A real 32x32 JPEG whose SOF0 frame header is patched to declare width x height.
std::vector<std::uint8_t> jpeg_declaring(unsigned width, unsigned height) {
  std::vector<std::uint8_t> b = read_bytes(assets_path("cifar10-test-100/airplane/0000.jpg"));
  for (std::size_t i = 2; i + 9 < b.size(); ++i) {
    if (b[i] == 0xFF && b[i + 1] == 0xC0) {  // SOF0: FF C0, length, precision, height, width
      put_be16(b, i + 5, height);
      put_be16(b, i + 7, width);
      return b;
    }
  }
  ADD_FAILURE() << "no SOF0 marker in the fixture";
  return b;
}

// A real PNG whose IHDR declares width x height (its CRC recomputed, so only the size is wrong).
std::vector<std::uint8_t> png_declaring(std::uint32_t width, std::uint32_t height) {
  std::vector<std::uint8_t> b = read_bytes(fixture_path("rgba.png"));
  EXPECT_EQ(std::string(b.begin() + 12, b.begin() + 16), "IHDR");
  put_be32(b, 16, width);
  put_be32(b, 20, height);
  put_be32(b, 29, static_cast<std::uint32_t>(crc32(0, b.data() + 12, 17)));
  return b;
}

TEST(DataHostile, ImageDeclaringGigapixelsIsRefusedFromItsHeader) {
  const std::string dir = fresh_dir("images");
  write_bytes(dir + "/huge.jpg", jpeg_declaring(20000, 20000));
  write_bytes(dir + "/huge.png", png_declaring(20000, 20000));
  EXPECT_LT(read_bytes(dir + "/huge.jpg").size(), 2000u);
  for (const char* leaf : {"/huge.jpg", "/huge.png"}) {
    SCOPED_TRACE(leaf);
    const std::string msg = error_of([&] { decode_image(dir + leaf); });
    EXPECT_NE(msg.find("file '" + dir + leaf + "': it declares 20000x20000 pixels (400000000), more than the limit "
                       "of 100000000 pixels"), std::string::npos) << msg;
    EXPECT_NE(msg.find("HESSGAP_MAX_IMAGE_PIXELS"), std::string::npos) << msg;
  }
}

TEST(DataHostile, ImagePixelLimitFollowsTheEnvironment) {
  const std::string jpg = assets_path("cifar10-test-100/airplane/0000.jpg");  // 32x32
  EXPECT_EQ(max_image_pixels(), kDefaultMaxImagePixels);
  ::setenv("HESSGAP_MAX_IMAGE_PIXELS", "1000", 1);
  const std::string low = error_of([&] { decode_image(jpg); });
  ::setenv("HESSGAP_MAX_IMAGE_PIXELS", "62", 1);
  const std::string png = error_of([&] { decode_image(fixture_path("rgba.png")); });  // 9x7
  ::setenv("HESSGAP_MAX_IMAGE_PIXELS", "1024", 1);
  const Image ok = decode_image(jpg);
  ::setenv("HESSGAP_MAX_IMAGE_PIXELS", "-5", 1);
  const std::string bad = error_of([&] { decode_image(jpg); });
  ::unsetenv("HESSGAP_MAX_IMAGE_PIXELS");
  EXPECT_NE(low.find("declares 32x32 pixels (1024), more than the limit of 1000 pixels"), std::string::npos) << low;
  EXPECT_NE(png.find("declares 9x7 pixels (63), more than the limit of 62 pixels"), std::string::npos) << png;
  EXPECT_EQ(ok.width, 32);
  EXPECT_NE(bad.find("HESSGAP_MAX_IMAGE_PIXELS='-5' is not a positive integer"), std::string::npos) << bad;
}

std::vector<std::uint8_t> idx_header(std::vector<std::uint32_t> dims) {
  std::vector<std::uint8_t> out = {0, 0, 0x08, static_cast<std::uint8_t>(dims.size())};
  for (std::uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(d >> s));
  }
  return out;
}

TEST(DataHostile, IdxHeaderDeclaringMoreThanTheFileHolds) {
  const std::string dir = fresh_dir("idx");
  // 16 bytes declaring 2^36 + 2^20 bytes (the old plausibility bound was 2^36, allocated first).
  write_bytes(dir + "/big", idx_header({65537, 1024, 1024}));
  std::string msg = error_of([&] { read_idx(dir + "/big", 3); });
  EXPECT_NE(msg.find("IDX file '" + dir + "/big' is truncated or forged: its header declares dimensions 65537x1024x1024 "
                     "(68720525312 bytes of data), the file holds 0 after its header"),
            std::string::npos) << msg;
  // Dimensions whose product overflows int64.
  write_bytes(dir + "/overflow", idx_header({0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}));
  msg = error_of([&] { read_idx(dir + "/overflow", 3); });
  EXPECT_NE(msg.find("4294967295x4294967295x4294967295 (more than 2^63 bytes of data)"), std::string::npos) << msg;
  // gzip: bounded by deflate's maximum ratio over the compressed file.
  {
    const std::vector<std::uint8_t> header = idx_header({10000, 1000, 1000});
    gzFile f = gzopen((dir + "/big.gz").c_str(), "wb");
    ASSERT_TRUE(f);
    gzwrite(f, header.data(), static_cast<unsigned>(header.size()));
    gzclose(f);
  }
  msg = error_of([&] { read_idx(dir + "/big.gz", 3); });
  EXPECT_NE(msg.find("(10000000000 bytes of data), more than its"), std::string::npos) << msg;
  EXPECT_NE(msg.find("-byte gzip stream can hold"), std::string::npos) << msg;
}

TEST(DataHostile, FifoAndDeviceInputsAreRefusedAtOnce) {
  const std::string dir = fresh_dir("fifo");
  const std::string fifo = dir + "/in.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // A writer with a few bytes in the FIFO: a reader that opened it anyway (before the fix: blocked
  // forever without a writer) fails on the content instead of hanging the test.
  const int fd = ::open(fifo.c_str(), O_RDWR | O_NONBLOCK);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "\xFF\xD8\xFF\x00\x00\x08\x03\x01", 8), 8);
  const std::string image = error_of([&] { decode_image(fifo); });
  const std::string idx = error_of([&] { read_idx(fifo, 3); });
  const std::string npy = error_of([&] { read_npy(fifo); });
  const std::string glue = error_of([&] { read_glue_tsv(fifo, "sst2"); });
  const std::string mat = error_of([&] { read_mat_file(fifo); });
  const std::string vocab = error_of([&] { WordPieceTokenizer t(fifo); });
  ::close(fd);
  EXPECT_NE(image.find("image file '" + fifo + "' is not a regular file: it is a FIFO"), std::string::npos) << image;
  EXPECT_NE(idx.find("IDX file '" + fifo + "' is not a regular file: it is a FIFO"), std::string::npos) << idx;
  EXPECT_NE(npy.find(".npy file '" + fifo + "' is not a regular file: it is a FIFO"), std::string::npos) << npy;
  EXPECT_NE(glue.find("GLUE file '" + fifo + "' is not a regular file: it is a FIFO"), std::string::npos) << glue;
  EXPECT_NE(mat.find("MAT-file '" + fifo + "' is not a regular file: it is a FIFO"), std::string::npos) << mat;
  EXPECT_NE(vocab.find("vocabulary '" + fifo + "' is not a regular file: it is a FIFO"), std::string::npos) << vocab;
  const std::string dev = error_of([&] { read_idx("/dev/zero", 3); });
  EXPECT_NE(dev.find("IDX file '/dev/zero' is not a regular file: it is a character device"), std::string::npos) << dev;
}


// A byte-level BPE vocabulary (the 256 byte symbols and RoBERTa's specials, ids 0..259) as a JSON
// object body without its braces, for tests to add entries to.
std::string small_bpe_vocab_members() {
  nlohmann::json vocab = nlohmann::json::object();
  vocab["<s>"] = 0;
  vocab["<pad>"] = 1;
  vocab["</s>"] = 2;
  vocab["<unk>"] = 3;
  for (int b = 0; b < 256; ++b) {
    std::string sym;
    unicode::utf8_append(sym, BpeTokenizer::byte_symbol(static_cast<std::uint8_t>(b)));
    vocab[sym] = 4 + b;
  }
  const std::string text = vocab.dump();
  return text.substr(1, text.size() - 2);
}

std::string nested_brackets(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

TEST(DataHostile, DeeplyNestedJsonIsRefusedNamingTheFile) {
  const std::string dir = fresh_dir("deep");
  // vocab.json: before, parsed and then printed by the error message (stack overflow, exit 139).
  std::ofstream(dir + "/vocab.json") << "{" << small_bpe_vocab_members() << ", \"zz\": " << nested_brackets(1000000)
                                     << "}";
  std::ofstream(dir + "/merges.txt") << "#version: 0.2\n";
  std::string msg = error_of([&] { BpeTokenizer(dir + "/vocab.json", dir + "/merges.txt"); });
  EXPECT_NE(msg.find("vocabulary '" + dir + "/vocab.json': JSON nested more than 128 levels deep"), std::string::npos)
      << msg.substr(0, 300);
  // tokenizer_config.json of a WordPiece folder.
  const std::string wp = fresh_dir("wordpiece");
  std::filesystem::copy_file(source_path("tests/fixtures/text/bert-base-uncased/vocab.txt"), wp + "/vocab.txt");
  std::ofstream(wp + "/tokenizer_config.json") << "{\"do_lower_case\": " << nested_brackets(1000000) << "}";
  msg = error_of([&] { open_tokenizer(TokenizerSpec{wp}); });
  EXPECT_NE(msg.find("'" + wp + "/tokenizer_config.json': JSON nested more than 128 levels deep"), std::string::npos)
      << msg.substr(0, 300);
  // 100 levels is fine (and then refused for what it is).
  std::ofstream(wp + "/tokenizer_config.json") << "{\"do_lower_case\": " << nested_brackets(100) << "}";
  msg = error_of([&] { open_tokenizer(TokenizerSpec{wp}); });
  EXPECT_NE(msg.find("do_lower_case must be true or false"), std::string::npos) << msg.substr(0, 300);
}

TEST(DataHostile, BpeVocabularyIdsMustBeDense) {
  const std::string dir = fresh_dir("bpe");
  std::ofstream(dir + "/merges.txt") << "#version: 0.2\na b\n";
  // Before: tokens_ was sized by the largest id (2147483646: std::bad_alloc; 200000000: 6.5 GB).
  for (const char* id : {"5000000", "2147483646", "261"}) {
    SCOPED_TRACE(id);
    std::ofstream(dir + "/vocab.json") << "{" << small_bpe_vocab_members() << ", \"ab\": " << id << "}";
    const std::string msg = error_of([&] { BpeTokenizer(dir + "/vocab.json", dir + "/merges.txt"); });
    EXPECT_NE(msg.find("vocabulary '" + dir + "/vocab.json': token 'ab' has id " + id), std::string::npos) << msg;
    EXPECT_NE(msg.find("below the number of entries, 261"), std::string::npos) << msg;
  }
  // The dense one loads.
  std::ofstream(dir + "/vocab.json") << "{" << small_bpe_vocab_members() << ", \"ab\": 260}";
  const BpeTokenizer tok(dir + "/vocab.json", dir + "/merges.txt");
  EXPECT_EQ(tok.id_to_token(260), "ab");
}

TEST(DataHostile, ResizeBeyondThePixelLimitIsRefusedNamingTheImage) {
  // A 32x32 JPEG under a limit of 2000 pixels: decoding passes (1024), --resize 64 would make 4096.
  // (The same as a 1x20000 image with --resize 224 under the default limit: 12 GB before.)
  const std::string root = fresh_dir("resize");
  std::filesystem::create_directories(root + "/plane");
  std::filesystem::copy_file(assets_path("cifar10-test-100/airplane/0000.jpg"), root + "/plane/0.jpg");
  ::setenv("HESSGAP_MAX_IMAGE_PIXELS", "2000", 1);
  ImageFolderOptions options;
  options.num_threads = 1;
  options.transform.resize = 64;
  const std::string msg = error_of([&] { ImageFolderDataset(root, options).get_batch({0}); });
  options.transform.resize = 40;  // 1600 pixels: fine
  const Batch ok = ImageFolderDataset(root, options).get_batch({0});
  options.transform.resize = 0;
  options.transform.crop = 50;  // 2500 pixels
  const std::string crop = error_of([&] { ImageFolderDataset(root, options).get_batch({0}); });
  // A 1x30 image to 2x60 and to 40x1200 (the long side, computed in double, also bounded).
  Image thin;
  thin.width = 1;
  thin.height = 30;
  thin.channels = 3;
  thin.pixels.assign(90, 7);
  const Image two = resize_shorter(thin, 2);
  const std::string tall = error_of([&] { resize_shorter(thin, 40); });
  ::unsetenv("HESSGAP_MAX_IMAGE_PIXELS");
  EXPECT_NE(msg.find("image '" + root + "/plane/0.jpg': --resize 64 would make this 32x32 image 64x64 pixels, more "
                     "than the limit of 2000 pixels"),
            std::string::npos) << msg;
  EXPECT_NE(msg.find("HESSGAP_MAX_IMAGE_PIXELS"), std::string::npos) << msg;
  EXPECT_EQ(ok.inputs.sizes(), (std::vector<std::int64_t>{1, 3, 40, 40}));
  EXPECT_NE(crop.find("image '" + root + "/plane/0.jpg': --crop 50 makes images of 50x50 pixels, more than the "
                      "limit of 2000"),
            std::string::npos) << crop;
  EXPECT_EQ(two.width, 2);
  EXPECT_EQ(two.height, 60);
  EXPECT_NE(tall.find("--resize 40 would make this 1x30 image 40x1200 pixels"), std::string::npos) << tall;
}

TEST(DataHostile, IdxImagesOfZeroPixelsAreRefused) {
  const std::string dir = fresh_dir("idx0");
  write_bytes(dir + "/images", idx_header({2, 0, 0}));
  std::vector<std::uint8_t> labels = idx_header({2});
  labels.push_back(0);
  labels.push_back(1);
  write_bytes(dir + "/labels", labels);
  std::string msg = error_of([&] { IdxDataset(dir + "/images", dir + "/labels"); });
  EXPECT_NE(msg.find("IDX file '" + dir + "/images': its header declares images of 0x0 pixels (expected at least 1x1)"),
            std::string::npos) << msg;
  write_bytes(dir + "/images", idx_header({2, 5, 0}));
  msg = error_of([&] { IdxDataset(dir + "/images", dir + "/labels"); });
  EXPECT_NE(msg.find("images of 5x0 pixels"), std::string::npos) << msg;
}

TEST(DataHostile, ImageFolderSymlinkLoopsAreWalkedOnce) {
  // Two links to '.' in a class folder made the walk exponential (a hang); one link, as here, listed
  // each image once per level until ELOOP. A folder reached again is not descended into.
  const std::string root = fresh_dir("loop");
  std::filesystem::create_directories(root + "/a");
  std::filesystem::create_directories(root + "/c/sub");
  const std::string jpg = assets_path("cifar10-test-100/airplane/0000.jpg");
  std::filesystem::copy_file(jpg, root + "/a/x.jpg");
  std::filesystem::copy_file(jpg, root + "/c/y.jpg");
  std::filesystem::copy_file(jpg, root + "/c/sub/z.jpg");
  std::filesystem::create_directory_symlink(".", root + "/c/x");
  std::filesystem::create_directory_symlink("..", root + "/c/sub/up");
  std::filesystem::create_directory_symlink("sub", root + "/c/w");  // the same folder as c/sub
  ImageFolderOptions options;
  options.num_threads = 1;
  const ImageFolderDataset ds(root, options);
  ASSERT_EQ(ds.size(), 3);
  EXPECT_EQ(ds.file(0), root + "/a/x.jpg");
  EXPECT_EQ(ds.file(1), root + "/c/y.jpg");
  EXPECT_EQ(ds.file(2), root + "/c/sub/z.jpg");  // by c/sub, first in name order, not c/w
}

TEST(DataHostile, FileContentInMessagesIsShortened) {
  // A GLUE header of 10^6 columns was quoted whole: 3 MB of message.
  const std::string dir = fresh_dir("glue");
  std::string header;
  for (int k = 0; k < 1000000; ++k) header += k ? "\tx" : "x";
  {
    std::ofstream(dir + "/wide.tsv") << header << "\n";
  }
  std::string msg = error_of([&] { read_glue_tsv(dir + "/wide.tsv", "sst2"); });
  EXPECT_LT(msg.size(), 1000u) << msg.substr(0, 1000);
  EXPECT_NE(msg.find("GLUE file '" + dir + "/wide.tsv' line 1: header 'x, x, x"), std::string::npos) << msg;
  EXPECT_NE(msg.find("x,... (2999998 bytes)' is not a sst2 header"), std::string::npos) << msg;
  // A label field of 100,000 bytes, the same.
  {
    std::ofstream(dir + "/label.tsv") << "sentence\tlabel\nfine\t" << std::string(100000, '7') << "\n";
  }
  msg = error_of([&] { read_glue_tsv(dir + "/label.tsv", "sst2"); });
  EXPECT_LT(msg.size(), 1000u) << msg.substr(0, 1000);
  EXPECT_NE(msg.find("line 2: label '" + std::string(200, '7') + "... (100000 bytes)' in column 'label'"),
            std::string::npos) << msg;
  // Short text whole; a cut that would fall inside a UTF-8 sequence backs off to its start.
  EXPECT_EQ(excerpt("label"), "label");
  EXPECT_EQ(excerpt(std::string(200, 'a')), std::string(200, 'a'));
  const std::string text = std::string(199, 'a') + "\xC3\xA9zz";  // U+00E9 in bytes 199-200
  EXPECT_EQ(excerpt(text), std::string(199, 'a') + "... (203 bytes)");
}

TEST(DataHostile, LabelNoiseErrorsNameTheFlagAndTheFile) {
  DatasetSpec spec;
  spec.kind = "imagefolder";
  spec.path = assets_path("cifar10-test-100");
  spec.max_per_class = 1;
  for (double rate : {-1.0, 1.5}) {
    spec.noise_rate = rate;
    const std::string msg = error_of([&] { open_dataset(spec); });
    EXPECT_NE(msg.find("--label-noise must be in [0, 1] (got " + std::string(rate < 0 ? "-1" : "1.5") + ")"),
              std::string::npos) << msg;
  }
  // GLUE's test layout has no labels (-1): before, "label noise (flip): sample 2 has label -1 (expected 0 or 1)".
  const std::string dir = fresh_dir("glue") + "/SST-2";
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir + "/test.tsv") << "index\tsentence\n0\ta fine film\n1\tdull\n2\tgood\n";
  }
  spec = DatasetSpec{};
  spec.kind = "glue";
  spec.path = dir;
  spec.split = "test";
  spec.tokenizer = source_path("tests/fixtures/text/bert-base-uncased");
  spec.noise_rate = 0.5;
  const std::string msg = error_of([&] { open_dataset(spec); });
  EXPECT_NE(msg.find("--label-noise 0.5 needs labelled data, but the 'test' split of dataset '" + dir +
                     "' is unlabelled: 3 of its 3 samples have no label"),
            std::string::npos) << msg;
  EXPECT_NE(msg.find(dir + "/test.tsv"), std::string::npos) << msg;
}

}  // namespace
}  // namespace hessgap::data
