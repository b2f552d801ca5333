// Merges run on vocabulary ids: every merge's parts and result are checked against the vocabulary at
// load time (as tokenizers' BPE::from_files does), so a word's symbols always have ids.
#include "data/bpe_tokenizer.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <functional>
#include <limits>
#include <queue>
#include <sstream>

#include "data/tokenizer_unicode.h"
#include "util/error.h"
#include "util/input_file.h"
#include "util/json_bounded.h"

namespace hessgap::data {
namespace {

using unicode::is_letter;
using unicode::is_number;
using unicode::is_white_space;

// Pieces whose ids are remembered; beyond that new pieces are merged every time. Only pieces of up to
// 256 bytes are kept (as tokenizers does): the cache stays under ~150 MB even when every piece is
// hostile (a count bound alone let 64 KiB pieces fill gigabytes; found by fuzz_bpe), and real words
// are far shorter (SST-2 and MRPC have ~20k distinct pieces).
constexpr std::size_t kMaxCached = 1 << 16;
constexpr std::size_t kMaxCachedPieceBytes = 256;

bool is_other_char(char32_t c) { return !is_white_space(c) && !is_letter(c) && !is_number(c); }

// Length of a contraction ('s 't 're 've 'm 'll 'd) at i, or 0.
std::size_t contraction_at(const std::u32string& c, std::size_t i) {
  if (c[i] != U'\'' || i + 1 >= c.size()) return 0;
  const char32_t x = c[i + 1];
  if (x == U's' || x == U't' || x == U'm' || x == U'd') return 2;
  if (i + 2 < c.size()) {
    const char32_t y = c[i + 2];
    if ((x == U'r' && y == U'e') || (x == U'v' && y == U'e') || (x == U'l' && y == U'l')) return 3;
  }
  return 0;
}

// End of " ?P+" at i, or i when it does not match.
template <typename Pred>
std::size_t class_run_at(const std::u32string& c, std::size_t i, Pred pred) {
  std::size_t k = i;
  if (c[k] == U' ' && k + 1 < c.size() && pred(c[k + 1])) ++k;
  if (!pred(c[k])) return i;
  while (k < c.size() && pred(c[k])) ++k;
  return k;
}

std::string read_file(const std::string& path) {
  refuse_special_file(path, "tokenizer file");
  std::ifstream in(path, std::ios::binary);
  HG_CHECK(in, "cannot open '" << path << "'");
  std::ostringstream os;
  os << in.rdbuf();
  HG_CHECK(!in.bad(), "cannot read '" << path << "'");
  return os.str();
}

}  // namespace

char32_t BpeTokenizer::byte_symbol(std::uint8_t byte) {
  auto printable = [](int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
  if (printable(byte)) return byte;
  int n = 0;
  for (int b = 0; b < byte; ++b) n += !printable(b);
  return static_cast<char32_t>(256 + n);
}

std::vector<std::string> BpeTokenizer::pre_tokenize(const std::string& text) {
  const std::u32string c = unicode::utf8_decode(text);
  std::vector<std::string> pieces;
  const std::size_t n = c.size();
  std::size_t i = 0;
  while (i < n) {
    std::size_t end = i + contraction_at(c, i);
    if (end == i) end = class_run_at(c, i, is_letter);
    if (end == i) end = class_run_at(c, i, is_number);
    if (end == i) end = class_run_at(c, i, is_other_char);
    if (end == i) {
      // \s+(?!\S) backtracks to leave the last whitespace before a non-space; \s+ takes a single one.
      HG_ASSERT(is_white_space(c[i]), "pre_tokenize: character matched no alternative");
      std::size_t r = i;
      while (r < n && is_white_space(c[r])) ++r;
      end = (r == n || r - i == 1) ? r : r - 1;
    }
    pieces.push_back(unicode::utf8_encode(c.substr(i, end - i)));
    i = end;
  }
  return pieces;
}

BpeTokenizer::BpeTokenizer(const std::string& vocab_json_path, const std::string& merges_path)
    : vocab_path_(vocab_json_path), merges_path_(merges_path) {
  nlohmann::json vocab;
  try {
    vocab = parse_json_bounded(read_file(vocab_path_), "vocabulary '" + vocab_path_ + "'");
  } catch (const nlohmann::json::exception& e) {
    HG_FAIL("vocabulary '" << vocab_path_ << "' is not valid JSON: " << e.what());
  }
  HG_CHECK(vocab.is_object() && !vocab.empty(),
           "vocabulary '" << vocab_path_ << "' must be a JSON object {\"token\": id, ...}");
  // Ids must be dense: each below the number of entries, none repeated (so exactly 0..n-1, as in
  // every real vocab.json). tokens_ is indexed by id, so an id bounded only by INT32_MAX made one
  // hostile entry allocate gigabytes (issue #12).
  const auto entries = static_cast<std::int64_t>(vocab.size());
  tokens_.resize(static_cast<std::size_t>(entries));
  std::vector<bool> used(tokens_.size(), false);
  for (const auto& [token, id] : vocab.items()) {
    HG_CHECK(id.is_number_integer() && id.get<std::int64_t>() >= 0 && id.get<std::int64_t>() < entries,
             "vocabulary '" << vocab_path_ << "': token '" << token << "' has id " << id.dump()
                            << " (expected an integer >= 0 and below the number of entries, " << entries
                            << ": vocab.json ids must be dense)");
    const auto k = static_cast<std::size_t>(id.get<std::int64_t>());
    HG_CHECK(!used[k], "vocabulary '" << vocab_path_ << "': id " << k << " is used by both '" << tokens_[k] << "' and '"
                                      << token << "'");
    used[k] = true;
    tokens_[k] = token;
    vocab_[token] = static_cast<std::int64_t>(k);
  }
  for (int b = 0; b < 256; ++b) {
    std::string symbol;
    unicode::utf8_append(symbol, byte_symbol(static_cast<std::uint8_t>(b)));
    const auto it = vocab_.find(symbol);
    HG_CHECK(it != vocab_.end(), "vocabulary '" << vocab_path_ << "' lacks the byte-level symbol '" << symbol
                                                << "' of byte " << b << ": not a byte-level BPE vocabulary (vocab.json "
                                                << "of RoBERTa or GPT-2 expected)");
    byte_ids_[b] = it->second;
  }
  auto special = [&](const char* token) {
    const auto it = vocab_.find(token);
    HG_CHECK(it != vocab_.end(), "vocabulary '" << vocab_path_ << "' lacks the special token " << token
                                                << " (RoBERTa's <s> <pad> </s> <unk> expected)");
    return it->second;
  };
  special_.layout = SpecialTokens::Layout::kRoberta;
  special_.cls = special("<s>");
  special_.pad = special("<pad>");
  special_.sep = special("</s>");
  special_.unk = special("<unk>");

  std::istringstream merges(read_file(merges_path_));
  std::string line;
  std::int64_t line_no = 0;
  std::int32_t rank = 0;
  while (std::getline(merges, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    const std::size_t space = line.find(' ');
    HG_CHECK(space != std::string::npos && space > 0 && space + 1 < line.size() &&
                 line.find(' ', space + 1) == std::string::npos,
             "merges '" << merges_path_ << "' line " << line_no << ": expected two tokens separated by one space, got '"
                        << line << "'");
    const std::string left = line.substr(0, space), right = line.substr(space + 1);
    const std::string merged = left + right;
    for (const std::string* t : {&left, &right, &merged}) {
      HG_CHECK(vocab_.count(*t), "merges '" << merges_path_ << "' line " << line_no << " ('" << line << "'): token '"
                                            << *t << "' is not in the vocabulary '" << vocab_path_
                                            << "': the vocabulary and merges do not belong together");
    }
    const std::uint64_t key =
        (static_cast<std::uint64_t>(vocab_[left]) << 32) | static_cast<std::uint64_t>(vocab_[right]);
    merges_[key] = Merge{rank++, vocab_[merged]};  // a repeated pair takes its later rank, as in tokenizers
  }
  HG_CHECK(!merges.bad(), "cannot read '" << merges_path_ << "'");
  HG_CHECK(rank > 0, "merges '" << merges_path_ << "' has no merges");
}

std::vector<std::int64_t> BpeTokenizer::bpe(const std::string& piece) const {
  const bool cacheable = piece.size() <= kMaxCachedPieceBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    const auto it = cache_.find(piece);
    if (it != cache_.end()) return it->second;
  }
  // The symbols as a linked list over the piece's byte positions, and the candidate pairs in a min-heap
  // ordered by (rank, position): the lowest-ranked pair is merged first, equal ranks left to right, as
  // tokenizers' Word::merge_all does. O(n log n) in the piece's length (the rescan-per-merge loop of
  // GPT-2's encoder.py is O(n²): minutes for one hostile megabyte-long "word"). With a merges file that
  // BPE training wrote (a pair that involves a merged symbol ranks after the merge that made it), both
  // orders give the same ids.
  const std::size_t n = piece.size();
  std::vector<std::int64_t> id(n);
  std::vector<std::size_t> prev(n), next(n);  // neighbours; >= n (n, or size_t's max for prev) is "none"
  for (std::size_t k = 0; k < n; ++k) {
    id[k] = byte_ids_[static_cast<unsigned char>(piece[k])];
    prev[k] = k - 1;
    next[k] = k + 1;
  }
  using Candidate = std::pair<std::int32_t, std::size_t>;  // (rank, left symbol's position)
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  const auto rank_of = [&](std::size_t left) -> const Merge* {
    const std::size_t right = next[left];
    if (right >= n) return nullptr;
    const auto it = merges_.find((static_cast<std::uint64_t>(id[left]) << 32) | static_cast<std::uint64_t>(id[right]));
    return it == merges_.end() ? nullptr : &it->second;
  };
  const auto offer = [&](std::size_t left) {
    if (const Merge* m = rank_of(left)) heap.emplace(m->rank, left);
  };
  for (std::size_t k = 0; k + 1 < n; ++k) offer(k);
  std::vector<bool> gone(n, false);
  while (!heap.empty()) {
    const auto [rank, left] = heap.top();
    heap.pop();
    // Stale entries: the left symbol was absorbed, or it or its right neighbour changed since.
    if (gone[left]) continue;
    const Merge* m = rank_of(left);
    if (m == nullptr || m->rank != rank) continue;
    const std::size_t right = next[left];
    id[left] = m->merged;
    gone[right] = true;
    next[left] = next[right];
    if (next[right] < n) prev[next[right]] = left;
    if (prev[left] < n) offer(prev[left]);
    offer(left);
  }
  std::vector<std::int64_t> word;
  for (std::size_t k = 0; k < n; k = next[k]) word.push_back(id[k]);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() < kMaxCached) cache_.emplace(piece, word);
  }
  return word;
}

std::vector<std::int64_t> BpeTokenizer::encode(const std::string& text) const {
  std::vector<std::int64_t> ids;
  for (const std::string& piece : pre_tokenize(text)) {
    const std::vector<std::int64_t> part = bpe(piece);
    ids.insert(ids.end(), part.begin(), part.end());
  }
  return ids;
}

std::string BpeTokenizer::id_to_token(std::int64_t id) const {
  HG_CHECK(id >= 0 && id < vocab_size(), "token id " << id << " out of range [0, " << vocab_size() << ") of '"
                                                     << vocab_path_ << "'");
  return tokens_[static_cast<std::size_t>(id)];
}

std::string BpeTokenizer::describe() const {
  std::ostringstream os;
  os << "byte-level BPE (" << vocab_path_ << ": " << vocab_.size() << " tokens; " << merges_path_ << ": "
     << merges_.size() << " merges)";
  return os.str();
}

}  // namespace hessgap::data
