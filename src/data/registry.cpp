#include "data/registry.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "data/caltech.h"
#include "data/cifar_binary.h"
#include "data/domainnet.h"
#include "data/glue.h"
#include "data/idx_dataset.h"
#include "data/image_benchmarks.h"
#include "data/image_folder.h"
#include "data/label_noise.h"
#include "data/mit_indoor.h"
#include "data/subset_dataset.h"
#include "data/tokenizer.h"
#include "util/error.h"

namespace hessgap::data {
namespace fs = std::filesystem;
namespace {

// The plain file if present, else its .gz.
std::string find_idx_file(const std::string& dir, const std::string& name) {
  for (const std::string& candidate : {dir + "/" + name, dir + "/" + name + ".gz"}) {
    if (fs::is_regular_file(candidate)) return candidate;
  }
  HG_FAIL("IDX folder '" << dir << "' has no file '" << name << "' or '" << name << ".gz'");
}

std::unique_ptr<Dataset> open_glue(const DatasetSpec& spec) {
  const std::string where = "dataset '" + spec.path + "' of kind glue";
  HG_CHECK(spec.resize == 0 && spec.crop == 0 && spec.max_per_class == 0,
           where << ": resize, crop and max_per_class are for images (expected 0)");
  HG_CHECK(fs::exists(spec.path), where << ": no such file or folder");
  std::string task = spec.task;
  std::string file = spec.path;
  if (fs::is_directory(spec.path)) {
    fs::path dir = fs::path(spec.path).lexically_normal();
    if (dir.filename().empty()) dir = dir.parent_path();  // a trailing '/'
    const std::string folder = dir.filename().string();
    if (task.empty()) {
      // GLUE's folder names: MRPC, SST-2, QQP, RTE, QNLI, WNLI (any case, with or without the dash).
      std::string key;
      for (char c : folder) {
        if (c != '-') key += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      }
      for (const std::string& t : glue_tasks()) {
        if (key == t) task = t;
      }
      HG_CHECK(!task.empty(), where << ": cannot tell the task from the folder name '" << folder
                                    << "' (expected MRPC, SST-2, QQP, RTE, QNLI or WNLI); give the task (--task)");
    }
    std::string split = spec.split == "val" || spec.split == "validation" ? "dev" : spec.split;
    HG_CHECK(split == "train" || split == "dev" || split == "test",
             where << ": unknown split '" << spec.split << "' (expected train, dev or test)");
    file = (fs::path(spec.path) / (split + ".tsv")).string();
    HG_CHECK(fs::is_regular_file(file), where << ": the " << split << " split '" << file << "' does not exist");
  }
  const auto tasks = glue_tasks();
  HG_CHECK(std::find(tasks.begin(), tasks.end(), task) != tasks.end(),
           where << ": unknown task '" << task << "' (expected mrpc, sst2, qqp, rte, qnli or wnli)");
  HG_CHECK(!spec.tokenizer.empty(), where << ": no tokenizer folder given (--tokenizer: vocab.json + merges.txt "
                                          << "for RoBERTa, vocab.txt for BERT; a Hugging Face model folder has them)");
  TokenizerSpec ts;
  ts.path = spec.tokenizer;
  ts.lowercase = spec.lowercase;
  std::shared_ptr<const Tokenizer> tokenizer = open_tokenizer(ts);
  GlueOptions options;
  options.task = task;
  options.max_length = spec.max_length;
  return std::make_unique<GlueDataset>(file, tokenizer, options);
}

std::unique_ptr<Dataset> open_split(const DatasetSpec& spec);

// The split and its subset (DatasetSpec::limit), before any label noise.
std::unique_ptr<Dataset> open_clean(const DatasetSpec& spec) {
  std::unique_ptr<Dataset> split = open_split(spec);
  if (spec.limit == 0) return split;
  HG_CHECK(spec.limit <= split->size(), "dataset '" << spec.path << "': a subset of the first " << spec.limit
                                                   << " samples (--subset) was asked for, but the split has "
                                                   << split->size() << " (" << split->describe() << ")");
  return std::make_unique<SubsetDataset>(std::move(split), spec.limit);
}

}  // namespace

NormalizeStats normalize_stats(const std::string& name) {
  if (name == "imagenet") return {{0.485, 0.456, 0.406}, {0.229, 0.224, 0.225}, 3};
  if (name == "cifar10") return {{0.4914, 0.4822, 0.4465}, {0.2470, 0.2435, 0.2616}, 3};
  if (name == "fashion-mnist") return {{0.2860, 0.2860, 0.2860}, {0.3530, 0.3530, 0.3530}, 1};
  if (name == "mnist") return {{0.1307, 0.1307, 0.1307}, {0.3081, 0.3081, 0.3081}, 1};
  if (name == "none") return {{0.0, 0.0, 0.0}, {1.0, 1.0, 1.0}, 0};
  HG_FAIL("unknown normalize '" << name << "' (expected imagenet, cifar10, fashion-mnist, mnist or none)");
}

std::unique_ptr<Dataset> open_dataset(const DatasetSpec& spec) {
  HG_CHECK(std::isfinite(spec.noise_rate) && spec.noise_rate >= 0.0 && spec.noise_rate <= 1.0,
           "--label-noise must be in [0, 1] (got " << spec.noise_rate << ")");
  HG_CHECK(spec.limit >= 0, "dataset '" << spec.path << "': the subset size (--subset) must be >= 0, 0 for all (got "
                                        << spec.limit << ")");
  if (spec.noise_rate == 0.0) return open_clean(spec);
  HG_CHECK(spec.noise_mode == "auto" || spec.noise_mode == "symmetric" || spec.noise_mode == "flip",
           "--noise-mode must be auto, symmetric or flip (got '" << spec.noise_mode << "')");
  HG_CHECK(spec.noise_chunk >= -1, "--noise-chunk must be >= 0, or -1 for auto (got " << spec.noise_chunk << ")");
  DatasetSpec clean = spec;
  if (spec.kind == "domainnet") {
    HG_CHECK(spec.label_source != "weak", "dataset '" << spec.path << "': synthetic label noise on DomainNet goes on "
                                                      << "the true labels (label source 'true'), not the weak ones");
    clean.label_source = "true";
  }
  std::unique_ptr<Dataset> base = open_clean(clean);
  // Noise relabels clean labels: on a split without them (GLUE's test.tsv layout, labels -1) it failed at the
  // first relabelled sample ("sample 2 has label -1"), naming neither the flag nor the file. Labels are read
  // without decoding.
  std::int64_t unlabelled = 0;
  for (std::int64_t i = 0; i < base->size(); ++i) unlabelled += base->label(i) < 0 ? 1 : 0;
  HG_CHECK(unlabelled == 0, "--label-noise " << spec.noise_rate << " needs labelled data, but the '" << spec.split
                                             << "' split of dataset '" << spec.path << "' is unlabelled: " << unlabelled
                                             << " of its " << base->size() << " samples have no label (-1: a test "
                                             << "split whose labels are hidden, as GLUE's test.tsv; " << base->describe()
                                             << ")");
  const LabelNoiseOptions options = label_noise_options(spec);
  std::vector<std::int64_t> ids(static_cast<std::size_t>(base->size()));
  std::iota(ids.begin(), ids.end(), std::int64_t{0});
  auto noise = std::make_shared<const LabelNoise>(ids, base->num_classes(), options);
  return std::make_unique<NoisyLabelDataset>(std::move(base), std::move(noise));
}

LabelNoiseOptions label_noise_options(const DatasetSpec& spec) {
  LabelNoiseOptions options;
  options.rate = spec.noise_rate;
  const std::string mode = spec.noise_mode == "auto" ? (spec.kind == "glue" ? "flip" : "symmetric") : spec.noise_mode;
  options.mode = mode == "flip" ? LabelNoiseOptions::Mode::kFlip : LabelNoiseOptions::Mode::kSymmetric;
  options.seed = spec.noise_seed;
  options.chunk_size = spec.noise_chunk >= 0 ? spec.noise_chunk : spec.kind == "glue" ? 1000 : 0;
  return options;
}

namespace {
std::unique_ptr<Dataset> open_split(const DatasetSpec& spec) {
  HG_CHECK(!spec.path.empty(), "dataset of kind '" << spec.kind << "': no path given");
  HG_CHECK(!spec.skip_unreadable || spec.kind == "imagefolder",
           "skipping unreadable files is only supported for kind imagefolder, not '" << spec.kind << "'");
  HG_CHECK(spec.pad >= 0, "dataset '" << spec.path << "': --pad must be >= 0 (got " << spec.pad << ")");
  HG_CHECK((spec.pad == 0 && !spec.grey_to_rgb) || spec.kind == "idx",
           "dataset '" << spec.path << "' of kind " << spec.kind << ": --pad and --grey-to-rgb are only supported for "
                       << "kind idx (got --pad " << spec.pad << (spec.grey_to_rgb ? ", --grey-to-rgb" : "") << ")");
  if (spec.kind == "glue") return open_glue(spec);
  if (spec.kind == "domainnet") {
    HG_CHECK(spec.normalize == "domain", "dataset '" << spec.path << "' of kind domainnet: normalize must be "
                                                     << "'domain' (the domain's train statistics), got '"
                                                     << spec.normalize << "'");
    HG_CHECK(spec.crop == 0, "dataset '" << spec.path << "' of kind domainnet: crop is not supported (expected 0, got "
                                         << spec.crop << ")");
    DomainNetOptions options;
    options.sample = spec.sample;
    options.domain = spec.domain;
    options.partition = spec.split;
    options.label_source = spec.label_source;
    options.resize = spec.resize;
    options.max_per_class = spec.max_per_class;
    return std::make_unique<DomainNetDataset>(spec.path, options);
  }
  HG_CHECK(spec.normalize != "domain", "normalize 'domain' is only for kind domainnet, not '" << spec.kind << "'");
  const NormalizeStats stats = normalize_stats(spec.normalize);
  if (spec.kind == "imagefolder") {
    HG_CHECK(stats.channels != 1, "normalize '" << spec.normalize << "' is for 1-channel images; image folders "
                                                << "give RGB (expected imagenet, cifar10 or none)");
    ImageFolderOptions options;
    options.transform.resize = spec.resize;
    options.transform.crop = spec.crop;
    options.transform.mean = stats.mean;
    options.transform.stddev = stats.stddev;
    options.max_per_class = spec.max_per_class;
    options.skip_unreadable = spec.skip_unreadable;
    return std::make_unique<ImageFolderDataset>(spec.path, options);
  }
  if (spec.kind == "cifar10" || spec.kind == "cifar100" || spec.kind == "caltech256" || spec.kind == "mit-indoor" ||
      is_image_benchmark(spec.kind)) {
    HG_CHECK(stats.channels != 1, "normalize '" << spec.normalize << "' is for 1-channel images; " << spec.kind
                                                << " gives RGB (expected imagenet, cifar10 or none)");
    EvalTransform transform;
    transform.resize = spec.resize;
    transform.crop = spec.crop;
    transform.mean = stats.mean;
    transform.stddev = stats.stddev;
    if (is_image_benchmark(spec.kind)) {
      ImageBenchmarkOptions options;
      options.transform = transform;
      options.valid_split = spec.valid_split;
      options.split_seed = spec.split_seed;
      options.max_per_class = spec.max_per_class;
      return open_image_benchmark(spec.kind, spec.path, spec.split, options);
    }
    if (spec.kind == "mit-indoor") {
      MitIndoorOptions options;
      options.transform = transform;
      options.valid_split = spec.valid_split;
      options.split_seed = spec.split_seed;
      options.max_per_class = spec.max_per_class;
      return std::make_unique<MitIndoorDataset>(spec.path, spec.split, options);
    }
    if (spec.kind == "caltech256") {
      return std::make_unique<Caltech256Dataset>(spec.path, spec.split, transform, spec.max_per_class);
    }
    return std::make_unique<CifarBinaryDataset>(spec.path, spec.split, transform, spec.kind == "cifar100", false,
                                                spec.max_per_class);
  }
  if (spec.kind == "idx") {
    if (spec.grey_to_rgb) {
      HG_CHECK(stats.channels != 1, "normalize '" << spec.normalize << "' is for 1-channel images; with --grey-to-rgb "
                                                  << "IDX images have 3 channels (expected imagenet, cifar10 or none)");
    } else {
      HG_CHECK(stats.channels != 3, "normalize '" << spec.normalize << "' is for RGB images; IDX images have one "
                                                  << "channel (expected fashion-mnist, mnist or none; or give "
                                                  << "--grey-to-rgb to replicate it to 3)");
    }
    HG_CHECK(spec.resize == 0 && spec.crop == 0, "dataset '" << spec.path << "' of kind idx: resize and crop are not "
                                                             << "supported (expected 0, got " << spec.resize << " and "
                                                             << spec.crop << ")");
    std::string images, labels;
    if (fs::is_directory(spec.path)) {
      HG_CHECK(spec.split == "test" || spec.split == "train",
               "dataset '" << spec.path << "' of kind idx: unknown split '" << spec.split << "' (expected train or test)");
      const std::string prefix = spec.split == "test" ? "t10k" : "train";
      images = find_idx_file(spec.path, prefix + "-images-idx3-ubyte");
      labels = find_idx_file(spec.path, prefix + "-labels-idx1-ubyte");
    } else {
      images = spec.path;
      const std::string name = fs::path(images).filename().string();
      const std::size_t at = name.find("images-idx3");
      HG_CHECK(fs::exists(images), "IDX dataset path '" << images << "' does not exist");
      HG_CHECK(at != std::string::npos, "IDX images file '" << images << "': cannot derive the labels file (expected "
                                                            << "'images-idx3' in the name, or give the folder)");
      labels = (fs::path(images).parent_path() / (name.substr(0, at) + "labels-idx1" + name.substr(at + 11))).string();
    }
    IdxOptions options;
    options.mean = stats.mean[0];
    options.stddev = stats.stddev[0];
    options.grey_to_rgb = spec.grey_to_rgb;
    options.rgb_mean = stats.mean;
    options.rgb_stddev = stats.stddev;
    options.pad = spec.pad;
    options.max_per_class = spec.max_per_class;
    return std::make_unique<IdxDataset>(images, labels, options);
  }
  HG_FAIL("unknown dataset kind '" << spec.kind << "' (expected imagefolder, idx, cifar10, cifar100, caltech256, "
                                   << "domainnet, mit-indoor, aircraft, cub200, stanford-cars, stanford-dogs, flowers102, "
                                   << "awa2 or glue)");
}

}  // namespace

bool has_own_valid_split(const std::string& kind) {
  return kind == "domainnet" || kind == "caltech256" || kind == "aircraft" || kind == "flowers102" ||
         kind == "mit-indoor";
}

}  // namespace hessgap::data
