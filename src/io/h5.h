// A small RAII wrapper over the serial HDF5 C API: one open file, datasets and attributes addressed
// by absolute path ("/a/b/c"). Torch-free, so that tools without LibTorch can read and write results.
// hdf5.h stays out of this header; every HDF5 failure becomes a hessgap::Error naming the file,
// the object path and the innermost message of HDF5's error stack (HDF5's own printing is silenced).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace hessgap::io {

// What a dataset holds, as far as the readers below care.
struct DatasetInfo {
  enum class Kind { Float, Integer, String, Other };
  Kind kind = Kind::Other;
  std::size_t element_size = 0;  // bytes per element in the file (0 for variable-length strings)
  bool is_signed = true;         // integers only
  std::vector<int64_t> shape;    // empty for a scalar dataset
  int64_t numel() const;         // product of shape (1 for a scalar)
};

// An open HDF5 file. Movable, not copyable; the destructor closes every handle and ignores errors,
// so call close() where a failed final flush must be reported (e.g. before AtomicOutput::commit()).
//
// Paths are absolute ("/group/dataset"); a path without a leading '/' is taken from the root.
// Writers create missing intermediate groups ("/a/b/c" creates /a and /a/b) and refuse to
// overwrite an existing dataset (Error). Datasets are stored contiguous, little-endian,
// without compression. Every dataset gets a string attribute "description" (and "units" when
// non-empty), as the results layout requires.
//
// Errors (hessgap::Error): file not found / not HDF5 / not writable, missing objects, shape and
// size mismatches, type mismatches (e.g. read_int64 of a float dataset), writes to a read-only file.
class H5File {
 public:
  // Creates (truncating) a file for writing.
  static H5File create(const std::string& path);
  // Opens an existing file read-only.
  static H5File open_read(const std::string& path);

  H5File(H5File&& other) noexcept;
  H5File& operator=(H5File&& other) noexcept;
  H5File(const H5File&) = delete;
  H5File& operator=(const H5File&) = delete;
  ~H5File();

  const std::string& path() const { return path_; }
  bool is_open() const { return file_ >= 0; }
  bool writable() const { return writable_; }
  // Flushes and closes; throws if HDF5 reports a failure. Idempotent.
  void close();
  void flush();

  // ---- writing (file opened with create()) ----------------------------------------------------
  // `shape` is row-major; product(shape) must equal the number of elements given. An empty shape
  // writes a scalar dataset and needs exactly one element. Stored as float64 / float32 / int64.
  void write(const std::string& path, const std::vector<double>& data, const std::vector<int64_t>& shape,
             const std::string& description, const std::string& units = "");
  void write(const std::string& path, const std::vector<float>& data, const std::vector<int64_t>& shape,
             const std::string& description, const std::string& units = "");
  void write(const std::string& path, const std::vector<int64_t>& data, const std::vector<int64_t>& shape,
             const std::string& description, const std::string& units = "");
  // The same from raw memory: `data` holds product(shape) elements (may be null when that is 0).
  void write(const std::string& path, const double* data, const std::vector<int64_t>& shape,
             const std::string& description, const std::string& units = "");
  void write(const std::string& path, const float* data, const std::vector<int64_t>& shape,
             const std::string& description, const std::string& units = "");
  void write(const std::string& path, const int64_t* data, const std::vector<int64_t>& shape,
             const std::string& description, const std::string& units = "");
  // Scalar datasets (float64 / int64). The int overload exists so that write(p, 3, "d") is not ambiguous.
  void write(const std::string& path, double value, const std::string& description, const std::string& units = "");
  void write(const std::string& path, int64_t value, const std::string& description, const std::string& units = "");
  void write(const std::string& path, int value, const std::string& description, const std::string& units = "");
  // A 1-D dataset of variable-length UTF-8 strings (h5py: bytes, or str via .asstr()).
  void write_strings(const std::string& path, const std::vector<std::string>& data, const std::string& description);
  // Creates a group (and its parents); no-op if it exists.
  void create_group(const std::string& path);

  // Attributes on an existing group or dataset ("/" is the root). Replaces an attribute of the
  // same name. Strings are variable-length UTF-8 scalars (h5py: str); numbers are float64 / int64.
  void set_attr(const std::string& object_path, const std::string& name, const std::string& value);
  void set_attr(const std::string& object_path, const std::string& name, const char* value);
  void set_attr(const std::string& object_path, const std::string& name, double value);
  void set_attr(const std::string& object_path, const std::string& name, int64_t value);
  void set_attr(const std::string& object_path, const std::string& name, int value);

  // ---- reading ---------------------------------------------------------------------------------
  bool has(const std::string& path) const;                 // any object (group or dataset) at path
  bool is_group(const std::string& path) const;            // false if missing
  bool is_dataset(const std::string& path) const;          // false if missing
  std::vector<std::string> list(const std::string& group_path) const;  // child names, sorted
  DatasetInfo info(const std::string& path) const;

  // Numeric readers convert from any stored integer or float type (HDF5 converts). `shape`, when
  // given, receives the dataset's shape (empty for a scalar). read_int64 refuses float datasets.
  std::vector<double> read_doubles(const std::string& path, std::vector<int64_t>* shape = nullptr) const;
  std::vector<float> read_floats(const std::string& path, std::vector<int64_t>* shape = nullptr) const;
  std::vector<int64_t> read_int64(const std::string& path, std::vector<int64_t>* shape = nullptr) const;
  // Reads into caller memory of exactly `count` elements (Error if the dataset has another size).
  void read_into(const std::string& path, double* out, std::size_t count) const;
  void read_into(const std::string& path, float* out, std::size_t count) const;
  void read_into(const std::string& path, int64_t* out, std::size_t count) const;
  // Scalar (or one-element) datasets.
  double read_double(const std::string& path) const;
  int64_t read_int64_scalar(const std::string& path) const;
  // Variable- or fixed-length strings of any rank, flattened row-major (fixed-length ones are cut at
  // the first NUL and trailing space padding is dropped).
  std::vector<std::string> read_strings(const std::string& path, std::vector<int64_t>* shape = nullptr) const;

  bool has_attr(const std::string& object_path, const std::string& name) const;
  std::vector<std::string> attr_names(const std::string& object_path) const;  // sorted
  std::string attr_string(const std::string& object_path, const std::string& name) const;
  double attr_double(const std::string& object_path, const std::string& name) const;
  int64_t attr_int64(const std::string& object_path, const std::string& name) const;

 private:
  H5File(int64_t file, std::string path, bool writable);
  void require_writable(const std::string& what) const;
  void write_numeric(const std::string& path, const void* data, int which, const std::vector<int64_t>& shape,
                     const std::string& description, const std::string& units);
  void read_numeric(const std::string& path, void* out, int which, std::size_t count) const;
  template <class T>
  std::vector<T> read_vector(const std::string& path, int which, std::vector<int64_t>* shape) const;
  void set_attr_numeric(const std::string& object_path, const std::string& name, const void* value, int which);
  void attr_numeric(const std::string& object_path, const std::string& name, void* out, int which) const;

  int64_t file_ = -1;  // hid_t
  std::string path_;
  bool writable_ = false;
};

}  // namespace hessgap::io
