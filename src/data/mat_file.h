// A reader for MATLAB Level 5 MAT-files (the format of `save -v6` and `save -v7`), enough for the
// annotation files that image datasets ship (Oxford Flowers' setid.mat, Stanford Cars' devkit, Stanford
// Dogs' lists): numeric, logical, char, cell and struct arrays, uncompressed or zlib-compressed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hessgap::data {

// One MATLAB array. Elements are in MATLAB's column-major order throughout.
struct MatArray {
  enum class Type { kNumeric, kChar, kCell, kStruct };
  Type type = Type::kNumeric;
  std::string name;        // the variable's name at the top level; "" inside cells and structs
  std::string class_name;  // MATLAB's class: double single int8 ... uint64 logical char cell struct
  // Where the array is, for error messages: "MAT-file '<path>', variable annotations(3).fname".
  std::string origin;
  std::vector<std::int64_t> dims;  // at least 2, as MATLAB stores them
  bool complex = false;            // kNumeric: the imaginary part is dropped
  std::vector<double> values;      // kNumeric: the real parts (exact for integers up to 2^53)
  std::u32string chars;            // kChar: code points
  std::vector<MatArray> elements;  // kCell: numel() arrays; kStruct: numel() * fields.size(), element-major
  std::vector<std::string> fields; // kStruct: field names in file order

  std::int64_t numel() const;
  // kChar with at most one row (1 x N, N x 1, or empty): the text as UTF-8. Throws hessgap::Error naming
  // `origin` for another type or a multi-row char array.
  std::string str() const;
  // kNumeric: the values as integers. Throws hessgap::Error naming `origin` for another type or a value
  // that is not an integer.
  std::vector<std::int64_t> integers() const;
  // kNumeric with exactly one element: that value as an integer. Throws hessgap::Error naming `origin`
  // otherwise.
  std::int64_t scalar_integer() const;
  // kCell: element i (0-based, column-major). Throws hessgap::Error for another type or i out of range.
  const MatArray& cell(std::int64_t i) const;
  // kStruct: field `name` of element i. Throws hessgap::Error naming `origin`, the field and the fields
  // present when it is missing, or for another type or i out of range.
  const MatArray& field(const std::string& name, std::int64_t i = 0) const;
  bool has_field(const std::string& name) const;
};

// Every variable of the Level 5 MAT-file at `path`, in file order. Either byte order; variables may be
// zlib-compressed (miCOMPRESSED, MATLAB's default since v7). Numeric data may be stored in a smaller
// type than its class, as MATLAB does. Throws hessgap::Error naming the file for: a missing or unreadable
// file; a MATLAB v7.3 file (HDF5-based: re-save it with `save -v7`) or a v4 file; truncated or corrupt
// data; sparse arrays, objects and function handles. Top-level elements that are not arrays are skipped.
std::vector<MatArray> read_mat_file(const std::string& path);

// The variable `name` of read_mat_file(path). Throws hessgap::Error naming the file, the variable and
// the variables present when it is absent.
MatArray read_mat_variable(const std::string& path, const std::string& name);

}  // namespace hessgap::data
