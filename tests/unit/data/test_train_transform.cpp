// The training transform against torchvision 0.14: committed goldens (train_transform_oracle.py
// make-goldens), torchvision's own get_params and Compose run live with the same draws
// (train_transform_oracle.py params / transform), statistical properties, and keying.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "data/image_folder.h"
#include "data/train_transform.h"
#include "test_helpers.h"
#include "util/error.h"
#include "util/rng.h"

namespace hessgap::data {
namespace {
using namespace testing;

// Runs train_transform_oracle.py ARGS; nullopt when Python, torch or torchvision is missing.
std::optional<std::string> run_train_oracle(const std::string& args) {
  return testing_support::run_python_oracle(source_path("tests/unit/data/train_transform_oracle.py"), args);
}

nlohmann::json params_json(const CropParams& p) {
  return {{"top", p.top}, {"left", p.left}, {"height", p.height}, {"width", p.width}, {"flip", p.flip}};
}

std::string source_file(const std::string& src) {
  const std::size_t colon = src.find(':');
  return src.substr(0, colon) == "assets" ? assets_path(src.substr(colon + 1)) : fixture_path(src.substr(colon + 1));
}

// Keyed draws, crop parameters, pixels and (where stored) the float32 tensor equal torchvision's.
TEST(TrainTransform, MatchesTorchvisionGoldens) {
  const std::string dir = source_path("tests/unit/data/goldens");
  std::ifstream in(dir + "/train_transform.json");
  ASSERT_TRUE(in) << "missing " << dir << "/train_transform.json";
  const nlohmann::json manifest = nlohmann::json::parse(in);
  ASSERT_GE(manifest["cases"].size(), 5u);
  int with_tensor = 0;
  for (const auto& c : manifest["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    TrainTransform t;
    t.size = c["size"];
    const std::uint64_t key = augment_key(c["seed"].get<std::uint64_t>(), c["epoch"], c["id"]);
    const auto u = augment_draws(key);
    for (int i = 0; i < kAugmentDraws; ++i) ASSERT_EQ(u[i], c["u"][i].get<double>()) << "draw " << i;
    const Image img = decode_image(source_file(c["source"]));
    const CropParams p = train_crop_params(img.width, img.height, t, key);
    EXPECT_EQ(params_json(p), c["params"]);
    const Image out = apply_train_geometry(img, p, t.size);
    const std::vector<std::uint8_t> expected = read_gz(dir + "/" + c["u8"].get<std::string>());
    ASSERT_EQ(out.pixels.size(), expected.size());
    EXPECT_TRUE(out.pixels == expected) << "pixels differ from torchvision";
    if (c.contains("f32")) {
      ++with_tensor;
      const std::vector<std::uint8_t> raw = read_gz(dir + "/" + c["f32"].get<std::string>());
      const torch::Tensor x = apply_train_transform(img, t, key);
      ASSERT_EQ(x.sizes(), torch::IntArrayRef({3, t.size, t.size}));
      ASSERT_EQ(raw.size(), static_cast<std::size_t>(x.numel()) * 4);
      EXPECT_EQ(std::memcmp(raw.data(), x.data_ptr<float>(), raw.size()), 0) << "tensor differs from torchvision";
    }
  }
  EXPECT_GE(with_tensor, 1);
}

std::array<double, kAugmentDraws> constant_draws(double scale_u, double ratio_u, double top, double left, double flip) {
  std::array<double, kAugmentDraws> u{};
  for (int k = 0; k < kAugmentAttempts; ++k) {
    u[2 * k] = scale_u;
    u[2 * k + 1] = ratio_u;
  }
  u[kAugmentDrawTop] = top;
  u[kAugmentDrawLeft] = left;
  u[kAugmentDrawFlip] = flip;
  return u;
}

// train_crop_params against torchvision's RandomResizedCrop.get_params fed the same uniforms, on keyed
// random draws over many image shapes, on the extremes of [0, 1), and on draws forcing every branch of the
// fallback (tall, wide and in-range images), with default and other scale / ratio / p.
TEST(TrainTransform, ParamsMatchTorchvisionGetParams) {
  struct Case {
    int width, height;
    std::array<double, kAugmentDraws> u;
    TrainTransform t;
  };
  std::vector<Case> cases;
  const std::vector<std::pair<int, int>> shapes = {{1, 1},   {1, 2},    {2, 1},   {3, 2},     {32, 32},  {75, 50},
                                                   {50, 75}, {500, 375}, {1, 500}, {500, 1},  {640, 17}, {17, 640},
                                                   {224, 224}, {1000, 999}, {7, 9}, {301, 200}};
  TrainTransform other;
  other.scale = {0.3, 0.6};
  other.ratio = {0.5, 2.5};
  other.flip_probability = 0.25;
  const std::uint64_t key0 = rng::make_key(77, rng::Stream::kAugment, 999);
  for (std::size_t s = 0; s < shapes.size(); ++s) {
    for (int r = 0; r < 60; ++r) {
      Case c{shapes[s].first, shapes[s].second, augment_draws(augment_key(11, static_cast<std::int64_t>(s), r)),
             r % 3 == 2 ? other : TrainTransform{}};
      cases.push_back(c);
    }
    const double hi = 1.0 - 1.0 / 9007199254740992.0;  // the largest uniform
    for (const double su : {0.0, hi, 0.5}) {
      for (const double ru : {0.0, hi, 0.5}) {
        cases.push_back({shapes[s].first, shapes[s].second, constant_draws(su, ru, 0.0, hi, 0.5), TrainTransform{}});
        cases.push_back({shapes[s].first, shapes[s].second, constant_draws(su, ru, hi, 0.0, hi), other});
      }
    }
    // Per-attempt draws mixing failures and a late success.
    std::array<double, kAugmentDraws> u = augment_draws(rng::bits(key0, s));
    for (int k = 0; k < 7; ++k) u[2 * k] = hi, u[2 * k + 1] = (k % 2) ? hi : 0.0;
    cases.push_back({shapes[s].first, shapes[s].second, u, TrainTransform{}});
  }
  nlohmann::json in = nlohmann::json::array();
  for (const Case& c : cases) {
    in.push_back({{"width", c.width}, {"height", c.height}, {"u", c.u}, {"scale", c.t.scale}, {"ratio", c.t.ratio},
                  {"p", c.t.flip_probability}});
  }
  const std::string dir = fresh_dir("oracle");
  std::ofstream(dir + "/cases.json") << in.dump();
  const std::optional<std::string> out = run_train_oracle("params " + quote(dir + "/cases.json"));
  if (!out) GTEST_SKIP() << "/usr/bin/python3 with torch and torchvision is missing";
  const nlohmann::json ref = nlohmann::json::parse(*out);
  ASSERT_EQ(ref.size(), cases.size());
  int fallbacks = 0, late = 0, flips = 0;
  for (std::size_t k = 0; k < cases.size(); ++k) {
    const Case& c = cases[k];
    const CropParams p = train_crop_params(c.width, c.height, c.t, c.u);
    EXPECT_EQ(params_json(p), ref[k]) << "case " << k << ": " << c.width << "x" << c.height;
    fallbacks += p.attempt < 0;
    late += p.attempt > 0;
    flips += p.flip;
  }
  // The cases reach every branch.
  EXPECT_GT(fallbacks, 20);
  EXPECT_GT(late, 20);
  EXPECT_GT(flips, 100);
}

// The whole transform (crop, resize to 224, flip, ToTensor, Normalize) equal to torchvision's Compose run
// with the same draws, as float32 bit patterns, on upsampled CIFAR, a downsampled photo-like fixture, and
// greyscale and CMYK JPEGs.
TEST(TrainTransform, TensorMatchesTorchvisionCompose) {
  const std::vector<std::string> paths = {assets_path("cifar10-test-100/airplane/0000.jpg"),
                                          assets_path("cifar10-test-100/truck/0009.jpg"), fixture_path("rect.jpg"),
                                          fixture_path("grey.jpg"), fixture_path("cmyk.jpg"),
                                          fixture_path("progressive.jpg")};
  const TrainTransform t;
  nlohmann::json in = nlohmann::json::array();
  std::vector<std::uint64_t> keys;
  for (std::size_t k = 0; k < paths.size(); ++k) {
    keys.push_back(augment_key(2024, static_cast<std::int64_t>(k % 3), static_cast<std::int64_t>(k)));
    in.push_back({{"path", paths[k]}, {"size", t.size}, {"u", augment_draws(keys.back())}});
  }
  const std::string dir = fresh_dir("oracle");
  std::ofstream(dir + "/cases.json") << in.dump();
  const std::optional<std::string> out = run_train_oracle("transform " + quote(dir + "/cases.json") + " " + quote(dir));
  if (!out) GTEST_SKIP() << "/usr/bin/python3 with torch and torchvision is missing";
  const nlohmann::json ref = nlohmann::json::parse(*out);
  ASSERT_EQ(ref.size(), paths.size());
  for (std::size_t k = 0; k < paths.size(); ++k) {
    SCOPED_TRACE(paths[k]);
    const Image img = decode_image(paths[k]);
    const CropParams p = train_crop_params(img.width, img.height, t, keys[k]);
    EXPECT_EQ(params_json(p)["top"], ref[k]["top"]);
    EXPECT_EQ(params_json(p)["width"], ref[k]["width"]);
    const torch::Tensor x = apply_train_transform(img, t, keys[k]);
    const std::vector<std::uint8_t> raw = read_bytes(dir + "/" + ref[k]["file"].get<std::string>());
    ASSERT_EQ(raw.size(), static_cast<std::size_t>(x.numel()) * 4);
    EXPECT_EQ(std::memcmp(raw.data(), x.data_ptr<float>(), raw.size()), 0) << "tensor differs from torchvision";
  }
}

// Over many keyed draws: accepted crops have area fraction in [scale] and aspect in [ratio] up to the
// rounding of w and h; the flip frequency is p; crop positions spread over the free range.
TEST(TrainTransform, Statistics) {
  const TrainTransform t;
  const int W = 500, H = 375;
  const int n = 20000;
  int flips = 0, accepted = 0;
  double min_log_ratio = 1e9, max_log_ratio = -1e9, sum_top = 0.0;
  int top_range = 0;
  for (int id = 0; id < n; ++id) {
    const CropParams p = train_crop_params(W, H, t, augment_key(3, 1, id));
    flips += p.flip;
    ASSERT_TRUE(p.top >= 0 && p.left >= 0 && p.top + p.height <= H && p.left + p.width <= W);
    if (p.attempt < 0) continue;
    ++accepted;
    const double area = static_cast<double>(p.width) * p.height / (static_cast<double>(W) * H);
    // w and h are within 0.5 of their targets, and both are >= 100 here: < 1% relative error.
    EXPECT_GE(area, 0.08 * 0.99);
    EXPECT_LE(area, 1.0);
    const double ratio = static_cast<double>(p.width) / p.height;
    EXPECT_GE(ratio, 0.75 * 0.99);
    EXPECT_LE(ratio, 4.0 / 3.0 * 1.01);
    min_log_ratio = std::min(min_log_ratio, std::log(ratio));
    max_log_ratio = std::max(max_log_ratio, std::log(ratio));
    if (H > p.height) {
      sum_top += static_cast<double>(p.top) / (H - p.height);
      ++top_range;
    }
  }
  EXPECT_GT(accepted, n * 0.99);  // at 4:3 the first attempts rarely all fail
  // 5 standard deviations of a binomial(20000, 0.5) frequency: 0.0177.
  EXPECT_NEAR(static_cast<double>(flips) / n, 0.5, 0.0177);
  EXPECT_LT(min_log_ratio, std::log(0.75) + 0.01);
  EXPECT_GT(max_log_ratio, std::log(4.0 / 3.0) - 0.01);
  EXPECT_NEAR(sum_top / top_range, 0.5, 0.02);

  TrainTransform never;
  never.flip_probability = 0.0;
  TrainTransform always;
  always.flip_probability = 1.0;
  for (int id = 0; id < 200; ++id) {
    EXPECT_FALSE(train_crop_params(W, H, never, augment_key(3, 1, id)).flip);
    EXPECT_TRUE(train_crop_params(W, H, always, augment_key(3, 1, id)).flip);
  }
}

// (seed, epoch, id) fixes the augmentation; another epoch, id or seed changes it.
TEST(TrainTransform, KeyedBySeedEpochAndSample) {
  const Image img = decode_image(fixture_path("rect.jpg"));
  TrainTransform t;
  t.size = 32;
  const torch::Tensor a = apply_train_transform(img, t, augment_key(1, 2, 3));
  const torch::Tensor b = apply_train_transform(img, t, augment_key(1, 2, 3));
  EXPECT_TRUE(torch::equal(a, b));
  int epoch_differs = 0, id_differs = 0, seed_differs = 0;
  for (int id = 0; id < 50; ++id) {
    const CropParams p = train_crop_params(75, 50, t, augment_key(1, 2, id));
    auto same = [&](const CropParams& q) {
      return p.top == q.top && p.left == q.left && p.width == q.width && p.height == q.height && p.flip == q.flip;
    };
    epoch_differs += !same(train_crop_params(75, 50, t, augment_key(1, 3, id)));
    id_differs += !same(train_crop_params(75, 50, t, augment_key(1, 2, id + 1000)));
    seed_differs += !same(train_crop_params(75, 50, t, augment_key(2, 2, id)));
  }
  EXPECT_GE(epoch_differs, 48);
  EXPECT_GE(id_differs, 48);
  EXPECT_GE(seed_differs, 48);
  EXPECT_FALSE(torch::equal(a, apply_train_transform(img, t, augment_key(1, 3, 3))));
}

TEST(TrainTransform, FlipMirrorsColumns) {
  const Image img = decode_image(fixture_path("rect.jpg"));
  CropParams p{3, 5, 40, 60, false, 0};
  const Image plain = apply_train_geometry(img, p, 17);
  p.flip = true;
  const Image mirrored = apply_train_geometry(img, p, 17);
  for (int y = 0; y < 17; ++y) {
    for (int x = 0; x < 17; ++x) {
      for (int c = 0; c < 3; ++c) ASSERT_EQ(mirrored.at(y, x, c), plain.at(y, 16 - x, c));
    }
  }
  // A crop of a whole square image at its own size is the image itself.
  const Image sq = center_crop(img, 50, 50);
  EXPECT_TRUE(apply_train_geometry(sq, CropParams{0, 0, 50, 50, false, 0}, 50).pixels == sq.pixels);
}

TEST(TrainTransform, Errors) {
  const Image img = decode_image(fixture_path("rect.jpg"));
  auto message = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  TrainTransform t;
  t.size = 0;
  EXPECT_NE(message([&] { t.validate(); }).find("size"), std::string::npos);
  t = {};
  t.scale = {0.5, 0.1};
  EXPECT_NE(message([&] { apply_train_transform(img, t, 1); }).find("scale"), std::string::npos);
  t = {};
  t.ratio = {0.0, 1.0};
  EXPECT_NE(message([&] { t.validate(); }).find("ratio"), std::string::npos);
  t = {};
  t.flip_probability = 1.5;
  EXPECT_NE(message([&] { t.validate(); }).find("flip_probability"), std::string::npos);
  EXPECT_NE(message([&] { apply_train_geometry(img, CropParams{10, 0, 41, 10, false, 0}, 8); }).find("not inside"),
            std::string::npos);
  EXPECT_NE(message([&] { train_crop_params(0, 5, TrainTransform{}, 1); }).find("non-empty"), std::string::npos);
  // Edges torchvision accepts: a zero lower scale; crops far larger than the image (every attempt fails, no
  // overflow) fall back to the central crop.
  t = {};
  t.scale = {0.0, 1.0};
  EXPECT_NO_THROW(t.validate());
  t.scale = {1e20, 1e30};
  const CropParams p = train_crop_params(75, 50, t, 7);
  EXPECT_EQ(p.attempt, -1);
  EXPECT_EQ(params_json(p), nlohmann::json({{"top", 0}, {"left", 4}, {"height", 50}, {"width", 67}, {"flip", p.flip}}));
}

// augmented_batch on the CIFAR assets: shapes, labels, each sample its own keyed transform, and the same
// tensor whatever the decoding thread count.
TEST(TrainTransform, AugmentedBatchFromImageFolder) {
  ImageFolderOptions one;
  one.num_threads = 1;
  ImageFolderOptions four;
  four.num_threads = 4;
  const ImageFolderDataset ds1(assets_path("cifar10-test-100"), one);
  const ImageFolderDataset ds4(assets_path("cifar10-test-100"), four);
  TrainTransform t;
  t.size = 48;
  const std::vector<std::int64_t> ids = {5, 999, 120, 450, 451, 0, 777};
  const Batch a = augmented_batch(ds1, ids, t, 42, 3);
  const Batch b = augmented_batch(ds4, ids, t, 42, 3);
  ASSERT_EQ(a.inputs.sizes(), torch::IntArrayRef({7, 3, 48, 48}));
  EXPECT_TRUE(torch::equal(a.inputs, b.inputs));
  EXPECT_EQ(a.sample_ids, ids);
  for (std::size_t k = 0; k < ids.size(); ++k) {
    EXPECT_EQ(a.labels[static_cast<std::int64_t>(k)].item<std::int64_t>(), ds1.label(ids[k]));
    const torch::Tensor one_sample =
        apply_train_transform(decode_image(ds1.file(ids[k])), t, augment_key(42, 3, ids[k]));
    EXPECT_TRUE(torch::equal(a.inputs[static_cast<std::int64_t>(k)], one_sample)) << "sample " << ids[k];
  }
  // Order within the batch does not change a sample's augmentation.
  const Batch c = augmented_batch(ds4, {ids[3], ids[0]}, t, 42, 3);
  EXPECT_TRUE(torch::equal(c.inputs[1], a.inputs[0]));
  EXPECT_FALSE(torch::equal(augmented_batch(ds4, ids, t, 42, 4).inputs, a.inputs));
  EXPECT_EQ(augmented_batch(ds1, {}, t, 42, 3).inputs.sizes(), torch::IntArrayRef({0, 3, 48, 48}));
}

}  // namespace
}  // namespace hessgap::data
