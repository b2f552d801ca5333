// Label noise. Oracles: closed forms (m = int(rho n) per chunk, flips are 1 - y), the full-set result for
// any subset, order or rank split of the queries, and the binomial expectation rho (K-1)/K of the
// realised flip rate.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "data/glue.h"
#include "data/label_noise.h"
#include "data/wordpiece_tokenizer.h"
#include "test_helpers.h"
#include "tests/support/error_of.h"
#include "util/error.h"
#include "util/rng.h"

namespace hessgap::data {
namespace {
using namespace testing;
using Mode = LabelNoiseOptions::Mode;

using ::hessgap::testing::error_of;  // tests/support/error_of.h

std::vector<std::int64_t> iota(std::int64_t n, std::int64_t start = 0) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), start);
  return v;
}

// Deterministic clean labels in [0, K).
std::vector<std::int64_t> clean_labels(const std::vector<std::int64_t>& ids, std::int64_t k) {
  std::vector<std::int64_t> out;
  for (std::int64_t id : ids) out.push_back((id * 7 + 3) % k);
  return out;
}

LabelNoiseOptions opts(double rate, Mode mode = Mode::kSymmetric, std::uint64_t seed = 0, std::int64_t chunk = 0) {
  LabelNoiseOptions o;
  o.rate = rate;
  o.mode = mode;
  o.seed = seed;
  o.chunk_size = chunk;
  return o;
}

TEST(LabelNoise, CountIsIntRhoN) {
  for (const std::int64_t n : {0, 1, 7, 1000, 4999}) {
    for (const double rate : {0.0, 0.1, 0.2, 0.29, 0.4, 0.6, 0.8, 1.0}) {
      const LabelNoise noise(iota(n), 10, opts(rate));
      const auto m = static_cast<std::int64_t>(rate * static_cast<double>(n));
      EXPECT_EQ(noise.num_selected(), m) << "n " << n << " rate " << rate;
      std::int64_t count = 0;
      for (std::int64_t id = 0; id < n; ++id) count += noise.selected(id);
      EXPECT_EQ(count, m);
    }
  }
  // 0.29 * 100 = 28.999999999999996 in doubles: int() gives 28, as in the Python reference.
  EXPECT_EQ(LabelNoise(iota(100), 2, opts(0.29)).num_selected(), 28);
}

TEST(LabelNoise, ChunksOfThousandAsTheTextReference) {
  // 2500 ids in chunks of 1000: int(0.3 * 1000) + int(0.3 * 1000) + int(0.3 * 500) = 750, per chunk exactly.
  const std::vector<std::int64_t> ids = iota(2500, 100);
  const LabelNoise noise(ids, 2, opts(0.3, Mode::kFlip, 1024, 1000));
  EXPECT_EQ(noise.num_selected(), 750);
  for (int c = 0; c < 3; ++c) {
    std::int64_t count = 0;
    for (std::int64_t k = c * 1000; k < std::min<std::int64_t>(2500, (c + 1) * 1000); ++k) {
      count += noise.selected(ids[static_cast<std::size_t>(k)]);
    }
    EXPECT_EQ(count, c < 2 ? 300 : 150) << "chunk " << c;
  }
}

TEST(LabelNoise, FlipChangesExactlyTheSelected) {
  const std::vector<std::int64_t> ids = iota(3000);
  const std::vector<std::int64_t> clean = clean_labels(ids, 2);
  const LabelNoise noise(ids, 2, opts(0.4, Mode::kFlip, 1024));
  const NoisyLabels out = apply_label_noise(noise, ids, clean);
  std::int64_t changed = 0;
  for (std::size_t k = 0; k < ids.size(); ++k) {
    EXPECT_EQ(out.labels[k], out.relabelled[k] ? 1 - clean[k] : clean[k]);
    changed += out.labels[k] != clean[k];
  }
  EXPECT_EQ(changed, 1200);
}

TEST(LabelNoise, SameResultForAnySubsetOrderOrRankSplit) {
  const std::int64_t n = 5000, k = 10;
  // Training ids are a permuted subset of a larger dataset (the rest is validation).
  std::vector<std::int64_t> all(static_cast<std::size_t>(n + 1000));
  rng::permutation(all.data(), static_cast<std::int64_t>(all.size()), 42);
  const std::vector<std::int64_t> train(all.begin(), all.begin() + n);
  const std::vector<std::int64_t> clean = clean_labels(train, k);
  const LabelNoise noise(train, k, opts(0.6, Mode::kSymmetric, 7));
  const NoisyLabels full = apply_label_noise(noise, train, clean);

  // A second object built independently (another rank) agrees everywhere.
  const LabelNoise again(train, k, opts(0.6, Mode::kSymmetric, 7));
  EXPECT_EQ(apply_label_noise(again, train, clean).labels, full.labels);

  // Any number of ranks, each querying a strided shard, in reverse order, batch by batch.
  for (const std::size_t ranks : {1u, 2u, 3u, 4u, 7u}) {
    std::vector<std::int64_t> joined(train.size(), -1);
    std::vector<std::uint8_t> mask(train.size(), 2);
    for (std::size_t r = 0; r < ranks; ++r) {
      std::vector<std::size_t> positions;
      for (std::size_t p = r; p < train.size(); p += ranks) positions.push_back(p);
      std::reverse(positions.begin(), positions.end());
      for (std::size_t b = 0; b < positions.size(); b += 8) {
        std::vector<std::int64_t> ids, labels;
        for (std::size_t q = b; q < std::min(positions.size(), b + 8); ++q) {
          ids.push_back(train[positions[q]]);
          labels.push_back(clean[positions[q]]);
        }
        const NoisyLabels part = apply_label_noise(noise, ids, labels);
        for (std::size_t q = 0; q < ids.size(); ++q) {
          joined[positions[b + q]] = part.labels[q];
          mask[positions[b + q]] = part.relabelled[q];
        }
      }
    }
    EXPECT_EQ(joined, full.labels) << ranks << " ranks";
    EXPECT_EQ(mask, full.relabelled) << ranks << " ranks";
  }
  // Ids outside the training list keep their label.
  for (std::size_t p = static_cast<std::size_t>(n); p < all.size(); ++p) {
    EXPECT_FALSE(noise.selected(all[p]));
    EXPECT_EQ(noise.label(all[p], 3), 3);
  }
}

TEST(LabelNoise, RealisedRateIsRhoTimesKMinusOneOverK) {
  const std::int64_t n = 100000;
  const std::vector<std::int64_t> ids = iota(n);
  for (const std::int64_t k : {2, 5, 10}) {
    for (const double rate : {0.2, 0.4, 0.8}) {
      const std::vector<std::int64_t> clean = clean_labels(ids, k);
      const LabelNoise noise(ids, k, opts(rate, Mode::kSymmetric, 0));
      const NoisyLabels out = apply_label_noise(noise, ids, clean);
      const auto m = static_cast<double>(noise.num_selected());
      std::int64_t changed = 0;
      std::vector<std::int64_t> per_class(static_cast<std::size_t>(k), 0);
      for (std::size_t j = 0; j < ids.size(); ++j) {
        changed += out.labels[j] != clean[j];
        if (out.relabelled[j]) ++per_class[static_cast<std::size_t>(out.labels[j])];
      }
      // changed ~ Binomial(m, (K-1)/K); allow 6 standard deviations.
      const double p = static_cast<double>(k - 1) / static_cast<double>(k);
      EXPECT_NEAR(static_cast<double>(changed), m * p, 6.0 * std::sqrt(m * p * (1 - p)))
          << "K " << k << " rate " << rate;
      EXPECT_NEAR(static_cast<double>(changed) / static_cast<double>(n), rate * p, 0.01);
      // New labels uniform over all K classes.
      for (std::int64_t c = 0; c < k; ++c) {
        const double q = 1.0 / static_cast<double>(k);
        EXPECT_NEAR(static_cast<double>(per_class[static_cast<std::size_t>(c)]), m * q, 6.0 * std::sqrt(m * q * (1 - q)))
            << "class " << c;
      }
    }
  }
}

TEST(LabelNoise, SeedsGiveDifferentSelections) {
  const std::vector<std::int64_t> ids = iota(1000);
  const LabelNoise a(ids, 2, opts(0.5, Mode::kFlip, 0)), b(ids, 2, opts(0.5, Mode::kFlip, 1));
  std::int64_t both = 0;
  for (std::int64_t id : ids) both += a.selected(id) && b.selected(id);
  EXPECT_NEAR(static_cast<double>(both), 250.0, 6.0 * std::sqrt(250.0 * 0.5));  // independent halves overlap ~1/4
}

TEST(LabelNoise, Errors) {
  const std::vector<std::int64_t> ids = iota(10);
  EXPECT_NE(error_of([&] { LabelNoise(ids, 2, opts(1.5)); }).find("rate must be in [0, 1], got 1.5"), std::string::npos);
  EXPECT_NE(error_of([&] { LabelNoise(ids, 2, opts(NAN)); }).find("rate must be in [0, 1]"), std::string::npos);
  EXPECT_NE(error_of([&] { LabelNoise(ids, 3, opts(0.1, Mode::kFlip)); }).find("flipping needs 2 classes, got 3"),
            std::string::npos);
  EXPECT_NE(error_of([&] { LabelNoise({1, 2, 1}, 2, opts(0.1)); }).find("id 1 is listed twice"), std::string::npos);
  EXPECT_NE(error_of([&] { LabelNoise({-1}, 2, opts(0.1)); }).find("negative"), std::string::npos);
  EXPECT_NE(error_of([&] { LabelNoise(ids, 0, opts(0.1)); }).find("number of classes"), std::string::npos);
  const LabelNoise all(ids, 2, opts(1.0, Mode::kFlip));
  EXPECT_NE(error_of([&] { all.label(0, 5); }).find("sample 0 has label 5 (expected 0 or 1)"), std::string::npos);
  EXPECT_NE(error_of([&] { apply_label_noise(all, {0, 1}, {0}); }).find("2 ids but 1 labels"), std::string::npos);
}

// SST-2 fixture rows with 20 % flipped labels in chunks of 1000 (the text reference's setting).
TEST(LabelNoise, NoisyGlueDataset) {
  GlueOptions options;
  options.task = "sst2";
  const auto tok = std::make_shared<const WordPieceTokenizer>(source_path("tests/fixtures/text/bert-base-uncased/vocab.txt"));
  const GlueDataset clean(source_path("tests/fixtures/text/glue/SST-2/train_head.tsv"), tok, options);
  const auto noise = std::make_shared<const LabelNoise>(iota(clean.size()), 2, opts(0.2, Mode::kFlip, 1024, 1000));
  const NoisyLabelDataset noisy(clean, noise);
  EXPECT_EQ(noise->num_selected(), 60);
  const Batch b = noisy.get_batch(iota(clean.size()));
  const Batch c = clean.get_batch(iota(clean.size()));
  EXPECT_TRUE(torch::equal(b.inputs, c.inputs));
  EXPECT_EQ(b.labels.ne(c.labels).sum().item<std::int64_t>(), 60);
  for (std::int64_t i = 0; i < clean.size(); ++i) {
    EXPECT_EQ(noisy.label(i), noise->selected(i) ? 1 - clean.label(i) : clean.label(i));
    EXPECT_EQ(b.labels[i].item<std::int64_t>(), noisy.label(i));
  }
  EXPECT_NE(noisy.describe().find("60 of 300 training labels relabelled"), std::string::npos) << noisy.describe();
}

}  // namespace
}  // namespace hessgap::data
