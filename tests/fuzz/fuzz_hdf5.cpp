// hessgap's HDF5 checkpoint reader (io/checkpoint.cpp over io/h5.cpp), fuzzed by structure: the bytes
// are a small program that builds a file with the HDF5 C API — root attributes of the right or wrong
// type, datasets of every HDF5 type class, rank and extent (huge ones chunked and never written),
// "dtype" attributes, nested groups, soft links (dangling, cyclic), external links, /metadata and
// /state sections — and the reader then reads it as --checkpoint, --init-checkpoint and a resumed
// run do. Byte-level corruption of the format is libhdf5's own parser (a system library, not
// instrumented here, fuzzed upstream); what is ours is how the reader treats what a valid file can
// hold, and that is what a hostile file controls.
//
// Program: byte 0 picks the root attributes, then each op is one byte (op % 8) and its operands;
// reading stops at the end of the input.
#include <hdf5.h>

#include <array>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "fuzz_file.h"
#include "io/checkpoint.h"

namespace {

class Program {
 public:
  Program(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  bool more() const { return pos_ < size_; }
  std::uint8_t next() { return pos_ < size_ ? data_[pos_++] : 0; }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

void attr_string(hid_t obj, const char* name, const std::string& value, bool variable) {
  const hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, variable ? H5T_VARIABLE : std::max<std::size_t>(value.size(), 1));
  const hid_t space = H5Screate(H5S_SCALAR);
  const hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  if (a >= 0) {
    const char* p = value.c_str();
    H5Awrite(a, type, variable ? static_cast<const void*>(&p) : static_cast<const void*>(value.c_str()));
    H5Aclose(a);
  }
  H5Sclose(space);
  H5Tclose(type);
}

void attr_number(hid_t obj, const char* name, hid_t type, const void* value) {
  const hid_t space = H5Screate(H5S_SCALAR);
  const hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  if (a >= 0) {
    H5Awrite(a, type, value);
    H5Aclose(a);
  }
  H5Sclose(space);
}

// A file type for the op's type byte: every HDF5 class a checkpoint could hold.
hid_t make_type(std::uint8_t pick) {
  switch (pick % 14) {
    case 0: return H5Tcopy(H5T_IEEE_F32LE);
    case 1: return H5Tcopy(H5T_IEEE_F64BE);
    case 2: return H5Tcopy(H5T_STD_I64LE);
    case 3: return H5Tcopy(H5T_STD_U64LE);
    case 4: return H5Tcopy(H5T_STD_I8LE);
    case 5: return H5Tcopy(H5T_STD_U8BE);
    case 6: return H5Tcopy(H5T_STD_I16BE);
    case 7: {  // a 16-bit float (numpy's float16 as h5py writes it)
      const hid_t t = H5Tcopy(H5T_IEEE_F32LE);
      H5Tset_fields(t, 15, 10, 5, 0, 10);
      H5Tset_size(t, 2);
      H5Tset_ebias(t, 15);
      return t;
    }
    case 8: {
      const hid_t t = H5Tcopy(H5T_C_S1);
      H5Tset_size(t, 7);
      return t;
    }
    case 9: {
      const hid_t t = H5Tcopy(H5T_C_S1);
      H5Tset_size(t, H5T_VARIABLE);
      return t;
    }
    case 10: {
      const hid_t t = H5Tcreate(H5T_COMPOUND, 8);
      H5Tinsert(t, "a", 0, H5T_IEEE_F32LE);
      H5Tinsert(t, "b", 4, H5T_STD_I32LE);
      return t;
    }
    case 11: {
      const hsize_t dim = 3;
      return H5Tarray_create2(H5T_IEEE_F32LE, 1, &dim);
    }
    case 12: {
      const hid_t t = H5Tenum_create(H5T_STD_I8LE);
      const std::int8_t no = 0, yes = 1;
      H5Tenum_insert(t, "FALSE", &no);
      H5Tenum_insert(t, "TRUE", &yes);
      return t;
    }
    default: return H5Tcreate(H5T_OPAQUE, 4);
  }
}

// A dataset at `path`: rank 0-4 (or a null dataspace), each extent small, zero or huge; small ones are
// written with the program's bytes, huge ones are chunked and never written (no storage in the file).
void make_dataset(hid_t file, const std::string& path, Program& p) {
  const hid_t type = make_type(p.next());
  const std::uint8_t shape = p.next();
  const int rank = shape % 6;  // 5: a null dataspace
  std::vector<hsize_t> dims;
  bool huge = false;
  hsize_t count = 1;
  for (int i = 0; i < rank && rank < 5; ++i) {
    const std::uint8_t d = p.next();
    const hsize_t extent = (d & 0x80) ? (hsize_t{1} << (d & 0x3F)) : (d & 0x0F);
    huge = huge || (d & 0x80);
    dims.push_back(extent);
    count = extent == 0 ? 0 : (count > (hsize_t{1} << 40) / extent ? (hsize_t{1} << 40) : count * extent);
  }
  const hid_t space = rank == 5 ? H5Screate(H5S_NULL)
                                : (rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims.data(), nullptr));
  const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (huge && rank > 0 && rank < 5) {
    std::vector<hsize_t> chunk(dims.size(), 1);
    H5Pset_chunk(dcpl, rank, chunk.data());
  }
  const hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  const hid_t d = H5Dcreate2(file, path.c_str(), type, space, lcpl, dcpl, H5P_DEFAULT);
  if (d >= 0 && !huge && rank < 5 && count <= 4096 && H5Tget_class(type) != H5T_STRING) {
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(count) * H5Tget_size(type));
    for (auto& b : bytes) b = p.next();
    H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data());
  }
  if (d >= 0) H5Dclose(d);
  H5Pclose(lcpl);
  H5Pclose(dcpl);
  H5Sclose(space);
  H5Tclose(type);
}

const std::array<const char*, 12> kDtypes = {"float32", "float64", "int64", "bfloat16", "float16", "int8",
                                             "bool",    "uint8",   "complex64", "", "int32", "float"};
const std::array<const char*, 3> kSections = {"optimizer", "schedule", "rng"};
const std::array<const char*, 6> kSoftTargets = {"/tensors/t0", "/", "/tensors", "/nowhere", "/tensors/s0",
                                                 "/metadata"};

void build(const std::string& path, Program& p) {
  const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file < 0) std::abort();
  const std::uint8_t root = p.next();
  switch (root & 3) {
    case 1: attr_string(file, "format", "hessgap-checkpoint", root & 0x40); break;
    case 2: attr_string(file, "format", "hessgap-checkpoinT", false); break;
    case 3: {
      const std::int64_t v = 7;
      attr_number(file, "format", H5T_STD_I64LE, &v);
      break;
    }
    default: break;
  }
  switch ((root >> 2) & 3) {
    case 1: {
      const std::int64_t v = static_cast<std::int8_t>(p.next());
      attr_number(file, "format_version", H5T_STD_I64LE, &v);
      break;
    }
    case 2: attr_string(file, "format_version", "1", false); break;
    case 3: {
      const double v = 1.5;
      attr_number(file, "format_version", H5T_IEEE_F64LE, &v);
      break;
    }
    default: break;
  }
  std::string group = "/tensors";
  if (root & 0x10) {
    const hid_t g = H5Gcreate2(file, "/tensors", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g >= 0) H5Gclose(g);
  }
  std::string last;
  while (p.more()) {
    const std::uint8_t op = p.next();
    const std::string name = std::to_string(p.next());
    switch (op % 8) {
      case 0:
        last = group + "/t" + name;
        make_dataset(file, last, p);
        break;
      case 1:
        if (!last.empty() && H5Lexists(file, last.c_str(), H5P_DEFAULT) > 0) {
          const hid_t d = H5Oopen(file, last.c_str(), H5P_DEFAULT);
          if (d >= 0) {
            const std::uint8_t pick = p.next();
            if (pick & 0x80) {
              const std::int64_t v = pick;
              attr_number(d, "dtype", H5T_STD_I64LE, &v);
            } else {
              attr_string(d, "dtype", kDtypes[pick % kDtypes.size()], pick & 0x40);
            }
            H5Oclose(d);
          }
        }
        break;
      case 2: {
        const hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(lcpl, 1);
        const hid_t g = H5Gcreate2(file, (group + "/g" + name).c_str(), lcpl, H5P_DEFAULT, H5P_DEFAULT);
        if (g >= 0) H5Gclose(g);
        H5Pclose(lcpl);
        break;
      }
      case 3: {
        const hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(lcpl, 1);
        H5Lcreate_soft(kSoftTargets[p.next() % kSoftTargets.size()], file, (group + "/s" + name).c_str(), lcpl,
                       H5P_DEFAULT);
        H5Pclose(lcpl);
        break;
      }
      case 4: {
        hid_t g = H5Gopen2(file, "/metadata", H5P_DEFAULT);
        if (g < 0) g = H5Gcreate2(file, "/metadata", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g >= 0) {
          const std::string key = "k" + name;
          const std::uint8_t kind = p.next();
          if (kind % 3 == 0) {
            attr_string(g, key.c_str(), std::string(kind % 40, 'v'), kind & 0x80);
          } else if (kind % 3 == 1) {
            const std::int64_t v = kind;
            attr_number(g, key.c_str(), H5T_STD_I64LE, &v);
          } else {
            const double v = 0.25 * kind;
            attr_number(g, key.c_str(), H5T_IEEE_F64LE, &v);
          }
          H5Gclose(g);
        }
        break;
      }
      case 5: group = std::string("/state/") + kSections[p.next() % kSections.size()]; break;
      case 6: group = "/tensors"; break;
      default: {
        const hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(lcpl, 1);
        H5Lcreate_external("/nonexistent/other.h5", "/tensors", file, (group + "/e" + name).c_str(), lcpl, H5P_DEFAULT);
        H5Pclose(lcpl);
        break;
      }
    }
  }
  H5Fclose(file);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool quiet = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // the builder's own failures (bad names) are expected
    return true;
  }();
  (void)quiet;
  if (size == 0 || size > 4096) return 0;
  hessgap::fuzz::TempFile file("", ".h5");
  Program program(data, size);
  build(file.path(), program);
  std::map<std::string, std::string> metadata;
  hessgap::fuzz::refuse_cleanly([&] { (void)hessgap::io::read_checkpoint(file.path(), &metadata); });
  hessgap::fuzz::refuse_cleanly([&] { (void)hessgap::io::read_checkpoint_metadata_h5(file.path()); });
  hessgap::fuzz::refuse_cleanly([&] { (void)hessgap::io::read_checkpoint_section(file.path(), "optimizer"); });
  // Every handle is closed again, on the error paths too: one left open keeps the file open.
  if (H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != 0) std::abort();
  return 0;
}
