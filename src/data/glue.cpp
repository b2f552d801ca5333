#include "data/glue.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "data/tokenizer_unicode.h"
#include "util/error.h"
#include "util/excerpt.h"
#include "util/input_file.h"

namespace hessgap::data {
namespace {

std::string join(const std::vector<std::string>& fields);

struct Layout {
  std::vector<std::string> header;
  int label = -1;  // column of the label, -1 for none
  int text_a = 0;
  int text_b = -1;
};

// One binary GLUE task: its layouts and its label strings, index = class (Hugging Face datasets' order).
struct Task {
  std::vector<Layout> layouts;
  std::vector<std::string> label_values;  // as written in the TSV
  std::vector<std::string> class_names;   // Hugging Face datasets' names
  bool pairs = true;
};

Task task_of(const std::string& task) {
  const std::vector<std::string> digits{"0", "1"};
  if (task == "mrpc") {
    return {{{{"Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"}, 0, 3, 4},
             {{"index", "#1 ID", "#2 ID", "#1 String", "#2 String"}, -1, 3, 4}},
            digits, {"not_equivalent", "equivalent"}, true};
  }
  if (task == "sst2") {
    return {{{{"sentence", "label"}, 1, 0, -1}, {{"index", "sentence"}, -1, 1, -1}}, digits, {"negative", "positive"}, false};
  }
  if (task == "qqp") {
    return {{{{"id", "qid1", "qid2", "question1", "question2", "is_duplicate"}, 5, 3, 4},
             {{"id", "question1", "question2"}, -1, 1, 2}},
            digits, {"not_duplicate", "duplicate"}, true};
  }
  if (task == "rte") {
    return {{{{"index", "sentence1", "sentence2", "label"}, 3, 1, 2}, {{"index", "sentence1", "sentence2"}, -1, 1, 2}},
            {"entailment", "not_entailment"}, {"entailment", "not_entailment"}, true};
  }
  if (task == "qnli") {
    return {{{{"index", "question", "sentence", "label"}, 3, 1, 2}, {{"index", "question", "sentence"}, -1, 1, 2}},
            {"entailment", "not_entailment"}, {"entailment", "not_entailment"}, true};
  }
  if (task == "wnli") {
    return {{{{"index", "sentence1", "sentence2", "label"}, 3, 1, 2}, {{"index", "sentence1", "sentence2"}, -1, 1, 2}},
            digits, {"not_entailment", "entailment"}, true};
  }
  HG_FAIL("unknown GLUE task '" << task << "' (expected " << join(glue_tasks()) << ")");
}

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> fields;
  std::size_t start = 0;
  while (true) {
    const std::size_t tab = line.find('\t', start);
    fields.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
    if (tab == std::string::npos) break;
    start = tab + 1;
  }
  return fields;
}

}  // namespace

std::vector<std::string> glue_tasks() { return {"mrpc", "sst2", "qqp", "rte", "qnli", "wnli"}; }

namespace {

std::string join(const std::vector<std::string>& fields) {
  std::string out;
  for (std::size_t k = 0; k < fields.size(); ++k) out += (k ? ", " : "") + fields[k];
  return out;
}

}  // namespace

std::vector<GlueExample> read_glue_tsv(const std::string& path, const std::string& task) {
  const Task spec = task_of(task);
  const std::vector<Layout>& candidates = spec.layouts;
  refuse_special_file(path, "GLUE file");
  std::ifstream in(path, std::ios::binary);
  HG_CHECK(in, "cannot open GLUE file '" << path << "'");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
  }
  HG_CHECK(!in.bad(), "cannot read GLUE file '" << path << "'");
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  HG_CHECK(!lines.empty(), "GLUE file '" << path << "' is empty (expected a header line)");
  if (lines[0].rfind("\xEF\xBB\xBF", 0) == 0) lines[0].erase(0, 3);

  const std::vector<std::string> header = split_tabs(lines[0]);
  const Layout* layout = nullptr;
  for (const Layout& l : candidates) {
    if (l.header == header) layout = &l;
  }
  if (!layout) {
    std::ostringstream expected;
    for (std::size_t k = 0; k < candidates.size(); ++k) {
      expected << (k ? " or " : "") << "'" << join(candidates[k].header) << "'";
    }
    HG_FAIL("GLUE file '" << path << "' line 1: header '" << excerpt(join(header)) << "' is not a " << task
                          << " header (expected tab-separated " << expected.str() << ")");
  }

  std::vector<GlueExample> examples;
  examples.reserve(lines.size() - 1);
  for (std::size_t k = 1; k < lines.size(); ++k) {
    const std::int64_t line_no = static_cast<std::int64_t>(k) + 1;
    const std::size_t bad = unicode::utf8_find_invalid(lines[k]);
    HG_CHECK(bad == std::string::npos,
             "GLUE file '" << path << "' line " << line_no << ": invalid UTF-8 at byte " << bad << " of the line");
    std::vector<std::string> fields = split_tabs(lines[k]);
    HG_CHECK(fields.size() == layout->header.size(),
             "GLUE file '" << path << "' line " << line_no << ": expected " << layout->header.size()
                           << " tab-separated fields (" << join(layout->header) << "), found " << fields.size());
    GlueExample e;
    e.line = line_no;
    e.text_a = std::move(fields[static_cast<std::size_t>(layout->text_a)]);
    if (layout->text_b >= 0) e.text_b = std::move(fields[static_cast<std::size_t>(layout->text_b)]);
    if (layout->label >= 0) {
      const std::string& label = fields[static_cast<std::size_t>(layout->label)];
      const auto at = std::find(spec.label_values.begin(), spec.label_values.end(), label);
      HG_CHECK(at != spec.label_values.end(), "GLUE file '" << path << "' line " << line_no << ": label '" << excerpt(label)
                                                             << "' in column '"
                                                             << layout->header[static_cast<std::size_t>(layout->label)]
                                                             << "' (expected " << join(spec.label_values) << ")");
      e.label = at - spec.label_values.begin();
    }
    examples.push_back(std::move(e));
  }
  return examples;
}

GlueDataset::GlueDataset(std::string tsv_path, std::shared_ptr<const Tokenizer> tokenizer, GlueOptions options)
    : path_(std::move(tsv_path)), tokenizer_(std::move(tokenizer)), options_(std::move(options)) {
  HG_CHECK(tokenizer_, "GLUE dataset '" << path_ << "': no tokenizer");
  HG_CHECK(options_.max_examples >= 0,
           "GLUE dataset '" << path_ << "': max_examples must be >= 0, got " << options_.max_examples);
  std::vector<GlueExample> examples = read_glue_tsv(path_, options_.task);
  if (options_.max_examples > 0 && static_cast<std::int64_t>(examples.size()) > options_.max_examples) {
    examples.resize(static_cast<std::size_t>(options_.max_examples));
  }
  const PairEncodingOptions encode_options{options_.max_length, false};
  for (const GlueExample& e : examples) {
    Encoding enc;
    try {
      enc = encode_example(*tokenizer_, e.text_a, e.text_b, encode_options);
    } catch (const Error& err) {
      HG_FAIL("GLUE file '" << path_ << "' line " << e.line << ": " << err.what());
    }
    const std::int64_t first_one =
        std::find(enc.token_type_ids.begin(), enc.token_type_ids.end(), 1) - enc.token_type_ids.begin();
    type_one_.push_back(offsets_.back() + first_one);
    for (std::int64_t id : enc.ids) ids_.push_back(static_cast<std::int32_t>(id));
    offsets_.push_back(static_cast<std::int64_t>(ids_.size()));
    labels_.push_back(e.label);
  }
}

std::vector<std::string> GlueDataset::class_names() const { return task_of(options_.task).class_names; }

std::int64_t GlueDataset::label(std::int64_t i) const {
  HG_CHECK(i >= 0 && i < size(), "GLUE dataset '" << path_ << "': sample id " << i << " out of range [0, " << size() << ")");
  return labels_[static_cast<std::size_t>(i)];
}

Encoding GlueDataset::encoding(std::int64_t i) const {
  HG_CHECK(i >= 0 && i < size(), "GLUE dataset '" << path_ << "': sample id " << i << " out of range [0, " << size() << ")");
  const auto k = static_cast<std::size_t>(i);
  Encoding e;
  for (std::int64_t j = offsets_[k]; j < offsets_[k + 1]; ++j) {
    e.ids.push_back(ids_[static_cast<std::size_t>(j)]);
    e.attention_mask.push_back(1);
    e.token_type_ids.push_back(j >= type_one_[k] ? 1 : 0);
  }
  return e;
}

Batch GlueDataset::get_batch(const std::vector<std::int64_t>& ids) const {
  std::int64_t width = options_.pad_to_max_length ? options_.max_length : 0;
  for (std::int64_t id : ids) {
    HG_CHECK(id >= 0 && id < size(), "GLUE dataset '" << path_ << "': sample id " << id << " out of range [0, " << size() << ")");
    const auto k = static_cast<std::size_t>(id);
    if (!options_.pad_to_max_length) width = std::max(width, offsets_[k + 1] - offsets_[k]);
  }
  const auto n = static_cast<std::int64_t>(ids.size());
  Batch batch;
  batch.sample_ids = ids;
  batch.inputs = torch::full({n, width}, tokenizer_->special_tokens().pad, torch::kInt64);
  batch.attention_mask = torch::zeros({n, width}, torch::kInt64);
  batch.token_type_ids = torch::zeros({n, width}, torch::kInt64);
  batch.labels = torch::empty({n}, torch::kInt64);
  std::int64_t* inputs = batch.inputs.data_ptr<std::int64_t>();
  std::int64_t* mask = batch.attention_mask.data_ptr<std::int64_t>();
  std::int64_t* types = batch.token_type_ids.data_ptr<std::int64_t>();
  std::int64_t* labels = batch.labels.data_ptr<std::int64_t>();
  for (std::int64_t r = 0; r < n; ++r) {
    const auto k = static_cast<std::size_t>(ids[static_cast<std::size_t>(r)]);
    for (std::int64_t j = offsets_[k]; j < offsets_[k + 1]; ++j) {
      const std::int64_t t = r * width + (j - offsets_[k]);
      inputs[t] = ids_[static_cast<std::size_t>(j)];
      mask[t] = 1;
      types[t] = j >= type_one_[k] ? 1 : 0;
    }
    labels[r] = labels_[k];
  }
  return batch;
}

std::string GlueDataset::describe() const {
  std::ostringstream os;
  os << "GLUE " << options_.task << " " << path_ << " (" << size() << (task_of(options_.task).pairs ? " pairs" : " sentences")
     << ", 2 classes; " << tokenizer_->describe() << "; max_length " << options_.max_length;
  if (options_.max_examples > 0) os << ", first " << options_.max_examples << " examples";
  os << ")";
  return os.str();
}

}  // namespace hessgap::data
