// hg_train: the reweighted loss against SPEC §5's closed forms, the constraint projections against their
// defining properties (§4), and Dual-T against numpy (dual_t_oracle.py).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "models/classifier.h"
#include "tests/support/python_oracle.h"
#include "models/registry.h"
#include "train/constraints.h"
#include "train/dual_t.h"
#include "train/reweight.h"
#include "train/schedule.h"
#include "util/error.h"

using namespace hessgap;
using namespace hessgap::train;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

torch::Tensor param(torch::nn::Module& m, const std::string& name) { return m.named_parameters()[name]; }

}  // namespace

// ---------------------------------------------------------------- reweighting (§5)

TEST(Reweight, SyntheticMatrixAndItsClosedFormInverse) {
  const auto c = synthetic_transition_matrix(5, 0.4);
  EXPECT_NEAR(c[0][0].item<double>(), 0.6, 1e-15);
  EXPECT_NEAR(c[0][3].item<double>(), 0.1, 1e-15);
  EXPECT_LT(max_abs(c.sum(1) - 1), 1e-15);
  // SPEC §5.1 examples: rho 0.4, K 5 -> rows [1.8, -0.2, ...]; rho 0.2, K 2 -> [4/3, -1/3].
  const auto r = reweight_matrix(c);
  EXPECT_NEAR(r[2][2].item<double>(), 1.8, 1e-12);
  EXPECT_NEAR(r[2][4].item<double>(), -0.2, 1e-12);
  const auto r2 = reweight_matrix(synthetic_transition_matrix(2, 0.2));
  EXPECT_NEAR(r2[0][0].item<double>(), 4.0 / 3.0, 1e-12);
  EXPECT_NEAR(r2[1][0].item<double>(), -1.0 / 3.0, 1e-12);
  // General closed form R = I/a - (b/a) J.
  for (std::int64_t k : {3, 7, 10}) {
    for (double rho : {0.05, 0.3, 0.6}) {
      const double a = 1 - rho * k / (k - 1.0), b = rho / (k - 1.0);
      const auto want = torch::eye(k, torch::kFloat64) / a - (b / a) * torch::ones({k, k}, torch::kFloat64);
      EXPECT_LT(max_abs(reweight_matrix(synthetic_transition_matrix(k, rho)) - want), 1e-10) << k << " " << rho;
      EXPECT_FALSE(degenerate_reweight_rate(k, rho));
    }
  }
}

TEST(Reweight, DegenerateDefaultsOfTheReference) {
  // rho 0.8, K 5: C = 0.2 J (rank 1), pinv(C) = 0.2 J; the loss no longer depends on the label.
  const auto r5 = reweight_matrix(synthetic_transition_matrix(5, 0.8));
  EXPECT_LT(max_abs(r5 - 0.2 * torch::ones({5, 5}, torch::kFloat64)), 1e-10);
  EXPECT_TRUE(degenerate_reweight_rate(5, 0.8));
  // rho 0.8, K 2: R = [[-1/3, 4/3], [4/3, -1/3]] trains toward the opposite label.
  const auto r2 = reweight_matrix(synthetic_transition_matrix(2, 0.8));
  EXPECT_NEAR(r2[0][0].item<double>(), -1.0 / 3.0, 1e-10);
  EXPECT_NEAR(r2[0][1].item<double>(), 4.0 / 3.0, 1e-10);
  EXPECT_TRUE(degenerate_reweight_rate(2, 0.8));
  EXPECT_TRUE(degenerate_reweight_rate(2, 0.5));
  const auto logits = torch::randn({6, 5}, torch::kFloat64);
  const auto l0 = reweighted_cross_entropy(logits, torch::zeros({6}, torch::kInt64), r5);
  const auto l3 = reweighted_cross_entropy(logits, torch::full({6}, 3, torch::kInt64), r5);
  EXPECT_NEAR(l0.item<double>(), l3.item<double>(), 1e-12);
}

TEST(Reweight, LossValueAndGradientClosedForm) {
  torch::manual_seed(3);
  const std::int64_t b = 7, k = 4;
  const auto r = reweight_matrix(synthetic_transition_matrix(k, 0.3));
  auto z = torch::randn({b, k}, torch::kFloat64).requires_grad_(true);
  const auto y = torch::tensor({0, 3, 1, 1, 2, 0, 3}, torch::kInt64);
  const auto loss = reweighted_cross_entropy(z, y, r);
  // Value: (1/B) Σ_b −Σ_k R[y_b][k] log p_bk, written out.
  const auto lp = torch::log_softmax(z.detach(), 1);
  double want = 0;
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t j = 0; j < k; ++j) want -= r[y[i]][j].item<double>() * lp[i][j].item<double>();
  }
  EXPECT_NEAR(loss.item<double>(), want / b, 1e-12);
  // Gradient: dL/dz_b = (1/B)[(Σ_k R[y_b][k]) softmax(z_b) − R[y_b][:]].
  loss.backward();
  const auto rows = r.index_select(0, y);
  const auto grad = (rows.sum(1, true) * torch::softmax(z.detach(), 1) - rows) / b;
  EXPECT_LT(max_abs(z.grad() - grad), 1e-14);
  // R = I is the plain cross-entropy.
  const auto ce = torch::nn::functional::cross_entropy(z.detach(), y);
  EXPECT_NEAR(reweighted_cross_entropy(z.detach(), y, torch::eye(k, torch::kFloat64)).item<double>(),
              ce.item<double>(), 1e-14);
  // float32 logits: the loss is float32.
  EXPECT_EQ(reweighted_cross_entropy(z.detach().to(torch::kFloat32), y, r).scalar_type(), torch::kFloat32);
}

TEST(Reweight, Errors) {
  EXPECT_NE(error_of([] { synthetic_transition_matrix(1, 0.1); }).find("must be >= 2"), std::string::npos);
  EXPECT_NE(error_of([] { synthetic_transition_matrix(3, 1.5); }).find("must be in [0, 1]"), std::string::npos);
  EXPECT_NE(error_of([] { reweight_matrix(torch::ones({2, 3})); }).find("square"), std::string::npos);
  const auto r = torch::eye(3, torch::kFloat64);
  EXPECT_NE(error_of([&] { reweighted_cross_entropy(torch::zeros({2, 4}), torch::zeros({2}, torch::kInt64), r); })
                .find("[K, K] = [4, 4]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { reweighted_cross_entropy(torch::zeros({2, 3}), torch::zeros({3}, torch::kInt64), r); })
                .find("labels must be [B]"),
            std::string::npos);
}

// ---------------------------------------------------------------- constraints (§4)

TEST(Constraints, Eligibility) {
  const ConstraintGroup g{"g", "layer2", "fc", 1.0, true};
  EXPECT_TRUE(eligible("layer2.0.conv1.weight", 4, g));
  EXPECT_FALSE(eligible("layer2.0.conv1.bias", 4, g));   // "bias"
  EXPECT_FALSE(eligible("layer2.0.bn1.weight", 1, g));   // 1-D
  EXPECT_TRUE(eligible("layer2.0.bn1.weight", 0, g));    // no shape test (penalty)
  EXPECT_FALSE(eligible("layer3.0.conv1.weight", 4, g)); // not included
  EXPECT_FALSE(eligible("layer2.fc.weight", 2, g));      // excluded
  EXPECT_TRUE(eligible("anything.weight", 2, ConstraintGroup{"all", "", "", 1.0, true}));
  EXPECT_EQ(parse_norm("frob"), Norm::kFrobenius);
  EXPECT_EQ(parse_norm("inf-op"), Norm::kMars);
  EXPECT_NE(error_of([] { parse_norm("l2"); }).find("unknown constraint norm 'l2'"), std::string::npos);
}

TEST(Constraints, FrobeniusIsTheEuclideanProjectionPerTensor) {
  torch::manual_seed(0);
  auto model = models::make_model("cifar-resnet20", 10);
  model->to(torch::kFloat64);
  const Reference w0 = capture_reference(*model);
  {
    torch::NoGradGuard ng;
    for (auto& p : model->parameters()) p.add_(0.05 * torch::randn_like(p));
  }
  const Reference moved = capture_reference(*model);
  const std::vector<ConstraintGroup> groups{{"layer1", "layer1", "linear", 0.05, true},
                                            {"head", "linear.", "", 0.3, false}};
  const auto stats = project(*model, Norm::kFrobenius, groups, w0);
  EXPECT_EQ(stats.tensors, 6 + 1);  // 6 convs of layer1, the head weight
  EXPECT_EQ(stats.bn_modules, 6);
  for (const auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    const auto& w = item.value();
    const bool in_layer1 = name.rfind("layer1.", 0) == 0 && w.dim() == 4;
    if (in_layer1) {
      const auto t_before = moved.at(name) - w0.at(name);
      const auto t = w - w0.at(name);
      const double before = t_before.norm().item<double>();
      // Outside the ball: onto the sphere along the same direction; inside: unchanged.
      EXPECT_NEAR(t.norm().item<double>(), std::min(before, 0.05), 1e-12) << name;
      EXPECT_LT(max_abs(t - t_before * std::min(1.0, 0.05 / before)), 1e-14) << name;
      // Optimality: no random point of the ball is closer to the unconstrained weight.
      for (int trial = 0; trial < 5; ++trial) {
        auto u = torch::randn_like(t);
        u = u * (0.05 * torch::rand({}, torch::kFloat64).item<double>() / u.norm().item<double>());
        EXPECT_LE((t_before - t).norm().item<double>(), (t_before - u).norm().item<double>() + 1e-12);
      }
    } else if (name == "linear.weight") {
      // Around zero with r = 0.3.
      EXPECT_NEAR(w.norm().item<double>(), std::min(moved.at(name).norm().item<double>(), 0.3), 1e-12);
    } else if (name.find(".bn") == std::string::npos || name.rfind("layer1.", 0) != 0) {
      EXPECT_TRUE(torch::equal(w, moved.at(name))) << name << " must not move";
    }
  }
}

TEST(Constraints, MarsBoundsEveryRowSum) {
  torch::manual_seed(1);
  torch::nn::Sequential net(torch::nn::Linear(6, 5), torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 3, 3)));
  net->to(torch::kFloat64);
  const Reference w0 = capture_reference(*net);
  {
    torch::NoGradGuard ng;
    for (auto& p : net->parameters()) p.add_(torch::randn_like(p) * torch::rand({}, torch::kFloat64));
  }
  const Reference moved = capture_reference(*net);
  const double r = 1.5;
  project(*net, Norm::kMars, {{"all", "", "", r, true}}, w0);
  for (const std::string name : {"0.weight", "1.weight"}) {
    const auto t_before = (moved.at(name) - w0.at(name)).reshape({moved.at(name).size(0), -1});
    const auto t = (param(*net, name) - w0.at(name)).reshape({t_before.size(0), -1});
    for (std::int64_t j = 0; j < t.size(0); ++j) {
      const double s = t_before[j].abs().sum().item<double>();
      // Row j rescaled by max(1, s / r): its 1-norm is min(s, r), its direction kept.
      EXPECT_NEAR(t[j].abs().sum().item<double>(), std::min(s, r), 1e-12) << name << " row " << j;
      EXPECT_LT(max_abs(t[j] - t_before[j] / std::max(1.0, s / r)), 1e-14);
    }
  }
  // Biases are never constrained.
  EXPECT_TRUE(torch::equal(param(*net, "0.bias"), moved.at("0.bias")));
}

TEST(Constraints, RadiusZeroPinsTheWeights) {
  torch::nn::Linear lin(3, 2);
  const Reference w0 = capture_reference(*lin);
  {
    torch::NoGradGuard ng;
    lin->weight.add_(1.0);
  }
  project(*lin, Norm::kFrobenius, {{"all", "", "", 0.0, true}}, w0);
  EXPECT_TRUE(torch::equal(lin->weight, w0.at("weight")));
  project(*lin, Norm::kMars, {{"all", "", "", 0.0, true}}, w0);
  EXPECT_FALSE(torch::isnan(lin->weight).any().item<bool>());
}

TEST(Constraints, BatchNormBoxOnTheEffectiveScale) {
  torch::manual_seed(2);
  torch::nn::Sequential net;
  net->push_back("layer1", torch::nn::BatchNorm2d(4));
  net->to(torch::kFloat64);
  auto* bn = net[0]->as<torch::nn::BatchNorm2dImpl>();
  {
    torch::NoGradGuard ng;
    bn->weight.copy_(torch::tensor({1.0, 0.5, 2.0, 1.5}, torch::kFloat64));
    bn->running_var.copy_(torch::tensor({1.0, 4.0, 0.25, 2.0}, torch::kFloat64));
  }
  const Reference w0 = capture_reference(*net);
  {
    torch::NoGradGuard ng;
    bn->weight.copy_(torch::tensor({1.9, 0.45, 2.0, -1.0}, torch::kFloat64));
    bn->running_var.copy_(torch::tensor({2.0, 4.0, 0.5, 2.0}, torch::kFloat64));  // current statistics
    bn->bias.fill_(0.7);
  }
  const double r = 0.2;
  project(*net, Norm::kFrobenius, {{"layer1", "layer1", "", r, true}}, w0);
  const double eps = 1e-6;
  const double g0[] = {1.0, 0.5, 2.0, 1.5}, v0[] = {1.0, 4.0, 0.25, 2.0};
  const double g[] = {1.9, 0.45, 2.0, -1.0}, v[] = {2.0, 4.0, 0.5, 2.0};
  for (int c = 0; c < 4; ++c) {
    const double d = g[c] / std::sqrt(v[c] + eps), d0 = g0[c] / std::sqrt(v0[c] + eps);
    const double t = std::clamp(d - d0, -r, r);
    EXPECT_NEAR(bn->weight[c].item<double>(), (d0 + t) * std::sqrt(v[c] + eps), 1e-14) << c;
  }
  EXPECT_TRUE(torch::all(bn->bias == 0.7).item<bool>());  // never constrained
}

TEST(Constraints, ReferenceGroups) {
  auto model = models::make_model("resnet18", 3);
  const auto groups = resnet_groups(2.0, 5.0, 1.5, model->head_prefix());
  ASSERT_EQ(groups.size(), 5u);
  EXPECT_DOUBLE_EQ(groups[2].radius, 3.0);
  EXPECT_DOUBLE_EQ(groups[3].radius, 4.5);
  EXPECT_FALSE(groups[4].around_reference);
  // Eligible tensors per group: layer1 has 4 convs; layer2..4 have 4 convs + the downsample conv; the head 1.
  std::vector<int> counts(groups.size(), 0);
  for (const auto& p : model->named_parameters()) {
    for (std::size_t g = 0; g < groups.size(); ++g) counts[g] += eligible(p.key(), p.value().dim(), groups[g]);
  }
  EXPECT_EQ(counts, (std::vector<int>{4, 5, 5, 5, 1}));
  const auto text = text_groups(1, 2, 3);
  EXPECT_TRUE(eligible("roberta.encoder.layer.0.attention.self.query.weight", 2, text[0]));
  EXPECT_FALSE(eligible("roberta.encoder.layer.0.attention.output.LayerNorm.weight", 2, text[0]));
  EXPECT_TRUE(eligible("roberta.encoder.layer.0.intermediate.dense.weight", 2, text[1]));
  EXPECT_FALSE(eligible("roberta.encoder.layer.0.attention.self.query.weight", 2, text[1]));
  EXPECT_TRUE(eligible("classifier.out_proj.weight", 2, text[2]));
  EXPECT_FALSE(text[2].around_reference);
  const auto vit = vit_groups(1, 2, "classifier.");
  EXPECT_TRUE(eligible("vit.encoder.layer.3.output.dense.weight", 2, vit[0]));
  EXPECT_FALSE(eligible("classifier.weight", 2, vit[0]));
}

TEST(Constraints, PenaltyClosedForms) {
  torch::manual_seed(4);
  torch::nn::Sequential net;
  net->push_back("enc", torch::nn::Linear(4, 3));
  net->push_back("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({3})));
  net->push_back("classifier", torch::nn::Linear(3, 2));
  net->to(torch::kFloat64);
  const Reference w0 = capture_reference(*net);
  {
    torch::NoGradGuard ng;
    for (auto& p : net->parameters()) p.add_(torch::randn_like(p));
  }
  const std::vector<ConstraintGroup> groups{{"enc", "", "classifier", 0.5, true},
                                            {"classifier", "classifier", "", 2.0, false}};
  // frob: λ Σ ||W − W0||² over non-bias names (the 1-D norm weight included), head around 0.
  const auto t_enc = param(*net, "enc.weight") - w0.at("enc.weight");
  const auto t_norm = param(*net, "norm.weight") - w0.at("norm.weight");
  const auto head = param(*net, "classifier.weight");
  const double want_frob = 0.5 * (t_enc.pow(2).sum() + t_norm.pow(2).sum()).item<double>() +
                           2.0 * head.pow(2).sum().item<double>();
  const auto pf = penalty(*net, Norm::kFrobenius, groups, w0);
  EXPECT_NEAR(pf.item<double>(), want_frob, 1e-12);
  // inf-op: max row 1-norm for matrices, max |.| for vectors.
  const double want_inf = 0.5 * (t_enc.abs().sum(1).max() + t_norm.abs().max()).item<double>() +
                          2.0 * head.abs().sum(1).max().item<double>();
  EXPECT_NEAR(penalty(*net, Norm::kMars, groups, w0).item<double>(), want_inf, 1e-12);
  // Differentiable: d/dW of λ||W − W0||² = 2λ(W − W0).
  pf.backward();
  EXPECT_LT(max_abs(param(*net, "enc.weight").grad() - 2 * 0.5 * t_enc), 1e-12);
  EXPECT_FALSE(param(*net, "enc.bias").grad().defined() && max_abs(param(*net, "enc.bias").grad()) > 0);
}

TEST(Constraints, Errors) {
  torch::nn::Linear lin(3, 2);
  EXPECT_NE(error_of([&] { project(*lin, Norm::kFrobenius, {{"g", "", "", 1.0, true}}, {}); })
                .find("no reference (pretrained) value for 'weight'"),
            std::string::npos);
  Reference bad{{"weight", torch::zeros({3, 3})}};
  EXPECT_NE(error_of([&] { project(*lin, Norm::kFrobenius, {{"g", "", "", 1.0, true}}, bad); }).find("has shape"),
            std::string::npos);
  EXPECT_NE(error_of([&] { project(*lin, Norm::kFrobenius, {{"g", "", "", -1.0, false}}, {}); })
                .find("radius must be >= 0"),
            std::string::npos);
}

// ---------------------------------------------------------------- Dual-T (§5.3)

namespace {

std::optional<nlohmann::json> run_dual_t_oracle(const nlohmann::json& request) {
  const std::string in = std::string(HG_TEST_TMP) + "/dual_t_request.json";
  std::ofstream(in) << request.dump();
  const auto out = testing_support::run_python_oracle(
      std::string(HG_SOURCE_DIR) + "/tests/unit/train/dual_t_oracle.py", "< " + in);
  if (!out) return std::nullopt;
  return nlohmann::json::parse(*out);
}

void expect_matrix(const torch::Tensor& got, const nlohmann::json& want, const std::string& what) {
  ASSERT_EQ(got.size(0), static_cast<std::int64_t>(want.size())) << what;
  for (std::int64_t i = 0; i < got.size(0); ++i) {
    for (std::int64_t j = 0; j < got.size(1); ++j) {
      EXPECT_NEAR(got[i][j].item<double>(), want[i][j].get<double>(), 1e-15) << what << " [" << i << "][" << j << "]";
    }
  }
}

}  // namespace

TEST(DualT, MatchesNumpyIncludingTheInPlaceZeroing) {
  torch::manual_seed(5);
  for (std::int64_t n : {1, 7, 33, 100, 101}) {
    const std::int64_t k = 4;
    // Ties included: rounding the probabilities to 2 decimals makes equal entries common.
    const auto probs = torch::round(torch::softmax(2 * torch::randn({n, k}, torch::kFloat64), 1) * 100) / 100;
    std::vector<std::int64_t> labels;
    for (std::int64_t i = 0; i < n; ++i) labels.push_back((i * 7 + 3) % k);
    nlohmann::json req;
    req["labels"] = labels;
    req["probs"] = nlohmann::json::array();
    for (std::int64_t i = 0; i < n; ++i) {
      std::vector<double> row;
      for (std::int64_t j = 0; j < k; ++j) row.push_back(probs[i][j].item<double>());
      req["probs"].push_back(row);
    }
    const auto want = run_dual_t_oracle(req);
    if (!want) GTEST_SKIP() << "/usr/bin/python3 with numpy is missing";
    const DualT got = estimate_dual_t(probs, labels);
    expect_matrix(got.t_spade, (*want)["t_spade"], "t_spade n=" + std::to_string(n));
    expect_matrix(got.t_club, (*want)["t_club"], "t_club n=" + std::to_string(n));
    expect_matrix(got.c, (*want)["c"], "c n=" + std::to_string(n));
    for (std::int64_t j = 0; j < k; ++j) {
      std::vector<double> col;
      for (std::int64_t i = 0; i < n; ++i) col.push_back(probs[i][j].item<double>());
      EXPECT_EQ(percentile_higher(col, 97.0), (*want)["percentiles"][j].get<double>()) << n << " " << j;
    }
    EXPECT_TRUE(torch::equal(probs, torch::round(probs * 100) / 100));  // the input is not modified
  }
}

// A hand case where the quirk matters: row 0 holds column 0's top value and becomes class 1's anchor, so
// row 1 of T♣ carries the zeroed entry (0 instead of 0.6). With n = 7 the 97th percentile ("higher") is
// the column maximum, so only maxima are zeroed.
TEST(DualT, HandCaseWhereTheInPlaceZeroingShows) {
  const auto probs = torch::tensor({{0.6, 0.3, 0.1, 0.0},
                                    {0.1, 0.8, 0.1, 0.0},
                                    {0.2, 0.1, 0.7, 0.0},
                                    {0.3, 0.2, 0.1, 0.4},
                                    {0.3, 0.1, 0.3, 0.3},
                                    {0.2, 0.2, 0.2, 0.4},
                                    {0.4, 0.1, 0.2, 0.3}},
                                   torch::kFloat64);
  const DualT d = estimate_dual_t(probs, {0, 1, 2, 3, 0, 1, 2});
  EXPECT_EQ(percentile_higher({0.6, 0.1, 0.2, 0.3, 0.3, 0.2, 0.4}, 97.0), 0.6);
  // Class 0: column 0 without its max 0.6 -> anchor row 6 (0.4).
  EXPECT_TRUE(torch::equal(d.t_club[0], torch::tensor({0.4, 0.1, 0.2, 0.3}, torch::kFloat64)));
  // Class 1: column 1 without 0.8 -> anchor row 0 (0.3), whose column-0 entry is already 0.
  EXPECT_TRUE(torch::equal(d.t_club[1], torch::tensor({0.0, 0.3, 0.1, 0.0}, torch::kFloat64)));
  // T♠: argmax rows 0..6 = 0, 1, 2, 3, 0 (first of the tie 0.3/0.3), 3, 0; labels 0 1 2 3 0 1 2.
  EXPECT_NEAR(d.t_spade[0][0].item<double>(), 2.0 / 3.0, 1e-15);
  EXPECT_NEAR(d.t_spade[0][2].item<double>(), 1.0 / 3.0, 1e-15);
  EXPECT_NEAR(d.t_spade[3][1].item<double>(), 0.5, 1e-15);
  EXPECT_LT(max_abs(d.c - torch::matmul(d.t_club, d.t_spade)), 1e-15);
}

TEST(DualT, Errors) {
  EXPECT_NE(error_of([] { estimate_dual_t(torch::ones({2, 2}), {0}); }).find("1 labels for 2 rows"), std::string::npos);
  EXPECT_NE(error_of([] { estimate_dual_t(torch::ones({2, 2}), {0, 2}); }).find("outside [0, 2)"), std::string::npos);
  EXPECT_NE(error_of([] { percentile_higher({}, 97); }).find("empty"), std::string::npos);
}

// ---------------------------------------------------------------- schedules, optimizers, early stopping

TEST(Schedule, StepLrOfTheImageReference) {
  for (int e = 0; e < 30; ++e) {
    const double want = e < 10 ? 1e-4 : e < 20 ? 1e-5 : 1e-6;
    EXPECT_NEAR(step_lr(1e-4, e, 10, 0.1), want, want * 1e-12) << e;
  }
  EXPECT_NE(error_of([] { step_lr(1, 0, 0, 0.1); }).find("step size must be >= 1"), std::string::npos);
}

TEST(Schedule, LinearWarmupAsTransformers) {
  // warmup 3, total 10: 0, 1/3, 2/3, then (10 - s) / 7 down to 0, and 0 beyond.
  const double want[] = {0, 1 / 3.0, 2 / 3.0, 1, 6 / 7.0, 5 / 7.0, 4 / 7.0, 3 / 7.0, 2 / 7.0, 1 / 7.0, 0, 0};
  for (int s = 0; s < 12; ++s) EXPECT_NEAR(linear_warmup_lr(2e-5, s, 3, 10), 2e-5 * want[s], 1e-18) << s;
  EXPECT_NEAR(linear_warmup_lr(1.0, 0, 0, 4), 1.0, 0);  // no warmup: full rate at step 0
}

TEST(Optimizers, FirstStepClosedForms) {
  torch::manual_seed(6);
  torch::nn::Sequential net;
  net->push_back("dense", torch::nn::Linear(3, 2));
  net->push_back("LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({2})));
  net->to(torch::kFloat64);
  const Reference before = capture_reference(*net);
  const auto x = torch::randn({4, 3}, torch::kFloat64);
  auto step = [&](const OptimizerSpec& spec) {
    for (auto& [name, t] : before) {
      torch::NoGradGuard ng;
      net->named_parameters()[name].copy_(t);
    }
    auto opt = make_optimizer(*net, spec);
    opt->zero_grad();
    net->forward(x).pow(2).sum().backward();
    std::map<std::string, torch::Tensor> grads;
    for (const auto& p : net->named_parameters()) grads[p.key()] = p.value().grad().clone();
    opt->step();
    return grads;
  };
  // Adam (amsgrad): the first step moves every entry by lr · g / (|g| + eps) (bias-corrected moments).
  OptimizerSpec adam;
  const auto g = step(adam);
  for (const auto& p : net->named_parameters()) {
    const auto& gr = g.at(p.key());
    const auto want = before.at(p.key()) - adam.lr * gr / (gr.abs() + adam.eps);
    EXPECT_LT(max_abs(p.value() - want), 1e-15) << p.key();
  }
  // AdamW, decay 0.1: decoupled decay except for biases and LayerNorm weights.
  OptimizerSpec adamw;
  adamw.name = "adamw";
  adamw.lr = 2e-5;
  adamw.eps = 1e-6;
  adamw.weight_decay = 0.1;
  const auto g2 = step(adamw);
  for (const auto& p : net->named_parameters()) {
    const bool decays = p.key() == "dense.weight";
    const auto& gr = g2.at(p.key());
    const auto& w0 = before.at(p.key());
    const auto want = w0 * (1 - (decays ? adamw.lr * 0.1 : 0.0)) - adamw.lr * gr / (gr.abs() + adamw.eps);
    EXPECT_LT(max_abs(p.value() - want), 1e-15) << p.key();
  }
  auto opt = make_optimizer(*net, adam);
  set_learning_rate(*opt, 0.5);
  EXPECT_DOUBLE_EQ(opt->param_groups()[0].options().get_lr(), 0.5);
  OptimizerSpec bad;
  bad.name = "lamb";
  EXPECT_NE(error_of([&] { make_optimizer(*net, bad); }).find("unknown optimizer 'lamb'"), std::string::npos);
}

TEST(EarlyStoppingTest, TiesMoveTheBestLaterAndPatienceCountsEpochs) {
  EarlyStopping acc("max", 2);
  EXPECT_TRUE(acc.update(0.5));
  EXPECT_FALSE(acc.update(0.4));
  EXPECT_TRUE(acc.update(0.5));  // a tie counts as improved
  EXPECT_EQ(acc.best_epoch(), 2);
  EXPECT_FALSE(acc.update(0.3));
  EXPECT_FALSE(acc.update(0.3));
  EXPECT_FALSE(acc.should_stop());  // 2 epochs without improvement: not more than the patience
  EXPECT_FALSE(acc.update(0.3));
  EXPECT_TRUE(acc.should_stop());
  EarlyStopping loss("min", 0);
  EXPECT_TRUE(loss.update(1.0));
  EXPECT_TRUE(loss.update(1.0));
  EXPECT_FALSE(loss.update(1.1));
  EXPECT_TRUE(loss.should_stop());
  EXPECT_DOUBLE_EQ(loss.best(), 1.0);
  EXPECT_NE(error_of([] { EarlyStopping("mean", 1); }).find("max or min"), std::string::npos);
}
