// Fitting pretrained checkpoints to models: Google's ViT .npz end to end against a Flax-semantics
// forward written in Python, position-embedding interpolation against torch / scipy, new heads and
// their init, config.json fields that disagree with the weights, and Hugging Face's from_pretrained
// renames (tests/fixtures/models/make_checkpoint_fixtures.py, tests/fixtures/hf).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "models/hf_config.h"
#include "models/registry.h"
#include "models/vit.h"
#include "util/error.h"

namespace hm = hessgap::models;
namespace hio = hessgap::io;

namespace {

std::string fixture(const std::string& name) { return HG_SOURCE_DIR "/tests/fixtures/models/checkpoints/" + name; }
std::string hf_fixture(const std::string& name) { return HG_SOURCE_DIR "/tests/fixtures/hf/" + name; }

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const hessgap::Error& e) {
    return e.what();
  }
  return "(no error)";
}

#define EXPECT_HAS(str, sub)                                                                     \
  do {                                                                                           \
    const std::string s_ = (str), sub_ = (sub);                                                  \
    EXPECT_NE(s_.find(sub_), std::string::npos) << "'" << sub_ << "' not in: " << s_;           \
  } while (0)

std::map<std::string, torch::Tensor> tensors_of(const std::string& file) {
  auto tf = hio::read_safetensors(file);
  return {tf.tensors.begin(), tf.tensors.end()};
}

// A copy of a config.json with some fields replaced, in the test's scratch folder.
std::string config_with(const std::string& config_file, const nlohmann::json& changes, const std::string& leaf) {
  nlohmann::json j;
  std::ifstream(config_file) >> j;
  for (auto it = changes.begin(); it != changes.end(); ++it) j[it.key()] = it.value();
  const auto dir = std::filesystem::path(HG_TEST_TMP) / "pretrained";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / leaf).string();
  std::ofstream(path) << j.dump(2);
  return path;
}

double max_rel(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max()).item<double>();
}

TEST(Pretrained, GoogleVitNpzLoadsStrictlyAndMatchesTheFlaxForward) {
  const auto expected = tensors_of(fixture("vit_google_tiny_expected.safetensors"));
  for (const char* file : {"vit_google_tiny.npz", "vit_google_tiny_deflate.npz"}) {
    SCOPED_TRACE(file);
    auto model = hm::make_hf_model(fixture("vit_google_tiny_config.json"));
    EXPECT_EQ(model->num_classes(), 3);
    auto state = hio::read_checkpoint(fixture(file));
    hm::AdaptOptions ao;
    ao.source = fixture(file);
    const auto adaptation = hm::adapt_checkpoint(*model, state, ao);
    EXPECT_TRUE(adaptation.notes.empty());
    hio::LoadOptions lo;
    lo.source = fixture(file);
    const auto report = hio::load_state_dict(*model, state, lo);
    EXPECT_EQ(report.loaded.size(), model->named_parameters().size());
    model->to(torch::kFloat64);
    model->eval();
    torch::NoGradGuard no_grad;
    auto& vit = dynamic_cast<hm::VisionTransformer&>(*model);
    const auto logits = vit.forward_images(expected.at("input"));
    EXPECT_LT(max_rel(logits, expected.at("logits")), 1e-12);
  }
}

TEST(Pretrained, PositionInterpolationMatchesTorchAndTheReference) {
  const auto ex = tensors_of(fixture("pos_interp_expected.safetensors"));
  const auto& pos = ex.at("pos");
  for (const auto& [h, w] : std::vector<std::pair<int, int>>{{5, 5}, {2, 2}, {4, 6}}) {
    const auto name = "bicubic_" + std::to_string(h) + "x" + std::to_string(w);
    SCOPED_TRACE(name);
    const auto got = hm::resize_position_embeddings(pos, h, w);
    ASSERT_EQ(got.sizes(), ex.at(name).sizes());
    EXPECT_LT((got - ex.at(name)).abs().max().item<double>(), 1e-13);
  }
  for (int n : {5, 2}) {
    const auto name = "linear_" + std::to_string(n) + "x" + std::to_string(n);
    SCOPED_TRACE(name);
    const auto got = hm::resize_position_embeddings(pos, n, n, hm::PositionInterpolation::BilinearAlignCorners);
    EXPECT_LT((got - ex.at(name)).abs().max().item<double>(), 1e-13);
  }
  // Closed forms: the same grid is returned untouched; a constant grid stays constant (the
  // interpolation weights sum to one); the class token is never changed; the dtype is kept.
  EXPECT_EQ(hm::resize_position_embeddings(pos, 3, 3).data_ptr(), pos.data_ptr());
  const auto constant = torch::cat({torch::full({1, 1, 4}, -2.0), torch::full({1, 16, 4}, 0.75)}, 1).to(torch::kFloat);
  for (auto mode : {hm::PositionInterpolation::Bicubic, hm::PositionInterpolation::BilinearAlignCorners}) {
    const auto r = hm::resize_position_embeddings(constant, 7, 3, mode);
    EXPECT_EQ(r.scalar_type(), torch::kFloat);
    EXPECT_EQ(r.sizes(), (std::vector<int64_t>{1, 22, 4}));
    EXPECT_EQ(r[0][0][0].item<float>(), -2.0f);
    EXPECT_LT((r.slice(1, 1) - 0.75).abs().max().item<float>(), 1e-6f);
  }
  EXPECT_HAS(error_of([] { hm::resize_position_embeddings(torch::zeros({1, 9, 4}), 2, 2); }), "8 is not a square");
  EXPECT_EQ(hm::parse_position_interpolation("bilinear-align-corners"), hm::PositionInterpolation::BilinearAlignCorners);
  EXPECT_HAS(error_of([] { hm::parse_position_interpolation("nearest"); }), "bicubic, bilinear-align-corners");
}

TEST(Pretrained, VitAtAnotherImageSizeGetsResizedPositionEmbeddings) {
  const auto config = config_with(fixture("vit_google_tiny_config.json"), {{"image_size", 16}}, "vit16.json");
  auto model = hm::make_hf_model(config);
  auto state = hio::read_checkpoint(fixture("vit_google_tiny.npz"));
  torch::Tensor original;
  for (const auto& [n, t] : state) {
    if (n == "vit.embeddings.position_embeddings") original = t;
  }
  hm::AdaptOptions ao;
  ao.source = "tiny.npz";
  auto copy = state;
  const auto a = hm::adapt_checkpoint(*model, copy, ao);
  EXPECT_EQ(a.resized, std::vector<std::string>{"vit.embeddings.position_embeddings"});
  ASSERT_EQ(a.notes.size(), 1u);
  EXPECT_HAS(a.notes[0], "from [1, 5, 8] to [1, 17, 8] (bicubic, for image_size 16)");
  hio::load_state_dict(*model, copy);
  const auto pos = model->named_parameters()["vit.embeddings.position_embeddings"].detach();
  EXPECT_TRUE(torch::equal(pos, hm::resize_position_embeddings(original, 4, 4)));
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(dynamic_cast<hm::VisionTransformer&>(*model).forward_images(torch::randn({1, 3, 16, 16})).isfinite().all().item<bool>());

  ao.resize_position_embeddings = false;
  const auto msg = error_of([&] { hm::adapt_checkpoint(*model, state, ao); });
  EXPECT_HAS(msg, "config " + config + ": image_size 16 (a 4x4 grid of patch_size 4) disagrees with checkpoint tiny.npz");
  EXPECT_HAS(msg, "tensor 'vit.embeddings.position_embeddings' has shape [1, 5, 8] (a 2x2 grid, image_size 8)");
}

TEST(Pretrained, NewHeadWhenTheClassesDiffer) {
  torch::manual_seed(3);
  auto model = hm::make_hf_model(fixture("vit_google_tiny_config.json"), 5);
  const auto head_before = model->named_parameters().find("classifier.weight")->detach().clone();
  auto state = hio::read_checkpoint(fixture("vit_google_tiny.npz"));
  hio::LoadOptions lo;
  lo.source = "tiny.npz";
  EXPECT_HAS(error_of([&] { hio::load_state_dict(*model, state, lo); }), "classifier.weight (checkpoint [3, 8], model [5, 8])");
  lo.new_head_prefix = model->head_prefix();
  const auto report = hio::load_state_dict(*model, state, lo);
  EXPECT_EQ(report.new_head, (std::vector<std::string>{"classifier.weight", "classifier.bias"}));
  EXPECT_EQ(report.loaded.size(), model->named_parameters().size() - 2);
  EXPECT_TRUE(torch::equal(model->named_parameters().find("classifier.weight")->detach(), head_before));

  // reset_head draws what Hugging Face's _init_weights draws: N(0, initializer_range²), bias 0.
  torch::manual_seed(11);
  hm::reset_head(*model);
  torch::manual_seed(11);
  const auto expected = torch::empty({5, 8}).normal_(0.0, 0.02);
  EXPECT_TRUE(torch::equal(model->named_parameters().find("classifier.weight")->detach(), expected));
  EXPECT_TRUE(torch::equal(model->named_parameters().find("classifier.bias")->detach(), torch::zeros({5})));

  // The reference's ViT head (SPEC §10.11): nn.Linear's default init instead.
  torch::manual_seed(12);
  hm::reset_head(*model, hm::HeadInit::TorchDefault);
  torch::manual_seed(12);
  torch::nn::Linear ref(8, 5);
  EXPECT_TRUE(torch::equal(model->named_parameters().find("classifier.weight")->detach(), ref->weight.detach()));
  EXPECT_TRUE(torch::equal(model->named_parameters().find("classifier.bias")->detach(), ref->bias.detach()));
}

TEST(Pretrained, ResetHeadDrawsAsTheSourceLibraryDoes) {
  namespace nn = torch::nn;
  auto params = [](const hm::Classifier& m, const std::string& name) {
    return m.named_parameters().find(name)->detach().clone();
  };
  {  // torchvision-style heads: nn.Linear's default init.
    auto model = hm::make_model("small-cnn", 7);
    torch::manual_seed(5);
    hm::reset_head(*model);
    torch::manual_seed(5);
    nn::Linear ref(8, 7);
    EXPECT_TRUE(torch::equal(params(*model, "fc.weight"), ref->weight.detach()));
    EXPECT_TRUE(torch::equal(params(*model, "fc.bias"), ref->bias.detach()));
  }
  {  // akamaster's CIFAR ResNet: the default, then kaiming_normal_ of the weight.
    auto model = hm::make_model("cifar-resnet20", 7);
    torch::manual_seed(5);
    hm::reset_head(*model);
    torch::manual_seed(5);
    nn::Linear ref(64, 7);
    nn::init::kaiming_normal_(ref->weight, 0.0, torch::kFanIn, torch::kLeakyReLU);
    EXPECT_TRUE(torch::equal(params(*model, "linear.weight"), ref->weight.detach()));
    EXPECT_TRUE(torch::equal(params(*model, "linear.bias"), ref->bias.detach()));
  }
  {  // RoBERTa's two-layer head: both Linear layers, in module order.
    auto model = hm::make_hf_model(hf_fixture("roberta-tiny"), 4);
    torch::manual_seed(5);
    hm::reset_head(*model);
    torch::manual_seed(5);
    const auto dense = torch::empty({32, 32}).normal_(0.0, 0.02);
    const auto out = torch::empty({4, 32}).normal_(0.0, 0.02);
    EXPECT_TRUE(torch::equal(params(*model, "classifier.dense.weight"), dense));
    EXPECT_TRUE(torch::equal(params(*model, "classifier.out_proj.weight"), out));
    EXPECT_TRUE(torch::equal(params(*model, "classifier.out_proj.bias"), torch::zeros({4})));
  }
}

TEST(Pretrained, ConfigFieldsThatDisagreeWithTheWeights) {
  struct Case {
    const char* fixture;
    nlohmann::json change;
    std::vector<std::string> expected;
  };
  const std::vector<Case> cases = {
      {"vit-tiny", {{"hidden_size", 64}}, {"hidden_size 64 disagrees", "tensor 'vit.embeddings.cls_token' has shape [1, 1, 32] (hidden_size 32)"}},
      {"vit-tiny", {{"num_hidden_layers", 3}}, {"num_hidden_layers 3 disagrees", "holds 2 layers, indices 0..1", "vit.encoder.layer.1."}},
      {"vit-tiny", {{"intermediate_size", 128}}, {"intermediate_size 128 disagrees", "'vit.encoder.layer.0.intermediate.dense.weight' has shape [64, 32]"}},
      {"vit-tiny", {{"patch_size", 4}}, {"patch_size 4 disagrees", "projection.weight' has shape [32, 3, 8, 8] (patch_size 8)"}},
      {"vit-tiny", {{"num_channels", 1}}, {"num_channels 1 disagrees", "(num_channels 3)"}},
      {"vit-tiny", {{"qkv_bias", false}}, {"qkv_bias false disagrees", "attention.attention.query.bias' is present"}},
      {"bert-tiny", {{"vocab_size", 999}}, {"vocab_size 999 disagrees", "'bert.embeddings.word_embeddings.weight' has shape [1000, 32] (vocab_size 1000)"}},
      {"bert-tiny", {{"max_position_embeddings", 50}}, {"max_position_embeddings 50 disagrees", "bert.embeddings.position_embeddings.weight"}},
      {"roberta-tiny", {{"type_vocab_size", 2}}, {"type_vocab_size 2 disagrees", "roberta.embeddings.token_type_embeddings.weight"}},
  };
  int k = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.change.dump());
    const auto config = config_with(hf_fixture(c.fixture) + "/config.json", c.change, "config" + std::to_string(k++) + ".json");
    auto model = hm::make_hf_model(config);
    auto state = hio::read_checkpoint(hf_fixture(c.fixture));
    hm::AdaptOptions ao;
    ao.source = hf_fixture(c.fixture);
    const auto msg = error_of([&] { hm::adapt_checkpoint(*model, state, ao); });
    EXPECT_HAS(msg, "config " + config + ": ");
    EXPECT_HAS(msg, "checkpoint " + hf_fixture(c.fixture));
    for (const auto& e : c.expected) EXPECT_HAS(msg, e);
  }
}

TEST(Pretrained, HuggingFaceRenamesAndDroppedPretrainingHeads) {
  {  // A ViTModel checkpoint with a pooler (as google/vit-base-patch16-224-in21k ships).
    auto model = hm::make_hf_model(hf_fixture("vit-tiny"));
    auto state = hio::read_checkpoint(hf_fixture("vit-tiny"));
    for (auto& [name, t] : state) {
      if (name.rfind("vit.", 0) == 0) name = name.substr(4);
    }
    state.emplace_back("pooler.dense.weight", torch::zeros({32, 32}));
    state.emplace_back("pooler.dense.bias", torch::zeros({32}));
    const auto a = hm::adapt_checkpoint(*model, state);
    EXPECT_EQ(a.dropped, (std::vector<std::string>{"vit.pooler.dense.weight", "vit.pooler.dense.bias"}));
    ASSERT_EQ(a.notes.size(), 2u);
    EXPECT_HAS(a.notes[0], "added the prefix 'vit.'");
    EXPECT_EQ(hio::load_state_dict(*model, state).loaded.size(), model->named_parameters().size());
  }
  {  // BERT pretraining heads and an old position_ids buffer; a DataParallel prefix.
    auto model = hm::make_hf_model(hf_fixture("bert-tiny"));
    auto state = hio::read_checkpoint(hf_fixture("bert-tiny"));
    state.emplace_back("cls.predictions.bias", torch::zeros({1000}));
    state.emplace_back("bert.embeddings.position_ids", torch::arange(40).reshape({1, 40}));
    for (auto& [name, t] : state) name = "module." + name;
    const auto a = hm::adapt_checkpoint(*model, state);
    EXPECT_EQ(a.dropped, (std::vector<std::string>{"cls.predictions.bias", "bert.embeddings.position_ids"}));
    EXPECT_HAS(a.notes[0], "renamed 'module.*' to '*'");
    EXPECT_EQ(hio::load_state_dict(*model, state).loaded.size(), model->named_parameters().size());
  }
  {  // RoBERTa: lm_head and a pooler it does not have; anything else unknown stays for the loader.
    auto model = hm::make_hf_model(hf_fixture("roberta-tiny"));
    auto state = hio::read_checkpoint(hf_fixture("roberta-tiny"));
    state.emplace_back("lm_head.dense.weight", torch::zeros({32, 32}));
    state.emplace_back("roberta.pooler.dense.weight", torch::zeros({32, 32}));
    state.emplace_back("something.else", torch::zeros({1}));
    const auto a = hm::adapt_checkpoint(*model, state);
    EXPECT_EQ(a.dropped.size(), 2u);
    EXPECT_HAS(error_of([&] { hio::load_state_dict(*model, state); }), "unexpected (1): something.else");
  }
  {  // The reference's ResNet wrapper names (SPEC §3.1): feature_extractor.* and pred_head.*.
    auto model = hm::make_model("resnet18", 5);
    auto state = hio::state_dict_of(*model);
    for (auto& [name, t] : state) {
      name = name.rfind("fc.", 0) == 0 ? "pred_head." + name.substr(3) : "feature_extractor." + name;
    }
    const auto a = hm::adapt_checkpoint(*model, state);
    EXPECT_EQ(a.notes.size(), 2u);
    hio::LoadOptions lo;
    lo.optional_suffixes = {};
    EXPECT_EQ(hio::load_state_dict(*model, state, lo).loaded.size(), hio::state_dict_of(*model).size());
  }
}

}  // namespace
