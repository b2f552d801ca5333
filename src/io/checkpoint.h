// Model weights in and out: safetensors files, Hugging Face folders (single or sharded), PyTorch
// torch.save zip files and Google ViT .npz files in, the project's HDF5 checkpoints in and out, and
// copying a state dict into a torch::nn::Module by name.
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

enum class CheckpointFormat {
  Safetensors,  // one .safetensors file
  Hdf5,         // a hessgap HDF5 checkpoint (layout below)
  TorchZip,     // torch.save, zip format (io/torch_zip.h)
  Npz,          // np.savez archive; Google ViT names are mapped (io/google_vit.h)
  ShardedIndex  // a Hugging Face *.index.json {"weight_map": {tensor: shard file}} and its shards
};

// Decides by content, not by extension: safetensors = 8-byte little-endian header length followed
// by '{'; HDF5 = the signature "\x89HDF\r\n\x1a\n" at offset 0; a zip archive with <name>/data.pkl =
// TorchZip, one whose entries are all *.npy = Npz; a JSON object (first non-blank byte '{') =
// ShardedIndex. A directory (a Hugging Face folder) means the first present of model.safetensors,
// model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json. `resolved`, if
// given, receives the file path.
// Errors: "checkpoint 'X' not found"; a directory with none of those files; a legacy (non-zip)
// torch.save file or other Python pickle (re-save it with torch.save, zip format, or as
// safetensors); a zip archive that is neither; any other content ("unknown format"); and the
// errors of ZipReader (a truncated zip).
CheckpointFormat detect_checkpoint_format(const std::string& path, std::string* resolved = nullptr);

// Reads every tensor of a checkpoint (format as above) as contiguous CPU tensors with their stored
// dtype. Order: safetensors file order (by data offset); HDF5 checkpoints in name order; torch.save
// in the pickle's order; npz in archive order (Google ViT: embeddings, blocks, norm, head);
// sharded folders shard by shard (shard files in name order), each in file order.
// `metadata`, if given, receives: the safetensors "__metadata__"; the HDF5 /metadata attributes;
// a torch.save training checkpoint's scalar entries (e.g. "epoch"); for a Google ViT npz
// "google_vit.dropped" (the arrays left out, e.g. "pre_logits/kernel,pre_logits/bias"); for a
// sharded folder the index's "metadata" entries (non-strings as JSON text) and the shards' own.
// Errors: as detect_checkpoint_format, read_safetensors, read_torch_zip, read_npz and
// google_vit_to_hf; an HDF5 file that is not a hessgap checkpoint or has a newer format_version;
// a sharded index that is not {"weight_map": {str: str}}, names a shard that does not exist, lists
// a tensor its shard lacks, or whose shards hold a tensor the index does not list or a tensor
// twice (the index file, the shard and the tensor are named).
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
//   /state/<section>/<name>  optional further tensors that are not the model's (a trainer's optimizer
//                     moments and counters, see train/checkpoint_state.h), stored like /tensors; readers
//                     of the model (read_checkpoint) ignore them.
void write_checkpoint_h5(const std::string& path, const StateDict& state,
                         const std::map<std::string, std::string>& metadata = {},
                         const std::map<std::string, StateDict>& sections = {});

// The tensors of /state/<section> of a hessgap HDF5 checkpoint. Throws hessgap::Error naming the file
// when it is not such a checkpoint or has no such section.
StateDict read_checkpoint_section(const std::string& path, const std::string& section);

// The /metadata attributes of a hessgap HDF5 checkpoint, without reading its tensors (a run folder's
// run_id). Throws hessgap::Error naming the file when it is not such a checkpoint.
std::map<std::string, std::string> read_checkpoint_metadata_h5(const std::string& path);

struct LoadOptions {
  // Strict: any missing, unexpected or mis-shaped tensor is an Error (one message listing all).
  // Not strict: those are skipped and only reported.
  bool strict = true;
  // Module tensors whose name ends in one of these may be absent from the state dict.
  std::vector<std::string> optional_suffixes = {"num_batches_tracked"};
  // Named in error messages (usually the checkpoint path).
  std::string source = "";
  // Fine-tuning with another number of classes: the module's head (its tensors whose name starts
  // with this prefix, e.g. Classifier::head_prefix() "fc." or "classifier.") may be missing from
  // the state dict or have another shape. Those tensors are then not errors: they keep the module's
  // own values, which for a freshly built model are the source library's init of a new head
  // (models/registry.h: reset_head redraws them), and are listed in LoadReport::new_head. Head
  // tensors whose shape matches are loaded as usual. Empty (the default): a head mismatch is an
  // error like any other, so that a measurement never silently runs with a made-up head.
  std::string new_head_prefix = "";
};

struct LoadReport {
  std::vector<std::string> loaded;            // module names that received a value
  std::vector<std::string> missing;           // in the module, not in the state dict (not optional)
  std::vector<std::string> optional_missing;  // missing but matching optional_suffixes
  std::vector<std::string> unexpected;        // in the state dict, not in the module
  std::vector<std::string> mismatched;        // in both with different shapes (not loaded)
  std::vector<std::string> new_head;          // head tensors kept at the module's values (new_head_prefix)
};

// A one-line summary for logs and result files: "loaded N tensors" followed by every non-empty
// list, e.g. "loaded 150 tensors; new head (2): classifier.weight, classifier.bias".
std::string describe(const LoadReport& report);

// Copies state-dict values into the module's parameters and buffers (named_parameters() and
// named_buffers(), recursive, full dotted names), converting to each target's dtype and device,
// under NoGradGuard. Shapes must match exactly. In strict mode nothing is copied unless everything
// matches; the Error lists every missing, unexpected and mismatched (with both shapes) name and
// the source. Duplicate names in `state` are an Error in either mode. Head tensors under
// opts.new_head_prefix that are missing or mis-shaped are neither copied nor errors (see above).
LoadReport load_state_dict(torch::nn::Module& module, const StateDict& state, const LoadOptions& opts = {});

// The module's parameters then buffers (recursive), in registration order. The tensors are
// detached aliases of the module's storage, not copies: write them out before changing the module,
// or clone them. Undefined parameters and buffers are skipped.
StateDict state_dict_of(const torch::nn::Module& module);

}  // namespace hessgap::io
