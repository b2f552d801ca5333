#include "data/registry.h"

#include <filesystem>

#include "data/caltech.h"
#include "data/cifar_binary.h"
#include "data/domainnet.h"
#include "data/idx_dataset.h"
#include "data/image_folder.h"
#include "data/mit_indoor.h"
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
  HG_CHECK(!spec.path.empty(), "dataset of kind '" << spec.kind << "': no path given");
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
    return std::make_unique<ImageFolderDataset>(spec.path, options);
  }
  if (spec.kind == "cifar10" || spec.kind == "cifar100" || spec.kind == "caltech256" || spec.kind == "mit-indoor") {
    HG_CHECK(stats.channels != 1, "normalize '" << spec.normalize << "' is for 1-channel images; " << spec.kind
                                                << " gives RGB (expected imagenet, cifar10 or none)");
    EvalTransform transform;
    transform.resize = spec.resize;
    transform.crop = spec.crop;
    transform.mean = stats.mean;
    transform.stddev = stats.stddev;
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
    HG_CHECK(stats.channels != 3, "normalize '" << spec.normalize << "' is for RGB images; IDX images have one "
                                                << "channel (expected fashion-mnist, mnist or none)");
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
    options.max_per_class = spec.max_per_class;
    return std::make_unique<IdxDataset>(images, labels, options);
  }
  HG_FAIL("unknown dataset kind '" << spec.kind << "' (expected imagefolder, idx, cifar10, cifar100, caltech256, domainnet or mit-indoor)");
}

}  // namespace hessgap::data
