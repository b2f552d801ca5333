// Hostile config.json values (issue #12): the sizes a Hugging Face config declares are bounded before
// a model is built from them, each error naming the file, the key, the value and the limit; and a
// config that is not a regular file (a FIFO) is refused at once instead of blocking.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "models/hf_config.h"
#include "models/registry.h"
#include "tests/support/error_of.h"
#include "util/limits.h"

namespace hessgap::models {
namespace {

using hessgap::testing::error_of;

std::string scratch(const std::string& leaf) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::filesystem::path dir = std::filesystem::path(HG_TEST_TMP) / "models" / info->name();
  std::filesystem::create_directories(dir);
  const std::filesystem::path p = dir / leaf;
  std::filesystem::remove(p);
  return p.string();
}

// The error of reading a BERT config.json whose fields are the small valid ones below, with `extra`
// (JSON members) replacing some of them; "(no error)" when it is accepted.
std::string bert_with(const std::string& file, const std::string& extra) {
  std::string body = R"({"model_type": "bert", )" + extra;
  for (const char* kv : {R"("hidden_size": 32)", R"("num_hidden_layers": 1)", R"("num_attention_heads": 4)",
                         R"("intermediate_size": 8)", R"("vocab_size": 10)", R"("max_position_embeddings": 8)"}) {
    const std::string key = std::string(kv).substr(0, std::string(kv).find(':'));
    if (extra.find(key) == std::string::npos) body += std::string(body.back() == ' ' ? "" : ", ") + kv;
  }
  std::ofstream(file) << body << "}";
  return error_of([&] { read_hf_config(file); });
}

TEST(HfConfigLimits, SizesAreBoundedNamingTheKeyAndTheLimit) {
  const std::string file = scratch("config.json");
  EXPECT_EQ(bert_with(file, ""), "(no error)");
  struct Case {
    std::string extra, expected;
  };
  const Case cases[] = {
      {R"("num_hidden_layers": 1000000)", "field 'num_hidden_layers' is 1000000, more than the limit of 256"},
      {R"("hidden_size": 131072, "num_attention_heads": 1)", "field 'hidden_size' is 131072, more than the limit of 65536"},
      {R"("intermediate_size": 10000000)", "field 'intermediate_size' is 10000000, more than the limit of 262144"},
      {R"("vocab_size": 2000000000)", "field 'vocab_size' is 2000000000, more than the limit of 10000000"},
      {R"("max_position_embeddings": 100000000)",
       "field 'max_position_embeddings' is 100000000, more than the limit of 1048576"},
      {R"("num_attention_heads": 5)", "hidden_size 32 is not a multiple of num_attention_heads 5"},
      // Each within its bound, together far beyond any model: 9M x 65536 embeddings and 256 layers.
      {R"("vocab_size": 9000000, "hidden_size": 65536, "num_attention_heads": 64, "num_hidden_layers": 256)",
       "more than the limit of 2e+10"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.extra);
    const std::string msg = bert_with(file, c.extra);
    EXPECT_NE(msg.find("config " + file + ": "), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.expected), std::string::npos) << msg;
  }
  // A large but real model passes (BERT-large sizes).
  EXPECT_EQ(bert_with(file, R"("hidden_size": 1024, "num_attention_heads": 16, "num_hidden_layers": 24, )"
                            R"("intermediate_size": 4096, "vocab_size": 30522, "max_position_embeddings": 512)"),
            "(no error)");
}

TEST(HfConfigLimits, VitSizesAreBounded) {
  const std::string file = scratch("config.json");
  auto vit = [&](const std::string& image, const std::string& channels) {
    std::ofstream(file) << R"({"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,)"
                        << R"("intermediate_size": 8, "patch_size": 16, "image_size": )" << image
                        << R"(, "num_channels": )" << channels << "}";
    return error_of([&] { read_hf_config(file); });
  };
  EXPECT_EQ(vit("224", "3"), "(no error)");
  EXPECT_NE(vit("1048576", "3").find("field 'image_size' is 1048576, more than the limit of 16384"), std::string::npos);
  EXPECT_NE(vit("224", "100000").find("field 'num_channels' is 100000, more than the limit of 64"), std::string::npos);
}

TEST(HfConfigLimits, FifoConfigIsRefusedAtOnce) {
  const std::string fifo = scratch("config.fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // A writer holds it open with a few bytes, so that a reader that opened it anyway fails on them
  // instead of blocking the test forever.
  const int fd = ::open(fifo.c_str(), O_RDWR | O_NONBLOCK);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "{}", 2), 2);
  const std::string msg = error_of([&] { read_hf_config(fifo); });
  ::close(fd);
  EXPECT_NE(msg.find("config '" + fifo + "' is not a regular file: it is a FIFO"), std::string::npos) << msg;
}


TEST(HfConfigLimits, DeeplyNestedJsonIsRefusedNamingTheFile) {
  // Before: parsed, then printed by the error message: a stack overflow (exit 139).
  const std::string file = scratch("config.json");
  const std::string msg = bert_with(file, R"("hidden_size": )" + std::string(1000000, '[') + std::string(1000000, ']'));
  EXPECT_NE(msg.find("config " + file + ": JSON nested more than 128 levels deep"), std::string::npos)
      << msg.substr(0, 300);
}

TEST(HfConfigLimits, ArchSpecSizesAreBounded) {
  struct Case {
    std::string arch, expected;
  };
  const Case cases[] = {
      {"mlp:in=3072,hidden=1000000000", "option hidden=1000000000 is more than the limit of 1000000"},
      {"small-cnn:c1=1000000000", "option c1=1000000000 is more than the limit of 1000000"},
      {"mlp:in=9223372036854775807", "option in=9223372036854775807 is more than the limit of 1000000"},
      {"small-cnn:c1=1000000,c2=1000000", "parameters, more than the limit of 2e+10"},
      {"mlp:in=1000000,hidden=1000000-1000000-1000000", "parameters, more than the limit of 2e+10"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.arch);
    const std::string msg = error_of([&] { make_model(c.arch, 10); });
    EXPECT_NE(msg.find("model '" + c.arch + "' (--arch): "), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.expected), std::string::npos) << msg;
  }
  // Wide in one place but small in parameters is fine.
  EXPECT_EQ(error_of([] { make_model("mlp:in=1000000,hidden=2", 10); }), "(no error)");
  EXPECT_EQ(error_of([] { make_model("small-cnn:c1=1000,c2=3", 10); }), "(no error)");
}

// The checkpoint is compared with the config before the model is built (the check a hostile config.json
// that sizes the model at tens of GB needs): names as adapt_checkpoint sees them, so a base-model and a
// DataParallel checkpoint are checked too. The tensors are small; no model is built.
TEST(HfConfigLimits, CheckpointIsComparedWithTheConfigBeforeBuilding) {
  const std::string file = scratch("config.json");
  ASSERT_EQ(bert_with(file, R"("vocab_size": 9000000)"), "(no error)");
  const TransformerConfig config = read_hf_config(file);
  const torch::Tensor words = torch::zeros({10, 32});
  for (const std::string prefix : {"bert.", "", "module.bert.", "module."}) {
    SCOPED_TRACE("prefix '" + prefix + "'");
    const std::vector<std::pair<std::string, torch::Tensor>> state = {
        {prefix + "embeddings.word_embeddings.weight", words},
        {prefix + "encoder.layer.0.intermediate.dense.weight", torch::zeros({8, 32})}};
    const std::string msg = error_of([&] { check_checkpoint_fits_config(config, state, "ckpt.safetensors"); });
    EXPECT_NE(msg.find("config " + file + ": vocab_size 9000000 disagrees with checkpoint ckpt.safetensors: tensor "
                       "'bert.embeddings.word_embeddings.weight' has shape [10, 32] (vocab_size 10)"),
              std::string::npos)
        << msg;
  }
  // The names are normalised on a copy: the caller's state keeps its own.
  std::vector<std::pair<std::string, torch::Tensor>> base = {{"embeddings.word_embeddings.weight", torch::zeros({9, 32})}};
  EXPECT_NE(error_of([&] { check_checkpoint_fits_config(config, base, "b"); }), "(no error)");
  EXPECT_EQ(base[0].first, "embeddings.word_embeddings.weight");
  // transformer_config_of: the configs of the transformer names, nothing for the others.
  EXPECT_EQ(transformer_config_of("hf:" + file)->vocab_size, 9000000);
  EXPECT_EQ(transformer_config_of("bert-base")->vocab_size, 30522);
  EXPECT_FALSE(transformer_config_of("cifar-resnet20").has_value());
  EXPECT_FALSE(transformer_config_of("mlp:in=3").has_value());
}

// A model whose float32 parameters exceed this machine's memory is refused before allocating, within
// the parameter limit (before: bad_alloc or the OOM killer part way through initialisation).
TEST(HfConfigLimits, ModelsBeyondPhysicalMemoryAreRefused) {
  const double memory = static_cast<double>(physical_memory_bytes());
  ASSERT_GT(memory, 0);
  if (memory >= 40e9) GTEST_SKIP() << "this machine has " << memory / 1e9 << " GB: a 40 GB model would fit";
  const std::string msg = error_of([] { make_model("mlp:in=1000000,hidden=10000", 10); });
  EXPECT_NE(msg.find("model 'mlp:in=1000000,hidden=10000' (--arch) implies about 1.0000"), std::string::npos) << msg;
  EXPECT_NE(msg.find("GB of memory"), std::string::npos) << msg;
  const std::string file = scratch("config.json");
  ASSERT_EQ(bert_with(file, R"("vocab_size": 9000000, "hidden_size": 2048, "num_attention_heads": 8)"), "(no error)");
  const std::string hf = error_of([&] { make_model("hf:" + file, 2); });
  EXPECT_NE(hf.find("model 'hf:" + file + "' (config " + file + ") implies about"), std::string::npos) << hf;
}

}  // namespace
}  // namespace hessgap::models
