// GLUE TSV reading and text batches. Oracles: the fixture files themselves (closed-form fields), the
// Python reference encodings of every fixture row (tests/fixtures/text/glue_golden.jsonl, from
// text_oracle.py), and GLUE's split sizes for the full files in ../shared (skipped when absent).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <functional>

#include "data/bpe_tokenizer.h"
#include "data/glue.h"
#include "data/wordpiece_tokenizer.h"
#include "test_helpers.h"
#include "tests/support/error_of.h"
#include "util/error.h"

namespace hessgap::data {
namespace {
using namespace testing;
using nlohmann::json;

std::string text_fixture(const std::string& rel) { return source_path("tests/fixtures/text/" + rel); }
std::string shared_path(const std::string& rel) { return source_path("../shared/data/" + rel); }
const std::string kMrpc = "glue/MRPC/train_head.tsv";
const std::string kSst2 = "glue/SST-2/train_head.tsv";

using ::hessgap::testing::error_of;  // tests/support/error_of.h

std::shared_ptr<const Tokenizer> roberta() {
  static const auto tok = std::make_shared<const BpeTokenizer>(text_fixture("roberta-base/vocab.json"),
                                                               text_fixture("roberta-base/merges.txt"));
  return tok;
}

std::shared_ptr<const Tokenizer> bert_uncased() {
  static const auto tok = std::make_shared<const WordPieceTokenizer>(text_fixture("bert-base-uncased/vocab.txt"));
  return tok;
}

std::string write_file(const std::string& dir, const std::string& name, const std::string& content) {
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

TEST(GlueTsv, MrpcFixture) {
  const auto examples = read_glue_tsv(text_fixture(kMrpc), "mrpc");
  ASSERT_EQ(examples.size(), 150u);
  // Line 2 of the file (the header, after a byte-order mark, is line 1); quotes are kept verbatim.
  EXPECT_EQ(examples[0].label, 1);
  EXPECT_EQ(examples[0].line, 2);
  EXPECT_EQ(examples[0].text_a,
            "Amrozi accused his brother, whom he called \"the witness\", of deliberately distorting his evidence.");
  ASSERT_TRUE(examples[0].text_b);
  EXPECT_EQ(*examples[0].text_b,
            "Referring to him as only \"the witness\", Amrozi accused his brother of deliberately distorting his evidence.");
  EXPECT_EQ(examples[1].label, 0);
  EXPECT_EQ(examples[1].text_a.rfind("Yucaipa owned Dominick's", 0), 0u);
  EXPECT_EQ(examples.back().line, 151);
}

TEST(GlueTsv, Sst2Fixture) {
  const auto examples = read_glue_tsv(text_fixture(kSst2), "sst2");
  ASSERT_EQ(examples.size(), 300u);
  EXPECT_EQ(examples[0].text_a, "when are bears bears and ");  // trailing space kept
  EXPECT_EQ(examples[0].label, 1);
  EXPECT_FALSE(examples[0].text_b);
}

TEST(GlueTsv, TestFilesCrlfAndTrailingBlankLines) {
  const std::string dir = fresh_dir("tsv");
  auto ex = read_glue_tsv(write_file(dir, "test.tsv",
                                     "index\t#1 ID\t#2 ID\t#1 String\t#2 String\r\n0\t1\t2\tA \"q\"\tB\r\n1\t3\t4\tC\t\r\n\n\n"),
                          "mrpc");
  ASSERT_EQ(ex.size(), 2u);
  EXPECT_EQ(ex[0].label, -1);
  EXPECT_EQ(ex[0].text_a, "A \"q\"");
  EXPECT_EQ(*ex[0].text_b, "B");
  EXPECT_EQ(*ex[1].text_b, "");
  ex = read_glue_tsv(write_file(dir, "sst.tsv", "index\tsentence\n0\tit 's fine\n"), "sst2");
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0].text_a, "it 's fine");
  EXPECT_EQ(ex[0].label, -1);
}

TEST(GlueTsv, Errors) {
  const std::string dir = fresh_dir("bad");
  const std::string header = "\xEF\xBB\xBFQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n";
  std::string path = write_file(dir, "short.tsv", header + "1\t1\t2\ta\tb\n0\t3\t4\tonly three fields\n");
  std::string msg = error_of([&] { read_glue_tsv(path, "mrpc"); });
  EXPECT_NE(msg.find("'" + path + "' line 3: expected 5 tab-separated fields"), std::string::npos) << msg;
  EXPECT_NE(msg.find("found 4"), std::string::npos) << msg;

  path = write_file(dir, "blank.tsv", header + "\n1\t1\t2\ta\tb\n");
  msg = error_of([&] { read_glue_tsv(path, "mrpc"); });
  EXPECT_NE(msg.find("line 2: expected 5 tab-separated fields"), std::string::npos) << msg;

  path = write_file(dir, "label.tsv", "sentence\tlabel\ngood\t1\nbad\t2\n");
  msg = error_of([&] { read_glue_tsv(path, "sst2"); });
  EXPECT_NE(msg.find("line 3: label '2' in column 'label' (expected 0, 1)"), std::string::npos) << msg;

  path = write_file(dir, "header.tsv", "sentence,label\ngood,1\n");
  msg = error_of([&] { read_glue_tsv(path, "sst2"); });
  EXPECT_NE(msg.find("line 1: header 'sentence,label' is not a sst2 header"), std::string::npos) << msg;

  path = write_file(dir, "utf8.tsv", "sentence\tlabel\ngo\xC3od\t1\n");
  msg = error_of([&] { read_glue_tsv(path, "sst2"); });
  EXPECT_NE(msg.find("line 2: invalid UTF-8 at byte 2"), std::string::npos) << msg;

  EXPECT_NE(error_of([&] { read_glue_tsv(path, "cola"); }).find("unknown GLUE task 'cola'"), std::string::npos);
  EXPECT_NE(error_of([&] { read_glue_tsv(dir + "/none.tsv", "sst2"); }).find("cannot open GLUE file"), std::string::npos);
  EXPECT_NE(error_of([&] { read_glue_tsv(write_file(dir, "empty.tsv", ""), "sst2"); }).find("is empty"),
            std::string::npos);
  // The MRPC file read as SST-2.
  EXPECT_NE(error_of([&] { read_glue_tsv(text_fixture(kMrpc), "sst2"); }).find("is not a sst2 header"), std::string::npos);
}

// The other binary tasks with the same TSV shape: columns, string labels mapped in Hugging Face's order.
TEST(GlueTsv, QqpRteQnliWnli) {
  const std::string dir = fresh_dir("tasks");
  auto ex = read_glue_tsv(write_file(dir, "qqp.tsv", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                                                     "7\t1\t2\tWhy \"x\"?\tHow y?\t1\n8\t3\t4\ta\tb\t0\n"),
                          "qqp");
  ASSERT_EQ(ex.size(), 2u);
  EXPECT_EQ(ex[0].text_a, "Why \"x\"?");
  EXPECT_EQ(*ex[0].text_b, "How y?");
  EXPECT_EQ(ex[0].label, 1);
  EXPECT_EQ(ex[1].label, 0);
  ex = read_glue_tsv(write_file(dir, "qqp_test.tsv", "id\tquestion1\tquestion2\n0\tq\tr\n"), "qqp");
  EXPECT_EQ(ex[0].label, -1);
  EXPECT_EQ(*ex[0].text_b, "r");
  const std::string pairs = "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tnot_entailment\n1\tC.\tD.\tentailment\n";
  ex = read_glue_tsv(write_file(dir, "rte.tsv", pairs), "rte");
  EXPECT_EQ(ex[0].label, 1);  // rte: 0 entailment, 1 not_entailment
  EXPECT_EQ(ex[1].label, 0);
  EXPECT_EQ(ex[1].text_a, "C.");
  ex = read_glue_tsv(write_file(dir, "qnli.tsv", "index\tquestion\tsentence\tlabel\n0\tQ?\tS.\tentailment\n"), "qnli");
  EXPECT_EQ(ex[0].label, 0);
  EXPECT_EQ(ex[0].text_a, "Q?");
  ex = read_glue_tsv(write_file(dir, "wnli.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA\tB\t1\n"), "wnli");
  EXPECT_EQ(ex[0].label, 1);
  const std::string msg = error_of([&] { read_glue_tsv(write_file(dir, "rte_bad.tsv", pairs), "wnli"); });
  EXPECT_NE(msg.find("line 2: label 'not_entailment' in column 'label' (expected 0, 1)"), std::string::npos) << msg;
  EXPECT_EQ(glue_tasks().size(), 6u);
}

// Every fixture row against the reference encodings, through get_batch, at max_length 128 and 24.
TEST(GlueDataset, BatchesMatchReferenceEncodings) {
  std::vector<json> golden;
  {
    std::ifstream in(text_fixture("glue_golden.jsonl"));
    for (std::string line; std::getline(in, line);) golden.push_back(json::parse(line));
  }
  ASSERT_EQ(golden.size(), 450u);
  for (const auto& [name, tok] : {std::make_pair(std::string("roberta"), roberta()),
                                  std::make_pair(std::string("bert_uncased"), bert_uncased())}) {
    for (const std::int64_t max_length : {128, 24}) {
      for (const std::string task : {"mrpc", "sst2"}) {
        GlueOptions options;
        options.task = task;
        options.max_length = max_length;
        const GlueDataset ds(text_fixture(task == "mrpc" ? kMrpc : kSst2), tok, options);
        ASSERT_EQ(ds.size(), task == "mrpc" ? 150 : 300);
        std::vector<std::int64_t> ids;
        for (std::int64_t i = ds.size() - 1; i >= 0; --i) ids.push_back(i);  // reversed: order is the caller's
        const Batch b = ds.get_batch(ids);
        ASSERT_EQ(b.inputs.sizes(), (std::vector<std::int64_t>{ds.size(), max_length}));
        ASSERT_EQ(b.inputs.scalar_type(), torch::kInt64);
        ASSERT_EQ(b.attention_mask.sizes(), b.inputs.sizes());
        ASSERT_EQ(b.token_type_ids.sizes(), b.inputs.sizes());
        EXPECT_EQ(b.sample_ids, ids);
        int checked = 0;
        for (const json& g : golden) {
          if (g["task"] != task) continue;
          const std::int64_t i = g["index"];
          const std::int64_t row = ds.size() - 1 - i;
          const json& e = g[name + "_" + std::to_string(max_length)];
          const auto expected = e["ids"].get<std::vector<std::int64_t>>();
          const auto n = static_cast<std::int64_t>(expected.size());
          const std::int64_t type0 = e["type0"];
          std::vector<std::int64_t> want_ids(static_cast<std::size_t>(max_length), tok->special_tokens().pad);
          std::vector<std::int64_t> want_mask(static_cast<std::size_t>(max_length), 0);
          std::vector<std::int64_t> want_types(static_cast<std::size_t>(max_length), 0);
          for (std::int64_t t = 0; t < n; ++t) {
            want_ids[static_cast<std::size_t>(t)] = expected[static_cast<std::size_t>(t)];
            want_mask[static_cast<std::size_t>(t)] = 1;
            want_types[static_cast<std::size_t>(t)] = t >= type0 ? 1 : 0;
          }
          auto row_of = [&](const torch::Tensor& x) {
            const torch::Tensor r = x[row].contiguous();
            return std::vector<std::int64_t>(r.data_ptr<std::int64_t>(), r.data_ptr<std::int64_t>() + max_length);
          };
          EXPECT_EQ(row_of(b.inputs), want_ids) << name << " " << task << " row " << i << " max_length " << max_length;
          EXPECT_EQ(row_of(b.attention_mask), want_mask) << name << " " << task << " row " << i;
          EXPECT_EQ(row_of(b.token_type_ids), want_types) << name << " " << task << " row " << i;
          EXPECT_EQ(b.labels[row].item<std::int64_t>(), g["label"].get<std::int64_t>());
          EXPECT_EQ(ds.label(i), g["label"].get<std::int64_t>());
          ++checked;
        }
        EXPECT_EQ(checked, ds.size());
      }
    }
  }
}

TEST(GlueDataset, DynamicPaddingSubsetsAndDescribe) {
  GlueOptions options;
  options.task = "mrpc";
  options.pad_to_max_length = false;
  options.max_examples = 10;
  const GlueDataset ds(text_fixture(kMrpc), bert_uncased(), options);
  ASSERT_EQ(ds.size(), 10);
  EXPECT_EQ(ds.num_classes(), 2);
  EXPECT_EQ(ds.class_names(), (std::vector<std::string>{"not_equivalent", "equivalent"}));
  const Batch b = ds.get_batch({3, 0});
  const std::int64_t n3 = ds.encoding(3).length(), n0 = ds.encoding(0).length();
  EXPECT_EQ(b.inputs.size(1), std::max(n3, n0));
  EXPECT_EQ(b.attention_mask.sum().item<std::int64_t>(), n3 + n0);
  EXPECT_EQ(b.inputs[1][0].item<std::int64_t>(), 101);
  EXPECT_EQ(ds.get_batch({}).inputs.sizes(), (std::vector<std::int64_t>{0, 0}));
  // Batches are slices of the whole: any subset, in any order, gives the same rows.
  GlueOptions full = options;
  full.pad_to_max_length = true;
  const GlueDataset padded(text_fixture(kMrpc), bert_uncased(), full);
  const Batch all = padded.get_batch({0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  const Batch some = padded.get_batch({7, 2});
  EXPECT_TRUE(torch::equal(some.inputs[0], all.inputs[7]));
  EXPECT_TRUE(torch::equal(some.token_type_ids[1], all.token_type_ids[2]));
  EXPECT_NE(ds.describe().find("GLUE mrpc"), std::string::npos) << ds.describe();
  EXPECT_NE(error_of([&] { ds.get_batch({10}); }).find("sample id 10 out of range [0, 10)"), std::string::npos);
  EXPECT_NE(error_of([&] { ds.label(-1); }).find("out of range"), std::string::npos);
}

TEST(GlueDataset, Errors) {
  GlueOptions options;
  options.task = "mrpc";
  options.max_length = 3;
  std::string msg = error_of([&] { GlueDataset(text_fixture(kMrpc), roberta(), options); });
  EXPECT_NE(msg.find("line 2: max_length 3 is too small"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { GlueDataset(text_fixture(kMrpc), nullptr, {}); }).find("no tokenizer"), std::string::npos);
}

// The full GLUE files, when the shared data folder sits beside the checkout.
TEST(GlueShared, SplitSizesLabelsAndTokenization) {
  const std::string dir = shared_path("glue");
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << dir << " is absent (shared data folder not beside the checkout)";
  struct Split {
    std::string file, task;
    std::size_t rows;
    bool labelled;
  };
  for (const Split& s : {Split{"MRPC/train.tsv", "mrpc", 3668, true}, Split{"MRPC/dev.tsv", "mrpc", 408, true},
                         Split{"MRPC/test.tsv", "mrpc", 1725, false}, Split{"SST-2/train.tsv", "sst2", 67349, true},
                         Split{"SST-2/dev.tsv", "sst2", 872, true}}) {
    const auto examples = read_glue_tsv(dir + "/" + s.file, s.task);
    EXPECT_EQ(examples.size(), s.rows) << s.file;
    std::size_t ones = 0;
    for (const GlueExample& e : examples) {
      EXPECT_EQ(e.label >= 0, s.labelled) << s.file << " line " << e.line;
      ones += e.label == 1;
    }
    if (s.labelled) EXPECT_GT(ones, 0u) << s.file;
  }
  GlueOptions options;
  options.task = "mrpc";
  const GlueDataset dev(dir + "/MRPC/dev.tsv", roberta(), options);
  const Batch b = dev.get_batch({0, 407});
  EXPECT_EQ(b.inputs.sizes(), (std::vector<std::int64_t>{2, 128}));
  EXPECT_EQ(b.inputs[0][0].item<std::int64_t>(), 0);
}

}  // namespace
}  // namespace hessgap::data
