#include "io/h5.h"

#include <hdf5.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <mutex>
#include <type_traits>

#include "util/error.h"
#include "util/input_file.h"
#include "util/limits.h"
#include "util/signals.h"

namespace hessgap::io {

static_assert(std::is_same<hid_t, int64_t>::value, "HDF5 >= 1.10 is required (64-bit hid_t)");

namespace {

enum Which { kDouble = 0, kFloat = 1, kInt64 = 2 };

hid_t native_type(int which) {
  switch (which) {
    case kDouble: return H5T_NATIVE_DOUBLE;
    case kFloat: return H5T_NATIVE_FLOAT;
    default: return H5T_NATIVE_INT64;
  }
}

hid_t file_type(int which) {
  switch (which) {
    case kDouble: return H5T_IEEE_F64LE;
    case kFloat: return H5T_IEEE_F32LE;
    default: return H5T_STD_I64LE;
  }
}

const char* which_name(int which) {
  switch (which) {
    case kDouble: return "float64";
    case kFloat: return "float32";
    default: return "int64";
  }
}

// HDF5 prints its error stack to stderr by default; we turn that into exception messages instead.
void silence_hdf5() {
  static std::once_flag once;
  std::call_once(once, [] {
    H5open();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  });
}

herr_t walk_cb(unsigned n, const H5E_error2_t* err, void* data) {
  // The walk goes from the innermost (most specific) error outwards; keep the first one.
  auto* out = static_cast<std::string*>(data);
  if (out->empty() && err->desc != nullptr) *out = err->desc;
  return 0;
}

// The innermost message on HDF5's error stack, formatted for appending to our messages.
std::string hdf5_detail() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg.empty() ? std::string() : " (HDF5: " + msg + ")";
}

// Owns one hid_t and closes it with the matching H5*close.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Handle(Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      closer_ = o.closer_;
      o.id_ = -1;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  void reset() {
    if (id_ >= 0 && closer_ != nullptr) closer_(id_);
    id_ = -1;
  }
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

// External links are never followed. hessgap writes none, and following one opens another file by a
// name the file chose: a FIFO there blocks the reader forever (issue #12), a device or a file outside
// the run is read as if it were part of this one. The callback refuses the traversal and remembers
// what was asked for, so that the caller can name it (HDF5's own message says only "traversal failed").
thread_local std::string refused_external_link;

herr_t refuse_external_link(const char*, const char*, const char* child_file, const char* child_object, unsigned*,
                            hid_t, void*) {
  refused_external_link = std::string(child_file) + ":" + child_object;
  return -1;
}

// Access property lists (link, dataset, group) carrying the callback; made once, never closed.
hid_t no_external_links(hid_t plist_class) {
  const hid_t plist = H5Pcreate(plist_class);
  HG_CHECK(plist >= 0 && H5Pset_elink_cb(plist, refuse_external_link, nullptr) >= 0,
           "cannot create an HDF5 access property list" << hdf5_detail());
  return plist;
}
hid_t link_access() {
  static const hid_t plist = no_external_links(H5P_LINK_ACCESS);
  return plist;
}
hid_t dataset_access() {
  static const hid_t plist = no_external_links(H5P_DATASET_ACCESS);
  return plist;
}
hid_t group_access() {
  static const hid_t plist = no_external_links(H5P_GROUP_ACCESS);
  return plist;
}

std::string where(const std::string& file, const std::string& object);

// Throws when the last HDF5 call failed because it would have followed an external link.
void refuse_if_external(const std::string& file, const std::string& path) {
  if (refused_external_link.empty()) return;
  const std::string target = refused_external_link;
  refused_external_link.clear();
  H5Eclear2(H5E_DEFAULT);
  HG_FAIL(where(file, path) << " is reached through an external link to '" << target
                            << "'; hessgap does not follow external links");
}

std::string normalize(const std::string& path) {
  if (path.empty()) return "/";
  return path[0] == '/' ? path : "/" + path;
}

std::string where(const std::string& file, const std::string& object) {
  return "'" + object + "' in HDF5 file '" + file + "'";
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Handle make_string_type(bool variable, std::size_t size, H5T_cset_t cset) {
  Handle t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t.get(), variable ? H5T_VARIABLE : size);
  H5Tset_cset(t.get(), cset);
  return t;
}

// Shape of a dataspace; empty for scalars.
std::vector<int64_t> space_shape(hid_t space) {
  int rank = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> dims(rank > 0 ? rank : 0);
  if (rank > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Reads a string-typed dataset or attribute. `read` performs the H5Dread / H5Aread into a buffer of
// the given memory type.
template <class ReadFn>
std::vector<std::string> read_string_data(hid_t stored_type, std::size_t n, ReadFn read, const std::string& what) {
  std::vector<std::string> out;
  out.reserve(n);
  H5T_cset_t cset = H5Tget_cset(stored_type);
  if (H5Tis_variable_str(stored_type) > 0) {
    Handle mem = make_string_type(true, 0, cset);
    std::vector<char*> buf(std::max<std::size_t>(n, 1), nullptr);
    herr_t status = -1;
    {
      // Variable-length strings live in the file's global heap, whose object sizes libhdf5 1.10 trusts.
      signals::CrashGuard guard("reading " + what, "libhdf5");
      status = read(mem.get(), buf.data());
    }
    HG_CHECK(status >= 0, "cannot read strings of " << what << hdf5_detail());
    for (std::size_t i = 0; i < n; ++i) out.emplace_back(buf[i] ? buf[i] : "");
    // Variable-length data is allocated by HDF5; free it with the matching allocator.
    for (std::size_t i = 0; i < n; ++i) {
      if (buf[i]) H5free_memory(buf[i]);
    }
  } else {
    std::size_t size = H5Tget_size(stored_type);
    Handle mem = make_string_type(false, size, cset);
    std::vector<char> buf(std::max<std::size_t>(n * size, 1), '\0');
    herr_t status = -1;
    {
      signals::CrashGuard guard("reading " + what, "libhdf5");
      status = read(mem.get(), buf.data());
    }
    HG_CHECK(status >= 0, "cannot read strings of " << what << hdf5_detail());
    for (std::size_t i = 0; i < n; ++i) {
      const char* s = buf.data() + i * size;
      std::size_t len = 0;
      while (len < size && s[len] != '\0') ++len;
      if (H5Tget_strpad(stored_type) == H5T_STR_SPACEPAD) {
        while (len > 0 && s[len - 1] == ' ') --len;
      }
      out.emplace_back(s, len);
    }
  }
  return out;
}

}  // namespace

int64_t DatasetInfo::numel() const { return product(shape); }

// ---- lifetime -------------------------------------------------------------------------------------

H5File::H5File(int64_t file, std::string path, bool writable)
    : file_(file), path_(std::move(path)), writable_(writable) {}

H5File H5File::create(const std::string& path) {
  silence_hdf5();
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  HG_CHECK(f >= 0, "cannot create HDF5 file '" << path << "'" << hdf5_detail());
  return H5File(f, path, true);
}

H5File H5File::open_read(const std::string& path) {
  silence_hdf5();
  require_regular_file(path, "HDF5 file");
  htri_t is = H5Fis_hdf5(path.c_str());
  H5Eclear2(H5E_DEFAULT);
  HG_CHECK(is > 0, "'" << path << "' is not an HDF5 file");
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  HG_CHECK(f >= 0, "cannot open HDF5 file '" << path << "' for reading" << hdf5_detail());
  return H5File(f, path, false);
}

H5File::H5File(H5File&& o) noexcept : file_(o.file_), path_(std::move(o.path_)), writable_(o.writable_) {
  o.file_ = -1;
}

H5File& H5File::operator=(H5File&& o) noexcept {
  if (this != &o) {
    if (file_ >= 0) H5Fclose(file_);
    file_ = o.file_;
    path_ = std::move(o.path_);
    writable_ = o.writable_;
    o.file_ = -1;
  }
  return *this;
}

H5File::~H5File() {
  if (file_ >= 0) {
    H5Fclose(file_);
    H5Eclear2(H5E_DEFAULT);
  }
}

void H5File::close() {
  if (file_ < 0) return;
  hid_t f = file_;
  file_ = -1;
  HG_CHECK(H5Fclose(f) >= 0, "cannot close HDF5 file '" << path_ << "'" << hdf5_detail());
}

void H5File::flush() {
  HG_CHECK(file_ >= 0, "HDF5 file '" << path_ << "' is closed");
  HG_CHECK(H5Fflush(file_, H5F_SCOPE_GLOBAL) >= 0, "cannot flush HDF5 file '" << path_ << "'" << hdf5_detail());
}

void H5File::require_writable(const std::string& what) const {
  HG_CHECK(file_ >= 0, "cannot write " << where(path_, what) << ": the file is closed");
  HG_CHECK(writable_, "cannot write " << where(path_, what) << ": the file was opened read-only");
}

// ---- writing --------------------------------------------------------------------------------------

// Intermediate objects that exist must be groups; HDF5's own message for this case is obscure.
static void check_parents(const H5File& f, const std::string& path) {
  for (std::size_t pos = path.find('/', 1); pos != std::string::npos; pos = path.find('/', pos + 1)) {
    const std::string parent = path.substr(0, pos);
    HG_CHECK(!f.is_dataset(parent), "cannot create " << where(f.path(), path) << ": '" << parent
                                                     << "' is a dataset, not a group");
  }
}

void H5File::write_numeric(const std::string& path_in, const void* data, int which,
                           const std::vector<int64_t>& shape, const std::string& description,
                           const std::string& units) {
  const std::string path = normalize(path_in);
  require_writable(path);
  HG_CHECK(path != "/", "cannot write a dataset at the root of HDF5 file '" << path_ << "'");
  HG_CHECK(!has(path), "cannot write " << where(path_, path) << ": it already exists");
  check_parents(*this, path);
  for (int64_t d : shape) {
    HG_CHECK(d >= 0, "cannot write " << where(path_, path) << ": negative dimension in shape " << shape_str(shape));
  }
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Handle space = shape.empty() ? Handle(H5Screate(H5S_SCALAR), H5Sclose)
                               : Handle(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  HG_CHECK(space.ok(), "cannot create dataspace " << shape_str(shape) << " for " << where(path_, path) << hdf5_detail());
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  Handle dset(H5Dcreate2(file_, path.c_str(), file_type(which), space.get(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT),
              H5Dclose);
  HG_CHECK(dset.ok(), "cannot create dataset " << where(path_, path) << hdf5_detail());
  if (product(shape) > 0) {
    HG_CHECK(data != nullptr, "cannot write " << where(path_, path) << ": no data for shape " << shape_str(shape));
    HG_CHECK(H5Dwrite(dset.get(), native_type(which), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0,
             "cannot write dataset " << where(path_, path) << hdf5_detail());
  }
  dset.reset();
  set_attr(path, "description", description);
  if (!units.empty()) set_attr(path, "units", units);
}

namespace {
template <class T>
void check_size(const std::string& file, const std::string& path, const std::vector<T>& data,
                const std::vector<int64_t>& shape) {
  HG_CHECK(static_cast<int64_t>(data.size()) == product(shape),
           "cannot write " << where(file, normalize(path)) << ": " << data.size()
                           << " values do not fill shape " << shape_str(shape) << " (" << product(shape)
                           << " elements)");
}
}  // namespace

void H5File::write(const std::string& path, const std::vector<double>& data, const std::vector<int64_t>& shape,
                   const std::string& description, const std::string& units) {
  check_size(path_, path, data, shape);
  write_numeric(path, data.data(), kDouble, shape, description, units);
}

void H5File::write(const std::string& path, const std::vector<float>& data, const std::vector<int64_t>& shape,
                   const std::string& description, const std::string& units) {
  check_size(path_, path, data, shape);
  write_numeric(path, data.data(), kFloat, shape, description, units);
}

void H5File::write(const std::string& path, const std::vector<int64_t>& data, const std::vector<int64_t>& shape,
                   const std::string& description, const std::string& units) {
  check_size(path_, path, data, shape);
  write_numeric(path, data.data(), kInt64, shape, description, units);
}

void H5File::write(const std::string& path, const double* data, const std::vector<int64_t>& shape,
                   const std::string& description, const std::string& units) {
  write_numeric(path, data, kDouble, shape, description, units);
}

void H5File::write(const std::string& path, const float* data, const std::vector<int64_t>& shape,
                   const std::string& description, const std::string& units) {
  write_numeric(path, data, kFloat, shape, description, units);
}

void H5File::write(const std::string& path, const int64_t* data, const std::vector<int64_t>& shape,
                   const std::string& description, const std::string& units) {
  write_numeric(path, data, kInt64, shape, description, units);
}

void H5File::write(const std::string& path, double value, const std::string& description, const std::string& units) {
  write_numeric(path, &value, kDouble, {}, description, units);
}

void H5File::write(const std::string& path, int64_t value, const std::string& description, const std::string& units) {
  write_numeric(path, &value, kInt64, {}, description, units);
}

void H5File::write(const std::string& path, int value, const std::string& description, const std::string& units) {
  write(path, static_cast<int64_t>(value), description, units);
}

void H5File::write_strings(const std::string& path_in, const std::vector<std::string>& data,
                           const std::string& description) {
  const std::string path = normalize(path_in);
  require_writable(path);
  HG_CHECK(!has(path), "cannot write " << where(path_, path) << ": it already exists");
  check_parents(*this, path);
  hsize_t n = data.size();
  Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  Handle type = make_string_type(true, 0, H5T_CSET_UTF8);
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  Handle dset(H5Dcreate2(file_, path.c_str(), type.get(), space.get(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT),
              H5Dclose);
  HG_CHECK(dset.ok(), "cannot create dataset " << where(path_, path) << hdf5_detail());
  if (n > 0) {
    std::vector<const char*> ptrs;
    ptrs.reserve(data.size());
    for (const auto& s : data) ptrs.push_back(s.c_str());
    HG_CHECK(H5Dwrite(dset.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) >= 0,
             "cannot write strings to " << where(path_, path) << hdf5_detail());
  }
  dset.reset();
  set_attr(path, "description", description);
}

void H5File::create_group(const std::string& path_in) {
  const std::string path = normalize(path_in);
  require_writable(path);
  if (has(path)) {
    HG_CHECK(is_group(path), "cannot create group " << where(path_, path) << ": a dataset of that name exists");
    return;
  }
  check_parents(*this, path);
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  Handle g(H5Gcreate2(file_, path.c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  HG_CHECK(g.ok(), "cannot create group " << where(path_, path) << hdf5_detail());
}

// ---- attributes (writing) ------------------------------------------------------------------------

namespace {
Handle open_object(hid_t file, const std::string& file_path, const std::string& path, bool exists) {
  HG_CHECK(exists, "no object " << where(file_path, path));
  Handle obj(H5Oopen(file, path.c_str(), link_access()), H5Oclose);
  if (!obj.ok()) refuse_if_external(file_path, path);
  HG_CHECK(obj.ok(), "cannot open " << where(file_path, path) << hdf5_detail());
  return obj;
}

// Deletes attribute `name` if present so that it can be recreated with another type or shape.
void drop_attr(hid_t obj, const std::string& name) {
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
}
}  // namespace

void H5File::set_attr(const std::string& object_path, const std::string& name, const std::string& value) {
  const std::string path = normalize(object_path);
  require_writable(path);
  Handle obj = open_object(file_, path_, path, has(path));
  drop_attr(obj.get(), name);
  Handle type = make_string_type(true, 0, H5T_CSET_UTF8);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(obj.get(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  HG_CHECK(attr.ok(), "cannot create attribute '" << name << "' on " << where(path_, path) << hdf5_detail());
  const char* p = value.c_str();
  HG_CHECK(H5Awrite(attr.get(), type.get(), &p) >= 0,
           "cannot write attribute '" << name << "' on " << where(path_, path) << hdf5_detail());
}

void H5File::set_attr(const std::string& object_path, const std::string& name, const char* value) {
  set_attr(object_path, name, std::string(value ? value : ""));
}

void H5File::set_attr_numeric(const std::string& object_path, const std::string& name, const void* value,
                              int which) {
  const std::string path = normalize(object_path);
  require_writable(path);
  Handle obj = open_object(file_, path_, path, has(path));
  drop_attr(obj.get(), name);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(obj.get(), name.c_str(), file_type(which), space.get(), H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose);
  HG_CHECK(attr.ok(), "cannot create attribute '" << name << "' on " << where(path_, path) << hdf5_detail());
  HG_CHECK(H5Awrite(attr.get(), native_type(which), value) >= 0,
           "cannot write attribute '" << name << "' on " << where(path_, path) << hdf5_detail());
}

void H5File::set_attr(const std::string& object_path, const std::string& name, double value) {
  set_attr_numeric(object_path, name, &value, kDouble);
}

void H5File::set_attr(const std::string& object_path, const std::string& name, int64_t value) {
  set_attr_numeric(object_path, name, &value, kInt64);
}

void H5File::set_attr(const std::string& object_path, const std::string& name, int value) {
  set_attr(object_path, name, static_cast<int64_t>(value));
}

// ---- structure ------------------------------------------------------------------------------------

bool H5File::has(const std::string& path_in) const {
  HG_CHECK(file_ >= 0, "HDF5 file '" << path_ << "' is closed");
  const std::string path = normalize(path_in);
  // H5Lexists fails (rather than returning false) when an intermediate group is missing, so walk the
  // path one link at a time.
  std::string prefix;
  std::size_t begin = 1;
  while (begin <= path.size()) {
    std::size_t end = path.find('/', begin);
    if (end == std::string::npos) end = path.size();
    if (end > begin) {
      prefix += "/" + path.substr(begin, end - begin);
      htri_t e = H5Lexists(file_, prefix.c_str(), link_access());
      if (e <= 0) refuse_if_external(path_, prefix);
      if (e <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return false;
      }
    }
    begin = end + 1;
  }
  if (prefix.empty()) return true;  // the root
  // A dangling soft link exists as a link but not as an object.
  htri_t obj = H5Oexists_by_name(file_, prefix.c_str(), link_access());
  if (obj <= 0) refuse_if_external(path_, prefix);  // a refused traversal reads as "does not exist"
  H5Eclear2(H5E_DEFAULT);
  return obj > 0;
}

namespace {
// Via H5Oopen + H5Iget_type rather than H5Oget_info, whose signature changed in HDF5 1.12.
H5I_type_t object_type(hid_t file, const std::string& path) {
  Handle obj(H5Oopen(file, path.c_str(), link_access()), H5Oclose);
  if (!obj.ok()) {
    refused_external_link.clear();
    H5Eclear2(H5E_DEFAULT);
    return H5I_BADID;
  }
  return H5Iget_type(obj.get());
}

herr_t list_cb(hid_t, const char* name, const H5L_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->emplace_back(name);
  return 0;
}

herr_t attr_list_cb(hid_t, const char* name, const H5A_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->emplace_back(name);
  return 0;
}
}  // namespace

bool H5File::is_group(const std::string& path) const {
  return has(path) && object_type(file_, normalize(path)) == H5I_GROUP;
}

bool H5File::is_dataset(const std::string& path) const {
  return has(path) && object_type(file_, normalize(path)) == H5I_DATASET;
}

std::vector<std::string> H5File::list(const std::string& group_path) const {
  const std::string path = normalize(group_path);
  HG_CHECK(is_group(path), "no group " << where(path_, path));
  Handle g(H5Gopen2(file_, path.c_str(), group_access()), H5Gclose);
  if (!g.ok()) refuse_if_external(path_, path);
  HG_CHECK(g.ok(), "cannot open group " << where(path_, path) << hdf5_detail());
  std::vector<std::string> names;
  hsize_t idx = 0;
  HG_CHECK(H5Literate(g.get(), H5_INDEX_NAME, H5_ITER_INC, &idx, list_cb, &names) >= 0,
           "cannot list group " << where(path_, path) << hdf5_detail());
  std::sort(names.begin(), names.end());
  return names;
}

// ---- reading --------------------------------------------------------------------------------------

namespace {
Handle open_dataset(hid_t file, const std::string& file_path, const std::string& path, bool exists) {
  HG_CHECK(exists, "no dataset " << where(file_path, path));
  Handle d(H5Dopen2(file, path.c_str(), dataset_access()), H5Dclose);
  if (!d.ok()) refuse_if_external(file_path, path);
  HG_CHECK(d.ok(), where(file_path, path) << " is not a dataset" << hdf5_detail());
  // External raw storage (H5Pset_external) and virtual datasets read their bytes from other files
  // (a FIFO there blocks forever, a missing VDS source reads as zeros): refused like external links.
  Handle dcpl(H5Dget_create_plist(d.get()), H5Pclose);
  HG_CHECK(dcpl.ok(), "cannot read the creation properties of " << where(file_path, path) << hdf5_detail());
  const int external = H5Pget_external_count(dcpl.get());
  HG_CHECK(external == 0, where(file_path, path) << " stores its data in another file (external storage); hessgap "
                                                    "reads only data inside the file");
  HG_CHECK(H5Pget_layout(dcpl.get()) != H5D_VIRTUAL,
           where(file_path, path) << " stores its data in another file (a virtual dataset); hessgap reads only data "
                                     "inside the file");
  return d;
}

DatasetInfo describe(hid_t type, hid_t space) {
  DatasetInfo info;
  switch (H5Tget_class(type)) {
    case H5T_FLOAT: info.kind = DatasetInfo::Kind::Float; break;
    case H5T_INTEGER: info.kind = DatasetInfo::Kind::Integer; break;
    case H5T_STRING: info.kind = DatasetInfo::Kind::String; break;
    default: info.kind = DatasetInfo::Kind::Other; break;
  }
  info.element_size = H5Tis_variable_str(type) > 0 ? 0 : H5Tget_size(type);
  info.is_signed = info.kind != DatasetInfo::Kind::Integer || H5Tget_sign(type) != H5T_SGN_NONE;
  info.shape = space_shape(space);
  return info;
}

// A file opened for reading may declare any shape for a dataset. Before anything is allocated for
// it, its bytes (overflow-safe; a variable-length string counted as one byte) are checked against
// what the file can hold: its size when stored as is, 1032 times that (deflate's maximum ratio)
// when a filter compresses it. Chunks never written would read as fill values: a dataset larger
// than its file is refused as truncated or forged rather than allocated.
void check_declared_size(hid_t file, hid_t dset, const DatasetInfo& info, const std::string& what) {
  const auto nbytes = checked_nbytes(info.shape, std::max<std::size_t>(info.element_size, 1));
  hsize_t file_size = 0;
  HG_CHECK(H5Fget_filesize(file, &file_size) >= 0, "cannot read the size of the file of " << what << hdf5_detail());
  Handle dcpl(H5Dget_create_plist(dset), H5Pclose);
  const int filters = dcpl.ok() ? H5Pget_nfilters(dcpl.get()) : 0;
  const std::uint64_t cap =
      filters > 0 ? checked_mul(file_size, 1032).value_or(std::numeric_limits<std::uint64_t>::max()) : file_size;
  HG_CHECK(nbytes && static_cast<std::uint64_t>(*nbytes) <= cap,
           what << " declares shape " << shape_str(info.shape) << " of "
                << (nbytes ? std::to_string(*nbytes) : std::string("more than 2^63")) << " bytes, more than the "
                << file_size << "-byte file can hold" << (filters > 0 ? " even compressed" : "")
                << " (truncated or forged)");
}

const char* kind_name(DatasetInfo::Kind k) {
  switch (k) {
    case DatasetInfo::Kind::Float: return "floating point";
    case DatasetInfo::Kind::Integer: return "integer";
    case DatasetInfo::Kind::String: return "string";
    default: return "non-numeric";
  }
}
}  // namespace

DatasetInfo H5File::info(const std::string& path_in) const {
  const std::string path = normalize(path_in);
  Handle d = open_dataset(file_, path_, path, is_dataset(path));
  Handle type(H5Dget_type(d.get()), H5Tclose);
  Handle space(H5Dget_space(d.get()), H5Sclose);
  DatasetInfo info = describe(type.get(), space.get());
  if (!writable_) check_declared_size(file_, d.get(), info, where(path_, path));
  return info;
}

void H5File::read_numeric(const std::string& path_in, void* out, int which, std::size_t count) const {
  const std::string path = normalize(path_in);
  Handle d = open_dataset(file_, path_, path, is_dataset(path));
  Handle type(H5Dget_type(d.get()), H5Tclose);
  Handle space(H5Dget_space(d.get()), H5Sclose);
  DatasetInfo info = describe(type.get(), space.get());
  if (!writable_) check_declared_size(file_, d.get(), info, where(path_, path));
  bool ok = info.kind == DatasetInfo::Kind::Integer ||
            (info.kind == DatasetInfo::Kind::Float && which != kInt64);
  HG_CHECK(ok, "cannot read " << where(path_, path) << " as " << which_name(which) << ": it holds "
                              << kind_name(info.kind) << " data");
  HG_CHECK(static_cast<int64_t>(count) == info.numel(),
           "cannot read " << where(path_, path) << ": it has shape " << shape_str(info.shape) << " ("
                          << info.numel() << " elements), expected " << count << " elements");
  if (count == 0) return;
  herr_t status = -1;
  {
    signals::CrashGuard guard("reading " + where(path_, path), "libhdf5");
    status = H5Dread(d.get(), native_type(which), H5S_ALL, H5S_ALL, H5P_DEFAULT, out);
  }
  HG_CHECK(status >= 0, "cannot read " << where(path_, path) << " as " << which_name(which) << hdf5_detail());
}

template <class T>
std::vector<T> H5File::read_vector(const std::string& path, int which, std::vector<int64_t>* shape) const {
  DatasetInfo i = info(path);
  std::vector<T> out(static_cast<std::size_t>(i.numel()));
  read_numeric(path, out.data(), which, out.size());
  if (shape) *shape = i.shape;
  return out;
}

std::vector<double> H5File::read_doubles(const std::string& path, std::vector<int64_t>* shape) const {
  return read_vector<double>(path, kDouble, shape);
}

std::vector<float> H5File::read_floats(const std::string& path, std::vector<int64_t>* shape) const {
  return read_vector<float>(path, kFloat, shape);
}

std::vector<int64_t> H5File::read_int64(const std::string& path, std::vector<int64_t>* shape) const {
  return read_vector<int64_t>(path, kInt64, shape);
}

void H5File::read_into(const std::string& path, double* out, std::size_t count) const {
  read_numeric(path, out, kDouble, count);
}

void H5File::read_into(const std::string& path, float* out, std::size_t count) const {
  read_numeric(path, out, kFloat, count);
}

void H5File::read_into(const std::string& path, int64_t* out, std::size_t count) const {
  read_numeric(path, out, kInt64, count);
}

double H5File::read_double(const std::string& path) const {
  double v = 0;
  read_numeric(path, &v, kDouble, 1);
  return v;
}

int64_t H5File::read_int64_scalar(const std::string& path) const {
  int64_t v = 0;
  read_numeric(path, &v, kInt64, 1);
  return v;
}

std::vector<std::string> H5File::read_strings(const std::string& path_in, std::vector<int64_t>* shape) const {
  const std::string path = normalize(path_in);
  Handle d = open_dataset(file_, path_, path, is_dataset(path));
  Handle type(H5Dget_type(d.get()), H5Tclose);
  Handle space(H5Dget_space(d.get()), H5Sclose);
  DatasetInfo info = describe(type.get(), space.get());
  if (!writable_) check_declared_size(file_, d.get(), info, where(path_, path));
  HG_CHECK(info.kind == DatasetInfo::Kind::String,
           "cannot read " << where(path_, path) << " as strings: it holds " << kind_name(info.kind) << " data");
  if (shape) *shape = info.shape;
  std::size_t n = static_cast<std::size_t>(info.numel());
  if (n == 0) return {};
  hid_t dset = d.get();
  return read_string_data(
      type.get(), n, [&](hid_t mem, void* buf) { return H5Dread(dset, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf); },
      where(path_, path));
}

// ---- attributes (reading) ------------------------------------------------------------------------

namespace {
Handle open_attr(hid_t obj, const std::string& file_path, const std::string& path, const std::string& name) {
  htri_t e = H5Aexists(obj, name.c_str());
  H5Eclear2(H5E_DEFAULT);
  HG_CHECK(e > 0, "no attribute '" << name << "' on " << where(file_path, path));
  Handle a(H5Aopen(obj, name.c_str(), H5P_DEFAULT), H5Aclose);
  HG_CHECK(a.ok(), "cannot open attribute '" << name << "' on " << where(file_path, path) << hdf5_detail());
  return a;
}
}  // namespace

bool H5File::has_attr(const std::string& object_path, const std::string& name) const {
  const std::string path = normalize(object_path);
  if (!has(path)) return false;
  Handle obj = open_object(file_, path_, path, true);
  htri_t e = H5Aexists(obj.get(), name.c_str());
  H5Eclear2(H5E_DEFAULT);
  return e > 0;
}

std::vector<std::string> H5File::attr_names(const std::string& object_path) const {
  const std::string path = normalize(object_path);
  Handle obj = open_object(file_, path_, path, has(path));
  std::vector<std::string> names;
  hsize_t idx = 0;
  HG_CHECK(H5Aiterate2(obj.get(), H5_INDEX_NAME, H5_ITER_INC, &idx, attr_list_cb, &names) >= 0,
           "cannot list attributes of " << where(path_, path) << hdf5_detail());
  std::sort(names.begin(), names.end());
  return names;
}

std::string H5File::attr_string(const std::string& object_path, const std::string& name) const {
  const std::string path = normalize(object_path);
  Handle obj = open_object(file_, path_, path, has(path));
  Handle a = open_attr(obj.get(), path_, path, name);
  Handle type(H5Aget_type(a.get()), H5Tclose);
  Handle space(H5Aget_space(a.get()), H5Sclose);
  const std::string what = "attribute '" + name + "' on " + where(path_, path);
  HG_CHECK(H5Tget_class(type.get()) == H5T_STRING, "cannot read " << what << " as a string: it is not a string");
  hssize_t n = H5Sget_simple_extent_npoints(space.get());
  HG_CHECK(n == 1, "cannot read " << what << " as a string: it holds " << n << " values");
  hid_t attr = a.get();
  return read_string_data(type.get(), 1, [&](hid_t mem, void* buf) { return H5Aread(attr, mem, buf); }, what)[0];
}

void H5File::attr_numeric(const std::string& object_path, const std::string& name, void* out, int which) const {
  const std::string path = normalize(object_path);
  Handle obj = open_object(file_, path_, path, has(path));
  Handle a = open_attr(obj.get(), path_, path, name);
  Handle type(H5Aget_type(a.get()), H5Tclose);
  Handle space(H5Aget_space(a.get()), H5Sclose);
  H5T_class_t cls = H5Tget_class(type.get());
  bool ok = cls == H5T_INTEGER || (cls == H5T_FLOAT && which != kInt64);
  HG_CHECK(ok, "cannot read attribute '" << name << "' on " << where(path_, path) << " as " << which_name(which)
                                         << ": it has another type");
  hssize_t n = H5Sget_simple_extent_npoints(space.get());
  HG_CHECK(n == 1, "cannot read attribute '" << name << "' on " << where(path_, path) << " as a scalar: it holds "
                                             << n << " values");
  herr_t status = -1;
  {
    signals::CrashGuard guard("reading attribute '" + name + "' on " + where(path_, path), "libhdf5");
    status = H5Aread(a.get(), native_type(which), out);
  }
  HG_CHECK(status >= 0, "cannot read attribute '" << name << "' on " << where(path_, path) << hdf5_detail());
}

double H5File::attr_double(const std::string& object_path, const std::string& name) const {
  double v = 0;
  attr_numeric(object_path, name, &v, kDouble);
  return v;
}

int64_t H5File::attr_int64(const std::string& object_path, const std::string& name) const {
  int64_t v = 0;
  attr_numeric(object_path, name, &v, kInt64);
  return v;
}

}  // namespace hessgap::io
