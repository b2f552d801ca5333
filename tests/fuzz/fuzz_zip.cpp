// The zip reader (torch.save checkpoints, .npz): the central directory, then every member read.
#include <algorithm>

#include "fuzz_file.h"
#include "io/zip_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  hessgap::fuzz::TempFile file(data, size, ".zip");
  hessgap::fuzz::refuse_cleanly([&] {
    hessgap::io::ZipReader zip(file.path());
    for (const auto& e : zip.entries()) {
      if (e.size > (std::uint64_t{1} << 24)) continue;  // a real 16 MiB member is fine; keep runs fast
      hessgap::fuzz::refuse_cleanly([&] { (void)zip.read(e); });
    }
  });
  return 0;
}
