// numpy's .npy array files and .npz archives (np.save / np.savez / np.savez_compressed), read
// without Python: the header is a Python dict literal {'descr', 'fortran_order', 'shape'}.
// (src/data has its own reader for label files; io must not depend on data.)
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace hessgap::io {

struct NpyHeader {
  std::string descr;           // e.g. "<f4"
  torch::Dtype dtype = torch::kFloat;
  std::vector<std::int64_t> shape;
  bool fortran_order = false;
  std::size_t data_offset = 0;  // bytes from the start of the file to the array data
};

// Parses the magic "\x93NUMPY", version 1, 2 or 3 and the header of `bytes` (the whole file, or at
// least its header). Supported descr: <f8 <f4 <f2 <i8 <i4 <i2 |i1 |u1 |b1 (also with '=' or, for
// one-byte types, '<'); the data is little-endian (checked on the host).
// Errors (hessgap::Error starting with `what`, e.g. "array 'x' in 'f.npz'"): bad magic or version,
// a header that is not such a dict, an unsupported dtype (named: big-endian, unsigned 16/32/64-bit,
// complex, strings, objects, structured, bfloat16 saved as void 'V2'), negative dimensions.
NpyHeader parse_npy_header(const std::string& bytes, const std::string& what);

// The array of a complete .npy file as a fresh, C-contiguous CPU tensor (Fortran-ordered arrays
// are transposed into C order). Errors: those of parse_npy_header, and a data size other than
// numel * element size (a truncated array).
torch::Tensor parse_npy(const std::string& bytes, const std::string& what);

// Every array of an .npz archive (stored or deflated), named by its entry name without ".npy",
// in archive order. Errors: those of ZipReader and parse_npy, naming the file and the array; an
// entry that is not a .npy file.
NamedTensors read_npz(const std::string& path);

}  // namespace hessgap::io
