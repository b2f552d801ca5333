// Reading and writing the safetensors format (Hugging Face): an 8-byte little-endian header length
// N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end)}, "__metadata__": {str: str}},
// then the raw little-endian tensor bytes, offsets relative to the end of the header.
#pragma once

#include <torch/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace hessgap::io {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

struct TensorFile {
  NamedTensors tensors;                         // in file order (see read_safetensors)
  std::map<std::string, std::string> metadata;  // "__metadata__"; empty if absent
};

// Reads every tensor into fresh, contiguous CPU tensors of the stored dtype and shape
// (F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL -> kDouble ... kBool; 0-d and empty tensors
// allowed). Tensors are returned in file order, i.e. sorted by their begin data offset (ties by
// name), not in the JSON's key order (which writers usually sort alphabetically). Non-string
// metadata values are kept as their JSON text.
// Errors (hessgap::Error naming the file, and the tensor where there is one): missing file,
// file shorter than its header, header length 0 or over 100 MB, header not a JSON object,
// malformed entries, unsupported dtype, byte size != numel * element size, data offsets outside
// the data section or overlapping, duplicate names. Assumes a little-endian host.
TensorFile read_safetensors(const std::string& path);

// Writes `tensors` in the given order (names unique, non-empty, not "__metadata__"), each copied
// to CPU and made contiguous as needed; dtypes as listed above (Error otherwise, or for an
// undefined tensor). The JSON header is padded with spaces so the data starts 8-byte aligned;
// "__metadata__" is written only when `metadata` is non-empty (as the Python writer does).
// Written under a temporary name and renamed when complete (AtomicOutput).
void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// "F32" <-> torch::kFloat etc. Error for dtypes outside the list above; `what` names the tensor
// and file in the message.
torch::Dtype safetensors_dtype(const std::string& name, const std::string& what);
std::string safetensors_dtype_name(torch::Dtype dtype, const std::string& what);

}  // namespace hessgap::io
