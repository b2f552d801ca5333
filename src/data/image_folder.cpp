// Listing follows torchvision 0.14 datasets.folder (find_classes, make_dataset) so that sample ids
// mean the same images as in the reference scripts.
#include "data/image_folder.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <exception>
#include <filesystem>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

#include <sys/stat.h>

#include "util/error.h"
#include "util/log.h"

namespace hessgap::data {
namespace fs = std::filesystem;
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_supported_image(const std::string& name) {
  const std::string l = lower(name);
  return ends_with(l, ".jpg") || ends_with(l, ".jpeg") || ends_with(l, ".png");
}

bool is_other_torchvision_image(const std::string& name) {
  const std::string l = lower(name);
  for (const char* ext : {".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}) {
    if (ends_with(l, ext)) return true;
  }
  return false;
}

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);  // follows symlinks, as os.scandir().is_dir() does
}

// sorted(os.walk(dir, followlinks=True)), then sorted file names in each folder; except that a folder
// already visited (the same (st_dev, st_ino), i.e. the same canonical directory, whichever path or
// symlink reaches it) is not descended into again. Chosen over "do not follow symlinks into their own
// ancestors" because that alone still allows an exponential walk without any cycle (d0/{x,y} -> d1,
// d1/{x,y} -> d2, ...), whereas a visited set bounds the walk by the number of distinct folders: two
// symlinks to '.' in a class folder made it hang, one gave duplicated samples (issue #12). os.walk
// would loop there too, so no torchvision behaviour is lost that was ever usable. Children are taken in
// sorted order (breadth first), so which path of a folder reachable by two is kept is deterministic:
// the shallowest, then the first in name order.
void list_images(const std::string& dir, std::vector<std::string>& out) {
  std::set<std::pair<dev_t, ino_t>> visited;
  auto first_visit = [&](const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return true;  // let the listing below report the error
    return visited.insert({st.st_dev, st.st_ino}).second;
  };
  first_visit(dir);
  std::vector<std::string> folders{dir};
  for (std::size_t i = 0; i < folders.size(); ++i) {
    std::error_code ec;
    std::vector<std::string> children;
    for (fs::directory_iterator it(folders[i], ec), end; !ec && it != end; it.increment(ec)) {
      if (is_dir(it->path())) children.push_back(folders[i] + "/" + it->path().filename().string());
    }
    HG_CHECK(!ec, "cannot list folder '" << folders[i] << "': " << ec.message());
    std::sort(children.begin(), children.end());
    for (std::string& child : children) {
      if (first_visit(child)) folders.push_back(std::move(child));
    }
  }
  std::sort(folders.begin(), folders.end());
  for (const std::string& folder : folders) {
    std::vector<std::string> names;
    std::error_code ec;
    for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
      if (is_dir(it->path())) continue;
      const std::string name = it->path().filename().string();
      HG_CHECK(!is_other_torchvision_image(name),
               "image file '" << folder << "/" << name
                              << "' has a format hessgap does not decode (expected .jpg, .jpeg or .png); "
                                 "convert it, or remove it (torchvision would count it as a sample)");
      if (is_supported_image(name)) names.push_back(name);
    }
    HG_CHECK(!ec, "cannot list folder '" << folder << "': " << ec.message());
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) out.push_back(folder + "/" + name);
  }
}

}  // namespace

ImageFolderDataset::ImageFolderDataset(std::string root, ImageFolderOptions options)
    : root_(std::move(root)), options_(std::move(options)) {
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
  HG_CHECK(options_.max_per_class >= 0, "image folder '" << root_ << "': max_per_class must be >= 0, got "
                                                         << options_.max_per_class);
  HG_CHECK(options_.num_threads >= 1,
           "image folder '" << root_ << "': num_threads must be >= 1, got " << options_.num_threads);
  HG_CHECK(fs::exists(root_), "image folder '" << root_ << "' does not exist");
  HG_CHECK(is_dir(root_), "image folder '" << root_ << "' is not a folder");
  std::error_code ec;
  for (fs::directory_iterator it(root_, ec), end; !ec && it != end; it.increment(ec)) {
    if (is_dir(it->path())) classes_.push_back(it->path().filename().string());
  }
  HG_CHECK(!ec, "cannot list image folder '" << root_ << "': " << ec.message());
  HG_CHECK(!classes_.empty(), "image folder '" << root_ << "' has no class sub-folders (expected <root>/<class>/<image>)");
  std::sort(classes_.begin(), classes_.end());
  for (std::size_t c = 0; c < classes_.size(); ++c) {
    std::vector<std::string> images;
    const std::string dir = root_ + "/" + classes_[c];
    list_images(dir, images);
    HG_CHECK(!images.empty(), "empty data folder '" << dir << "': class '" << classes_[c]
                                                    << "' has no .jpg, .jpeg or .png file");
    if (options_.max_per_class > 0 && static_cast<std::int64_t>(images.size()) > options_.max_per_class) {
      images.resize(static_cast<std::size_t>(options_.max_per_class));
    }
    for (std::string& f : images) {
      files_.push_back(std::move(f));
      labels_.push_back(static_cast<std::int64_t>(c));
    }
  }
}

std::int64_t ImageFolderDataset::label(std::int64_t i) const {
  HG_CHECK(i >= 0 && i < size(), "image folder '" << root_ << "': sample id " << i << " out of range [0, " << size() << ")");
  return labels_[static_cast<std::size_t>(i)];
}

const std::string& ImageFolderDataset::file(std::int64_t i) const {
  HG_CHECK(i >= 0 && i < size(), "image folder '" << root_ << "': sample id " << i << " out of range [0, " << size() << ")");
  return files_[static_cast<std::size_t>(i)];
}

LoadedImages load_images(const std::vector<std::string>& paths, const ImageTransformFn& transform, int num_threads,
                         bool skip_unreadable, std::int64_t empty_side, const std::string& what) {
  const std::size_t n = paths.size();
  std::vector<torch::Tensor> inputs(n);
  std::vector<std::exception_ptr> errors(n);
  // Decoding errors are kept apart from transform errors: only the former may be skipped.
  std::vector<char> unreadable(n, 0);
  std::vector<std::string> reasons(n);
  std::atomic<std::size_t> next{0};
  auto work = [&]() {
    for (std::size_t k = next++; k < n; k = next++) {
      Image img;
      try {
        img = decode_image(paths[k]);
      } catch (const Error& e) {  // the decoder's "corrupt / truncated / not an image" errors, naming the file
        errors[k] = std::current_exception();
        unreadable[k] = 1;
        reasons[k] = e.what();
        continue;
      } catch (...) {  // e.g. out of memory: not a property of the file, never skipped
        errors[k] = std::current_exception();
        continue;
      }
      try {
        inputs[k] = transform(img, k);
      } catch (const Error& e) {  // e.g. --resize making it too large: name the image
        errors[k] = std::make_exception_ptr(Error("image '" + paths[k] + "': " + e.what()));
      } catch (...) {
        errors[k] = std::current_exception();
      }
    }
  };
  const std::size_t threads = std::min<std::size_t>(static_cast<std::size_t>(std::max(num_threads, 1)), n);
  if (threads <= 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (std::size_t t = 0; t < threads; ++t) pool.emplace_back(work);
    for (std::thread& t : pool) t.join();
  }
  // Errors first (the first in `paths` order wins, as with one thread), then the size check.
  LoadedImages out;
  for (std::size_t k = 0; k < n; ++k) {
    if (!errors[k]) continue;
    if (!(skip_unreadable && unreadable[k])) std::rethrow_exception(errors[k]);
    out.skipped.push_back(k);
    out.reasons.push_back(std::move(reasons[k]));
  }
  std::vector<torch::Tensor> kept;
  kept.reserve(n);
  std::size_t first = n;  // position of the first kept image, for the size message
  for (std::size_t k = 0; k < n; ++k) {
    if (errors[k]) continue;
    if (first == n) first = k;
    HG_CHECK(kept.empty() || inputs[k].sizes() == kept[0].sizes(),
             what << ": images of one batch differ in size after the transform: '" << paths[first] << "' gives "
                  << kept[0].sizes() << ", '" << paths[k] << "' gives " << inputs[k].sizes()
                  << " (set a crop size so that all images come out the same)");
    kept.push_back(std::move(inputs[k]));
  }
  out.inputs = kept.empty() ? torch::empty({0, 3, empty_side, empty_side}, torch::kFloat32) : torch::stack(kept);
  return out;
}

torch::Tensor load_image_batch(const std::vector<std::string>& paths, const EvalTransform& transform, int num_threads,
                               const std::string& what) {
  return load_images(
             paths, [&](const Image& img, std::size_t) { return apply_eval_transform(img, transform); }, num_threads,
             false, transform.crop, what)
      .inputs;
}

Batch ImageFolderDataset::get_batch(const std::vector<std::int64_t>& ids) const {
  const EvalTransform& t = options_.transform;
  return get_batch(
      ids, [&](const Image& img, std::int64_t) { return apply_eval_transform(img, t); }, t.crop);
}

Batch ImageFolderDataset::get_batch(const std::vector<std::int64_t>& ids, const SampleTransformFn& transform,
                                    std::int64_t empty_side) const {
  std::vector<std::string> paths;
  paths.reserve(ids.size());
  for (std::int64_t id : ids) paths.push_back(file(id));  // checks the range
  LoadedImages loaded = load_images(
      paths, [&](const Image& img, std::size_t k) { return transform(img, ids[k]); }, options_.num_threads,
      options_.skip_unreadable, empty_side, "image folder '" + root_ + "'");
  Batch batch;
  batch.inputs = std::move(loaded.inputs);
  if (loaded.skipped.empty()) {
    batch.sample_ids = ids;
  } else {
    std::vector<char> drop(ids.size(), 0);
    for (std::size_t k : loaded.skipped) drop[k] = 1;
    for (std::size_t k = 0; k < ids.size(); ++k) {
      if (!drop[k]) batch.sample_ids.push_back(ids[k]);
    }
    num_skipped_ += static_cast<std::int64_t>(loaded.skipped.size());
    std::lock_guard<std::mutex> lock(skipped_mutex_);
    for (std::size_t s = 0; s < loaded.skipped.size(); ++s) {
      // One warning per file, not per epoch.
      if (skipped_ids_.insert(ids[loaded.skipped[s]]).second) {
        log::warn("skipping unreadable image (sample " + std::to_string(ids[loaded.skipped[s]]) + "): " +
                  loaded.reasons[s]);
      }
    }
  }
  const auto b = static_cast<std::int64_t>(batch.sample_ids.size());
  batch.labels = torch::empty({b}, torch::kInt64);
  std::int64_t* labels = batch.labels.data_ptr<std::int64_t>();
  for (std::int64_t k = 0; k < b; ++k) labels[k] = labels_[static_cast<std::size_t>(batch.sample_ids[k])];
  return batch;
}

std::vector<std::int64_t> ImageFolderDataset::skipped_ids() const {
  std::lock_guard<std::mutex> lock(skipped_mutex_);
  return {skipped_ids_.begin(), skipped_ids_.end()};
}

std::string ImageFolderDataset::describe() const {
  std::ostringstream os;
  os << "image folder " << root_ << " (" << size() << " images, " << num_classes() << " classes";
  if (options_.max_per_class > 0) os << ", at most " << options_.max_per_class << " per class";
  os << "; resize " << options_.transform.resize << ", crop " << options_.transform.crop;
  if (options_.skip_unreadable) os << "; unreadable files skipped";
  os << ")";
  return os.str();
}

}  // namespace hessgap::data
