// Model weights in and out: safetensors files and Hugging Face folders in, the project's HDF5
// checkpoints in and out, and copying a state dict into a torch::nn::Module by name.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace hessgap::io {

// Tensor name (torchvision / Hugging Face dotted names, e.g. "layer1.0.conv1.weight") -> tensor.
using StateDict = std::vector<std::pair<std::string, torch::Tensor>>;

enum class CheckpointFormat { Safetensors, Hdf5 };

// Decides by content, not by extension: safetensors = 8-byte little-endian header length followed
// by '{'; HDF5 = the signature "\x89HDF\r\n\x1a\n" at offset 0. A directory means
// <dir>/model.safetensors (a Hugging Face folder); `resolved`, if given, receives the file path.
// Errors: "checkpoint 'X' not found"; a directory without model.safetensors; a PyTorch .pt/.bin
// (zip or pickle) file; any other content ("unknown format").
CheckpointFormat detect_checkpoint_format(const std::string& path, std::string* resolved = nullptr);

// Reads every tensor of a checkpoint (format as above) as contiguous CPU tensors with their stored
// dtype. Order: safetensors file order (by data offset); HDF5 checkpoints in name order.
// `metadata`, if given, receives the safetensors "__metadata__" or the HDF5 /metadata attributes.
// Errors: as detect_checkpoint_format, read_safetensors, and for an HDF5 file that is not a
// hessgap checkpoint or has a newer format_version.
StateDict read_checkpoint(const std::string& path, std::map<std::string, std::string>* metadata = nullptr);

// The HDF5 checkpoint layout (format_version 1):
//   /                 attrs format = "hessgap-checkpoint", format_version = 1 (int64)
//   /tensors/<name>   one dataset per tensor, name kept verbatim (dots are fine in HDF5 link names;
//                     '/' is refused), shape of the tensor; attrs description and dtype (the torch
//                     dtype name, e.g. "float32"). Stored as float64 for float64, float32 for
//                     float32/float16/bfloat16, int64 for every integer type and bool; the reader
//                     converts back to the dtype attribute, so every dtype round-trips exactly.
//   /metadata         group whose string attributes are the user metadata.
// Tensors may live on any device and need not be contiguous. Written atomically (AtomicOutput).
// Errors: undefined tensor, unsupported dtype (complex, ...), empty/duplicate name or one with '/'.
void write_checkpoint_h5(const std::string& path, const StateDict& state,
                         const std::map<std::string, std::string>& metadata = {});

struct LoadOptions {
  // Strict: any missing, unexpected or mis-shaped tensor is an Error (one message listing all).
  // Not strict: those are skipped and only reported.
  bool strict = true;
  // Module tensors whose name ends in one of these may be absent from the state dict.
  std::vector<std::string> optional_suffixes = {"num_batches_tracked"};
  // Named in error messages (usually the checkpoint path).
  std::string source = "";
};

struct LoadReport {
  std::vector<std::string> loaded;            // module names that received a value
  std::vector<std::string> missing;           // in the module, not in the state dict (not optional)
  std::vector<std::string> optional_missing;  // missing but matching optional_suffixes
  std::vector<std::string> unexpected;        // in the state dict, not in the module
  std::vector<std::string> mismatched;        // in both with different shapes (not loaded)
};

// Copies state-dict values into the module's parameters and buffers (named_parameters() and
// named_buffers(), recursive, full dotted names), converting to each target's dtype and device,
// under NoGradGuard. Shapes must match exactly. In strict mode nothing is copied unless everything
// matches; the Error lists every missing, unexpected and mismatched (with both shapes) name and
// the source. Duplicate names in `state` are an Error in either mode.
LoadReport load_state_dict(torch::nn::Module& module, const StateDict& state, const LoadOptions& opts = {});

// The module's parameters then buffers (recursive), in registration order. The tensors are
// detached aliases of the module's storage, not copies: write them out before changing the module,
// or clone them. Undefined parameters and buffers are skipped.
StateDict state_dict_of(const torch::nn::Module& module);

}  // namespace hessgap::io
