// Byte-level BPE as GPT-2 and RoBERTa use it (Hugging Face's ByteLevel pre-tokenizer + BPE model):
// GPT-2's pre-tokenization regex, bytes mapped to printable characters, merges applied by rank.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "data/tokenizer.h"

namespace hessgap::data {

class BpeTokenizer : public Tokenizer {
 public:
  // vocab.json: {"token": id, ...} with ids 0..V-1 (token strings in the byte-level alphabet, e.g. "Ġthe");
  // merges.txt: optional "#version" first line, then "left right" per line, rank = order in the file.
  // Special tokens <s>, </s>, <pad>, <unk> are looked up in the vocabulary (RoBERTa: 0, 2, 1, 3).
  // Throws hessgap::Error naming the file and line when a file cannot be read or is malformed, when the
  // vocabulary lacks one of the 256 byte symbols or a special token, and when a merge's parts or result
  // are not in the vocabulary ("... the vocabulary and merges do not belong together").
  BpeTokenizer(const std::string& vocab_json_path, const std::string& merges_path);

  std::vector<std::int64_t> encode(const std::string& text) const override;
  const SpecialTokens& special_tokens() const override { return special_; }
  std::int64_t vocab_size() const override { return static_cast<std::int64_t>(tokens_.size()); }
  std::string id_to_token(std::int64_t id) const override;
  std::string describe() const override;

  // GPT-2's pre-tokenization of UTF-8 text, the pattern
  //   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  // matched by hand (leftmost-first alternation, greedy, with the look-ahead's backtracking); \s is the
  // White_Space property, as in Oniguruma. The pieces concatenate to `text`. Throws for invalid UTF-8.
  static std::vector<std::string> pre_tokenize(const std::string& text);

  // The byte-level symbol of a byte: printable Latin-1 bytes stand for themselves, the other 68 for
  // U+0100.. in byte order (GPT-2's bytes_to_unicode), e.g. ' ' -> 'Ġ' (U+0120).
  static char32_t byte_symbol(std::uint8_t byte);

 private:
  std::vector<std::int64_t> bpe(const std::string& piece) const;

  std::string vocab_path_, merges_path_;
  std::vector<std::string> tokens_;                        // id -> token
  std::unordered_map<std::string, std::int64_t> vocab_;    // token -> id
  std::int64_t byte_ids_[256];                             // id of each byte's symbol
  struct Merge {
    std::int32_t rank;
    std::int64_t merged;
  };
  std::unordered_map<std::uint64_t, Merge> merges_;        // (left id << 32 | right id) -> rank, result id
  SpecialTokens special_;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<std::int64_t>> cache_;  // piece -> ids
};

}  // namespace hessgap::data
