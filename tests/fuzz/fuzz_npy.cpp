// .npy arrays (DomainNet weak labels and other label files): header, dtype, shape against the bytes.
#include "data/npy.h"
#include "fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  hessgap::fuzz::TempFile file(data, size, ".npy");
  hessgap::fuzz::refuse_cleanly([&] { (void)hessgap::data::read_npy(file.path()); });
  hessgap::fuzz::refuse_cleanly([&] { (void)hessgap::data::read_npy_int_vector(file.path()); });
  return 0;
}
