// Every model family through the measure engine (hessian/), in float64 and eval mode: CIFAR
// ResNet, torchvision ResNet-18, ViT, BERT and RoBERTa (tiny configs of tests/fixtures/hf), on
// four Hessian layers of each ResNet and all of a tiny transformer's. The engine, the Hutchinson
// estimator and the quadratic forms are judged by oracles that do not share their code path:
//   (a) HvpEngine::hvp against central finite differences of the plain gradient;
//   (b) per-layer traces (layer and joint scope, fixed probes) against the same probes replayed
//       through an independent second-order graph; on one small layer per model the explicit
//       block Hessian gives the exact trace and the exact Rademacher variance of the estimator;
//   (c) joint and block quadratic forms against the independent graph, the finite differences
//       and the explicit block.
// Weights are random (fixed seeds): the ResNets keep their init but BatchNorm gets non-trivial
// running statistics and affine parameters; the transformers' weights are drawn larger than
// Hugging Face's init, so that attention and LayerNorm are far from their linear regime and their
// second derivatives matter. Prints the errors and timings per family.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "data/batch.h"
#include "hessian/hutchinson.h"
#include "hessian/hvp_engine.h"
#include "hessian/probes.h"
#include "hessian/quadratic_forms.h"
#include "models/registry.h"

namespace hh = hessgap::hessian;
namespace hm = hessgap::models;
using hessgap::data::Batch;
using TensorList = std::vector<torch::Tensor>;

namespace {

std::string fixture_dir(const std::string& name) {
  return std::string(HG_SOURCE_DIR) + "/tests/fixtures/hf/" + name;
}

// A model in float64 eval mode with one batch and the Hessian layers under test.
struct Family {
  std::string name;
  std::shared_ptr<hm::Classifier> model;
  Batch batch;
  std::vector<std::string> layers;  // a subset of hessian_layers(), in that order
  std::string small;                // one of `layers` with at most ~1000 weights
  int probes = 3;                   // fixed Hutchinson probes per scope in check (b)
  TensorList params;                // set by prepare(): the tensors of `layers`

  torch::Tensor loss() {
    return torch::nn::functional::cross_entropy(model->forward(batch), batch.labels);
  }
  std::size_t small_index() const {
    return static_cast<std::size_t>(std::find(layers.begin(), layers.end(), small) - layers.begin());
  }
};

// float64, eval mode, and only the layers under test require grad (as the measures do with all
// Hessian layers): the others are constants of the loss.
void prepare(Family& f) {
  f.model->to(torch::kFloat64);
  f.model->eval();
  const auto all = f.model->hessian_layers();
  for (const auto& l : f.layers) {
    ASSERT_NE(std::find(all.begin(), all.end(), l), all.end()) << l << " is not a Hessian layer of " << f.name;
  }
  for (auto& item : f.model->named_parameters(/*recurse=*/true)) {
    item.value().set_requires_grad(std::find(f.layers.begin(), f.layers.end(), item.key()) != f.layers.end());
  }
  f.params = hm::parameters_by_name(*f.model, f.layers);
  f.batch = f.batch.to(torch::kCPU, torch::kFloat64);
}

// BatchNorm running statistics and affine parameters away from (0, 1, 1, 0), so that eval-mode BN
// is a genuine per-channel affine map.
void randomize_batchnorm(hm::Classifier& model) {
  torch::NoGradGuard no_grad;
  for (const auto& m : model.modules(/*include_self=*/false)) {
    if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
      bn->running_mean.normal_(0.0, 0.1);
      bn->running_var.uniform_(0.5, 1.5);
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.normal_(0.0, 0.1);
    }
  }
}

// Transformer weights N(0, 1.5²/fan_in) (embeddings N(0, 0.5²)), biases N(0, 0.1²), LayerNorm
// weights 1 + N(0, 0.1²): attention scores of order 1-3 instead of the ~0.01 of Hugging Face's
// init, where softmax would be nearly uniform and close to linear.
void randomize_transformer(hm::Classifier& model) {
  torch::NoGradGuard no_grad;
  for (auto& item : model.named_parameters(/*recurse=*/true)) {
    const auto& n = item.key();
    auto p = item.value();
    const bool norm = n.find("LayerNorm") != std::string::npos || n.find("layernorm") != std::string::npos;
    if (norm && n.size() > 7 && n.compare(n.size() - 7, 7, ".weight") == 0) {
      p.normal_(1.0, 0.1);
    } else if (n.find("embeddings") != std::string::npos && n.find("patch_embeddings") == std::string::npos) {
      p.normal_(0.0, 0.5);
    } else if (p.dim() >= 2) {
      p.normal_(0.0, 1.5 / std::sqrt(static_cast<double>(p.numel() / p.size(0))));
    } else {
      p.normal_(0.0, 0.1);
    }
  }
}

Batch image_batch(std::int64_t b, std::int64_t size, std::int64_t classes) {
  Batch batch;
  batch.inputs = torch::randn({b, 3, size, size});
  batch.labels = torch::randint(classes, {b}, torch::kLong);
  return batch;
}

// Token ids with a leading special token, the second sample padded (mask 0, pad id), and token
// types 0/1 where the model has two of them.
Batch text_batch(std::int64_t vocab, std::int64_t pad_id, std::int64_t type_vocab, std::int64_t classes) {
  const std::int64_t B = 3, T = 9;
  Batch batch;
  auto ids = torch::randint(3, vocab, {B, T}, torch::kLong);
  ids.select(1, 0).fill_(pad_id == 0 ? 2 : 0);  // [CLS]-like / <s>
  auto mask = torch::ones({B, T}, torch::kLong);
  mask[1].slice(0, 5).zero_();
  ids[1].slice(0, 5).fill_(pad_id);
  auto types = torch::zeros({B, T}, torch::kLong);
  if (type_vocab > 1) {
    types[0].slice(0, 4).fill_(1);
    types[2].slice(0, 6).fill_(1);
  }
  batch.inputs = ids;
  batch.attention_mask = mask;
  batch.token_type_ids = types;
  batch.labels = torch::randint(classes, {B}, torch::kLong);
  return batch;
}

double norm(const TensorList& xs) {
  double s = 0;
  for (const auto& x : xs) s += x.pow(2).sum().item<double>();
  return std::sqrt(s);
}

double dist(const TensorList& a, const TensorList& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]).pow(2).sum().item<double>();
  return std::sqrt(s);
}

double sum_product(const torch::Tensor& a, const torch::Tensor& b) { return (a * b).sum().item<double>(); }

// A direction like W − W⁽ˢ⁾: Gaussian, each block scaled to the norm of its weight.
TensorList relative_direction(const TensorList& params, std::uint64_t seed) {
  torch::manual_seed(seed);
  TensorList v;
  for (const auto& p : params) {
    auto r = torch::randn_like(p);
    v.push_back(r * (p.detach().norm() / r.norm()));
  }
  return v;
}

// Central differences of the gradient, (g(W + h v) − g(W − h v)) / 2h; the weights are restored
// exactly afterwards. Must run while no graph that saved the weights is still wanted.
TensorList fd_hvp(Family& f, const TensorList& v, double h) {
  TensorList saved;
  for (const auto& p : f.params) saved.push_back(p.detach().clone());
  auto set = [&](double s) {
    torch::NoGradGuard no_grad;
    for (std::size_t i = 0; i < f.params.size(); ++i) f.params[i].copy_(saved[i] + s * v[i]);
  };
  set(h);
  const auto plus = torch::autograd::grad({f.loss()}, f.params);
  set(-h);
  const auto minus = torch::autograd::grad({f.loss()}, f.params);
  set(0.0);
  TensorList out;
  for (std::size_t i = 0; i < f.params.size(); ++i) out.push_back((plus[i] - minus[i]) / (2 * h));
  return out;
}

// Products by a second route: a fresh first-order graph, and H v as the gradient of the scalar
// Σ_i ⟨g_i, v_i⟩ (the engine passes v as grad_outputs of the vector g instead).
class Oracle {
 public:
  explicit Oracle(Family& f) : params_(f.params) {
    grads_ = torch::autograd::grad({f.loss()}, params_, {}, /*retain_graph=*/true, /*create_graph=*/true);
  }
  TensorList joint(const TensorList& v) {
    auto s = torch::zeros({}, torch::kFloat64);
    for (std::size_t i = 0; i < v.size(); ++i) s = s + (grads_[i] * v[i]).sum();
    auto out = torch::autograd::grad({s}, params_, {}, /*retain_graph=*/true, /*create_graph=*/false,
                                     /*allow_unused=*/true);
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (!out[i].defined()) out[i] = torch::zeros_like(params_[i]);
    }
    return out;
  }
  torch::Tensor block(std::size_t i, const torch::Tensor& vi) {
    auto out = torch::autograd::grad({(grads_[i] * vi).sum()}, {params_[i]}, {}, /*retain_graph=*/true,
                                     /*create_graph=*/false, /*allow_unused=*/true);
    return out[0].defined() ? out[0] : torch::zeros_like(params_[i]);
  }
  // H_ii [n, n] (n = numel of layer i), row j = H_ii e_j.
  torch::Tensor explicit_block(std::size_t i) {
    const auto n = params_[i].numel();
    auto H = torch::zeros({n, n}, torch::kFloat64);
    for (std::int64_t j = 0; j < n; ++j) {
      auto e = torch::zeros({n}, torch::kFloat64);
      e[j] = 1.0;
      H[j] = block(i, e.view_as(params_[i])).reshape({-1});
    }
    return H;
  }

 private:
  TensorList params_, grads_;
};

struct Stats {
  double mean = 0, std_error = 0, max_abs = 0;
};
Stats stats_of(const std::vector<double>& xs) {
  Stats s;
  for (double x : xs) s.mean += x / static_cast<double>(xs.size());
  double ss = 0;
  for (double x : xs) {
    ss += (x - s.mean) * (x - s.mean);
    s.max_abs = std::max(s.max_abs, std::abs(x));
  }
  s.std_error = std::sqrt(ss / static_cast<double>(xs.size() - 1) / static_cast<double>(xs.size()));
  return s;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs (a), (b) and (c) on one family.
void check_family(Family& f) {
  const auto t0 = std::chrono::steady_clock::now();
  prepare(f);
  if (::testing::Test::HasFatalFailure()) return;
  const std::size_t L = f.params.size();
  const std::size_t s = f.small_index();
  ASSERT_LT(s, L);
  std::cout << "[" << f.name << "] loss " << f.loss().item<double>() << ", layers " << L << " of "
            << f.model->hessian_layers().size() << "\n";

  // ---- (a) HVP vs central finite differences. The weights may not change while an engine's
  // graph is alive, so the product is taken first from a throw-away engine. A ReLU or max-pool
  // kink inside [W − hv, W + hv] spoils one step size, not all: h = 1e-5 first, then 1e-4 and
  // 1e-6, the best must meet the bound.
  const auto v = relative_direction(f.params, 17);
  const auto hv = hh::HvpEngine(f.loss(), f.params).hvp(v);
  const double hv_norm = norm(hv);
  ASSERT_GT(hv_norm, 0.0);
  const double fd_tol = 1e-6;
  TensorList fd;
  double best = INFINITY, best_h = 0;
  for (double h : {1e-5, 1e-4, 1e-6}) {
    auto d = fd_hvp(f, v, h);
    const double e = dist(d, hv) / hv_norm;
    if (e < best) best = e, best_h = h, fd = d;
    if (best < fd_tol) break;
  }
  EXPECT_LT(best, fd_tol) << "HVP vs finite differences";
  double worst_layer = 0;
  for (std::size_t i = 0; i < L; ++i) {
    // Each block against its own size, with the global scale as a floor for tiny blocks.
    const double e = (fd[i] - hv[i]).norm().item<double>() / std::max(hv[i].norm().item<double>(), 1e-3 * hv_norm);
    worst_layer = std::max(worst_layer, e);
    EXPECT_LT(e, 10 * fd_tol) << "layer " << f.layers[i];
  }
  std::cout << "  (a) |Hv| " << hv_norm << ", FD relative error " << best << " (h = " << best_h
            << "), worst layer " << worst_layer << " [" << seconds_since(t0) << " s]\n";

  hh::HvpEngine engine(f.loss(), f.params);
  EXPECT_LT(dist(engine.hvp(v), hv), 1e-12 * hv_norm) << "a second engine on the same weights";

  // ---- (c) quadratic forms against the independent graph, the finite differences and the
  // explicit block of the small layer.
  Oracle oracle(f);
  const auto qj = hh::quadratic_forms(engine, v, hh::MeasureMode::kJoint);
  const auto qb = hh::quadratic_forms(engine, v, hh::MeasureMode::kBlock);
  ASSERT_EQ(qj.size(), L);
  ASSERT_EQ(qb.size(), L);
  const auto ohv = oracle.joint(v);
  EXPECT_LT(dist(ohv, hv) / hv_norm, 1e-10) << "engine vs independent joint product";
  double total = 0, cross = 0, block_scale = 0;
  std::vector<double> want_b(L);
  for (std::size_t i = 0; i < L; ++i) {
    want_b[i] = sum_product(v[i], oracle.block(i, v[i]));
    block_scale = std::max(block_scale, std::abs(want_b[i]));
  }
  for (std::size_t i = 0; i < L; ++i) {
    SCOPED_TRACE(f.layers[i]);
    const double vi = v[i].norm().item<double>();
    // Joint q_i = ⟨v_i, (Hv)_i⟩: round-off of the products is bounded by |v_i| |Hv|.
    EXPECT_NEAR(qj[i], sum_product(v[i], ohv[i]), 1e-10 * vi * hv_norm);
    EXPECT_NEAR(qj[i], sum_product(v[i], fd[i]), 1e-6 * vi * hv_norm) << "finite differences";
    EXPECT_NEAR(qb[i], want_b[i], 1e-10 * block_scale);
    total += qj[i];
    cross += std::abs(qj[i] - qb[i]);
  }
  double vhv = 0;
  for (std::size_t i = 0; i < L; ++i) vhv += sum_product(v[i], hv[i]);
  EXPECT_NEAR(total, vhv, 1e-10 * norm(v) * hv_norm) << "Σ_i q_i = vᵀHv";
  // The cross-layer terms are real in every family, so joint and block differ.
  if (L > 1) EXPECT_GT(cross, 1e-6 * block_scale);
  const auto Hss = oracle.explicit_block(s);
  const double h_scale = Hss.abs().max().item<double>();
  ASSERT_GT(h_scale, 0.0);
  EXPECT_LE((Hss - Hss.t()).abs().max().item<double>(), 1e-10 * h_scale) << "explicit block symmetric";
  const auto vs = v[s].reshape({-1});
  const double want_small = vs.dot(Hss.mv(vs)).item<double>();
  EXPECT_NEAR(qb[s], want_small, 1e-10 * h_scale * vs.pow(2).sum().item<double>()) << "explicit block";
  std::cout << "  (c) vᵀHv " << vhv << ", Σ|joint − block| " << cross << ", small block " << f.small << " "
            << Hss.size(0) << "², vᵀH_ss v " << want_small << " [" << seconds_since(t0) << " s]\n";

  // ---- (b) traces with fixed probes, replayed through the independent graph. With min = max
  // probes every layer uses exactly `probes` probes whatever the stopping rule.
  auto local = hessgap::comm::make_local();
  const std::int64_t batch_id = 5;
  for (auto scope : {hh::ProbeScope::kLayer, hh::ProbeScope::kJoint}) {
    SCOPED_TRACE(hh::to_string(scope));
    hh::TraceOptions o;
    o.scope = scope;
    o.distribution = scope == hh::ProbeScope::kLayer ? hh::ProbeDistribution::kRademacher
                                                     : hh::ProbeDistribution::kGaussian;
    o.rule = hh::StopRule::kStandardError;
    o.rel_se = 1e-12;
    o.min_probes = o.max_probes = f.probes;
    o.seed = 23;
    const auto t = hh::estimate_traces(engine, o, batch_id, *local);
    ASSERT_EQ(t.mean.size(), L);
    std::vector<std::vector<double>> values(L);
    for (int k = 0; k < f.probes; ++k) {
      TensorList z;
      for (std::size_t i = 0; i < L; ++i) {
        z.push_back(hh::draw_probe(f.params[i], o.distribution, o.seed, batch_id, k, static_cast<std::int64_t>(i)));
      }
      if (scope == hh::ProbeScope::kJoint) {
        const auto hz = oracle.joint(z);
        for (std::size_t i = 0; i < L; ++i) values[i].push_back(sum_product(z[i], hz[i]));
      } else {
        for (std::size_t i = 0; i < L; ++i) values[i].push_back(sum_product(z[i], oracle.block(i, z[i])));
      }
    }
    for (std::size_t i = 0; i < L; ++i) {
      SCOPED_TRACE(f.layers[i]);
      const auto want = stats_of(values[i]);
      EXPECT_EQ(t.probes[i], f.probes);
      EXPECT_NEAR(t.mean[i], want.mean, 1e-10 * want.max_abs);
      EXPECT_NEAR(t.std_error[i], want.std_error, 1e-9 * want.max_abs);
    }
    EXPECT_FALSE(t.converged);
  }

  // The small layer alone: exact trace from its explicit block. For Rademacher z and symmetric A,
  // Var(zᵀAz) = 2 Σ_{j≠k} A_jk², so the estimator's standard error is known exactly.
  const int K = 300;
  hh::HvpEngine single(f.loss(), {f.params[s]});
  hh::TraceOptions o;
  o.scope = hh::ProbeScope::kLayer;
  o.rule = hh::StopRule::kStandardError;
  o.rel_se = 1e-12;
  o.min_probes = o.max_probes = K;
  o.seed = 29;
  const auto t = hh::estimate_traces(single, o, batch_id, *local);
  const double exact = Hss.trace().item<double>();
  const double off2 = Hss.pow(2).sum().item<double>() - Hss.diagonal().pow(2).sum().item<double>();
  const double se = std::sqrt(2 * off2 / K);
  std::vector<double> values;
  for (int k = 0; k < K; ++k) {
    const auto z = hh::draw_probe(f.params[s], o.distribution, o.seed, batch_id, k, 0).reshape({-1});
    values.push_back(z.dot(Hss.mv(z)).item<double>());
  }
  const auto want = stats_of(values);
  EXPECT_NEAR(t.mean[0], want.mean, 1e-10 * want.max_abs) << "probe values from the explicit block";
  EXPECT_NEAR(t.std_error[0], want.std_error, 1e-9 * want.max_abs);
  // 5 exact standard errors: a false alarm rate of 6e-7 (and the seeds are fixed).
  EXPECT_NEAR(t.mean[0], exact, 5 * se + 1e-12 * h_scale) << "Hutchinson vs exact trace";
  EXPECT_GT(t.std_error[0], 0.5 * se);
  EXPECT_LT(t.std_error[0], 2.0 * se);
  std::cout << "  (b) " << f.small << ": exact trace " << exact << ", Hutchinson (" << K << " probes) "
            << t.mean[0] << " ± " << t.std_error[0] << " (exact SE " << se << ") [" << seconds_since(t0) << " s]\n";
}

}  // namespace

TEST(ModelFamilies, CifarResNet) {
  torch::manual_seed(101);
  Family f;
  f.name = "cifar-resnet20";
  f.model = hm::make_model("cifar-resnet20", 10);
  randomize_batchnorm(*f.model);
  f.batch = image_batch(2, 8, 10);
  // The stem, the first block of stage 2 (stride 2, option-A shortcut), the last conv, the head.
  f.layers = {"conv1.weight", "layer2.0.conv1.weight", "layer3.2.conv2.weight", "linear.weight"};
  f.small = "linear.weight";
  f.probes = 3;
  check_family(f);
}

TEST(ModelFamilies, TorchvisionResNet18) {
  torch::manual_seed(102);
  Family f;
  f.name = "resnet18";
  // Three classes keep fc (the explicit block) at 1536 weights.
  f.model = hm::make_model("resnet18", 3);
  randomize_batchnorm(*f.model);
  f.batch = image_batch(1, 32, 3);
  // The stem (before max-pool), the first conv of a block with a downsample, the last conv, fc.
  f.layers = {"conv1.weight", "layer2.0.conv1.weight", "layer4.1.conv2.weight", "fc.weight"};
  f.small = "fc.weight";
  f.probes = 2;
  check_family(f);
}

TEST(ModelFamilies, VitTiny) {
  torch::manual_seed(103);
  Family f;
  f.name = "vit-tiny";
  f.model = hm::make_model("hf:" + fixture_dir("vit-tiny"), 5);
  randomize_transformer(*f.model);
  f.batch = image_batch(2, 32, 5);
  f.layers = f.model->hessian_layers();
  f.small = "classifier.weight";
  check_family(f);
}

TEST(ModelFamilies, BertTiny) {
  torch::manual_seed(104);
  Family f;
  f.name = "bert-tiny";
  f.model = hm::make_model("hf:" + fixture_dir("bert-tiny"), 3);
  randomize_transformer(*f.model);
  f.batch = text_batch(1000, 0, 2, 3);
  f.layers = f.model->hessian_layers();
  f.small = "classifier.weight";
  check_family(f);
}

TEST(ModelFamilies, RobertaTiny) {
  torch::manual_seed(105);
  Family f;
  f.name = "roberta-tiny";
  f.model = hm::make_model("hf:" + fixture_dir("roberta-tiny"), 2);
  randomize_transformer(*f.model);
  f.batch = text_batch(1000, 1, 1, 2);
  f.layers = f.model->hessian_layers();
  f.small = "classifier.out_proj.weight";
  check_family(f);
}
