// The image decoder (JPEG and PNG through libjpeg-turbo and libpng) with its pixel limit.
#include "data/image.h"
#include "fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  hessgap::fuzz::TempFile file(data, size, ".img");
  hessgap::fuzz::refuse_cleanly([&] { (void)hessgap::data::decode_image(file.path()); });
  return 0;
}
