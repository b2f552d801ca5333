// Framing, truncation and padding follow tokenizers' TemplateProcessing/RobertaProcessing/BertProcessing
// and utils/truncation.rs (the Rust library behind the reference's fast tokenizers).
#include "data/tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "data/bpe_tokenizer.h"
#include "data/wordpiece_tokenizer.h"
#include "util/error.h"
#include "util/json_bounded.h"

namespace hessgap::data {
namespace fs = std::filesystem;

std::int64_t Encoding::num_tokens() const {
  return static_cast<std::int64_t>(std::count(attention_mask.begin(), attention_mask.end(), 1));
}

std::pair<std::int64_t, std::int64_t> longest_first_lengths(std::int64_t n1, std::int64_t n2, std::int64_t budget) {
  HG_ASSERT(n1 >= 0 && n2 >= 0 && budget >= 0, "longest_first_lengths: negative length");
  if (n1 + n2 <= budget) return {n1, n2};
  const bool swap = n1 > n2;
  std::int64_t s = swap ? n2 : n1;  // the shorter
  std::int64_t l = s > budget ? s : std::max(s, budget - s);
  if (s + l > budget) {
    s = budget / 2;
    l = s + budget % 2;
  }
  const std::int64_t k1 = swap ? l : s;
  const std::int64_t k2 = swap ? s : l;
  return {std::min(n1, k1), std::min(n2, k2)};
}

Encoding build_encoding(const SpecialTokens& special, std::vector<std::int64_t> a,
                        const std::optional<std::vector<std::int64_t>>& b, const PairEncodingOptions& options) {
  const std::int64_t added = special.num_added(b.has_value());
  HG_CHECK(options.max_length >= added, "max_length " << options.max_length << " is too small: "
                                                      << (b ? "a text pair" : "one text") << " needs " << added
                                                      << " special tokens");
  const std::int64_t budget = options.max_length - added;
  std::vector<std::int64_t> second = b ? *b : std::vector<std::int64_t>{};
  if (b) {
    const auto [k1, k2] = longest_first_lengths(static_cast<std::int64_t>(a.size()),
                                                static_cast<std::int64_t>(second.size()), budget);
    a.resize(static_cast<std::size_t>(k1));
    second.resize(static_cast<std::size_t>(k2));
  } else if (static_cast<std::int64_t>(a.size()) > budget) {
    a.resize(static_cast<std::size_t>(budget));
  }

  Encoding e;
  const bool roberta = special.layout == SpecialTokens::Layout::kRoberta;
  auto push = [&](std::int64_t id, std::int64_t type) {
    e.ids.push_back(id);
    e.attention_mask.push_back(1);
    e.token_type_ids.push_back(roberta ? 0 : type);
  };
  push(special.cls, 0);
  for (std::int64_t id : a) push(id, 0);
  push(special.sep, 0);
  if (b) {
    if (roberta) push(special.sep, 1);
    for (std::int64_t id : second) push(id, 1);
    push(special.sep, 1);
  }
  if (options.pad_to_max_length) {
    while (e.length() < options.max_length) {
      e.ids.push_back(special.pad);
      e.attention_mask.push_back(0);
      e.token_type_ids.push_back(0);
    }
  }
  return e;
}

Encoding encode_example(const Tokenizer& tokenizer, const std::string& text_a, const std::optional<std::string>& text_b,
                        const PairEncodingOptions& options) {
  std::optional<std::vector<std::int64_t>> b;
  if (text_b) b = tokenizer.encode(*text_b);
  return build_encoding(tokenizer.special_tokens(), tokenizer.encode(text_a), b, options);
}

namespace {

// do_lower_case of tokenizer_config.json, when the file exists and has it.
std::optional<bool> config_lowercase(const std::string& folder) {
  const std::string path = folder + "/tokenizer_config.json";
  if (!fs::is_regular_file(path)) return std::nullopt;  // also keeps a FIFO from blocking the read
  std::ifstream in(path);
  HG_CHECK(in, "cannot open '" << path << "'");
  nlohmann::json config;
  try {
    config = parse_json_bounded(in, "'" + path + "'");
  } catch (const nlohmann::json::exception& e) {
    HG_FAIL("'" << path << "' is not valid JSON: " << e.what());
  }
  if (!config.is_object() || !config.contains("do_lower_case")) return std::nullopt;
  HG_CHECK(config["do_lower_case"].is_boolean(), "'" << path << "': do_lower_case must be true or false");
  return config["do_lower_case"].get<bool>();
}

}  // namespace

std::unique_ptr<Tokenizer> open_tokenizer(const TokenizerSpec& spec) {
  HG_CHECK(!spec.path.empty(), "tokenizer: no folder given");
  HG_CHECK(fs::is_directory(spec.path), "tokenizer folder '" << spec.path << "' does not exist or is not a folder");
  const std::string vocab_json = spec.path + "/vocab.json";
  const std::string merges = spec.path + "/merges.txt";
  const std::string vocab_txt = spec.path + "/vocab.txt";
  if (fs::is_regular_file(vocab_json) || fs::is_regular_file(merges)) {
    HG_CHECK(fs::is_regular_file(vocab_json) && fs::is_regular_file(merges),
             "tokenizer folder '" << spec.path << "' has only one of vocab.json and merges.txt (byte-level BPE needs "
                                  << "both)");
    return std::make_unique<BpeTokenizer>(vocab_json, merges);
  }
  HG_CHECK(fs::is_regular_file(vocab_txt), "tokenizer folder '" << spec.path << "' has neither vocab.json + merges.txt "
                                                                << "(RoBERTa) nor vocab.txt (BERT)");
  WordPieceOptions options;
  if (spec.lowercase >= 0) {
    options.lowercase = spec.lowercase != 0;
  } else if (const std::optional<bool> lower = config_lowercase(spec.path)) {
    options.lowercase = *lower;
  } else {
    std::string name = fs::path(spec.path).lexically_normal().filename().string();
    if (name.empty()) name = fs::path(spec.path).lexically_normal().parent_path().filename().string();
    options.lowercase = !(name.find("cased") != std::string::npos && name.find("uncased") == std::string::npos);
  }
  return std::make_unique<WordPieceTokenizer>(vocab_txt, options);
}

}  // namespace hessgap::data
