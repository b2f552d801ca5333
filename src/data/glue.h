// GLUE MRPC and SST-2 from their TSV files, tokenized into text batches (ids, attention mask, token types).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/tokenizer.h"

namespace hessgap::data {

struct GlueExample {
  std::string text_a;                 // MRPC "#1 String", SST-2 "sentence"
  std::optional<std::string> text_b;  // MRPC "#2 String"; none for SST-2
  std::int64_t label = -1;            // 0/1; -1 in test files (GLUE's test labels are hidden)
  std::int64_t line = 0;              // 1-based line in the file, for messages
};

// The binary GLUE tasks whose files share this TSV shape (a header, tabs only): mrpc, sst2, qqp, rte, qnli, wnli.
std::vector<std::string> glue_tasks();

// Reads a GLUE TSV file of `task` (one of glue_tasks()). Accepted headers (the first line; a UTF-8 byte-order
// mark before it is skipped):
//   mrpc: Quality, #1 ID, #2 ID, #1 String, #2 String   (train/dev; also Microsoft's msr_paraphrase_*.txt)
//         index, #1 ID, #2 ID, #1 String, #2 String     (test: no labels)
//   sst2: sentence, label                               (train/dev)
//         index, sentence                               (test: no labels)
//   qqp:  id, qid1, qid2, question1, question2, is_duplicate  (test: id, question1, question2)
//   rte, wnli: index, sentence1, sentence2, label       (test: without label)
//   qnli: index, question, sentence, label              (test: without label)
// Labels: "0"/"1" (mrpc, sst2, qqp, wnli) or "entailment"/"not_entailment" (rte, qnli, classes 0/1 in that
// order, as Hugging Face datasets number them).
// Fields are split on tabs only: quotes are ordinary characters (csv.QUOTE_NONE, as GLUE is read). A \r
// before the newline is dropped; empty lines at the end of the file are ignored; texts are kept verbatim.
// Throws hessgap::Error naming the file (and line) for: a missing or unreadable file, an unknown task or
// header, a line whose number of fields differs from the header's, a label other than 0 or 1, invalid UTF-8.
std::vector<GlueExample> read_glue_tsv(const std::string& path, const std::string& task);

struct GlueOptions {
  std::string task = "mrpc";       // one of glue_tasks()
  std::int64_t max_length = 128;   // --max-length: tokens per example with special tokens
  bool pad_to_max_length = true;   // pad to max_length (the reference); false: pad to the batch's longest
  std::int64_t max_examples = 0;   // keep the first N examples of the file; 0 = all
};

// A GLUE split as a Dataset: sample id i is the i-th example of the file. All examples are tokenized
// once, in the constructor (encode_example: truncation to max_length, special tokens).
class GlueDataset : public Dataset {
 public:
  // Throws every error of read_glue_tsv and of tokenization, and for max_length too small.
  GlueDataset(std::string tsv_path, std::shared_ptr<const Tokenizer> tokenizer, GlueOptions options = {});

  std::int64_t size() const override { return static_cast<std::int64_t>(labels_.size()); }
  std::int64_t num_classes() const override { return 2; }
  // Hugging Face datasets' names: mrpc not_equivalent, equivalent; sst2 negative, positive; qqp not_duplicate,
  // duplicate; rte, qnli entailment, not_entailment; wnli not_entailment, entailment.
  std::vector<std::string> class_names() const override;
  // 0/1, or -1 for a test file.
  std::int64_t label(std::int64_t i) const override;
  // inputs int64 [B,T] token ids (padding: the tokenizer's pad id), attention_mask int64 [B,T],
  // token_type_ids int64 [B,T], labels int64 [B], sample_ids = ids. T = max_length, or with
  // pad_to_max_length false the longest example of the batch (0 for an empty batch).
  Batch get_batch(const std::vector<std::int64_t>& ids) const override;
  std::string describe() const override;

  // The encoding of example i without padding (ids, attention mask of ones, token types).
  Encoding encoding(std::int64_t i) const;
  const std::string& path() const { return path_; }
  const GlueOptions& options() const { return options_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }

 private:
  std::string path_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  GlueOptions options_;
  // Example i's tokens are ids_[offsets_[i] .. offsets_[i+1]); the first type_one_[i] - offsets_[i] have
  // token type 0, the rest 1.
  std::vector<std::int32_t> ids_;
  std::vector<std::int64_t> offsets_{0};
  std::vector<std::int64_t> type_one_;
  std::vector<std::int64_t> labels_;
};

}  // namespace hessgap::data
