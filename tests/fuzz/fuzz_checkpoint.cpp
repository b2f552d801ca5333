// Checkpoint files, recognised by content as hessgap does: safetensors (header JSON, offsets, dtypes),
// torch.save zips (the restricted unpickler, storages), .npz (Google's ViT). HDF5 is left out: its
// parser is libhdf5's, fuzzed upstream, not ours.
#include <cstring>

#include "fuzz_file.h"
#include "io/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size >= 4 && std::memcmp(data, "\x89HDF", 4) == 0) return 0;
  hessgap::fuzz::TempFile file(data, size, ".ckpt");
  hessgap::fuzz::refuse_cleanly([&] { (void)hessgap::io::read_checkpoint(file.path()); });
  return 0;
}
