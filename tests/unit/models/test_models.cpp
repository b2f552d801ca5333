// Structure of the models: names and order of the Hessian layers, parameter counts, shapes,
// float64, the registry's spec grammar and its errors. Numerics against Python are in
// test_resnet20_fixture.cpp.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <set>

#include "models/cifar_resnet.h"
#include "models/mlp.h"
#include "models/registry.h"
#include "models/small_cnn.h"
#include "util/error.h"

namespace hm = hessgap::models;
using hessgap::data::Batch;

namespace {

Batch image_batch(std::int64_t b, std::int64_t c, std::int64_t h, std::int64_t w) {
  Batch batch;
  batch.inputs = torch::randn({b, c, h, w});
  batch.labels = torch::zeros({b}, torch::kLong);
  return batch;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const hessgap::Error& e) {
    return e.what();
  }
  return "<no hessgap::Error>";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

class ResNetDepth : public ::testing::TestWithParam<int> {};

// SPEC §3.4: every conv (no downsample convs exist with option A) + the head: 6n+1 + 1 = depth.
TEST_P(ResNetDepth, HessianLayersAreStemBlocksThenHead) {
  const int depth = GetParam();
  const int n = (depth - 2) / 6;
  auto model = hm::make_model("cifar-resnet" + std::to_string(depth), 10);
  EXPECT_EQ(model->arch(), "cifar-resnet" + std::to_string(depth));
  std::vector<std::string> expected = {"conv1.weight"};
  for (int s = 1; s <= 3; ++s) {
    for (int b = 0; b < n; ++b) {
      for (int c = 1; c <= 2; ++c) {
        expected.push_back("layer" + std::to_string(s) + "." + std::to_string(b) + ".conv" +
                           std::to_string(c) + ".weight");
      }
    }
  }
  expected.push_back("linear.weight");
  EXPECT_EQ(model->hessian_layers(), expected);
  EXPECT_EQ(static_cast<int>(model->hessian_layers().size()), depth);
  EXPECT_EQ(model->head_prefix(), "linear.");
}

INSTANTIATE_TEST_SUITE_P(Depths, ResNetDepth, ::testing::Values(20, 32, 56));

TEST(CifarResNet, ResNet20HasTwentyHessianLayers) {
  EXPECT_EQ(hm::make_model("cifar-resnet20", 10)->hessian_layers().size(), 20u);
}

// akamaster's README: ResNet-20 has 0.27M parameters; exactly 267,696 conv + 1,376 BN + 650 head.
TEST(CifarResNet, ParameterCountMatchesAkamaster) {
  auto model = hm::make_model("cifar-resnet20", 10);
  std::int64_t total = 0;
  for (const auto& p : model->parameters()) total += p.numel();
  EXPECT_EQ(total, 269722);
  auto model110 = hm::make_model("cifar-resnet110", 10);
  total = 0;
  for (const auto& p : model110->parameters()) total += p.numel();
  EXPECT_NEAR(total / 1e6, 1.7, 0.05);  // README: 1.7M
}

TEST(CifarResNet, ParameterAndBufferNames) {
  auto model = hm::make_model("cifar-resnet20", 10);
  std::set<std::string> params, buffers;
  for (const auto& item : model->named_parameters()) params.insert(item.key());
  for (const auto& item : model->named_buffers()) buffers.insert(item.key());
  for (const char* name : {"conv1.weight", "bn1.weight", "bn1.bias", "layer2.0.conv1.weight",
                           "layer3.2.bn2.bias", "linear.weight", "linear.bias"}) {
    EXPECT_TRUE(params.count(name)) << name;
  }
  for (const char* name : {"bn1.running_mean", "bn1.running_var", "layer1.0.bn1.running_var"}) {
    EXPECT_TRUE(buffers.count(name)) << name;
  }
  for (const auto& name : params) EXPECT_FALSE(contains(name, "shortcut")) << name;
  for (const auto& name : params) EXPECT_FALSE(contains(name, "downsample")) << name;
  EXPECT_EQ(model->named_parameters()["layer2.0.conv1.weight"].sizes(),
            torch::IntArrayRef({32, 16, 3, 3}));
  EXPECT_EQ(model->named_parameters()["linear.weight"].sizes(), torch::IntArrayRef({10, 64}));
}

TEST(CifarResNet, ForwardShapes) {
  auto model = hm::make_model("cifar-resnet20", 7);
  model->eval();
  EXPECT_EQ(model->forward(image_batch(3, 3, 32, 32)).sizes(), torch::IntArrayRef({3, 7}));
  EXPECT_EQ(model->num_classes(), 7);
  EXPECT_TRUE(contains(error_of([&] { model->forward(image_batch(2, 1, 32, 32)); }), "[B,3,H,H]"));
}

// akamaster init: kaiming_normal_ with fan_in and gain sqrt(2): std = sqrt(2 / (9 * 64)).
TEST(CifarResNet, KaimingNormalInit) {
  torch::manual_seed(0);
  auto model = hm::make_model("cifar-resnet56", 10);
  auto w = model->named_parameters()["layer3.5.conv2.weight"];
  const double expected = std::sqrt(2.0 / (9 * 64));
  EXPECT_NEAR(w.std().item<double>() / expected, 1.0, 0.03);
  EXPECT_NEAR(w.mean().item<double>(), 0.0, 3 * expected / std::sqrt(double(w.numel())));
}

TEST(CifarResNet, SeededConstructionIsDeterministic) {
  torch::manual_seed(7);
  auto a = hm::make_model("cifar-resnet20", 10);
  torch::manual_seed(7);
  auto b = hm::make_model("cifar-resnet20", 10);
  auto pa = a->parameters(), pb = b->parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (std::size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i]));
}

TEST(CifarResNet, DepthMustBe6nPlus2) {
  EXPECT_THROW(hm::CifarResNet(21, 10), hessgap::Error);
  EXPECT_THROW(hm::CifarResNet(2, 10), hessgap::Error);
  EXPECT_EQ(hm::CifarResNet(8, 10).hessian_layers().size(), 8u);
}

// Casting keeps int64 buffers int64 (Python semantics) and forward accepts float32 inputs.
TEST(Classifier, Float64CastAndForward) {
  torch::manual_seed(1);
  for (const char* arch : {"cifar-resnet20", "small-cnn", "mlp"}) {
    SCOPED_TRACE(arch);
    auto model = hm::make_model(arch, 10);
    model->eval();
    auto batch = image_batch(2, 3, 32, 32);
    auto out32 = model->forward(batch);
    EXPECT_EQ(out32.scalar_type(), torch::kFloat);
    model->to(torch::kFloat64);
    EXPECT_EQ(model->dtype(), torch::kFloat64);
    for (const auto& p : model->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat64);
    for (const auto& item : model->named_buffers()) {
      const bool counter = contains(item.key(), "num_batches_tracked");
      EXPECT_EQ(item.value().scalar_type(), counter ? torch::kLong : torch::kFloat64) << item.key();
    }
    auto out64 = model->forward(batch);
    EXPECT_EQ(out64.scalar_type(), torch::kFloat64);
    EXPECT_TRUE(torch::allclose(out64.to(torch::kFloat), out32, 1e-4, 1e-4));
    model->to(torch::kFloat);
    EXPECT_EQ(model->dtype(), torch::kFloat);
  }
}

TEST(Mlp, LayersNamesAndArchRoundTrip) {
  auto model = hm::make_model("mlp:in=12,hidden=8-6,act=gelu", 3);
  EXPECT_EQ(model->hessian_layers(),
            (std::vector<std::string>{"fc0.weight", "fc1.weight", "head.weight"}));
  EXPECT_EQ(model->head_prefix(), "head.");
  EXPECT_EQ(model->arch(), "mlp:in=12,hidden=8-6,act=gelu");
  auto again = hm::make_model(model->arch(), 3);
  EXPECT_EQ(again->arch(), model->arch());
  EXPECT_EQ(hm::make_model("mlp", 10)->arch(), "mlp:in=3072,hidden=32,act=tanh");
  EXPECT_EQ(hm::make_model("mlp:act=gelu,in=4", 2)->arch(), "mlp:in=4,hidden=32,act=gelu");
  EXPECT_EQ(model->forward(image_batch(5, 3, 2, 2)).sizes(), torch::IntArrayRef({5, 3}));
}

// Without hidden layers the MLP is an affine map: logits = x W^T + b.
TEST(Mlp, NoHiddenLayerIsAffine) {
  auto model = hm::make_model("mlp:in=12,hidden=", 4);
  EXPECT_EQ(model->hessian_layers(), std::vector<std::string>{"head.weight"});
  auto batch = image_batch(3, 3, 2, 2);
  auto w = model->named_parameters()["head.weight"];
  auto b = model->named_parameters()["head.bias"];
  auto expected = torch::matmul(batch.inputs.reshape({3, 12}), w.t()) + b;
  EXPECT_TRUE(torch::allclose(model->forward(batch), expected, 1e-6, 1e-6));
}

// One hidden layer: logits = W2 act(W1 x + b1) + b2 for both activations.
TEST(Mlp, HiddenLayerClosedForm) {
  auto x = torch::randn({4, 5}, torch::kFloat64);
  for (auto act : {hm::Activation::kTanh, hm::Activation::kGelu}) {
    hm::Mlp model(5, {3}, 2, act);
    model.to(torch::kFloat64);
    auto p = model.named_parameters();
    auto h = torch::matmul(x, p["fc0.weight"].t()) + p["fc0.bias"];
    h = act == hm::Activation::kTanh
            ? torch::tanh(h)
            : 0.5 * h * (1 + torch::erf(h / std::sqrt(2.0)));
    auto expected = torch::matmul(h, p["head.weight"].t()) + p["head.bias"];
    EXPECT_TRUE(torch::allclose(model.forward_inputs(x), expected, 1e-12, 1e-12));
  }
  EXPECT_TRUE(contains(error_of([] { hm::Mlp(5, {3}, 2).forward_inputs(torch::randn({4, 6})); }),
                       "5 features"));
}

TEST(SmallCnn, LayersShapesAndEvalIndependence) {
  torch::manual_seed(3);
  auto model = hm::make_model("small-cnn", 5);
  EXPECT_EQ(model->hessian_layers(),
            (std::vector<std::string>{"conv1.weight", "conv2.weight", "fc.weight"}));
  EXPECT_EQ(model->head_prefix(), "fc.");
  EXPECT_EQ(model->arch(), "small-cnn:in=3,c1=4,c2=8");
  auto custom = hm::make_model("small-cnn:in=1,c1=2,c2=3", 4);
  EXPECT_EQ(custom->forward(image_batch(2, 1, 5, 7)).sizes(), torch::IntArrayRef({2, 4}));
  EXPECT_EQ(custom->named_parameters()["conv2.weight"].sizes(), torch::IntArrayRef({3, 2, 3, 3}));
  // In eval mode BatchNorm uses running statistics, so a sample's logits do not depend on the
  // rest of the batch.
  model->eval();
  auto batch = image_batch(4, 3, 6, 6);
  auto all = model->forward(batch);
  Batch first = batch;
  first.inputs = batch.inputs.slice(0, 0, 1);
  EXPECT_TRUE(torch::allclose(model->forward(first), all.slice(0, 0, 1), 1e-5, 1e-6));
}

TEST(Registry, KnownArchitecturesAllBuild) {
  auto names = hm::known_architectures();
  EXPECT_EQ(names, (std::vector<std::string>{"cifar-resnet20", "cifar-resnet32", "cifar-resnet44",
                                             "cifar-resnet56", "cifar-resnet110", "resnet18",
                                             "resnet34", "resnet50", "resnet101", "mlp",
                                             "small-cnn"}));
  for (const auto& name : names) {
    auto model = hm::make_model(name, 10);
    const auto layers = model->hessian_layers();
    ASSERT_FALSE(layers.empty()) << name;
    EXPECT_EQ(layers.back().rfind(model->head_prefix(), 0), 0u) << name;
    // Every Hessian layer is a weight of the model, and the only head parameters are
    // <prefix>weight and <prefix>bias.
    EXPECT_EQ(hm::hessian_parameters(*model).size(), layers.size()) << name;
    int head = 0;
    for (const auto& item : model->named_parameters()) head += item.key().rfind(model->head_prefix(), 0) == 0;
    EXPECT_EQ(head, 2) << name;
  }
}

TEST(Registry, UnknownArchitectureListsKnownNames) {
  const auto msg = error_of([] { hm::make_model("resnet152", 10); });
  EXPECT_TRUE(contains(msg, "'resnet152'")) << msg;
  for (const auto& name : hm::known_architectures()) EXPECT_TRUE(contains(msg, name)) << msg;
  EXPECT_TRUE(contains(error_of([] { hm::make_model("cifar-resnet21", 10); }), "cifar-resnet20"));
}

TEST(Registry, MalformedOptions) {
  EXPECT_TRUE(contains(error_of([] { hm::make_model("mlp:hidden=8-x", 2); }), "hidden=x"));
  EXPECT_TRUE(contains(error_of([] { hm::make_model("mlp:hidden=8--2", 2); }), "positive"));
  EXPECT_TRUE(contains(error_of([] { hm::make_model("mlp:depth=2", 2); }), "unknown option 'depth'"));
  EXPECT_TRUE(contains(error_of([] { hm::make_model("mlp:in", 2); }), "key=value"));
  EXPECT_TRUE(contains(error_of([] { hm::make_model("mlp:act=relu", 2); }), "relu"));
  EXPECT_TRUE(contains(error_of([] { hm::make_model("mlp:in=0", 2); }), "in=0"));
  EXPECT_TRUE(contains(error_of([] { hm::make_model("small-cnn:c1=2,c1=3", 2); }), "repeated"));
  EXPECT_TRUE(contains(error_of([] { hm::make_model("cifar-resnet20:x=1", 2); }), "no options"));
  EXPECT_TRUE(contains(error_of([] { hm::make_model("small-cnn", 0); }), "num_classes"));
}

TEST(Registry, ParametersByNameAliasesInOrder) {
  auto model = hm::make_model("mlp:in=4,hidden=3", 2);
  auto ps = hm::parameters_by_name(*model, {"head.weight", "fc0.bias"});
  ASSERT_EQ(ps.size(), 2u);
  auto named = model->named_parameters();
  EXPECT_EQ(ps[0].data_ptr(), named["head.weight"].data_ptr());
  EXPECT_EQ(ps[1].data_ptr(), named["fc0.bias"].data_ptr());
  EXPECT_TRUE(ps[0].requires_grad());
  const auto msg = error_of([&] { hm::parameters_by_name(*model, {"fc0.weight", "fc9.weight"}); });
  EXPECT_TRUE(contains(msg, "'fc9.weight'")) << msg;
  EXPECT_TRUE(contains(msg, "mlp:in=4")) << msg;
}
