// Reading NumPy .npy files (format versions 1.0, 2.0 and 3.0), as written by numpy.save. Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hessgap::data {

// One array read from a .npy file: its dtype descriptor, shape and raw little-endian C-order bytes.
//
// Supported descriptors: '<i8' '<i4' '<u1' '|u1' '<f4' '<f8' '|b1'; any other (big-endian data
// included) is refused, and so is fortran_order True, with a message naming the file.
// The header (a Python dict literal with the keys 'descr', 'fortran_order' and 'shape', in any
// order, padded with spaces and ended by '\n') is parsed as such, not matched by position.
//
// Errors (hessgap::Error, naming the file): missing or unreadable file; bad magic; unknown format
// version; a header that is not a dict with exactly those keys; an unsupported descr; Fortran
// order; a negative or malformed shape; a data section shorter or longer than
// prod(shape) * itemsize ("expected N bytes of data, found M").
struct NpyArray {
  std::string descr;               // as in the file, e.g. "<i8"
  std::vector<std::int64_t> shape;  // () for a scalar
  std::size_t item_size = 0;       // bytes per element
  std::vector<std::uint8_t> data;   // prod(shape) * item_size bytes, C order

  std::int64_t numel() const;
  // Every element converted to int64 (integer and bool descrs only; floats throw).
  std::vector<std::int64_t> as_int64() const;
  // Every element converted to double (any supported descr).
  std::vector<double> as_double() const;
};

NpyArray read_npy(const std::string& path);

// A 1-D integer array (any integer or bool descr) as int64; throws naming the file when it is not
// 1-D or not integral.
std::vector<std::int64_t> read_npy_int_vector(const std::string& path);

}  // namespace hessgap::data
