// GLUE TSV files: MRPC (first byte even) or SST-2 (odd), columns, labels, quoting.
#include <string>

#include "data/glue.h"
#include "fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  hessgap::fuzz::TempFile file(data + 1, size - 1, ".tsv");
  const std::string task = (data[0] & 1) ? "sst2" : "mrpc";
  hessgap::fuzz::refuse_cleanly([&] { (void)hessgap::data::read_glue_tsv(file.path(), task); });
  return 0;
}
