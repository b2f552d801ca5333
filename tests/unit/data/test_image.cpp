// decode_image against Pillow's Image.open(p).convert("RGB") (oracle: pil_oracle.py decode), and
// its errors.
#include <gtest/gtest.h>

#include "data/image.h"
#include "test_helpers.h"
#include "util/error.h"

namespace hessgap::data {
namespace {
using namespace testing;

// Decodes every path with both decoders and requires identical pixels.
void expect_same_as_pillow(const std::vector<std::string>& paths, const std::string& out_dir, bool* skipped) {
  std::string args = "decode " + quote(out_dir);
  for (const auto& p : paths) args += " " + quote(p);
  const std::optional<std::string> out = run_oracle(args);
  *skipped = !out;
  if (!out) return;
  const nlohmann::json ref = nlohmann::json::parse(*out);
  ASSERT_EQ(ref.size(), paths.size());
  for (std::size_t k = 0; k < paths.size(); ++k) {
    SCOPED_TRACE(paths[k]);
    const Image img = decode_image(paths[k]);
    ASSERT_EQ(img.width, ref[k]["width"].get<int>());
    ASSERT_EQ(img.height, ref[k]["height"].get<int>());
    ASSERT_EQ(img.channels, 3);
    const std::vector<std::uint8_t> expected = read_bytes(out_dir + "/" + ref[k]["file"].get<std::string>());
    ASSERT_EQ(img.pixels.size(), expected.size());
    std::size_t differ = 0;
    for (std::size_t i = 0; i < expected.size(); ++i) differ += img.pixels[i] != expected[i];
    EXPECT_EQ(differ, 0u) << "values differing from Pillow";
  }
}

TEST(DecodeImage, CifarJpegsMatchPillowExactly) {
  const std::vector<std::string> paths = {
      assets_path("cifar10-test-100/airplane/0000.jpg"), assets_path("cifar10-test-100/cat/0042.jpg"),
      assets_path("cifar10-test-100/frog/0099.jpg"), assets_path("cifar10-test-100/truck/0013.jpg"),
      assets_path("cifar10-test-100/bird/0057.jpg")};
  bool skipped = false;
  expect_same_as_pillow(paths, fresh_dir("oracle"), &skipped);
  if (skipped) GTEST_SKIP() << "/usr/bin/python3 with Pillow is missing";
}

TEST(DecodeImage, JpegVariantsMatchPillowExactly) {
  // 4:2:0 baseline, progressive 4:4:4, greyscale, Adobe CMYK.
  const std::vector<std::string> paths = {fixture_path("rect.jpg"), fixture_path("progressive.jpg"),
                                          fixture_path("grey.jpg"), fixture_path("cmyk.jpg")};
  bool skipped = false;
  expect_same_as_pillow(paths, fresh_dir("oracle"), &skipped);
  if (skipped) GTEST_SKIP() << "/usr/bin/python3 with Pillow is missing";
}

TEST(DecodeImage, PngVariantsMatchPillowExactly) {
  // grey, palette + tRNS, 4-bit palette, RGBA, grey+alpha, 1-bit, 16-bit grey (Pillow clips),
  // 16-bit RGB (high byte), 2-bit grey, Adam7-interlaced RGB.
  const std::vector<std::string> paths = {
      fixture_path("grey.png"),    fixture_path("palette_trns.png"), fixture_path("palette4.png"),
      fixture_path("rgba.png"),    fixture_path("la.png"),           fixture_path("bilevel.png"),
      fixture_path("grey16.png"),  fixture_path("rgb16.png"),        fixture_path("grey2.png"),
      fixture_path("interlaced.png")};
  bool skipped = false;
  expect_same_as_pillow(paths, fresh_dir("oracle"), &skipped);
  if (skipped) GTEST_SKIP() << "/usr/bin/python3 with Pillow is missing";
}

// Closed-form checks that need no oracle: the 16-bit grey fixture holds 9*i, clipped to 255.
TEST(DecodeImage, Grey16ClipsLikePillow) {
  const Image img = decode_image(fixture_path("grey16.png"));
  ASSERT_EQ(img.width, 9);
  ASSERT_EQ(img.height, 7);
  for (int i = 0; i < 63; ++i) {
    const int expected = std::min(9 * i, 255);
    EXPECT_EQ(img.at(i / 9, i % 9, 0), expected) << "pixel " << i;
    EXPECT_EQ(img.at(i / 9, i % 9, 2), expected) << "pixel " << i;
  }
}

TEST(DecodeImage, FormatChosenByMagicBytesNotName) {
  const std::string dir = fresh_dir("magic");
  fs::copy_file(fixture_path("grey.png"), dir + "/looks_like.jpg");
  fs::copy_file(fixture_path("rect.jpg"), dir + "/looks_like.png");
  const Image png = decode_image(dir + "/looks_like.jpg");
  const Image jpg = decode_image(dir + "/looks_like.png");
  EXPECT_EQ(png.pixels, decode_image(fixture_path("grey.png")).pixels);
  EXPECT_EQ(jpg.pixels, decode_image(fixture_path("rect.jpg")).pixels);
}

void expect_error_naming(const std::string& path, const std::string& fragment) {
  try {
    decode_image(path);
    ADD_FAILURE() << "no error for " << path;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
  }
}

TEST(DecodeImage, ErrorsNameTheFile) {
  const std::string dir = fresh_dir("errors");
  expect_error_naming(dir + "/missing.jpg", "cannot open");

  write_bytes(dir + "/text.jpg", {'h', 'e', 'l', 'l', 'o'});
  expect_error_naming(dir + "/text.jpg", "not a JPEG or PNG");

  write_bytes(dir + "/empty.png", {});
  expect_error_naming(dir + "/empty.png", "not a JPEG or PNG");

  std::vector<std::uint8_t> jpg = read_bytes(assets_path("cifar10-test-100/cat/0000.jpg"));
  std::vector<std::uint8_t> cut(jpg.begin(), jpg.begin() + static_cast<long>(jpg.size() / 2));
  write_bytes(dir + "/truncated.jpg", cut);
  expect_error_naming(dir + "/truncated.jpg", "JPEG");

  std::vector<std::uint8_t> garbage = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x02, 0x13, 0x37, 0x00, 0x00};
  write_bytes(dir + "/corrupt.jpg", garbage);
  expect_error_naming(dir + "/corrupt.jpg", "cannot decode JPEG");

  std::vector<std::uint8_t> png = read_bytes(fixture_path("rgba.png"));
  write_bytes(dir + "/truncated.png", std::vector<std::uint8_t>(png.begin(), png.begin() + 60));
  expect_error_naming(dir + "/truncated.png", "cannot decode PNG");

  png[40] ^= 0xFF;  // inside IDAT: CRC mismatch
  write_bytes(dir + "/corrupt.png", png);
  expect_error_naming(dir + "/corrupt.png", "cannot decode PNG");
}

}  // namespace
}  // namespace hessgap::data
