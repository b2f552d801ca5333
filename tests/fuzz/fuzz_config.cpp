// Hugging Face config.json (BERT, RoBERTa, ViT): JSON, field types and the bounds on sizes.
#include "fuzz_file.h"
#include "models/hf_config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  hessgap::fuzz::TempFile file(data, size, ".json");
  hessgap::fuzz::refuse_cleanly([&] { hessgap::models::validate(hessgap::models::read_hf_config(file.path())); });
  return 0;
}
