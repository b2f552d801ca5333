// WordPiece as BERT uses it (Hugging Face's BertNormalizer + BertPreTokenizer + WordPiece model):
// text cleaning, CJK ideographs split off, optional lower-casing and accent stripping, splitting on
// whitespace and punctuation, then greedy longest-match-first sub-words with the "##" prefix.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "data/tokenizer.h"

namespace hessgap::data {

struct WordPieceOptions {
  bool lowercase = true;                  // do_lower_case: true for bert-base-uncased, false for -cased
  std::optional<bool> strip_accents;      // NFD and drop nonspacing marks; unset: same as lowercase
  bool clean_text = true;                 // drop NUL, U+FFFD and C* characters; whitespace -> ' '
  bool split_chinese_chars = true;        // CJK ideographs become words of their own
  std::int64_t max_input_chars_per_word = 100;  // longer words (in code points) become [UNK]
};

class WordPieceTokenizer : public Tokenizer {
 public:
  // vocab.txt: one token per line, id = line index (0-based; a repeated token keeps its last line).
  // Needs [UNK], [CLS], [SEP] and [PAD]. Throws hessgap::Error naming the file when it cannot be read
  // or lacks one of them.
  explicit WordPieceTokenizer(const std::string& vocab_txt_path, WordPieceOptions options = {});

  std::vector<std::int64_t> encode(const std::string& text) const override;
  const SpecialTokens& special_tokens() const override { return special_; }
  std::int64_t vocab_size() const override { return static_cast<std::int64_t>(tokens_.size()); }
  std::string id_to_token(std::int64_t id) const override;
  std::string describe() const override;

  // The words after normalization and pre-tokenization (before WordPiece), e.g. uncased
  // "Hélló  WoŕlḊ¿" -> {"hello", "world", "¿"}. Throws for invalid UTF-8.
  std::vector<std::string> basic_tokenize(const std::string& text) const;
  // WordPiece sub-word strings of `text`, e.g. {"res", "##pu", "##bl", "##ica"}.
  std::vector<std::string> tokenize(const std::string& text) const;

  const WordPieceOptions& options() const { return options_; }

 private:
  // Appends the ids of one word (greedy longest match; [UNK] for the whole word when a part has no match).
  void word_ids(const std::string& word, std::vector<std::int64_t>& out) const;

  std::string vocab_path_;
  WordPieceOptions options_;
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, std::int64_t> vocab_;
  SpecialTokens special_;
};

}  // namespace hessgap::data
