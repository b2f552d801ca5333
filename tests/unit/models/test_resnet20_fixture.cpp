// CIFAR ResNet-20 against the float64 Python reference written by
// tests/fixtures/models/make_resnet20_fixture.py: logits, batch-mean cross-entropy, its gradient
// with respect to the Hessian layers, and one Hessian-vector product by double backward.
// Gradients and HVPs are stored as strided samples plus whole-tensor scalars (see the script).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "models/registry.h"

#include "tests/support/tensor_assert.h"

using hessgap::testing::close_rel;
using hessgap::testing::split_commas;

namespace hm = hessgap::models;
namespace fs = std::filesystem;

namespace {

const std::string kFixture =
    std::string(HG_SOURCE_DIR) + "/tests/fixtures/models/resnet20_fixture.safetensors";

std::string weights_path() {
  for (const std::string p :
       {std::string(HG_SOURCE_DIR) + "/assets/models/cifar10-resnet20/resnet20.safetensors",
        std::string(HG_SOURCE_DIR) + "/../shared/data/models/cifar10-resnet/resnet20.safetensors",
        std::string("/work/shared/data/models/cifar10-resnet/resnet20.safetensors")}) {
    if (fs::exists(p)) return p;
  }
  return "";
}



class ResNet20Fixture : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string weights = weights_path();
    if (weights.empty()) GTEST_SKIP() << "resnet20.safetensors not found under assets/ or shared/";
    auto file = hessgap::io::read_safetensors(kFixture);
    for (auto& [name, t] : file.tensors) ref[name] = t;
    meta = file.metadata;
    model = hm::make_model("cifar-resnet20", 10);
    hessgap::io::LoadOptions opts;
    opts.source = weights;
    hessgap::io::load_state_dict(*model, hessgap::io::read_checkpoint(weights), opts);
    model->eval();
    batch.inputs = ref.at("inputs");
    batch.labels = ref.at("labels");
  }

  torch::Tensor at(const std::string& name) const {
    auto it = ref.find(name);
    if (it == ref.end()) throw std::runtime_error("fixture lacks tensor " + name);
    return it->second;
  }

  std::map<std::string, torch::Tensor> ref;
  std::map<std::string, std::string> meta;
  std::shared_ptr<hm::Classifier> model;
  hessgap::data::Batch batch;
};

}  // namespace

TEST_F(ResNet20Fixture, FileNamesAndShapesMatchTheModel) {
  auto file = hessgap::io::read_checkpoint(weights_path());
  auto params = model->named_parameters();
  auto buffers = model->named_buffers();
  for (const auto& [name, t] : file) {
    const torch::Tensor* mine = params.find(name);
    if (mine == nullptr) mine = buffers.find(name);
    ASSERT_NE(mine, nullptr) << name;
    EXPECT_EQ(mine->sizes(), t.sizes()) << name;
  }
  // Everything the model has is in the file, except the optional BatchNorm counters
  // (bn1 + 2 per block x 9 blocks = 19 BatchNorms).
  std::set<std::string> in_file;
  for (const auto& item : file) in_file.insert(item.first);
  int counters = 0;
  for (const auto* dict : {&params, &buffers}) {
    for (const auto& item : *dict) {
      if (in_file.count(item.key())) continue;
      EXPECT_NE(item.key().find("num_batches_tracked"), std::string::npos) << item.key();
      ++counters;
    }
  }
  EXPECT_EQ(counters, 19);
}

TEST_F(ResNet20Fixture, HessianLayersMatchPython) {
  EXPECT_EQ(model->hessian_layers(), split_commas(meta.at("hessian_layers")));
}

TEST_F(ResNet20Fixture, LogitsAndLossInFloat64) {
  model->to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  auto logits = model->forward(batch);
  EXPECT_TRUE(close_rel(logits, at("logits"), 1e-10));
  auto loss = torch::nn::functional::cross_entropy(logits, batch.labels);
  EXPECT_TRUE(close_rel(loss.reshape({1}), at("loss"), 1e-10));
}

// The float32 model (the production path) agrees with the float64 reference to float32 accuracy.
TEST_F(ResNet20Fixture, LogitsInFloat32) {
  torch::NoGradGuard no_grad;
  auto logits = model->forward(batch);
  EXPECT_EQ(logits.scalar_type(), torch::kFloat);
  EXPECT_TRUE(close_rel(logits.to(torch::kFloat64), at("logits"), 1e-4));
}

TEST_F(ResNet20Fixture, GradientAndHessianVectorProduct) {
  model->to(torch::kFloat64);
  const auto names = model->hessian_layers();
  auto params = hm::hessian_parameters(*model);
  auto loss = torch::nn::functional::cross_entropy(model->forward(batch), batch.labels);
  auto grads = torch::autograd::grad({loss}, params, {}, /*retain_graph=*/true,
                                     /*create_graph=*/true);
  ASSERT_EQ(grads.size(), names.size());

  std::vector<torch::Tensor> probes;
  auto gv = torch::zeros({}, torch::kFloat64);
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto n = params[i].numel();
    auto v = torch::sin(0.1 * (torch::arange(n, torch::kFloat64) + 1) + double(i))
                 .reshape(params[i].sizes());
    probes.push_back(v);
    gv = gv + (grads[i] * v).sum();
  }
  auto hvs = torch::autograd::grad({gv}, params);

  auto strides = at("sample_stride");
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
    auto gsq = grads[i].detach().pow(2).sum();
    auto hsq = hvs[i].pow(2).sum();
    auto vhv = (probes[i] * hvs[i]).sum();
    EXPECT_TRUE(close_rel(gsq.reshape({1}), at("grad_sqnorm").slice(0, i, i + 1), 1e-8));
    EXPECT_TRUE(close_rel(hsq.reshape({1}), at("hv_sqnorm").slice(0, i, i + 1), 1e-8));
    EXPECT_TRUE(close_rel(vhv.reshape({1}), at("vhv").slice(0, i, i + 1), 1e-8));
  }
}
