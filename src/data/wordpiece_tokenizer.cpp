// The normalization order is the fast tokenizer's (clean, CJK, strip accents, lower-case, all on the whole
// text), which gives the same words as the slow BasicTokenizer's per-word order.
#include "data/wordpiece_tokenizer.h"

#include <fstream>
#include <sstream>

#include "data/tokenizer_unicode.h"
#include "util/error.h"
#include "util/input_file.h"

namespace hessgap::data {
namespace {

// CJK ideograph blocks, as BERT's _is_chinese_char.
bool is_chinese_char(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

bool is_bert_whitespace(char32_t c) { return c == U'\t' || c == U'\n' || c == U'\r' || unicode::is_white_space(c); }

bool is_bert_control(char32_t c) {
  if (c == U'\t' || c == U'\n' || c == U'\r') return false;
  return unicode::is_other(c);
}

// ASCII punctuation (which includes the symbols $ + < = > ^ ` | ~) or a Unicode P* character.
bool is_bert_punctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  return unicode::is_punctuation(c);
}

}  // namespace

WordPieceTokenizer::WordPieceTokenizer(const std::string& vocab_txt_path, WordPieceOptions options)
    : vocab_path_(vocab_txt_path), options_(std::move(options)) {
  HG_CHECK(options_.max_input_chars_per_word > 0,
           "WordPiece: max_input_chars_per_word must be > 0, got " << options_.max_input_chars_per_word);
  refuse_special_file(vocab_path_, "vocabulary");
  std::ifstream in(vocab_path_, std::ios::binary);
  HG_CHECK(in, "cannot open vocabulary '" << vocab_path_ << "'");
  std::string line;
  while (std::getline(in, line)) {
    // tokenizers trims trailing whitespace of each line (a vocabulary saved on Windows ends in \r).
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    const std::size_t bad = unicode::utf8_find_invalid(line);
    HG_CHECK(bad == std::string::npos, "vocabulary '" << vocab_path_ << "' line " << tokens_.size() + 1
                                                      << ": invalid UTF-8 at byte " << bad);
    vocab_[line] = static_cast<std::int64_t>(tokens_.size());
    tokens_.push_back(line);
  }
  HG_CHECK(!in.bad(), "cannot read vocabulary '" << vocab_path_ << "'");
  auto special = [&](const char* token) {
    const auto it = vocab_.find(token);
    HG_CHECK(it != vocab_.end(), "vocabulary '" << vocab_path_ << "' lacks the special token " << token
                                                << " (a BERT vocab.txt with [PAD] [UNK] [CLS] [SEP] expected)");
    return it->second;
  };
  special_.layout = SpecialTokens::Layout::kBert;
  special_.cls = special("[CLS]");
  special_.sep = special("[SEP]");
  special_.pad = special("[PAD]");
  special_.unk = special("[UNK]");
}

std::vector<std::string> WordPieceTokenizer::basic_tokenize(const std::string& text) const {
  const std::u32string input = unicode::utf8_decode(text);
  const bool strip = options_.strip_accents.value_or(options_.lowercase);
  std::u32string s;
  s.reserve(input.size());
  for (char32_t c : input) {
    if (options_.clean_text) {
      if (c == 0 || c == 0xFFFD || is_bert_control(c)) continue;
      if (is_bert_whitespace(c)) c = U' ';
    }
    if (options_.split_chinese_chars && is_chinese_char(c)) {
      s.push_back(U' ');
      s.push_back(c);
      s.push_back(U' ');
    } else {
      s.push_back(c);
    }
  }
  if (strip) {
    std::u32string t;
    t.reserve(s.size());
    for (char32_t c : s) unicode::append_strip_marks(t, c);
    s.swap(t);
  }
  if (options_.lowercase) {
    std::u32string t;
    t.reserve(s.size());
    for (char32_t c : s) unicode::append_lower(t, c);
    s.swap(t);
  }
  std::vector<std::string> words;
  std::u32string word;
  auto flush = [&]() {
    if (!word.empty()) words.push_back(unicode::utf8_encode(word));
    word.clear();
  };
  for (char32_t c : s) {
    if (unicode::is_white_space(c)) {
      flush();
    } else if (is_bert_punctuation(c)) {
      flush();
      word.push_back(c);
      flush();
    } else {
      word.push_back(c);
    }
  }
  flush();
  return words;
}

void WordPieceTokenizer::word_ids(const std::string& word, std::vector<std::int64_t>& out) const {
  // Byte offsets of the code point boundaries of `word` (valid UTF-8: it came from utf8_encode).
  std::vector<std::size_t> cuts;
  for (std::size_t i = 0; i < word.size(); ++i) {
    if ((static_cast<unsigned char>(word[i]) & 0xC0) != 0x80) cuts.push_back(i);
  }
  cuts.push_back(word.size());
  const std::size_t chars = cuts.size() - 1;
  if (static_cast<std::int64_t>(chars) > options_.max_input_chars_per_word) {
    out.push_back(special_.unk);
    return;
  }
  std::vector<std::int64_t> pieces;
  std::size_t start = 0;
  std::string candidate;
  while (start < chars) {
    std::size_t end = chars;
    std::int64_t found = -1;
    for (; end > start; --end) {
      candidate.assign(start > 0 ? "##" : "");
      candidate.append(word, cuts[start], cuts[end] - cuts[start]);
      const auto it = vocab_.find(candidate);
      if (it != vocab_.end()) {
        found = it->second;
        break;
      }
    }
    if (found < 0) {
      out.push_back(special_.unk);
      return;
    }
    pieces.push_back(found);
    start = end;
  }
  out.insert(out.end(), pieces.begin(), pieces.end());
}

std::vector<std::int64_t> WordPieceTokenizer::encode(const std::string& text) const {
  std::vector<std::int64_t> ids;
  for (const std::string& word : basic_tokenize(text)) word_ids(word, ids);
  return ids;
}

std::vector<std::string> WordPieceTokenizer::tokenize(const std::string& text) const {
  std::vector<std::string> out;
  for (std::int64_t id : encode(text)) out.push_back(tokens_[static_cast<std::size_t>(id)]);
  return out;
}

std::string WordPieceTokenizer::id_to_token(std::int64_t id) const {
  HG_CHECK(id >= 0 && id < vocab_size(), "token id " << id << " out of range [0, " << vocab_size() << ") of '"
                                                     << vocab_path_ << "'");
  return tokens_[static_cast<std::size_t>(id)];
}

std::string WordPieceTokenizer::describe() const {
  std::ostringstream os;
  os << "WordPiece (" << vocab_path_ << ": " << tokens_.size() << " tokens; "
     << (options_.lowercase ? "lower-cased" : "cased") << ", accents "
     << (options_.strip_accents.value_or(options_.lowercase) ? "stripped" : "kept") << ")";
  return os.str();
}

}  // namespace hessgap::data
