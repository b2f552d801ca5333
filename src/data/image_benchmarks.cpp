#include "data/image_benchmarks.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "data/mat_file.h"
#include "data/sampler.h"
#include "util/error.h"
#include "util/excerpt.h"
#include "util/input_file.h"
#include "util/rng.h"

namespace hessgap::data {
namespace fs = std::filesystem;
namespace {

std::string trim(const std::string& s) {
  std::size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

bool exists(const std::string& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

bool is_dir(const std::string& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);  // follows symlinks
}

std::string strip_slashes(std::string s) {
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

// The folder among `root` and root/<sub> that holds `marker` (a file or folder); "" when none does.
std::string find_root(const std::string& root, const std::string& marker, const std::vector<std::string>& subs) {
  if (exists(root + "/" + marker)) return root;
  for (const std::string& sub : subs) {
    if (exists(root + "/" + sub + "/" + marker)) return root + "/" + sub;
  }
  return "";
}

void check_split(const std::string& title, const std::string& split, const std::vector<std::string>& allowed) {
  if (std::find(allowed.begin(), allowed.end(), split) != allowed.end()) return;
  std::string list;
  for (std::size_t k = 0; k < allowed.size(); ++k) list += (k == 0 ? "" : k + 1 == allowed.size() ? " or " : ", ") + allowed[k];
  HG_FAIL(title << ": unknown split '" << split << "' (expected " << list << ")");
}

void require_file(const std::string& title, const std::string& path, const std::string& what) {
  HG_CHECK(exists(path), title << ": " << what << " '" << path << "' does not exist");
}

// Non-blank lines of a text file with their 1-based numbers, trimmed ('\r' included).
std::vector<std::pair<std::int64_t, std::string>> read_lines(const std::string& title, const std::string& path) {
  require_file(title, path, "file");
  refuse_special_file(path, title + " file");
  std::ifstream in(path);
  HG_CHECK(in, title << ": cannot open '" << path << "'");
  std::vector<std::pair<std::int64_t, std::string>> out;
  std::string line;
  for (std::int64_t no = 1; std::getline(in, line); ++no) {
    line = trim(line);
    if (!line.empty()) out.emplace_back(no, line);
  }
  HG_CHECK(!in.bad(), title << ": cannot read '" << path << "'");
  return out;
}

// "<integer> <rest>" lines: the integer and the trimmed rest (which must be non-empty).
struct IdLine {
  std::int64_t line, id;
  std::string value;
};
std::vector<IdLine> read_id_lines(const std::string& title, const std::string& path, const std::string& format) {
  std::vector<IdLine> out;
  for (const auto& [no, text] : read_lines(title, path)) {
    std::size_t cut = 0;
    while (cut < text.size() && !std::isspace(static_cast<unsigned char>(text[cut]))) ++cut;
    const std::string head = text.substr(0, cut);
    const std::string rest = trim(text.substr(cut));
    bool ok = !head.empty() && !rest.empty() && head.size() <= 18;
    for (char c : head) ok = ok && std::isdigit(static_cast<unsigned char>(c));
    HG_CHECK(ok, title << ": '" << path << "', line " << no << ": expected '" << format << "', found '" << excerpt(text) << "'");
    out.push_back({no, std::stoll(head), rest});
  }
  return out;
}

// Class names of a "<class id> <name>" file whose ids are 1..K (any order, each once).
std::vector<std::string> read_class_table(const std::string& title, const std::string& path) {
  const std::vector<IdLine> lines = read_id_lines(title, path, "<class id> <name>");
  HG_CHECK(!lines.empty(), title << ": class list '" << path << "' is empty");
  std::vector<std::string> names(lines.size());
  for (const IdLine& l : lines) {
    HG_CHECK(l.id >= 1 && l.id <= static_cast<std::int64_t>(lines.size()) && names[static_cast<std::size_t>(l.id - 1)].empty(),
             title << ": '" << path << "', line " << l.line << ": class id " << l.id << " is repeated or outside 1.."
                   << lines.size() << " (expected the ids 1..K, each once)");
    names[static_cast<std::size_t>(l.id - 1)] = l.value;
  }
  return names;
}

// Which files exist under a folder, listing each sub-folder once (cheaper than one stat per image on a
// network file system).
class FolderIndex {
 public:
  FolderIndex(std::string title, std::string dir) : title_(std::move(title)), dir_(std::move(dir)) {
    HG_CHECK(is_dir(dir_), title_ << ": image folder '" << dir_ << "' does not exist");
  }
  bool contains(const std::string& rel) {
    const std::size_t slash = rel.rfind('/');
    const std::string sub = slash == std::string::npos ? "" : rel.substr(0, slash);
    const std::string name = slash == std::string::npos ? rel : rel.substr(slash + 1);
    auto it = listed_.find(sub);
    if (it == listed_.end()) {
      std::unordered_set<std::string> names;
      const std::string folder = sub.empty() ? dir_ : dir_ + "/" + sub;
      std::error_code ec;
      for (fs::directory_iterator d(folder, ec), end; !ec && d != end; d.increment(ec)) {
        if (!is_dir(d->path().string())) names.insert(d->path().filename().string());
      }
      it = listed_.emplace(sub, std::move(names)).first;
    }
    return it->second.count(name) != 0;
  }
  // Full path of `rel`; throws naming it and `source` when it is not there.
  std::string require(const std::string& rel, const std::string& source) {
    HG_CHECK(contains(rel), title_ << ": image '" << dir_ << "/" << rel << "' (" << source << ") does not exist");
    return dir_ + "/" + rel;
  }

 private:
  std::string title_, dir_;
  std::unordered_map<std::string, std::unordered_set<std::string>> listed_;
};

ImageList take(const ImageList& all, const std::vector<std::int64_t>& ids) {
  ImageList out;
  out.classes = all.classes;
  for (std::int64_t i : ids) {
    out.files.push_back(all.files[static_cast<std::size_t>(i)]);
    out.labels.push_back(all.labels[static_cast<std::size_t>(i)]);
  }
  return out;
}

// "train": the whole list; "val": the trainer's keyed hold-out of it (split_train_valid).
ImageList train_or_val(ImageList train, const std::string& split, double valid_split, std::uint64_t seed) {
  if (split != "val") return train;
  return take(train, split_train_valid(static_cast<std::int64_t>(train.files.size()), valid_split, seed).valid);
}

void check_valid_split(const std::string& title, double valid_split) {
  HG_CHECK(valid_split >= 0.0 && valid_split < 1.0, title << ": valid_split must be in [0, 1), got " << valid_split);
}

bool is_image_name(const std::string& name) {
  std::string l = name;
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const char* ext : {".jpg", ".jpeg", ".png"}) {
    const std::size_t n = std::char_traits<char>::length(ext);
    if (l.size() >= n && l.compare(l.size() - n, n, ext) == 0) return true;
  }
  return false;
}

// A text entry of a cell array, unwrapping 1-element cells (as some writers nest them).
std::string cell_text(const MatArray& list, std::int64_t i) {
  const MatArray* a = &list.cell(i);
  while (a->type == MatArray::Type::kCell && a->numel() == 1) a = &a->cell(0);
  return a->str();
}

// Stanford Cars annotations: (1-based class, image path relative to `base`) of each struct element.
struct CarEntry {
  std::int64_t cls;
  std::string file;
  std::int64_t test;
};
std::vector<CarEntry> car_annotations(const MatArray& annotations, const std::string& file_field, bool with_test) {
  std::vector<CarEntry> out;
  for (std::int64_t i = 0; i < annotations.numel(); ++i) {
    CarEntry e;
    e.cls = annotations.field("class", i).scalar_integer();
    e.file = annotations.field(file_field, i).str();
    e.test = with_test ? annotations.field("test", i).scalar_integer() : 0;
    out.push_back(std::move(e));
  }
  return out;
}

const MatArray& find_variable(const std::vector<MatArray>& vars, const std::string& path, const std::string& name) {
  std::string present;
  for (const MatArray& a : vars) {
    if (a.name == name) return a;
    present += (present.empty() ? "" : ", ") + a.name;
  }
  HG_FAIL("MAT-file '" << path << "' has no variable '" << name << "' (variables: " << (present.empty() ? "none" : present)
                       << ")");
}

std::vector<std::string> car_classes(const MatArray& names) {
  std::vector<std::string> out;
  for (std::int64_t i = 0; i < names.numel(); ++i) out.push_back(cell_text(names, i));
  HG_CHECK(!out.empty(), names.origin << ": no class names");
  return out;
}

}  // namespace

ImageList read_aircraft(const std::string& root_in, const std::string& split) {
  const std::string root = strip_slashes(root_in);
  const std::string title = "FGVC-Aircraft '" + root + "'";
  check_split(title, split, {"train", "val", "trainval", "test"});
  const std::string dir = find_root(root, "variants.txt", {"data", "fgvc-aircraft-2013b/data"});
  HG_CHECK(!dir.empty(), title << ": class list '" << root << "/data/variants.txt' does not exist (expected the "
                               << "fgvc-aircraft-2013b archive: data/variants.txt, data/images_variant_<split>.txt, "
                               << "data/images/)");
  ImageList out;
  std::unordered_map<std::string, std::int64_t> by_name;
  for (const auto& [no, name] : read_lines(title, dir + "/variants.txt")) {
    HG_CHECK(by_name.emplace(name, static_cast<std::int64_t>(out.classes.size())).second,
             title << ": '" << dir << "/variants.txt', line " << no << ": variant '" << name << "' is repeated");
    out.classes.push_back(name);
  }
  HG_CHECK(!out.classes.empty(), title << ": class list '" << dir << "/variants.txt' is empty");
  const std::string list = dir + "/images_variant_" + split + ".txt";
  require_file(title, list, "the " + split + " list");
  FolderIndex images(title, dir + "/images");
  for (const auto& [no, text] : read_lines(title, list)) {
    const std::size_t space = text.find(' ');
    HG_CHECK(space != std::string::npos, title << ": '" << list << "', line " << no
                                               << ": expected '<image id> <variant>', found '" << excerpt(text) << "'");
    const std::string variant = trim(text.substr(space + 1));
    const auto it = by_name.find(variant);
    HG_CHECK(it != by_name.end(), title << ": '" << list << "', line " << no << ": variant '" << excerpt(variant)
                                        << "' is not in '" << dir << "/variants.txt'");
    out.files.push_back(images.require(text.substr(0, space) + ".jpg", "line " + std::to_string(no) + " of '" + list + "'"));
    out.labels.push_back(it->second);
  }
  return out;
}

ImageList read_cub200(const std::string& root_in, const std::string& split, double valid_split, std::uint64_t split_seed) {
  const std::string root = strip_slashes(root_in);
  const std::string title = "CUB-200-2011 '" + root + "'";
  check_split(title, split, {"train", "val", "test"});
  const std::string dir = find_root(root, "images.txt", {"CUB_200_2011"});
  HG_CHECK(!dir.empty(), title << ": image list '" << root << "/images.txt' does not exist (expected the CUB_200_2011 "
                               << "archive: images.txt, image_class_labels.txt, train_test_split.txt, classes.txt, "
                               << "images/)");
  const std::vector<std::string> classes = read_class_table(title, dir + "/classes.txt");
  const auto k = static_cast<std::int64_t>(classes.size());
  std::unordered_map<std::int64_t, std::int64_t> label_of, is_train;
  const std::string labels_file = dir + "/image_class_labels.txt";
  for (const IdLine& l : read_id_lines(title, labels_file, "<image id> <class id>")) {
    char* end = nullptr;
    const long long c = std::strtoll(l.value.c_str(), &end, 10);
    HG_CHECK(*end == '\0' && c >= 1 && c <= k, title << ": '" << labels_file << "', line " << l.line << ": class id '"
                                                      << excerpt(l.value) << "' is not in 1.." << k << " (classes.txt)");
    label_of[l.id] = c - 1;
  }
  const std::string split_file = dir + "/train_test_split.txt";
  for (const IdLine& l : read_id_lines(title, split_file, "<image id> <1 train | 0 test>")) {
    HG_CHECK(l.value == "0" || l.value == "1", title << ": '" << split_file << "', line " << l.line
                                                     << ": expected 1 (train) or 0 (test), found '" << excerpt(l.value) << "'");
    is_train[l.id] = l.value == "1";
  }
  const std::string images_file = dir + "/images.txt";
  FolderIndex folder(title, dir + "/images");
  ImageList list;  // the official train or test list
  list.classes = classes;
  for (const IdLine& l : read_id_lines(title, images_file, "<image id> <path>")) {
    const auto lab = label_of.find(l.id);
    HG_CHECK(lab != label_of.end(), title << ": image id " << l.id << " (line " << l.line << " of '" << images_file
                                          << "') has no line in '" << labels_file << "'");
    const auto tr = is_train.find(l.id);
    HG_CHECK(tr != is_train.end(), title << ": image id " << l.id << " (line " << l.line << " of '" << images_file
                                         << "') has no line in '" << split_file << "'");
    if ((tr->second == 1) == (split == "test")) continue;
    list.files.push_back(folder.require(l.value, "line " + std::to_string(l.line) + " of '" + images_file + "'"));
    list.labels.push_back(lab->second);
  }
  if (split == "test") return list;
  return train_or_val(std::move(list), split, valid_split, split_seed);
}

ImageList read_stanford_cars(const std::string& root_in, const std::string& split, double valid_split,
                             std::uint64_t split_seed) {
  const std::string root = strip_slashes(root_in);
  const std::string title = "Stanford Cars '" + root + "'";
  check_split(title, split, {"train", "val", "test"});
  const bool test = split == "test";
  ImageList list;
  std::vector<CarEntry> entries;
  std::string image_dir, source;
  std::string dir = find_root(root, "devkit/cars_meta.mat", {"stanford_cars"});
  if (!dir.empty()) {
    list.classes = car_classes(read_mat_variable(dir + "/devkit/cars_meta.mat", "class_names"));
    if (test) {
      source = dir + "/cars_test_annos_withlabels.mat";
      if (!exists(source) && exists(dir + "/devkit/cars_test_annos_withlabels.mat")) {
        source = dir + "/devkit/cars_test_annos_withlabels.mat";
      }
      HG_CHECK(exists(source), title << ": the labelled test annotations '" << source << "' do not exist (the devkit's "
                                     << "cars_test_annos.mat has no labels; cars_test_annos_withlabels.mat is "
                                     << "distributed separately)");
    } else {
      source = dir + "/devkit/cars_train_annos.mat";
      require_file(title, source, "the train annotations");
    }
    entries = car_annotations(read_mat_variable(source, "annotations"), "fname", false);
    image_dir = dir + (test ? "/cars_test" : "/cars_train");
  } else {
    dir = find_root(root, "cars_annos.mat", {"stanford_cars"});
    HG_CHECK(!dir.empty(), title << ": class names '" << root << "/devkit/cars_meta.mat' do not exist (expected the "
                                 << "devkit layout: devkit/cars_meta.mat, devkit/cars_train_annos.mat, "
                                 << "cars_test_annos_withlabels.mat, cars_train/, cars_test/; or the all-in-one "
                                 << "layout: cars_annos.mat, car_ims/)");
    source = dir + "/cars_annos.mat";
    const std::vector<MatArray> vars = read_mat_file(source);
    list.classes = car_classes(find_variable(vars, source, "class_names"));
    for (CarEntry& e : car_annotations(find_variable(vars, source, "annotations"), "relative_im_path", true)) {
      HG_CHECK(e.test == 0 || e.test == 1, title << ": '" << source << "': annotation '" << e.file << "' has test = "
                                                 << e.test << " (expected 0 or 1)");
      if ((e.test == 1) == test) entries.push_back(std::move(e));
    }
    image_dir = dir;
  }
  const auto k = static_cast<std::int64_t>(list.classes.size());
  FolderIndex folder(title, image_dir);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const CarEntry& e = entries[i];
    const std::string where = "annotation " + std::to_string(i + 1) + " of '" + source + "'";
    HG_CHECK(e.cls >= 1 && e.cls <= k, title << ": " << where << " ('" << e.file << "') has class " << e.cls
                                             << ", outside 1.." << k << " (the class names)");
    list.files.push_back(folder.require(e.file, where));
    list.labels.push_back(e.cls - 1);
  }
  if (test) return list;
  return train_or_val(std::move(list), split, valid_split, split_seed);
}

ImageList read_stanford_dogs(const std::string& root_in, const std::string& split, double valid_split,
                             std::uint64_t split_seed) {
  const std::string root = strip_slashes(root_in);
  const std::string title = "Stanford Dogs '" + root + "'";
  check_split(title, split, {"train", "val", "test"});
  std::string images = root + "/Images";
  if (!is_dir(images) && is_dir(root + "/images")) images = root + "/images";
  HG_CHECK(is_dir(images), title << ": image folder '" << root << "/Images' does not exist (expected the Stanford "
                                 << "Dogs archives: Images/<synset>-<breed>/, train_list.mat and test_list.mat)");
  const std::string name = (split == "test" ? "test" : "train") + std::string("_list.mat");
  std::string source = root + "/" + name;
  if (!exists(source) && exists(root + "/lists/" + name)) source = root + "/lists/" + name;
  HG_CHECK(exists(source), title << ": list '" << source << "' does not exist (nor lists/" << name << ")");

  ImageList list;
  std::error_code ec;
  for (fs::directory_iterator it(images, ec), end; !ec && it != end; it.increment(ec)) {
    if (is_dir(it->path().string())) list.classes.push_back(it->path().filename().string());
  }
  HG_CHECK(!ec, title << ": cannot list '" << images << "': " << ec.message());
  HG_CHECK(!list.classes.empty(), title << ": image folder '" << images << "' has no class sub-folders");
  std::sort(list.classes.begin(), list.classes.end());
  const auto k = static_cast<std::int64_t>(list.classes.size());

  const std::vector<MatArray> vars = read_mat_file(source);
  const MatArray& files = find_variable(vars, source, "file_list");
  const std::vector<std::int64_t> labels = find_variable(vars, source, "labels").integers();
  HG_CHECK(files.type == MatArray::Type::kCell, files.origin << ": expected a cell array of file names, found "
                                                             << files.class_name);
  HG_CHECK(static_cast<std::int64_t>(labels.size()) == files.numel(),
           title << ": '" << source << "' has " << files.numel() << " files but " << labels.size() << " labels");
  FolderIndex folder(title, images);
  for (std::int64_t i = 0; i < files.numel(); ++i) {
    const std::string file = cell_text(files, i);
    const std::string where = "entry " + std::to_string(i + 1) + " of '" + source + "'";
    const std::int64_t c = labels[static_cast<std::size_t>(i)];
    HG_CHECK(c >= 1 && c <= k, title << ": " << where << " ('" << file << "') has label " << c << ", outside 1.." << k
                                     << " (the sub-folders of '" << images << "')");
    const std::string breed = file.substr(0, file.find('/'));
    HG_CHECK(breed == list.classes[static_cast<std::size_t>(c - 1)],
             title << ": " << where << " ('" << file << "') has label " << c << ", but class " << c << " is '"
                   << list.classes[static_cast<std::size_t>(c - 1)] << "' (the sub-folders of '" << images
                   << "' sorted by name)");
    list.files.push_back(folder.require(file, where));
    list.labels.push_back(c - 1);
  }
  if (split == "test") return list;
  return train_or_val(std::move(list), split, valid_split, split_seed);
}

ImageList read_flowers102(const std::string& root_in, const std::string& split) {
  const std::string root = strip_slashes(root_in);
  const std::string title = "Oxford Flowers-102 '" + root + "'";
  check_split(title, split, {"train", "val", "test"});
  const std::string dir = find_root(root, "imagelabels.mat", {"flowers-102"});
  HG_CHECK(!dir.empty(), title << ": labels '" << root << "/imagelabels.mat' do not exist (expected the Oxford "
                               << "Flowers-102 files: jpg/, imagelabels.mat, setid.mat)");
  const std::vector<std::int64_t> labels = read_mat_variable(dir + "/imagelabels.mat", "labels").integers();
  HG_CHECK(!labels.empty(), title << ": '" << dir << "/imagelabels.mat' holds no label");
  const std::int64_t k = *std::max_element(labels.begin(), labels.end());
  for (std::size_t i = 0; i < labels.size(); ++i) {
    HG_CHECK(labels[i] >= 1, title << ": '" << dir << "/imagelabels.mat': label " << labels[i] << " of image "
                                   << i + 1 << " (expected classes 1..K)");
  }
  const std::string setid = dir + "/setid.mat";
  require_file(title, setid, "split file");
  const std::string key = split == "train" ? "trnid" : split == "val" ? "valid" : "tstid";
  const std::vector<std::int64_t> ids = read_mat_variable(setid, key).integers();
  ImageList list;
  for (std::int64_t c = 1; c <= k; ++c) list.classes.push_back(std::to_string(c));
  FolderIndex folder(title, dir + "/jpg");
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::int64_t id = ids[i];
    HG_CHECK(id >= 1 && id <= static_cast<std::int64_t>(labels.size()),
             title << ": '" << setid << "': " << key << "(" << i + 1 << ") = " << id << " is not an image id (1.."
                   << labels.size() << ", the length of imagelabels.mat's labels)");
    char name[32];
    std::snprintf(name, sizeof(name), "image_%05lld.jpg", static_cast<long long>(id));
    list.files.push_back(folder.require(name, key + "(" + std::to_string(i + 1) + ") of '" + setid + "'"));
    list.labels.push_back(labels[static_cast<std::size_t>(id - 1)] - 1);
  }
  return list;
}

ImageList read_awa2(const std::string& root_in, const std::string& split, double valid_split, std::uint64_t split_seed) {
  const std::string root = strip_slashes(root_in);
  const std::string title = "AwA2 '" + root + "'";
  check_split(title, split, {"train", "val", "test"});
  const std::string dir = find_root(root, "classes.txt", {"Animals_with_Attributes2"});
  HG_CHECK(!dir.empty(), title << ": class list '" << root << "/classes.txt' does not exist (expected the "
                               << "Animals_with_Attributes2 archive: classes.txt, JPEGImages/<class>/)");
  ImageList pool;
  pool.classes = read_class_table(title, dir + "/classes.txt");
  const std::string images = dir + "/JPEGImages";
  HG_CHECK(is_dir(images), title << ": image folder '" << images << "' does not exist");
  for (std::size_t c = 0; c < pool.classes.size(); ++c) {
    const std::string folder = images + "/" + pool.classes[c];
    HG_CHECK(is_dir(folder), title << ": class folder '" << folder << "' (class " << c + 1 << " of '" << dir
                                   << "/classes.txt') does not exist");
    std::vector<std::string> names;
    std::error_code ec;
    for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string n = it->path().filename().string();
      if (!is_dir(it->path().string()) && is_image_name(n)) names.push_back(n);
    }
    HG_CHECK(!ec, title << ": cannot list '" << folder << "': " << ec.message());
    HG_CHECK(!names.empty(), title << ": class folder '" << folder << "' has no .jpg, .jpeg or .png file");
    std::sort(names.begin(), names.end());
    for (const std::string& n : names) {
      pool.files.push_back(folder + "/" + n);
      pool.labels.push_back(static_cast<std::int64_t>(c));
    }
  }
  const auto n = static_cast<std::int64_t>(pool.files.size());
  std::vector<std::int64_t> perm(static_cast<std::size_t>(n));
  rng::permutation(perm.data(), n, rng::make_key(0, rng::Stream::kShuffle, kAwa2TestTag));
  const auto n_test = static_cast<std::int64_t>(static_cast<double>(n) * kAwa2TestFraction);
  std::vector<char> in_test(static_cast<std::size_t>(n), 0);
  for (std::int64_t k = 0; k < n_test; ++k) in_test[static_cast<std::size_t>(perm[static_cast<std::size_t>(k)])] = 1;
  std::vector<std::int64_t> ids;
  for (std::int64_t i = 0; i < n; ++i) {
    if (in_test[static_cast<std::size_t>(i)] == (split == "test" ? 1 : 0)) ids.push_back(i);
  }
  ImageList part = take(pool, ids);
  if (split == "test") return part;
  return train_or_val(std::move(part), split, valid_split, split_seed);
}

const std::vector<std::string>& image_benchmark_kinds() {
  static const std::vector<std::string> kinds{"aircraft", "cub200", "stanford-cars", "stanford-dogs", "flowers102", "awa2"};
  return kinds;
}

bool is_image_benchmark(const std::string& kind) {
  const auto& kinds = image_benchmark_kinds();
  return std::find(kinds.begin(), kinds.end(), kind) != kinds.end();
}

std::unique_ptr<ImageListDataset> open_image_benchmark(const std::string& kind, const std::string& root_in,
                                                       const std::string& split, const ImageBenchmarkOptions& options) {
  const std::string root = strip_slashes(root_in);
  const bool keyed_val = kind == "cub200" || kind == "stanford-cars" || kind == "stanford-dogs" || kind == "awa2";
  const double vs = options.valid_split;
  const std::uint64_t seed = options.split_seed;
  std::string title;
  ImageList list;
  if (kind == "aircraft") {
    title = "FGVC-Aircraft";
    list = read_aircraft(root, split);
  } else if (kind == "flowers102") {
    title = "Oxford Flowers-102";
    list = read_flowers102(root, split);
  } else {
    HG_CHECK(keyed_val, "unknown image benchmark '" << kind << "' (expected aircraft, cub200, stanford-cars, "
                                                    << "stanford-dogs, flowers102 or awa2)");
    title = kind == "cub200" ? "CUB-200-2011" : kind == "stanford-cars" ? "Stanford Cars"
                                              : kind == "stanford-dogs" ? "Stanford Dogs" : "AwA2";
    check_valid_split(title + " '" + root + "'", vs);
    list = kind == "cub200"          ? read_cub200(root, split, vs, seed)
           : kind == "stanford-cars" ? read_stanford_cars(root, split, vs, seed)
           : kind == "stanford-dogs" ? read_stanford_dogs(root, split, vs, seed)
                                     : read_awa2(root, split, vs, seed);
  }
  std::ostringstream what;
  what << title << " " << root << " " << split;
  if (keyed_val && split == "val") what << " (valid_split " << vs << " of train, seed " << seed << ")";
  ImageListOptions lo;
  lo.transform = options.transform;
  lo.max_per_class = options.max_per_class;
  lo.num_threads = options.num_threads;
  return std::make_unique<ImageListDataset>(std::move(list), what.str(), lo);
}

}  // namespace hessgap::data
