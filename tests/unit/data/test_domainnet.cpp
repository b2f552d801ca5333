// The .npy reader (numpy-written files, the real DomainNet weak-label files), DomainNet in the layout
// of domainnet.h and MIT-Indoor-67, on small trees written here (fixture PNG/JPEG files copied).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#include "data/domainnet.h"
#include "data/image.h"
#include "data/label_noise.h"
#include "data/mit_indoor.h"
#include "data/npy.h"
#include "data/registry.h"
#include "test_helpers.h"
#include "tests/support/error_of.h"
#include "util/error.h"
#include "util/rng.h"

namespace hessgap::data {
namespace {
using namespace testing;

using ::hessgap::testing::error_of;  // tests/support/error_of.h

std::string dn_fixture(const std::string& rel) { return source_path("tests/fixtures/domainnet/" + rel); }
std::string npy_case(const std::string& name) { return dn_fixture("npy_cases/" + name); }

// ---------------------------------------------------------------- .npy

TEST(Npy, DtypesShapesAndVersions) {
  const NpyArray a = read_npy(npy_case("i8_v1.npy"));
  EXPECT_EQ(a.descr, "<i8");
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{4}));
  EXPECT_EQ(a.as_int64(), (std::vector<std::int64_t>{3, -1, 0, 1LL << 40}));
  for (const char* v : {"i8_v2.npy", "i8_v3.npy"}) {
    EXPECT_EQ(read_npy_int_vector(npy_case(v)), (std::vector<std::int64_t>{5, 6, 7})) << v;
  }
  const NpyArray i4 = read_npy(npy_case("i4_2d.npy"));
  EXPECT_EQ(i4.shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(i4.item_size, 4u);
  EXPECT_EQ(i4.as_int64(), (std::vector<std::int64_t>{-2, -1, 0, 1, 2, 3}));
  EXPECT_EQ(read_npy(npy_case("u1.npy")).as_int64(), (std::vector<std::int64_t>{0, 7, 255}));
  EXPECT_EQ(read_npy(npy_case("b1.npy")).as_int64(), (std::vector<std::int64_t>{1, 0, 1}));
  EXPECT_EQ(read_npy(npy_case("b1.npy")).descr, "|b1");
  EXPECT_EQ(read_npy(npy_case("f4.npy")).as_double(), (std::vector<double>{0.5, -1.25}));
  const NpyArray f8 = read_npy(npy_case("f8.npy"));
  EXPECT_EQ(f8.shape, (std::vector<std::int64_t>{2, 1}));
  EXPECT_EQ(f8.as_double(), (std::vector<double>{1.5, 2.25}));
  const NpyArray s = read_npy(npy_case("scalar.npy"));
  EXPECT_TRUE(s.shape.empty());
  EXPECT_EQ(s.as_int64(), (std::vector<std::int64_t>{42}));
  EXPECT_EQ(read_npy(npy_case("empty.npy")).numel(), 0);
}

TEST(Npy, Errors) {
  EXPECT_NE(error_of([] { read_npy(npy_case("fortran.npy")); }).find("Fortran order"), std::string::npos);
  const std::string big = error_of([] { read_npy(npy_case("big.npy")); });
  EXPECT_NE(big.find("unsupported dtype '>i8'"), std::string::npos) << big;
  const std::string trunc = error_of([] { read_npy(npy_case("truncated.npy")); });
  EXPECT_NE(trunc.find("truncated.npy"), std::string::npos) << trunc;
  EXPECT_NE(trunc.find("expected 32 bytes of data, found 27"), std::string::npos) << trunc;
  EXPECT_NE(error_of([] { read_npy_int_vector(npy_case("i4_2d.npy")); }).find("1-D"), std::string::npos);
  EXPECT_NE(error_of([] { read_npy_int_vector(npy_case("f4.npy")); }).find("integer"), std::string::npos);
  EXPECT_NE(error_of([] { read_npy(npy_case("nope.npy")); }).find("nope.npy"), std::string::npos);

  const std::string dir = fresh_dir("npy");
  write_bytes(dir + "/magic.npy", {'x', 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0});
  EXPECT_NE(error_of([&] { read_npy(dir + "/magic.npy"); }).find("magic"), std::string::npos);
  auto with_header = [&](const std::string& name, const std::string& header) {
    std::vector<std::uint8_t> b{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<std::uint8_t>(header.size()), 0};
    b.insert(b.end(), header.begin(), header.end());
    write_bytes(dir + "/" + name, b);
    return dir + "/" + name;
  };
  // Keys in another order, double quotes, no trailing comma: still a valid dict.
  const std::string ok = with_header("ok.npy", "{\"shape\": (0,), \"fortran_order\": False, \"descr\": \"<f8\"}\n");
  EXPECT_EQ(read_npy(ok).shape, (std::vector<std::int64_t>{0}));
  const std::string missing = with_header("missing.npy", "{'descr': '<i8', 'shape': (1,), }\n");
  EXPECT_NE(error_of([&] { read_npy(missing); }).find("missing one of the keys"), std::string::npos);
  const std::string bad = with_header("bad.npy", "{'descr': '<i8', 'fortran_order': False, 'shape': (-1,), }\n");
  EXPECT_NE(error_of([&] { read_npy(bad); }).find("malformed header"), std::string::npos);
}

// The real weak-label files (the committed copy): lengths are the split sizes of SPEC.md §3.2.
TEST(Npy, DomainNetWeakLabelFiles) {
  const std::map<std::string, std::array<std::array<std::int64_t, 3>, 2>> sizes{
      {"clipart", {{{750, 250, 250}, {745, 249, 249}}}},    {"infograph", {{{858, 286, 287}, {867, 289, 289}}}},
      {"painting", {{{872, 291, 291}, {1044, 348, 348}}}},  {"quickdraw", {{{1500, 500, 500}, {1500, 500, 500}}}},
      {"real", {{{1943, 648, 648}, {1665, 555, 556}}}},     {"sketch", {{{732, 245, 245}, {733, 245, 245}}}}};
  const char* parts[3] = {"train", "val", "test"};
  for (const auto& [domain, per_sample] : sizes) {
    for (int s = 0; s < 2; ++s) {
      for (int p = 0; p < 3; ++p) {
        const std::string f = dn_fixture("sample_" + std::to_string(s + 1) + "/" + parts[p] + "_" + domain + "_mv_labels.npy");
        const std::vector<std::int64_t> v = read_npy_int_vector(f);
        EXPECT_EQ(static_cast<std::int64_t>(v.size()), per_sample[s][p]) << f;
        for (std::int64_t x : v) ASSERT_TRUE(x >= 0 && x < 5) << f;
      }
    }
  }
  // Class counts of sample 1 clipart train (SPEC.md §6.2).
  std::vector<int> counts(5, 0);
  for (std::int64_t x : read_npy_int_vector(dn_fixture("sample_1/train_clipart_mv_labels.npy"))) ++counts[x];
  EXPECT_EQ(counts, (std::vector<int>{155, 119, 207, 154, 115}));
}

// ---------------------------------------------------------------- DomainNet

void write_npy_i8(const std::string& path, const std::vector<std::int64_t>& v) {
  std::string header = "{'descr': '<i8', 'fortran_order': False, 'shape': (" + std::to_string(v.size()) + ",), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::vector<std::uint8_t> b{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<std::uint8_t>(header.size()), 0};
  b.insert(b.end(), header.begin(), header.end());
  const auto* p = reinterpret_cast<const std::uint8_t*>(v.data());
  b.insert(b.end(), p, p + v.size() * 8);
  write_bytes(path, b);
}

// A partition folder of sample 1 (classes sea_turtle vase whale bird violin) with the given true class
// names, images alternating between two 9 x 7 RGB fixtures, and optional weak labels.
void write_partition(const std::string& root, const std::string& part, const std::vector<std::string>& names,
                     const std::vector<std::int64_t>* weak) {
  fs::create_directories(root + "/sample_1/" + part);
  fs::copy_file(dn_fixture("sample_classes_1.txt"), root + "/sample_classes_1.txt", fs::copy_options::skip_existing);
  std::ofstream labels(root + "/sample_1/" + part + "/labels.txt");
  for (std::size_t i = 0; i < names.size(); ++i) {
    labels << names[i] << "\n";
    char buf[32];
    std::snprintf(buf, sizeof(buf), "/%06zu.png", i);
    fs::copy_file(fixture_path(i % 2 ? "rgb16.png" : "interlaced.png"), root + "/sample_1/" + part + buf);
  }
  if (weak) write_npy_i8(root + "/sample_1/" + part + "_mv_labels.npy", *weak);
}

// Population mean / std of data/255 over the pixels of the given files, in double.
std::array<std::array<double, 3>, 2> stats_of(const std::vector<std::string>& files) {
  std::array<double, 3> s{}, q{};
  double n = 0;
  for (const std::string& f : files) {
    const Image img = decode_image(f);
    for (int y = 0; y < img.height; ++y) {
      for (int x = 0; x < img.width; ++x) {
        for (int c = 0; c < 3; ++c) {
          const double v = img.at(y, x, c) / 255.0;
          s[c] += v;
          q[c] += v * v;
        }
      }
    }
    n += img.width * img.height;
  }
  std::array<std::array<double, 3>, 2> out{};
  for (int c = 0; c < 3; ++c) {
    out[0][c] = s[c] / n;
    out[1][c] = std::sqrt(q[c] / n - out[0][c] * out[0][c]);
  }
  return out;
}

TEST(DomainNet, LabelsStatisticsAndBatches) {
  const std::string root = fresh_dir("dn");
  const std::vector<std::string> train_names{"whale", "sea_turtle", "violin", "bird", "whale", "vase"};
  const std::vector<std::int64_t> weak{2, 0, 4, 2, 1, 1};  // 2 of 6 differ from the true labels
  write_partition(root, "train_clipart", train_names, &weak);
  write_partition(root, "test_clipart", {"vase", "bird", "bird"}, nullptr);

  DomainNetOptions o;
  o.resize = 0;
  const DomainNetDataset train(root, o);
  ASSERT_EQ(train.size(), 6);
  EXPECT_EQ(train.num_classes(), 5);
  EXPECT_EQ(train.class_names(), (std::vector<std::string>{"sea_turtle", "vase", "whale", "bird", "violin"}));
  EXPECT_EQ(train.label_source(), "weak");
  for (int i = 0; i < 6; ++i) EXPECT_EQ(train.label(i), weak[i]);
  EXPECT_EQ(train.true_label(0), 2);
  EXPECT_EQ(train.true_label(3), 3);
  EXPECT_EQ(train.true_label(5), 1);
  EXPECT_DOUBLE_EQ(train.weak_noise_rate(), 2.0 / 6.0);

  // Statistics of the train images, used by every partition.
  std::vector<std::string> files;
  for (int i = 0; i < 6; ++i) files.push_back(train.file(i));
  const auto expected = stats_of(files);
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(train.transform().mean[c], expected[0][c], 1e-12);
    EXPECT_NEAR(train.transform().stddev[c], expected[1][c], 1e-12);
  }
  const Batch b = train.get_batch({4, 1});
  ASSERT_EQ(b.inputs.sizes(), torch::IntArrayRef({2, 3, 7, 9}));
  EXPECT_TRUE(torch::equal(b.labels, torch::tensor({1, 0}, torch::kInt64)));
  EXPECT_EQ(b.sample_ids, (std::vector<std::int64_t>{4, 1}));
  EXPECT_TRUE(torch::equal(b.inputs[0], apply_eval_transform(decode_image(train.file(4)), train.transform())));

  // label_source true; test partition defaults to true labels and uses the train statistics; resize 224.
  o.label_source = "true";
  EXPECT_EQ(DomainNetDataset(root, o).label(0), 2);
  DomainNetOptions t;
  t.partition = "test";
  const DomainNetDataset test(root, t);
  EXPECT_EQ(test.label_source(), "true");
  EXPECT_FALSE(test.has_weak_labels());
  EXPECT_EQ(test.label(0), 1);
  EXPECT_EQ(test.label(2), 3);
  EXPECT_EQ(test.transform().mean, train.transform().mean);
  EXPECT_EQ(test.get_batch({1}).inputs.sizes(), torch::IntArrayRef({1, 3, 224, 288}));
  EXPECT_NE(error_of([&] { test.weak_noise_rate(); }).find("no weak labels"), std::string::npos);

  // max_per_class on the used (weak) labels: classes 2, 0, 4, 2(skip), 1, 1(skip).
  o.label_source = "";
  o.max_per_class = 1;
  const DomainNetDataset capped(root, o);
  EXPECT_EQ(capped.size(), 4);
  EXPECT_EQ(capped.label(3), 1);
  EXPECT_DOUBLE_EQ(capped.weak_noise_rate(), 1.0 / 4.0);

  // Through the registry.
  DatasetSpec spec;
  spec.kind = "domainnet";
  spec.path = root;
  spec.split = "train";
  spec.normalize = "domain";
  spec.resize = 224;
  const auto ds = open_dataset(spec);
  EXPECT_EQ(ds->size(), 6);
  EXPECT_EQ(ds->label(2), 4);
  spec.normalize = "imagenet";
  EXPECT_NE(error_of([&] { open_dataset(spec); }).find("normalize must be 'domain'"), std::string::npos);
}

// Weak labels are audited against the true ones; synthetic noise (the reference's --synthetic_noise) goes on the
// true labels, keyed by sample id.
TEST(DomainNet, LabelAuditsAndSyntheticNoise) {
  const std::string root = fresh_dir("dnnoise");
  const std::vector<std::string> names{"whale", "sea_turtle", "violin", "bird", "whale", "vase"};
  const std::vector<std::int64_t> truth{2, 0, 4, 3, 2, 1};
  const std::vector<std::int64_t> weak{2, 0, 4, 2, 1, 1};
  write_partition(root, "train_clipart", names, &weak);
  DatasetSpec spec;
  spec.kind = "domainnet";
  spec.path = root;
  spec.split = "train";
  spec.normalize = "domain";

  const LabelAudit w = audit_labels(*open_dataset(spec));
  EXPECT_EQ(w.source, "weak");
  EXPECT_EQ(w.clean, truth);
  EXPECT_EQ(w.used, weak);
  EXPECT_EQ(w.relabelled, (std::vector<std::uint8_t>{0, 0, 0, 1, 1, 0}));
  EXPECT_EQ(w.num_noisy, 2);
  EXPECT_DOUBLE_EQ(w.realised_rate, 2.0 / 6.0);
  spec.limit = 4;  // under a subset the weak labels are still audited as weak, against the true ones
  const LabelAudit ws = audit_labels(*open_dataset(spec));
  EXPECT_EQ(ws.source, "weak");
  EXPECT_EQ(ws.clean, std::vector<std::int64_t>(truth.begin(), truth.begin() + 4));
  EXPECT_EQ(ws.used, std::vector<std::int64_t>(weak.begin(), weak.begin() + 4));
  EXPECT_EQ(ws.num_noisy, 1);
  spec.limit = 0;

  spec.noise_rate = 0.5;
  spec.noise_seed = 11;
  const auto noisy = open_dataset(spec);
  const LabelAudit a = audit_labels(*noisy);
  EXPECT_EQ(a.source, "synthetic");
  EXPECT_EQ(a.clean, truth);  // the true labels, not the weak ones
  EXPECT_EQ(a.noise.mode, LabelNoiseOptions::Mode::kSymmetric);
  EXPECT_EQ(a.noise.chunk_size, 0);
  std::int64_t selected = 0;
  for (std::size_t i = 0; i < truth.size(); ++i) {
    selected += a.relabelled[i];
    if (!a.relabelled[i]) EXPECT_EQ(a.used[i], truth[i]) << i;
    EXPECT_EQ(noisy->label(static_cast<std::int64_t>(i)), a.used[i]);
  }
  EXPECT_EQ(selected, 3);  // floor(0.5 * 6)
  // The same labels as LabelNoise over ids 0..5 with these options, drawn directly.
  LabelNoiseOptions lo;
  lo.rate = 0.5;
  lo.seed = 11;
  const LabelNoise direct({0, 1, 2, 3, 4, 5}, 5, lo);
  for (std::int64_t i = 0; i < 6; ++i) EXPECT_EQ(a.used[static_cast<std::size_t>(i)], direct.label(i, truth[static_cast<std::size_t>(i)]));
  const Batch b = noisy->get_batch({5, 0});
  EXPECT_EQ(b.labels[0].item<std::int64_t>(), a.used[5]);

  spec.label_source = "weak";
  EXPECT_NE(error_of([&] { open_dataset(spec); }).find("goes on the true labels"), std::string::npos);
}

TEST(DomainNet, LayoutErrors) {
  const std::string root = fresh_dir("dnerr");
  DomainNetOptions o;
  EXPECT_NE(error_of([&] { DomainNetDataset(root, o); }).find("sample_classes_1.txt"), std::string::npos);
  const std::vector<std::int64_t> short_weak{0, 1};
  write_partition(root, "train_clipart", {"whale", "vase", "bird"}, &short_weak);
  const std::string mismatch = error_of([&] { DomainNetDataset(root, o); });
  EXPECT_NE(mismatch.find("train_clipart_mv_labels.npy"), std::string::npos) << mismatch;
  EXPECT_NE(mismatch.find("3 images"), std::string::npos) << mismatch;
  EXPECT_NE(mismatch.find("but 2 labels"), std::string::npos) << mismatch;
  o.label_source = "true";  // the mv file is read (and checked) whenever it exists
  EXPECT_NE(error_of([&] { DomainNetDataset(root, o); }).find("but 2 labels"), std::string::npos);
  fs::remove(root + "/sample_1/train_clipart_mv_labels.npy");
  EXPECT_EQ(DomainNetDataset(root, o).size(), 3);
  o.label_source = "";  // weak by default on train: required
  EXPECT_NE(error_of([&] { DomainNetDataset(root, o); }).find("weak labels '" + root + "/sample_1/train_clipart_mv_labels.npy' do not exist"),
            std::string::npos);
  o.label_source = "true";
  const std::vector<std::int64_t> out_of_range{0, 5, 1};
  write_npy_i8(root + "/sample_1/train_clipart_mv_labels.npy", out_of_range);
  EXPECT_NE(error_of([&] { DomainNetDataset(root, o); }).find("label 5 at index 1 is outside [0, 5)"), std::string::npos);
  fs::remove(root + "/sample_1/train_clipart_mv_labels.npy");

  // A missing image, an extra image, an unknown class name, a missing folder, bad options.
  const std::string folder = root + "/sample_1/train_clipart";
  fs::rename(folder + "/000001.png", folder + "/000003.png");
  const std::string missing = error_of([&] { DomainNetDataset(root, o); });
  EXPECT_NE(missing.find("'" + folder + "/000001.png' does not exist"), std::string::npos) << missing;
  fs::copy_file(fixture_path("rgb16.png"), folder + "/000001.png");
  const std::string extra = error_of([&] { DomainNetDataset(root, o); });
  EXPECT_NE(extra.find("000003.png"), std::string::npos) << extra;
  EXPECT_NE(extra.find("lists only 3"), std::string::npos) << extra;
  fs::remove(folder + "/000003.png");
  EXPECT_EQ(DomainNetDataset(root, o).size(), 3);
  {
    std::ofstream(folder + "/labels.txt") << "whale\nzebra\nbird\n";
  }
  const std::string unknown = error_of([&] { DomainNetDataset(root, o); });
  EXPECT_NE(unknown.find(folder + "/labels.txt', line 2: class 'zebra'"), std::string::npos) << unknown;
  o.partition = "val";
  EXPECT_NE(error_of([&] { DomainNetDataset(root, o); }).find("val_clipart' does not exist"), std::string::npos);
  o.partition = "dev";
  EXPECT_NE(error_of([&] { DomainNetDataset(root, o); }).find("unknown partition 'dev'"), std::string::npos);
  o.partition = "train";
  o.sample = 3;
  EXPECT_NE(error_of([&] { DomainNetDataset(root, o); }).find("sample must be 1 or 2"), std::string::npos);
}

// The converter turns a pickle like the reference's into the layout; its norm_stats.json (numpy's
// own mean/std) agrees with the statistics hessgap computes from the PNGs.
TEST(DomainNet, ConverterFromPickle) {
  if (!fs::exists("/usr/bin/python3") ||
      std::system("/usr/bin/python3 -c 'import numpy, PIL' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "/usr/bin/python3 with numpy and Pillow is missing";
  }
  const std::string src = fresh_dir("src"), dst = fresh_dir("dst");
  fs::create_directories(src + "/sample_1");
  fs::copy_file(dn_fixture("sample_classes_1.txt"), src + "/sample_classes_1.txt");
  const std::string make =
      "/usr/bin/python3 -c \"import numpy as np, pickle\n"
      "r = np.random.RandomState(0)\n"
      "for part, n in (('train', 5), ('test', 2)):\n"
      "    d = {'data': r.randint(0, 256, size=(n, 6, 4, 3)).astype(np.uint8),\n"
      "         'labels': ['vase', 'bird', 'whale', 'vase', 'violin'][:n]}\n"
      "    pickle.dump(d, open('" + src + "/sample_1/%s_sketch.pkl' % part, 'wb'))\n"
      "np.save('" + src + "/sample_1/train_sketch_mv_labels.npy', np.array([1, 3, 3, 0, 4]))\n\"";
  ASSERT_EQ(std::system(make.c_str()), 0);
  const std::string conv = "/usr/bin/python3 " + source_path("analysis/tools/domainnet_from_pickles.py") + " " + src +
                           " " + dst + " --samples 1 --domains sketch >/dev/null 2>&1";
  ASSERT_EQ(std::system(conv.c_str()), 0);
  DomainNetOptions o;
  o.domain = "sketch";
  o.resize = 0;
  const DomainNetDataset train(dst, o);
  ASSERT_EQ(train.size(), 5);
  EXPECT_EQ(train.true_label(0), 1);
  EXPECT_EQ(train.true_label(4), 4);
  EXPECT_EQ(train.label(1), 3);
  EXPECT_DOUBLE_EQ(train.weak_noise_rate(), 2.0 / 5.0);  // weak 1 3 3 0 4 vs true 1 3 2 1 4
  EXPECT_EQ(train.get_batch({0}).inputs.sizes(), torch::IntArrayRef({1, 3, 6, 4}));
  const auto from_json = DomainNetDataset::folder_stats(dst + "/sample_1/train_sketch");
  fs::remove(dst + "/sample_1/train_sketch/norm_stats.json");
  const auto computed = DomainNetDataset::folder_stats(dst + "/sample_1/train_sketch/.");  // new cache key
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(from_json[0][c], computed[0][c], 1e-14);
    EXPECT_NEAR(from_json[1][c], computed[1][c], 1e-14);
  }
  EXPECT_EQ(train.transform().mean, from_json[0]);
  o.partition = "test";
  EXPECT_EQ(DomainNetDataset(dst, o).size(), 2);
}

// ---------------------------------------------------------------- MIT-Indoor-67

// Images/<class>/<file> for classes "kitchen" (3 files), "bar" (2), "airport_inside" (1) plus the lists.
std::string write_indoor(const std::string& root) {
  const std::map<std::string, std::vector<std::string>> files{
      {"kitchen", {"k1.jpg", "k2.jpg", "k3.jpg"}}, {"bar", {"b1.jpg", "b2.jpg"}}, {"airport_inside", {"a1.jpg"}}};
  for (const auto& [cls, names] : files) {
    fs::create_directories(root + "/Images/" + cls);
    for (const std::string& n : names) fs::copy_file(fixture_path("rect.jpg"), root + "/Images/" + cls + "/" + n);
  }
  std::ofstream(root + "/TrainImages.txt") << "kitchen/k2.jpg\nbar/b1.jpg\nkitchen/k1.jpg\nairport_inside/a1.jpg\r\n\n";
  std::ofstream(root + "/TestImages.txt") << "bar/b2.jpg\nkitchen/k3.jpg\n";
  return root;
}

TEST(MitIndoor, SplitsAndLabels) {
  const std::string root = write_indoor(fresh_dir("indoor"));
  MitIndoorOptions o;
  o.valid_split = 0.5;
  const MitIndoorDataset test(root, "test", o);
  EXPECT_EQ(test.class_names(), (std::vector<std::string>{"airport_inside", "bar", "kitchen"}));
  ASSERT_EQ(test.size(), 2);
  EXPECT_EQ(test.label(0), 1);
  EXPECT_EQ(test.label(1), 2);
  EXPECT_EQ(test.file(1), root + "/Images/kitchen/k3.jpg");

  // val = entries perm[0, int(4 * 0.5)) of the keyed permutation; train = the rest; list order kept.
  std::vector<std::int64_t> perm(4);
  rng::permutation(perm.data(), 4, rng::make_key(0, rng::Stream::kShuffle, MitIndoorDataset::kSplitTag));
  std::vector<std::int64_t> val_pos{perm[0], perm[1]};
  std::sort(val_pos.begin(), val_pos.end());
  const MitIndoorDataset val(root, "val", o), train(root, "train", o);
  EXPECT_EQ(val.list_positions(), val_pos);
  ASSERT_EQ(train.size(), 2);
  ASSERT_EQ(val.size(), 2);
  const std::vector<std::int64_t> train_labels{2, 1, 2, 0};  // of the list lines
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(val.label(i), train_labels[static_cast<std::size_t>(val.list_positions()[i])]);
    EXPECT_EQ(train.label(i), train_labels[static_cast<std::size_t>(train.list_positions()[i])]);
    EXPECT_EQ(std::count(val_pos.begin(), val_pos.end(), train.list_positions()[i]), 0);
  }
  // Another seed may pick another subset; valid_split 0 keeps all of train.
  o.valid_split = 0.0;
  EXPECT_EQ(MitIndoorDataset(root, "train", o).size(), 4);
  EXPECT_EQ(MitIndoorDataset(root, "val", o).size(), 0);

  // Batches and the registry (reference eval transform).
  DatasetSpec spec;
  spec.kind = "mit-indoor";
  spec.path = root;
  spec.split = "test";
  spec.resize = 256;
  spec.crop = 224;
  const auto ds = open_dataset(spec);
  const Batch b = ds->get_batch({1, 0});
  ASSERT_EQ(b.inputs.sizes(), torch::IntArrayRef({2, 3, 224, 224}));
  EXPECT_TRUE(torch::equal(b.labels, torch::tensor({2, 1}, torch::kInt64)));
  EXPECT_EQ(b.sample_ids, (std::vector<std::int64_t>{1, 0}));
}

TEST(MitIndoor, Errors) {
  const std::string root = write_indoor(fresh_dir("indoorerr"));
  EXPECT_NE(error_of([&] { MitIndoorDataset(root, "dev"); }).find("unknown split 'dev'"), std::string::npos);
  MitIndoorOptions o;
  o.valid_split = 1.0;
  EXPECT_NE(error_of([&] { MitIndoorDataset(root, "train", o); }).find("valid_split"), std::string::npos);
  std::ofstream(root + "/TestImages.txt") << "bar/b2.jpg\nbar/b9.jpg\n";
  const std::string e = error_of([&] { MitIndoorDataset(root, "test"); });
  EXPECT_NE(e.find("TestImages.txt', line 2: image 'bar/b9.jpg'"), std::string::npos) << e;
  fs::remove(root + "/TrainImages.txt");
  EXPECT_NE(error_of([&] { MitIndoorDataset(root, "val"); }).find("TrainImages.txt' does not exist"), std::string::npos);
}

}  // namespace
}  // namespace hessgap::data
