// The WordPiece tokenizer (BERT): the first byte picks — 0: vocab.txt, else: text to encode (uncased,
// and cased when the byte is odd) with a small valid vocabulary.
#include <string>

#include "data/wordpiece_tokenizer.h"
#include "fuzz_file.h"

namespace {
const std::string kVocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\nthing\n##s\nre\n##pu\n##bl\n##ica\n,\n.\n";
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] == 0) {
    hessgap::fuzz::TempFile v(rest, ".txt");
    hessgap::fuzz::refuse_cleanly([&] { hessgap::data::WordPieceTokenizer(v.path()).encode("the things"); });
    return 0;
  }
  static hessgap::fuzz::TempFile v(kVocab, ".txt");
  static const hessgap::data::WordPieceTokenizer uncased(v.path());
  static const hessgap::data::WordPieceTokenizer cased(v.path(), hessgap::data::WordPieceOptions{false});
  hessgap::fuzz::refuse_cleanly([&] { (void)((data[0] & 1) ? cased : uncased).encode(rest); });
  return 0;
}
