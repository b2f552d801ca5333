// models::ResNet against torchvision 0.14: parameter/buffer names, shapes and order and the Hessian
// layers of ResNet-18/34/50/101 as listed by tests/fixtures/models/make_torchvision_fixture.py;
// float64 logits, loss, gradient and one Hessian-vector product of ResNet-18 and ResNet-50 under
// the script's closed-form weights; and the HvpEngine's product against central finite
// differences of the gradient.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "hessian/hvp_engine.h"
#include "io/safetensors.h"
#include "models/registry.h"
#include "models/resnet.h"
#include "util/error.h"

#include "tests/support/tensor_assert.h"

using hessgap::testing::close_rel;
using hessgap::testing::split_commas;

namespace hm = hessgap::models;

namespace {

std::string fixture_path(const std::string& arch) {
  return std::string(HG_SOURCE_DIR) + "/tests/fixtures/models/" + arch +
         "_torchvision_fixture.safetensors";
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream is(s);
  while (std::getline(is, item, sep)) out.push_back(item);
  return out;
}

// "name:AxB" entries, as the script writes a named_parameters()/named_buffers() listing.
std::string listing(const torch::OrderedDict<std::string, torch::Tensor>& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ";";
    out += item.key() + ":";
    const auto sizes = item.value().sizes();
    for (std::size_t d = 0; d < sizes.size(); ++d) out += (d ? "x" : "") + std::to_string(sizes[d]);
  }
  return out;
}


// Sorted names of the floating parameters and buffers (the script's closed_form_names).
std::vector<std::string> closed_form_names(const hm::Classifier& model) {
  std::vector<std::string> names;
  for (const auto& item : model.named_parameters()) names.push_back(item.key());
  for (const auto& item : model.named_buffers()) {
    if (item.value().is_floating_point()) names.push_back(item.key());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// The script's set_closed_form, term for term (same operation order, so the float64 weights agree
// to the last bit or nearly). The model must already be float64.
void set_closed_form(hm::Classifier& model) {
  torch::NoGradGuard no_grad;
  auto params = model.named_parameters();
  auto buffers = model.named_buffers();
  const auto names = closed_form_names(model);
  for (std::size_t t = 0; t < names.size(); ++t) {
    const std::string& name = names[t];
    torch::Tensor* target = params.find(name);
    if (target == nullptr) target = buffers.find(name);
    ASSERT_NE(target, nullptr) << name;
    auto k = torch::arange(target->numel(), torch::kFloat64);
    auto s = torch::sin(0.37 * (k + 1) + 1.3 * double(t + 1));
    auto ends_with = [&](const std::string& suffix) {
      return name.size() >= suffix.size() &&
             name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    torch::Tensor v;
    if (target->dim() >= 2) {
      const double g = name == "fc.weight" ? 1.0 : 2.0;
      v = s * (g / std::sqrt(double(target->numel() / target->size(0))));
    } else if (ends_with("running_var")) {
      v = 1 + 0.2 * s * s;
    } else if (ends_with("running_mean") || ends_with("bias")) {
      v = 0.05 * s;
    } else {
      v = 1 + 0.1 * s;
    }
    target->copy_(v.view_as(*target));
  }
}

// The rule-based expectation: stem, layerS.B.convC for every block, fc.weight.
std::vector<std::string> expected_hessian_layers(const std::vector<int>& blocks, int convs) {
  std::vector<std::string> names = {"conv1.weight"};
  for (int s = 0; s < 4; ++s) {
    for (int b = 0; b < blocks[s]; ++b) {
      for (int c = 1; c <= convs; ++c) {
        names.push_back("layer" + std::to_string(s + 1) + "." + std::to_string(b) + ".conv" +
                        std::to_string(c) + ".weight");
      }
    }
  }
  names.push_back("fc.weight");
  return names;
}

struct Depth {
  int depth;
  std::vector<int> blocks;
  int convs_per_block;
  const char* fixture;  // the fixture file whose metadata lists this depth
};

const std::vector<Depth> kDepths = {{18, {2, 2, 2, 2}, 2, "resnet18"},
                                    {34, {3, 4, 6, 3}, 2, "resnet18"},
                                    {50, {3, 4, 6, 3}, 3, "resnet50"},
                                    {101, {3, 4, 23, 3}, 3, "resnet18"}};

std::map<std::string, std::string> metadata_of(const std::string& fixture) {
  static std::map<std::string, std::map<std::string, std::string>> cache;
  auto it = cache.find(fixture);
  if (it == cache.end()) {
    it = cache.emplace(fixture, hessgap::io::read_safetensors(fixture_path(fixture)).metadata).first;
  }
  return it->second;
}

}  // namespace

// Random (constructor-initialised) weights: only names, shapes, order and counts matter here.
TEST(ResNetTorchvision, NamesShapesAndHessianLayersOfAllDepths) {
  for (const auto& d : kDepths) {
    SCOPED_TRACE("resnet" + std::to_string(d.depth));
    const std::string arch = "resnet" + std::to_string(d.depth);
    const auto meta = metadata_of(d.fixture);
    auto model = hm::make_model(arch, 10);
    EXPECT_EQ(model->arch(), arch);
    EXPECT_EQ(model->head_prefix(), "fc.");
    EXPECT_EQ(listing(model->named_parameters()), meta.at("parameters." + arch));
    EXPECT_EQ(listing(model->named_buffers()), meta.at("buffers." + arch));
    const auto layers = model->hessian_layers();
    EXPECT_EQ(static_cast<int>(layers.size()), d.depth);
    EXPECT_EQ(layers, split(meta.at("hessian_layers." + arch), ','));
    EXPECT_EQ(layers, expected_hessian_layers(d.blocks, d.convs_per_block));
    EXPECT_EQ(hm::hessian_parameters(*model).size(), layers.size());
  }
}

TEST(ResNetTorchvision, InitFollowsTorchvision) {
  torch::manual_seed(0);
  auto model = hm::make_model("resnet50", 10);
  auto params = model->named_parameters();
  // kaiming_normal_(fan_out, relu): std = sqrt(2 / (out_channels * kh * kw)).
  for (const char* name : {"layer3.0.conv2.weight", "layer4.0.downsample.0.weight"}) {
    const auto& w = params[name];
    const double expected = std::sqrt(2.0 / double(w.size(0) * w.size(2) * w.size(3)));
    EXPECT_NEAR(w.std().item<double>(), expected, 0.02 * expected) << name;
  }
  // BatchNorm weight 1, bias 0, including the last BN of each block (no zero_init_residual).
  EXPECT_TRUE(params["layer1.0.bn3.weight"].eq(1).all().item<bool>());
  EXPECT_TRUE(params["layer1.0.bn3.bias"].eq(0).all().item<bool>());
  // fc: PyTorch's default Linear init, uniform in ±1/sqrt(fan_in) for weight and bias.
  const double bound = 1.0 / std::sqrt(2048.0);
  EXPECT_LE(params["fc.weight"].abs().max().item<double>(), bound);
  EXPECT_GT(params["fc.weight"].abs().max().item<double>(), 0.9 * bound);
  EXPECT_LE(params["fc.bias"].abs().max().item<double>(), bound);
}

TEST(ResNetTorchvision, HeadSizeAndAnyImageSize) {
  auto model = hm::make_model("resnet18", 7);
  EXPECT_EQ(model->num_classes(), 7);
  EXPECT_EQ(model->named_parameters()["fc.weight"].sizes(), (std::vector<std::int64_t>{7, 512}));
  model->eval();
  torch::NoGradGuard no_grad;
  hessgap::data::Batch batch;
  batch.inputs = torch::randn({2, 3, 32, 48});
  EXPECT_EQ(model->forward(batch).sizes(), (std::vector<std::int64_t>{2, 7}));
  batch.inputs = torch::randn({2, 1, 32, 32});
  EXPECT_THROW(model->forward(batch), hessgap::Error);
  EXPECT_THROW(hm::make_model("resnet152", 10), hessgap::Error);
  EXPECT_THROW(hm::make_model("resnet18:x=1", 10), hessgap::Error);
  EXPECT_THROW(hm::ResNet(20, 10), hessgap::Error);
  EXPECT_THROW(hm::ResNet(18, 0), hessgap::Error);
}

class TorchvisionFixture : public ::testing::TestWithParam<std::string> {};

// One forward and double backward per model (ResNet-50 in float64 is the slow part of the binary).
TEST_P(TorchvisionFixture, LogitsLossGradientAndHvpInFloat64) {
  const std::string arch = GetParam();
  auto file = hessgap::io::read_safetensors(fixture_path(arch));
  std::map<std::string, torch::Tensor> ref(file.tensors.begin(), file.tensors.end());
  auto at = [&](const std::string& name) {
    auto it = ref.find(name);
    if (it == ref.end()) throw std::runtime_error("fixture lacks tensor " + name);
    return it->second;
  };

  auto model = hm::make_model(arch, 10);
  model->to(torch::kFloat64);
  model->eval();
  ASSERT_EQ(closed_form_names(*model), split(file.metadata.at("closed_form_names"), ','));
  set_closed_form(*model);
  hessgap::data::Batch batch;
  batch.inputs = at("inputs");
  batch.labels = at("labels");

  const auto names = model->hessian_layers();
  auto logits = model->forward(batch);
  EXPECT_TRUE(close_rel(logits.detach(), at("logits"), 1e-10));
  auto loss = torch::nn::functional::cross_entropy(logits, batch.labels);
  EXPECT_TRUE(close_rel(loss.detach().reshape({1}), at("loss"), 1e-10));

  hessgap::hessian::HvpEngine engine(loss, hm::hessian_parameters(*model));
  const auto grads = engine.gradient();
  std::vector<torch::Tensor> probes;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto& w = engine.params()[i];
    probes.push_back(torch::sin(0.1 * (torch::arange(w.numel(), torch::kFloat64) + 1) + double(i))
                         .reshape(w.sizes()));
  }
  const auto hvs = engine.hvp(probes);

  auto strides = at("sample_stride");
  ASSERT_EQ(strides.numel(), static_cast<std::int64_t>(names.size()));
  for (std::size_t i = 0; i < names.size(); ++i) {
    SCOPED_TRACE(names[i]);
    const auto s = strides[i].item<std::int64_t>();
    auto sample = [&](const torch::Tensor& t) {
      auto flat = t.detach().reshape({-1});
      return flat.slice(0, 0, flat.numel(), s);
    };
    EXPECT_TRUE(close_rel(sample(probes[i]), at("v." + names[i]), 1e-12));
    EXPECT_TRUE(close_rel(sample(grads[i]), at("grad." + names[i]), 1e-8));
    EXPECT_TRUE(close_rel(sample(hvs[i]), at("hv." + names[i]), 1e-8));
    auto scalar = [&](const char* key) { return at(key).slice(0, i, i + 1); };
    EXPECT_TRUE(close_rel(grads[i].pow(2).sum().reshape({1}), scalar("grad_sqnorm"), 1e-8));
    EXPECT_TRUE(close_rel(hvs[i].pow(2).sum().reshape({1}), scalar("hv_sqnorm"), 1e-8));
    EXPECT_TRUE(close_rel((probes[i] * hvs[i]).sum().reshape({1}), scalar("vhv"), 1e-8));
  }
}

INSTANTIATE_TEST_SUITE_P(Torchvision, TorchvisionFixture,
                         ::testing::Values(std::string("resnet18"), std::string("resnet50")));

// The measure engine's product on a full-size ResNet-18 (float64, eval mode, one 32x32 image),
// restricted to two layers, equals (g(w + h v) - g(w - h v)) / 2h for the gradient g with respect
// to those layers. The direction v has unit norm; h = 1e-5 moves the pre-activations far less
// than their spread, so no ReLU or max-pool switches between the two sides.
TEST(ResNetTorchvision, HvpMatchesFiniteDifferencesOnResNet18) {
  torch::manual_seed(3);
  auto model = hm::make_model("resnet18", 10);
  model->to(torch::kFloat64);
  model->eval();
  hessgap::data::Batch batch;
  batch.inputs = torch::randn({1, 3, 32, 32}, torch::kFloat64);
  batch.labels = torch::tensor({4}, torch::kInt64);
  const std::vector<std::string> layers = {"layer2.1.conv1.weight", "fc.weight"};
  auto params = hm::parameters_by_name(*model, layers);
  auto loss_of = [&] {
    return torch::nn::functional::cross_entropy(model->forward(batch), batch.labels);
  };

  std::vector<torch::Tensor> v;
  double norm2 = 0;
  for (const auto& p : params) {
    v.push_back(torch::randn(p.sizes(), torch::kFloat64));
    norm2 += v.back().pow(2).sum().item<double>();
  }
  for (auto& t : v) t /= std::sqrt(norm2);

  hessgap::hessian::HvpEngine engine(loss_of(), params);
  const auto hv = engine.hvp(v);

  const double h = 1e-5;
  auto gradient_at = [&](double step) {
    {
      torch::NoGradGuard no_grad;
      for (std::size_t i = 0; i < params.size(); ++i) params[i].add_(v[i], step);
    }
    auto g = torch::autograd::grad({loss_of()}, params);
    {
      torch::NoGradGuard no_grad;
      for (std::size_t i = 0; i < params.size(); ++i) params[i].sub_(v[i], step);
    }
    return g;
  };
  const auto plus = gradient_at(h);
  const auto minus = gradient_at(-h);
  for (std::size_t i = 0; i < params.size(); ++i) {
    SCOPED_TRACE(layers[i]);
    auto fd = (plus[i] - minus[i]) / (2 * h);
    ASSERT_GT(hv[i].abs().max().item<double>(), 0.0);
    EXPECT_TRUE(close_rel(hv[i], fd, 1e-6));
  }
}
