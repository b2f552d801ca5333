// IDX files (Fashion-MNIST): magic, dimensions against the bytes present; as labels (1-D) and images (3-D).
#include "data/idx_dataset.h"
#include "fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  hessgap::fuzz::TempFile file(data, size, ".idx");
  hessgap::fuzz::refuse_cleanly([&] { (void)hessgap::data::read_idx(file.path(), 1); });
  hessgap::fuzz::refuse_cleanly([&] { (void)hessgap::data::read_idx(file.path(), 3); });
  return 0;
}
