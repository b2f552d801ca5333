// Text tokenizers with Hugging Face's ids, and the model inputs of one text or a text pair: special
// tokens, longest-first truncation, padding, attention mask and token types, as
// `tokenizer(a, b, padding="max_length", max_length=128, truncation=True)` of a fast tokenizer gives them.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace hessgap::data {

// How special tokens frame one text or a pair, and their ids.
struct SpecialTokens {
  enum class Layout {
    kRoberta,  // <s> A </s>   and   <s> A </s></s> B </s>; token types all 0
    kBert,     // [CLS] A [SEP]   and   [CLS] A [SEP] B [SEP]; token types 0 up to the first [SEP], then 1
  };
  Layout layout = Layout::kBert;
  std::int64_t cls = 101;  // <s> / [CLS]
  std::int64_t sep = 102;  // </s> / [SEP]
  std::int64_t pad = 0;    // <pad> / [PAD]
  std::int64_t unk = 100;  // <unk> / [UNK]

  // Number of special tokens added to one text (2) or a pair (RoBERTa 4, BERT 3).
  std::int64_t num_added(bool pair) const { return pair ? (layout == Layout::kRoberta ? 4 : 3) : 2; }
};

// Model inputs of one example, all of the same length.
struct Encoding {
  std::vector<std::int64_t> ids;             // token ids with special tokens, then padding
  std::vector<std::int64_t> attention_mask;  // 1 for tokens (special tokens included), 0 for padding
  std::vector<std::int64_t> token_type_ids;  // see SpecialTokens::Layout; 0 for padding
  std::int64_t length() const { return static_cast<std::int64_t>(ids.size()); }
  std::int64_t num_tokens() const;           // number of non-padding positions
};

// A tokenizer: text to ids without special tokens. Implementations are immutable after construction
// apart from internal caches, and thread-safe.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Ids of `text` (UTF-8) without special tokens, i.e. Hugging Face's
  // `tokenizer(text, add_special_tokens=False)["input_ids"]`. Special-token strings inside the text
  // ("<s>", "[CLS]") are tokenized as ordinary text, unlike Hugging Face, which matches them as added
  // tokens. Throws hessgap::Error for invalid UTF-8.
  virtual std::vector<std::int64_t> encode(const std::string& text) const = 0;
  virtual const SpecialTokens& special_tokens() const = 0;
  virtual std::int64_t vocab_size() const = 0;
  // The token string of `id` (byte-level symbols for BPE, e.g. "Ġthe"); throws for an id out of range.
  virtual std::string id_to_token(std::int64_t id) const = 0;
  // One line for logs, e.g. "byte-level BPE (vocab.json 50265 tokens, 50000 merges) from <folder>".
  virtual std::string describe() const = 0;
};

struct PairEncodingOptions {
  std::int64_t max_length = 128;   // total length with special tokens (--max-length)
  bool pad_to_max_length = true;   // pad every encoding to max_length; false: no padding
};

// Lengths (n1', n2') that Hugging Face's longest-first truncation keeps of two sequences of n1 and n2
// tokens so that n1' + n2' <= budget (budget = max_length minus the special tokens): nothing when they
// fit; otherwise the longer one is cut to max(shorter, budget - shorter); when both must be cut they
// get budget/2 each and the longer (the second on a tie) one more for an odd budget
// (tokenizers::utils::truncation::truncate_encodings).
std::pair<std::int64_t, std::int64_t> longest_first_lengths(std::int64_t n1, std::int64_t n2, std::int64_t budget);

// Frames already tokenized ids: truncation (one text: keep the first max_length - 2; a pair:
// longest_first_lengths), special tokens, padding. Throws hessgap::Error when max_length is smaller than
// the number of special tokens.
Encoding build_encoding(const SpecialTokens& special, std::vector<std::int64_t> a,
                        const std::optional<std::vector<std::int64_t>>& b, const PairEncodingOptions& options = {});

// tokenizer.encode of the text(s), then build_encoding.
Encoding encode_example(const Tokenizer& tokenizer, const std::string& text_a, const std::optional<std::string>& text_b,
                        const PairEncodingOptions& options = {});

struct TokenizerSpec {
  // A folder holding vocab.json + merges.txt (byte-level BPE: RoBERTa, GPT-2) or vocab.txt (WordPiece: BERT),
  // as in a Hugging Face model folder.
  std::string path;
  // WordPiece only: lower-case and strip accents (1), or not (0). -1: "do_lower_case" of the folder's
  // tokenizer_config.json when present; else 0 when the folder's name contains "cased" but not "uncased"
  // (bert-base-cased); else 1 (Hugging Face's default).
  int lowercase = -1;
};

// Opens the tokenizer in spec.path. Throws hessgap::Error when the folder holds neither vocabulary, and
// every error of the tokenizer's constructor (unreadable or malformed files, files that do not belong
// together), naming the file.
std::unique_ptr<Tokenizer> open_tokenizer(const TokenizerSpec& spec);

}  // namespace hessgap::data
