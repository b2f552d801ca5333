// MATLAB level-5 .mat files (Stanford Cars/Dogs, Flowers-102 annotations), compressed or not.
#include "data/mat_file.h"
#include "fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  hessgap::fuzz::TempFile file(data, size, ".mat");
  hessgap::fuzz::refuse_cleanly([&] { (void)hessgap::data::read_mat_file(file.path()); });
  return 0;
}
