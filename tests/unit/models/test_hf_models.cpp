// BERT, RoBERTa and ViT against Hugging Face transformers 5.17 (tests/fixtures/hf): strict
// loading of model.safetensors, parameter names and order, float64 logits / loss / gradient /
// Hessian-vector product over all parameters, the same in float32 at float32 tolerance; the
// Hessian-layer counts of the built-in base configs; config errors and registry specs.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <regex>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "models/dropout.h"
#include "models/hf_config.h"
#include "models/registry.h"
#include "models/transformer_text.h"
#include "models/vit.h"
#include "util/error.h"

#include "tests/support/tensor_assert.h"

using hessgap::testing::close_rel;

namespace hm = hessgap::models;
namespace hio = hessgap::io;

namespace {

std::string fixture_dir(const std::string& name) {
  return std::string(HG_SOURCE_DIR) + "/tests/fixtures/hf/" + name;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const hessgap::Error& e) {
    return e.what();
  }
  return "(no error)";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// transformers 5's in-memory ViT names (used by expected.*) -> the on-disk names our model uses.
std::string model_name(const std::string& expected_name) {
  static const std::vector<std::pair<std::regex, std::string>> rules = {
      {std::regex(R"(^vit\.layers\.(\d+)\.attention\.q_proj\.)"), "vit.encoder.layer.$1.attention.attention.query."},
      {std::regex(R"(^vit\.layers\.(\d+)\.attention\.k_proj\.)"), "vit.encoder.layer.$1.attention.attention.key."},
      {std::regex(R"(^vit\.layers\.(\d+)\.attention\.v_proj\.)"), "vit.encoder.layer.$1.attention.attention.value."},
      {std::regex(R"(^vit\.layers\.(\d+)\.attention\.o_proj\.)"), "vit.encoder.layer.$1.attention.output.dense."},
      {std::regex(R"(^vit\.layers\.(\d+)\.mlp\.fc1\.)"), "vit.encoder.layer.$1.intermediate.dense."},
      {std::regex(R"(^vit\.layers\.(\d+)\.mlp\.fc2\.)"), "vit.encoder.layer.$1.output.dense."},
      {std::regex(R"(^vit\.layers\.(\d+)\.)"), "vit.encoder.layer.$1."},
  };
  for (const auto& [re, repl] : rules) {
    if (std::regex_search(expected_name, re)) return std::regex_replace(expected_name, re, repl);
  }
  return expected_name;
}

struct Golden {
  std::map<std::string, torch::Tensor> ref;
  std::vector<std::string> param_order;  // expected.json's names (transformers 5)
  double vhv_total = 0;
};

const Golden& golden(const std::string& name) {
  static std::map<std::string, Golden> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  Golden g;
  auto file = hio::read_safetensors(fixture_dir(name) + "/expected.safetensors");
  g.ref = std::map<std::string, torch::Tensor>(file.tensors.begin(), file.tensors.end());
  std::ifstream in(fixture_dir(name) + "/expected.json");
  nlohmann::json j;
  in >> j;
  g.param_order = j.at("param_order").get<std::vector<std::string>>();
  g.vhv_total = j.at("vHv_total").get<double>();
  return cache.emplace(name, std::move(g)).first->second;
}

std::shared_ptr<hm::Classifier> load_fixture_model(const std::string& name) {
  const auto dir = fixture_dir(name);
  auto model = hm::make_hf_model(dir);
  hio::LoadOptions opts;
  opts.source = dir;
  const auto report = hio::load_state_dict(*model, hio::read_checkpoint(dir), opts);
  EXPECT_TRUE(report.missing.empty() && report.unexpected.empty() && report.mismatched.empty());
  EXPECT_EQ(report.loaded.size(), model->named_parameters().size());
  model->eval();
  return model;
}

hessgap::data::Batch fixture_batch(const Golden& g) {
  hessgap::data::Batch batch;
  auto get = [&](const std::string& key) {
    auto it = g.ref.find(key);
    return it == g.ref.end() ? torch::Tensor() : it->second;
  };
  batch.inputs = get("input.input_ids");
  if (!batch.inputs.defined()) batch.inputs = get("input.pixel_values");  // float64; cast by forward
  batch.attention_mask = get("input.attention_mask");
  batch.token_type_ids = get("input.token_type_ids");
  batch.labels = get("input.labels");
  return batch;
}

struct Tolerances {
  double logits, grad;
};

// Logits, loss, every gradient and the joint HVP over all parameters against the fixture.
void check_against_fixture(const std::string& name, torch::Dtype dtype, Tolerances tol) {
  const Golden& g = golden(name);
  auto model = load_fixture_model(name);
  model->to(dtype);
  const auto batch = fixture_batch(g);
  auto named = model->named_parameters();
  std::vector<torch::Tensor> params, vs;
  std::vector<std::string> names;
  for (const auto& expected_name : g.param_order) {
    const auto mine = model_name(expected_name);
    const torch::Tensor* p = named.find(mine);
    ASSERT_NE(p, nullptr) << mine;
    params.push_back(*p);
    vs.push_back(g.ref.at("v." + expected_name).to(dtype));
    names.push_back(expected_name);
  }
  ASSERT_EQ(params.size(), named.size());

  const auto logits = model->forward(batch);
  const auto loss = torch::nn::functional::cross_entropy(logits, batch.labels);
  EXPECT_TRUE(close_rel(logits.to(torch::kFloat64), g.ref.at("output.logits"), tol.logits));
  EXPECT_TRUE(close_rel(loss.to(torch::kFloat64).reshape({1}), g.ref.at("output.loss").reshape({1}),
                        tol.logits));

  const auto grads = torch::autograd::grad({loss}, params, {}, /*retain_graph=*/true,
                                           /*create_graph=*/true);
  torch::Tensor dot = torch::zeros({}, logits.options());
  for (std::size_t i = 0; i < params.size(); ++i) dot = dot + (grads[i] * vs[i]).sum();
  const auto hv = torch::autograd::grad({dot}, params);
  // Key biases shift every score of a query row by the same amount, which softmax ignores: their
  // true gradient and HVP are zero and both sides hold round-off only. They are judged against
  // the largest entry over all parameters instead of their own.
  double grad_scale = 0, hv_scale = 0;
  for (const auto& n : names) {
    grad_scale = std::max(grad_scale, g.ref.at("grad." + n).abs().max().item<double>());
    hv_scale = std::max(hv_scale, g.ref.at("hv." + n).abs().max().item<double>());
  }
  double max_grad = 0, max_hv = 0, vhv = 0;
  for (std::size_t i = 0; i < params.size(); ++i) {
    SCOPED_TRACE(names[i]);
    const auto& gref = g.ref.at("grad." + names[i]);
    const auto& hvref = g.ref.at("hv." + names[i]);
    const bool zero = std::regex_search(names[i], std::regex(R"((\.key|k_proj)\.bias$)"));
    const double gs = zero ? grad_scale : std::max(gref.abs().max().item<double>(), 1e-300);
    const double hs = zero ? hv_scale : std::max(hvref.abs().max().item<double>(), 1e-300);
    EXPECT_LE((grads[i].detach().to(torch::kFloat64) - gref).abs().max().item<double>(), tol.grad * gs);
    EXPECT_LE((hv[i].to(torch::kFloat64) - hvref).abs().max().item<double>(), tol.grad * hs);
    max_grad = std::max(max_grad, (grads[i].detach().to(torch::kFloat64) - gref).abs().max().item<double>() / gs);
    max_hv = std::max(max_hv, (hv[i].to(torch::kFloat64) - hvref).abs().max().item<double>() / hs);
    vhv += (hv[i].to(torch::kFloat64) * vs[i].to(torch::kFloat64)).sum().item<double>();
  }
  EXPECT_NEAR(vhv, g.vhv_total, tol.grad * std::abs(g.vhv_total) * 10);
  std::cout << "[" << name << " " << dtype << "] max rel err: grad " << max_grad << ", hv " << max_hv
            << ", vHv " << vhv << " vs " << g.vhv_total << "\n";
}

}  // namespace

TEST(HfModels, ParameterNamesAndOrderMatchHuggingFace) {
  for (const char* name : {"bert-tiny", "roberta-tiny", "vit-tiny"}) {
    SCOPED_TRACE(name);
    const Golden& g = golden(name);
    auto model = hm::make_hf_model(fixture_dir(name));
    std::vector<std::string> mine;
    for (const auto& item : model->named_parameters()) mine.push_back(item.key());
    std::vector<std::string> expected;
    for (const auto& n : g.param_order) expected.push_back(model_name(n));
    if (std::string(name) == "vit-tiny") {
      // transformers 5 reorders ViT's blocks in memory (attention, layernorms, mlp); the names
      // agree as a set, the order follows the on-disk (transformers 4) module order.
      std::sort(mine.begin(), mine.end());
      std::sort(expected.begin(), expected.end());
    }
    EXPECT_EQ(mine, expected);
    EXPECT_EQ(model->head_prefix(), "classifier.");
    EXPECT_EQ(hm::hessian_parameters(*model).size(), model->hessian_layers().size());
  }
}

TEST(HfModels, HessianLayersOfTinyModels) {
  auto bert = hm::make_hf_model(fixture_dir("bert-tiny"));
  auto layers = bert->hessian_layers();
  ASSERT_EQ(layers.size(), 13u);
  EXPECT_EQ(layers[0], "bert.encoder.layer.0.attention.self.query.weight");
  EXPECT_EQ(layers[3], "bert.encoder.layer.0.attention.output.dense.weight");
  EXPECT_EQ(layers[5], "bert.encoder.layer.0.output.dense.weight");
  EXPECT_EQ(layers[12], "classifier.weight");
  EXPECT_EQ(bert->num_classes(), 3);
  auto roberta = hm::make_hf_model(fixture_dir("roberta-tiny"));
  layers = roberta->hessian_layers();
  ASSERT_EQ(layers.size(), 14u);
  EXPECT_EQ(layers[4], "roberta.encoder.layer.0.intermediate.dense.weight");
  EXPECT_EQ(layers[12], "classifier.dense.weight");
  EXPECT_EQ(layers[13], "classifier.out_proj.weight");
  auto vit = hm::make_hf_model(fixture_dir("vit-tiny"));
  layers = vit->hessian_layers();
  ASSERT_EQ(layers.size(), 13u);
  EXPECT_EQ(layers[0], "vit.encoder.layer.0.attention.attention.query.weight");
  EXPECT_EQ(layers[12], "classifier.weight");
  EXPECT_EQ(vit->num_classes(), 5);
}

TEST(HfModels, BertTinyFloat64) { check_against_fixture("bert-tiny", torch::kFloat64, {1e-10, 1e-8}); }
TEST(HfModels, RobertaTinyFloat64) { check_against_fixture("roberta-tiny", torch::kFloat64, {1e-10, 1e-8}); }
// transformers' ViT computes the attention softmax in float32 even in a float64 model (its
// eager_attention_forward passes dtype=torch.float32); ours keeps the model's dtype, so the
// float64 reference carries float32 round-off: logits agree to ~1.4e-8 and gradients / HVPs to
// ~1.5e-7 relative. (Emulating the float32 softmax gets the logits only to ~4e-9: the rounding
// of individual probabilities flips with 1e-16 differences upstream, so no bitwise match.)
TEST(HfModels, VitTinyFloat64) { check_against_fixture("vit-tiny", torch::kFloat64, {1e-7, 1e-6}); }
TEST(HfModels, BertTinyFloat32) { check_against_fixture("bert-tiny", torch::kFloat32, {1e-4, 1e-4}); }
TEST(HfModels, RobertaTinyFloat32) { check_against_fixture("roberta-tiny", torch::kFloat32, {1e-4, 1e-4}); }
TEST(HfModels, VitTinyFloat32) { check_against_fixture("vit-tiny", torch::kFloat32, {1e-4, 1e-4}); }

// RoBERTa's position ids skip padding, so appending padding (masked out) leaves the logits of
// the real tokens unchanged; BERT with a mask of ones equals BERT without a mask.
TEST(HfModels, PaddingInvariance) {
  torch::NoGradGuard no_grad;
  auto model = load_fixture_model("roberta-tiny");
  model->to(torch::kFloat64);
  auto& roberta = dynamic_cast<hm::TextTransformer&>(*model);
  auto ids = torch::tensor({{0, 17, 42, 99, 2}}, torch::kLong);
  auto padded = torch::cat({ids, torch::full({1, 3}, 1, torch::kLong)}, 1);
  auto mask = torch::cat({torch::ones({1, 5}, torch::kLong), torch::zeros({1, 3}, torch::kLong)}, 1);
  EXPECT_TRUE(close_rel(roberta.forward_ids(padded, mask), roberta.forward_ids(ids), 1e-12));

  auto bert_model = load_fixture_model("bert-tiny");
  auto& bert = dynamic_cast<hm::TextTransformer&>(*bert_model);
  EXPECT_TRUE(close_rel(bert.forward_ids(ids, torch::ones({1, 5}, torch::kLong)), bert.forward_ids(ids), 0));
  EXPECT_THROW(bert.forward_ids(torch::zeros({1, 41}, torch::kLong)), hessgap::Error);   // 40 positions
  EXPECT_THROW(roberta.forward_ids(torch::zeros({1, 39}, torch::kLong)), hessgap::Error);  // 40 - 2
  EXPECT_THROW(bert.forward_ids(ids, torch::ones({1, 4}, torch::kLong)), hessgap::Error);
  EXPECT_THROW(bert.forward_ids(torch::full({1, 3}, 1000, torch::kLong)), hessgap::Error);  // vocab 1000
  EXPECT_THROW(roberta.forward_ids(ids, {}, torch::ones({1, 5}, torch::kLong)), hessgap::Error);  // 1 type
}

// ~110M parameters each: built once, only counts and names are checked.
TEST(HfModels, BaseConfigsHessianLayerCounts) {
  struct Case {
    const char* arch;
    std::size_t layers;
    const char* last;
  };
  for (const Case& c : {Case{"roberta-base", 74, "classifier.out_proj.weight"},
                        Case{"bert-base", 73, "classifier.weight"},
                        Case{"vit-base", 73, "classifier.weight"},
                        Case{"vit-b32", 73, "classifier.weight"}}) {
    SCOPED_TRACE(c.arch);
    auto model = hm::make_model(c.arch, 2);
    EXPECT_EQ(model->arch(), c.arch);
    const auto layers = model->hessian_layers();
    EXPECT_EQ(layers.size(), c.layers);
    EXPECT_EQ(layers.back(), c.last);
    EXPECT_EQ(hm::hessian_parameters(*model).size(), c.layers);
  }
  EXPECT_EQ(hm::hf_architectures(),
            (std::vector<std::string>{"bert-base", "roberta-base", "vit-base", "vit-b16", "vit-b32", "vit-l16"}));
  // Shapes that tell the three ViTs apart: the patch embedding and the block width.
  EXPECT_EQ(hm::parameters_by_name(*hm::make_model("vit-b32", 2), {"vit.embeddings.patch_embeddings.projection.weight"})[0].sizes(),
            torch::IntArrayRef({768, 3, 32, 32}));
  EXPECT_THROW(hm::make_model("vit-h14", 2), hessgap::Error);
  // ViT-L/16 (304M parameters, too slow to build here): its configuration; 24 blocks x 6 + the head = 145 layers.
  const auto l16 = hm::vit_config("vit-l16");
  EXPECT_EQ(std::vector<std::int64_t>({l16.hidden_size, l16.num_hidden_layers, l16.num_attention_heads,
                                       l16.intermediate_size, l16.patch_size, l16.image_size}),
            std::vector<std::int64_t>({1024, 24, 16, 4096, 16, 224}));
}

TEST(HfModels, RegistrySpecsAndConfigErrors) {
  const auto bert_dir = fixture_dir("bert-tiny");
  auto model = hm::make_model("bert:" + bert_dir, 4);
  EXPECT_EQ(model->arch(), "bert:" + bert_dir);
  EXPECT_EQ(model->num_classes(), 4);
  EXPECT_EQ(hm::make_model("hf:" + bert_dir + "/config.json", 2)->num_classes(), 2);
  EXPECT_TRUE(contains(error_of([&] { hm::make_model("roberta:" + bert_dir, 2); }), "model_type 'bert'"));
  EXPECT_TRUE(contains(error_of([] { hm::make_model("bert:", 2); }), "config.json"));
  EXPECT_TRUE(contains(error_of([] { hm::make_model("bert-base:x=1", 2); }), "no options"));
  EXPECT_TRUE(contains(error_of([] { hm::read_hf_config("/nonexistent/dir"); }), "/nonexistent/dir"));

  std::filesystem::create_directories(HG_TEST_TMP);
  const std::string tmp = std::string(HG_TEST_TMP) + "/hf_config_test.json";
  auto write = [&](const std::string& text) {
    std::ofstream(tmp) << text;
    return error_of([&] { hm::read_hf_config(tmp); });
  };
  const std::string ok =
      R"("hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 8, "vocab_size": 10, "max_position_embeddings": 8)";
  EXPECT_EQ(write(R"({"model_type": "bert", )" + ok + "}"), "(no error)");
  auto msg = write(R"({"model_type": "bert", "hidden_size": 32})");
  EXPECT_TRUE(contains(msg, tmp) && contains(msg, "num_hidden_layers")) << msg;
  msg = write(R"({"model_type": "gpt2", )" + ok + "}");
  EXPECT_TRUE(contains(msg, "gpt2")) << msg;
  msg = write(R"({"model_type": "bert", "hidden_act": "relu", )" + ok + "}");
  EXPECT_TRUE(contains(msg, "hidden_act")) << msg;
  msg = write(R"({"model_type": "bert", "num_attention_heads": 5, "hidden_size": 32, "num_hidden_layers": 1, "intermediate_size": 8, "vocab_size": 10, "max_position_embeddings": 8})");
  EXPECT_TRUE(contains(msg, "num_attention_heads")) << msg;
  msg = write(R"({"model_type": "bert", "vocab_size": "ten", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 8, "max_position_embeddings": 8})");
  EXPECT_TRUE(contains(msg, "vocab_size")) << msg;
  msg = write("{not json");
  EXPECT_TRUE(contains(msg, "invalid JSON")) << msg;
}

// Dropout in training mode (models/dropout.h): a global batch run whole (one rank) and as two shards (two
// ranks) gets the same masks, so the logits agree row for row; the keep rate and the 1/(1-p) scale are
// torch's; eval mode has none (the fixtures above); the same step and site repeat their masks.
TEST(HfModels, TrainingDropoutIsTheSameWhateverTheSharding) {
  namespace hmd = hessgap::models;
  torch::Tensor x = torch::ones({6, 4000}, torch::kFloat64);
  hmd::DropoutPlan whole{12345, 6, 0};
  torch::Tensor full, again;
  {
    hmd::DropoutScope s(whole);
    full = hmd::keyed_dropout(x, 0.25, true);
  }
  {
    hmd::DropoutScope s(whole);
    again = hmd::keyed_dropout(x, 0.25, true);
  }
  EXPECT_TRUE(torch::equal(full, again));
  const double kept = full.ne(0).to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(kept, 0.75, 4 * std::sqrt(0.75 * 0.25 / 24000.0));
  EXPECT_TRUE(torch::allclose(full.masked_select(full.ne(0)), torch::full({1}, 1.0 / 0.75, torch::kFloat64)));
  torch::Tensor top, bottom;
  {
    hmd::DropoutScope s({12345, 6, 0});
    top = hmd::keyed_dropout(x.narrow(0, 0, 3), 0.25, true);
  }
  {
    hmd::DropoutScope s({12345, 6, 3});
    bottom = hmd::keyed_dropout(x.narrow(0, 3, 3), 0.25, true);
  }
  EXPECT_TRUE(torch::equal(torch::cat({top, bottom}), full));
  EXPECT_TRUE(torch::equal(hmd::keyed_dropout(x, 0.25, false), x));

  for (const char* name : {"roberta-tiny", "bert-tiny"}) {
    auto model = load_fixture_model(name);
    model->to(torch::kFloat64);
    const Golden& g = golden(name);
    const auto batch = fixture_batch(g);
    const auto B = batch.inputs.size(0);
    ASSERT_GE(B, 2) << name;
    torch::NoGradGuard ng;
    const torch::Tensor eval_logits = model->forward(batch);
    model->train();
    torch::Tensor whole_logits;
    {
      hmd::DropoutScope s({777, B, 0});
      whole_logits = model->forward(batch);
    }
    EXPECT_FALSE(torch::allclose(whole_logits, eval_logits, 1e-6, 1e-6)) << name << ": no dropout in training mode";
    std::vector<torch::Tensor> parts;
    const std::int64_t cut = B / 2;
    for (auto [begin, n] : {std::pair<std::int64_t, std::int64_t>{0, cut}, {cut, B - cut}}) {
      hessgap::data::Batch shard = batch;
      for (torch::Tensor* t : {&shard.inputs, &shard.labels, &shard.attention_mask, &shard.token_type_ids}) {
        if (t->defined()) *t = t->narrow(0, begin, n);
      }
      hmd::DropoutScope s({777, B, begin});
      parts.push_back(model->forward(shard));
    }
    EXPECT_TRUE(torch::allclose(torch::cat(parts), whole_logits, 1e-12, 1e-12)) << name;
  }
}
