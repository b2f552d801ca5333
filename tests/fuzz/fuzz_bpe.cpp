// The byte-level BPE tokenizer (RoBERTa): the first byte picks what the rest is — 0: vocab.json (with
// a valid merges.txt), 1: merges.txt (with a valid vocab.json), else: text to encode with the valid pair.
#include <string>

#include "data/bpe_tokenizer.h"
#include "fuzz_file.h"

namespace {

// The 256 byte symbols, the four specials and two merges: the smallest valid vocabulary.
std::string valid_vocab() {
  std::string json = "{";
  int id = 0;
  auto add = [&](const std::string& token) {
    std::string quoted;
    for (char c : token) {
      if (c == '"' || c == '\\') quoted += '\\';
      quoted += c;
    }
    json += (id ? "," : "") + std::string("\"") + quoted + "\":" + std::to_string(id);
    ++id;
  };
  for (const char* s : {"<s>", "<pad>", "</s>", "<unk>"}) add(s);
  for (int b = 0; b < 256; ++b) {
    const char32_t cp = hessgap::data::BpeTokenizer::byte_symbol(static_cast<std::uint8_t>(b));
    std::string utf8;
    if (cp < 0x80) {
      utf8 += static_cast<char>(cp);
    } else {
      utf8 += static_cast<char>(0xC0 | (cp >> 6));
      utf8 += static_cast<char>(0x80 | (cp & 0x3F));
    }
    add(utf8);
  }
  add("\xC4\xA0t");  // "Ġt"
  add("\xC4\xA0th");  // "Ġth"
  return json + "}";
}

const std::string kMerges = "#version: 0.2\n\xC4\xA0 t\n\xC4\xA0t h\n";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string vocab = valid_vocab();
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] == 0) {
    hessgap::fuzz::TempFile v(rest, ".json"), m(kMerges, ".txt");
    hessgap::fuzz::refuse_cleanly([&] { hessgap::data::BpeTokenizer(v.path(), m.path()).encode("the thing"); });
  } else if (data[0] == 1) {
    hessgap::fuzz::TempFile v(vocab, ".json"), m(rest, ".txt");
    hessgap::fuzz::refuse_cleanly([&] { hessgap::data::BpeTokenizer(v.path(), m.path()).encode("the thing"); });
  } else {
    static hessgap::fuzz::TempFile v(vocab, ".json"), m(kMerges, ".txt");
    static const hessgap::data::BpeTokenizer tokenizer(v.path(), m.path());
    hessgap::fuzz::refuse_cleanly([&] { (void)tokenizer.encode(rest); });
  }
  return 0;
}
