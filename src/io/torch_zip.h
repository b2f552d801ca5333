// PyTorch checkpoints written by torch.save in the zip format (PyTorch >= 1.6, the default since):
// a zip archive <name>/data.pkl (a pickle of the saved object) plus <name>/data/<key> (the raw
// little-endian bytes of each storage). The pickle is read by a restricted interpreter that
// builds plain values only: nothing in the file is ever executed or imported, and anything
// outside a state dict's vocabulary is refused.
#pragma once

#include <map>
#include <string>

#include "io/safetensors.h"

namespace hessgap::io {

// The state dict saved in `path`, in the pickle's (insertion) order, as fresh, contiguous CPU
// tensors of the stored dtype (float64/32/16, bfloat16, int64/32/16/8, uint8, bool). Storage
// offsets, sizes and strides are honoured, so views (non-contiguous, offset, several tensors on
// one storage) come back with the values the view showed.
// The saved object may be
//   - a dict or OrderedDict of str -> tensor (torch.save(model.state_dict()); Parameters too), or
//   - a dict holding such a dict under "state_dict", "model_state_dict" or "model" (training
//     checkpoints such as the reference's {'arch', 'epoch', 'state_dict', ...}); its other entries
//     that are str/int/float/bool go to `metadata` (e.g. "epoch" -> "30"), the rest (optimizer
//     state, ...) is parsed but ignored.
// Pickle: protocols 2 to 5, the data opcodes (dicts, lists, tuples, str, int, float, bool, None,
// memo, MARK...), BINPERSID with ('storage', torch.<T>Storage, key, location, numel), REDUCE and
// BUILD, and GLOBAL / STACK_GLOBAL of exactly collections.OrderedDict,
// torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter and torch.<T>Storage.
// Errors (hessgap::Error naming the file): any other GLOBAL (e.g. 'posix.system') or opcode,
// named with its byte offset in data.pkl; a malformed pickle; no data.pkl (a TorchScript archive
// from torch.jit.save is named as such); a big-endian archive; a missing storage record or one
// whose size disagrees with its numel; a view outside its storage; a saved object that is not a
// state dict (naming the key whose value is not a tensor); a data.pkl over 1 GiB, nesting deeper than
// 1000 levels or more than 10^7 values pushed or stored (memory bounds; nested values are freed
// without recursion); a storage whose declared element count disagrees with its record, or a view
// with more elements than its storage (both checked before allocating); and those of ZipReader
// (truncated file, forged sizes, CRC mismatch).
NamedTensors read_torch_zip(const std::string& path, std::map<std::string, std::string>* metadata = nullptr);

}  // namespace hessgap::io
