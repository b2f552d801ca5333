// Oracles: explicit float64 Hessians of a coupled quadratic, a tanh MLP and a small CNN with
// BatchNorm in eval mode; closed-form stopping sequences for the accumulator.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "comm/communicator.h"
#include "hessian/hutchinson.h"
#include "hessian/hvp_engine.h"
#include "hessian/device_graph.h"
#include "hessian/joint_probes.h"
#include "hessian/probe_unit.h"
#include "hessian/probes.h"
#include "hessian/psd_forms.h"
#include "hessian/quadratic_forms.h"
#include "hessian/trace_estimators.h"
#include "tests/support/explicit_hessian.h"
#include "util/error.h"
#include "util/rng.h"

using namespace hessgap;
using namespace hessgap::hessian;
using hessgap::testing::block_offsets;
using hessgap::testing::explicit_hessian;
using hessgap::testing::flatten;

namespace {

// A model whose loss depends on a list of weight tensors; rebuilt loss on demand.
struct Problem {
  std::vector<torch::Tensor> params;
  std::function<torch::Tensor()> loss;
};

// 0.5 wᵀAw + bᵀw + cubic coupling, over layers of sizes 3 and 4 (A dense, so cross blocks ≠ 0).
Problem quadratic_problem() {
  torch::manual_seed(1);
  auto M = torch::randn({7, 7}, torch::kFloat64);
  auto A = (M + M.t()) / 2 + 3 * torch::eye(7, torch::kFloat64);
  auto b = torch::randn({7}, torch::kFloat64);
  Problem p;
  p.params = {torch::randn({3}, torch::kFloat64).requires_grad_(), torch::randn({2, 2}, torch::kFloat64).requires_grad_()};
  p.loss = [A, b, params = p.params]() {
    auto w = torch::cat({params[0].reshape({-1}), params[1].reshape({-1})});
    return 0.5 * w.dot(A.mv(w)) + b.dot(w);
  };
  return p;
}

// Tanh MLP 5 → 4 → 3 with cross-entropy on 6 samples (weights are the Hessian layers; biases fixed).
Problem mlp_problem() {
  torch::manual_seed(2);
  auto x = torch::randn({6, 5}, torch::kFloat64);
  auto y = torch::tensor({0, 1, 2, 0, 1, 2}, torch::kInt64);
  auto w1 = (torch::randn({4, 5}, torch::kFloat64) * 0.7).requires_grad_();
  auto b1 = torch::randn({4}, torch::kFloat64);
  auto w2 = (torch::randn({3, 4}, torch::kFloat64) * 0.7).requires_grad_();
  Problem p;
  p.params = {w1, w2};
  p.loss = [=]() {
    auto h = torch::tanh(torch::nn::functional::linear(x, w1, b1));
    return torch::nn::functional::cross_entropy(torch::nn::functional::linear(h, w2), y);
  };
  return p;
}

// conv(2→3,3×3) → BN(eval, fixed stats) → ReLU → conv(3→2,3×3) → mean pool → linear head.
Problem cnn_problem() {
  torch::manual_seed(3);
  auto x = torch::randn({4, 2, 6, 6}, torch::kFloat64);
  auto y = torch::tensor({0, 1, 1, 0}, torch::kInt64);
  auto c1 = (torch::randn({3, 2, 3, 3}, torch::kFloat64) * 0.4).requires_grad_();
  auto c2 = (torch::randn({2, 3, 3, 3}, torch::kFloat64) * 0.4).requires_grad_();
  auto head = torch::randn({2, 2}, torch::kFloat64).requires_grad_();
  auto rm = torch::randn({3}, torch::kFloat64) * 0.1, rv = torch::rand({3}, torch::kFloat64) + 0.5;
  auto gamma = torch::rand({3}, torch::kFloat64) + 0.5, beta = torch::randn({3}, torch::kFloat64) * 0.1;
  Problem p;
  p.params = {c1, c2, head};
  p.loss = [=]() {
    namespace F = torch::nn::functional;
    auto h = F::conv2d(x, c1, F::Conv2dFuncOptions().padding(1));
    h = F::batch_norm(h, rm, rv, F::BatchNormFuncOptions().weight(gamma).bias(beta).training(false));
    h = F::conv2d(torch::relu(h), c2, F::Conv2dFuncOptions().padding(1));
    return F::cross_entropy(F::linear(h.mean({2, 3}), head), y);
  };
  return p;
}

std::vector<torch::Tensor> random_direction(const std::vector<torch::Tensor>& params, int seed) {
  torch::manual_seed(seed);
  std::vector<torch::Tensor> v;
  for (auto& p : params) v.push_back(torch::randn_like(p));
  return v;
}

void check_products(const Problem& p) {
  auto H = explicit_hessian(p.loss(), p.params);
  auto off = block_offsets(p.params);
  HvpEngine engine(p.loss(), p.params);
  auto v = random_direction(p.params, 7);
  auto vflat = flatten(v);
  auto Hv = H.mv(vflat);
  auto hv = engine.hvp(v);
  EXPECT_LT((flatten(hv) - Hv).abs().max().item<double>(), 1e-10 * (1 + Hv.abs().max().item<double>()));

  auto joint = quadratic_forms(engine, v, MeasureMode::kJoint);
  auto block = quadratic_forms(engine, v, MeasureMode::kBlock);
  for (std::size_t i = 0; i < p.params.size(); ++i) {
    auto vi = vflat.slice(0, off[i], off[i + 1]);
    const double want_joint = vi.dot(Hv.slice(0, off[i], off[i + 1])).item<double>();
    auto Hii = H.slice(0, off[i], off[i + 1]).slice(1, off[i], off[i + 1]);
    const double want_block = vi.dot(Hii.mv(vi)).item<double>();
    EXPECT_NEAR(joint[i], want_joint, 1e-10 * (1 + std::abs(want_joint))) << "layer " << i;
    EXPECT_NEAR(block[i], want_block, 1e-10 * (1 + std::abs(want_block))) << "layer " << i;
  }
  // The cross terms are real: joint and block differ somewhere for these coupled problems.
  double diff = 0;
  for (std::size_t i = 0; i < joint.size(); ++i) diff += std::abs(joint[i] - block[i]);
  EXPECT_GT(diff, 1e-6);
}

// Traces converge to the exact block traces within their standard error.
void check_traces(const Problem& p, ProbeScope scope, ProbeDistribution dist) {
  auto H = explicit_hessian(p.loss(), p.params);
  auto off = block_offsets(p.params);
  HvpEngine engine(p.loss(), p.params);
  TraceOptions opts;
  opts.scope = scope;
  opts.distribution = dist;
  opts.rule = StopRule::kStandardError;
  opts.rel_se = 1e-9;  // never fires: use all probes
  opts.min_probes = 2;
  opts.max_probes = 400;
  auto local = comm::make_local();
  auto t = estimate_traces(engine, opts, /*batch_id=*/3, *local);
  for (std::size_t i = 0; i < p.params.size(); ++i) {
    const double exact = H.slice(0, off[i], off[i + 1]).slice(1, off[i], off[i + 1]).trace().item<double>();
    EXPECT_EQ(t.probes[i], 400);
    EXPECT_GT(t.std_error[i], 0.0);
    // 4.5 standard errors: a false alarm rate below 1e-5 per layer.
    EXPECT_NEAR(t.mean[i], exact, 4.5 * t.std_error[i] + 1e-12) << "layer " << i << " scope " << to_string(scope);
  }
  EXPECT_FALSE(t.converged);
}

}  // namespace

TEST(HvpEngine, QuadraticMatchesExplicitHessian) { check_products(quadratic_problem()); }
TEST(HvpEngine, MlpMatchesExplicitHessian) { check_products(mlp_problem()); }
TEST(HvpEngine, CnnWithBatchNormMatchesExplicitHessian) { check_products(cnn_problem()); }

// K products batched through one backward pass (either vmap) equal K single products and the explicit
// Hessian's.
void check_batched_products(const Problem& p, ProbeBatching how) {
  auto H = explicit_hessian(p.loss(), p.params);
  HvpEngine engine(p.loss(), p.params);
  const std::int64_t K = 3;
  std::vector<std::vector<torch::Tensor>> dirs;
  for (int j = 0; j < K; ++j) dirs.push_back(random_direction(p.params, 20 + j));
  std::vector<torch::Tensor> stacked;
  for (std::size_t i = 0; i < p.params.size(); ++i) {
    std::vector<torch::Tensor> rows;
    for (const auto& d : dirs) rows.push_back(d[i]);
    stacked.push_back(torch::stack(rows));
  }
  const long before = engine.products();
  const auto out = engine.hvps(stacked, how);
  EXPECT_EQ(engine.products() - before, K);
  ASSERT_EQ(out.size(), p.params.size());
  for (int j = 0; j < K; ++j) {
    std::vector<torch::Tensor> row;
    for (const auto& t : out) row.push_back(t[j]);
    const auto want = H.mv(flatten(dirs[j]));
    const double scale = 1 + want.abs().max().item<double>();
    EXPECT_LT((flatten(row) - want).abs().max().item<double>(), 1e-10 * scale) << "probe " << j << " " << to_string(how);
    EXPECT_LT((flatten(row) - flatten(engine.hvp(dirs[j]))).abs().max().item<double>(), 1e-12 * scale) << "probe " << j;
  }
  // One vector: the plain product, bitwise.
  std::vector<torch::Tensor> one;
  for (const auto& t : stacked) one.push_back(t.narrow(0, 0, 1));
  const auto single = engine.hvps(one, how);
  const auto plain = engine.hvp(dirs[0]);
  for (std::size_t i = 0; i < plain.size(); ++i) EXPECT_TRUE(torch::equal(single[i][0], plain[i]));
}

TEST(HvpEngine, BatchedProductsQuadratic) {
  for (auto how : {ProbeBatching::kFunctorch, ProbeBatching::kLegacy}) check_batched_products(quadratic_problem(), how);
}
TEST(HvpEngine, BatchedProductsMlp) {
  for (auto how : {ProbeBatching::kFunctorch, ProbeBatching::kLegacy}) check_batched_products(mlp_problem(), how);
}
TEST(HvpEngine, BatchedProductsCnnWithBatchNorm) {
  for (auto how : {ProbeBatching::kFunctorch, ProbeBatching::kLegacy}) check_batched_products(cnn_problem(), how);
}
TEST(HvpEngine, ProbeBatchingNames) {
  EXPECT_EQ(parse_probe_batching("legacy"), ProbeBatching::kLegacy);
  EXPECT_THROW(parse_probe_batching("jit"), Error);
}

// --probes-in-flight K: the stopping rule sees the same probe values in the same order, so the probes
// used and the estimate are those of K = 1; the products past the stopping point (< K) are extra.
TEST(Hutchinson, ProbesInFlightGiveTheSameEstimate) {
  const Problem p = cnn_problem();
  auto local = comm::make_local();
  for (const StopRule rule : {StopRule::kReference, StopRule::kStandardError}) {
    TraceOptions o;
    o.rule = rule;
    o.tol = 2e-2;
    o.rel_se = 0.1;
    o.min_probes = 3;
    o.max_probes = 50;
    HvpEngine e1(p.loss(), p.params);
    const LayerTraces want = estimate_traces(e1, o, /*batch_id=*/5, *local);
    for (const int k : {2, 4, 7, 64}) {
      o.in_flight = k;
      o.batching = k % 2 == 0 ? ProbeBatching::kFunctorch : ProbeBatching::kLegacy;
      HvpEngine ek(p.loss(), p.params);
      const LayerTraces got = estimate_traces(ek, o, 5, *local);
      EXPECT_EQ(got.probes, want.probes) << "K " << k;
      EXPECT_EQ(got.converged, want.converged) << "K " << k;
      for (std::size_t i = 0; i < want.mean.size(); ++i) {
        EXPECT_NEAR(got.mean[i], want.mean[i], 1e-12 * (1 + std::abs(want.mean[i]))) << "K " << k << " layer " << i;
        EXPECT_NEAR(got.std_error[i], want.std_error[i], 1e-12 * (1 + std::abs(want.std_error[i])));
      }
      // Whole rounds of K, never past max_probes.
      const long used = want.probes[0];
      EXPECT_EQ(got.hvps_computed, std::min<long>((used + k - 1) / k * k, o.max_probes)) << "K " << k;
    }
    o.in_flight = 1;
  }
}

TEST(HvpEngine, BatchedDots64) {
  std::vector<torch::Tensor> a{torch::arange(6, torch::kFloat32).reshape({2, 3}), torch::ones({2, 2, 2})};
  std::vector<torch::Tensor> b{torch::ones({2, 3}), torch::full({2, 2, 2}, -1.5f)};
  const auto d = batched_dots64(a, b);  // probe-major: [probe 0: layer 0, layer 1, probe 1: ...]
  ASSERT_EQ(d.size(), 4u);
  EXPECT_DOUBLE_EQ(d[0], 3.0);   // 0+1+2
  EXPECT_DOUBLE_EQ(d[1], -6.0);  // 4 × −1.5
  EXPECT_DOUBLE_EQ(d[2], 12.0);  // 3+4+5
  EXPECT_DOUBLE_EQ(d[3], -6.0);
}

TEST(HvpEngine, GradientMatchesAutograd) {
  auto p = mlp_problem();
  HvpEngine engine(p.loss(), p.params);
  auto want = torch::autograd::grad({p.loss()}, p.params);
  auto got = engine.gradient();
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(torch::allclose(got[i], want[i], 1e-12, 1e-12));
}

TEST(HvpEngine, RejectsNonScalarLoss) {
  auto w = torch::randn({3}, torch::kFloat64).requires_grad_();
  EXPECT_THROW(HvpEngine(w * 2, {w}), Error);
}

TEST(Hutchinson, JointProbesConvergeToBlockTraces) {
  check_traces(mlp_problem(), ProbeScope::kJoint, ProbeDistribution::kRademacher);
  check_traces(cnn_problem(), ProbeScope::kJoint, ProbeDistribution::kRademacher);
}
TEST(Hutchinson, LayerProbesConvergeToBlockTraces) {
  check_traces(mlp_problem(), ProbeScope::kLayer, ProbeDistribution::kRademacher);
  check_traces(cnn_problem(), ProbeScope::kLayer, ProbeDistribution::kGaussian);
}

TEST(Hutchinson, LayerScopeRademacherOnDiagonalBlockIsExact) {
  // A diagonal block H_ii gives zᵀH_ii z = tr(H_ii) for every Rademacher z: zero variance.
  auto w = torch::randn({5}, torch::kFloat64).requires_grad_();
  auto u = torch::randn({3}, torch::kFloat64).requires_grad_();
  auto d = torch::tensor({1.0, 2.0, 3.0, 4.0, 5.0}, torch::kFloat64);
  auto loss = 0.5 * (d * w * w).sum() + (w.sum() * u.sum());  // cross block nonzero, diagonal H_ww
  HvpEngine engine(loss, {w, u});
  TraceOptions opts;
  opts.scope = ProbeScope::kLayer;
  opts.max_probes = 5;
  auto local = comm::make_local();
  auto t = estimate_traces(engine, opts, 0, *local);
  EXPECT_NEAR(t.mean[0], 15.0, 1e-12);
  EXPECT_NEAR(t.mean[1], 0.0, 1e-12);
  EXPECT_EQ(t.probes[0], 2);  // reference rule: the second probe repeats the mean exactly
}

TEST(TraceAccumulator, ReferenceRuleStopsWhenRunningMeanSettles) {
  TraceOptions opts;
  opts.tol = 1e-3;
  TraceAccumulator acc(1, opts);
  EXPECT_FALSE(acc.add({1.0}));  // compared with 0: huge relative change
  EXPECT_FALSE(acc.add({2.0}));  // mean 1.5 vs 1: 0.5
  EXPECT_TRUE(acc.add({1.5}));   // mean 1.5 vs 1.5: 0
  auto r = acc.result();
  EXPECT_EQ(r.probes[0], 3);
  EXPECT_DOUBLE_EQ(r.mean[0], 1.5);
  EXPECT_NEAR(r.std_error[0], 0.5 / std::sqrt(3.0), 1e-15);
  EXPECT_TRUE(r.converged);
}

TEST(TraceAccumulator, ReferenceRuleUsesTheTotalOverLayers) {
  TraceOptions opts;
  opts.tol = 0.1;
  TraceAccumulator acc(2, opts);
  EXPECT_FALSE(acc.add({10.0, -10.0}));  // total 0 vs 0 settles but min_probes = 2
  EXPECT_TRUE(acc.add({12.0, -12.0}));   // total 0 vs 0 again
  EXPECT_EQ(acc.result().probes[1], 2);
}

TEST(TraceAccumulator, MaxProbesCapsWithoutConvergence) {
  TraceOptions opts;
  opts.max_probes = 4;
  opts.tol = 1e-12;
  TraceAccumulator acc(1, opts);
  std::vector<double> xs{1, 3, 1, 3, 1};
  int used = 0;
  for (double x : xs) {
    ++used;
    if (acc.add({x})) break;
  }
  EXPECT_EQ(used, 4);
  EXPECT_FALSE(acc.result().converged);
}

TEST(TraceAccumulator, StandardErrorRuleStopsLayersIndependentlyInLayerScope) {
  TraceOptions opts;
  opts.rule = StopRule::kStandardError;
  opts.scope = ProbeScope::kLayer;
  opts.rel_se = 0.1;
  opts.min_probes = 3;
  opts.max_probes = 50;
  TraceAccumulator acc(2, opts);
  // Layer 0 is constant (se 0 after 3 probes); layer 1 alternates 0/2 (mean 1, se ≈ 1/√k).
  int k = 0;
  while (!acc.add({5.0, (k % 2) ? 2.0 : 0.0})) ++k;
  auto r = acc.result();
  EXPECT_EQ(r.probes[0], 3);
  // se = sqrt(k/(k-1))/sqrt(k) for even k with mean 1: first k with se ≤ 0.1 is k = 102 > 50.
  EXPECT_EQ(r.probes[1], 50);
  EXPECT_FALSE(r.converged);
}

TEST(Probes, DeterministicAndKeyedByIndices) {
  auto like = torch::zeros({1000}, torch::kFloat32);
  auto a = draw_probe(like, ProbeDistribution::kRademacher, 0, 1, 2, 3);
  auto b = draw_probe(like, ProbeDistribution::kRademacher, 0, 1, 2, 3);
  auto c = draw_probe(like, ProbeDistribution::kRademacher, 0, 1, 3, 3);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, c));
  EXPECT_TRUE(torch::equal(a.abs(), torch::ones_like(a)));
  EXPECT_LT(std::abs(a.sum().item<double>()), 5 * std::sqrt(1000.0));
  auto g = draw_probe(torch::zeros({20000}, torch::kFloat64), ProbeDistribution::kGaussian, 5, 0, 0, 0);
  EXPECT_NEAR(g.mean().item<double>(), 0.0, 5.0 / std::sqrt(20000.0));
  EXPECT_NEAR(g.var().item<double>(), 1.0, 0.05);
  // float32 and float64 draws agree (same stream).
  auto f32 = draw_probe(torch::zeros({64}, torch::kFloat32), ProbeDistribution::kGaussian, 5, 0, 0, 0);
  EXPECT_TRUE(torch::allclose(f32.to(torch::kFloat64), g.slice(0, 0, 64), 1e-6, 1e-6));
}

TEST(Probes, DeviceExpansionEqualsTheHostFill) {
  // The GPU path expands 64-bit words into signs; on the CPU it must give rng::fill_rademacher's
  // values for sizes around the 64-element word boundary and for both dtypes.
  for (std::int64_t n : {0, 1, 63, 64, 65, 1000, 4097}) {
    for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
      auto like = torch::zeros({n}, dtype);
      const auto key = rng::make_key(7, rng::Stream::kProbe, 1, 2, 3);
      auto want = torch::empty({n}, torch::kFloat64);
      rng::fill_rademacher(want.data_ptr<double>(), n, key);
      auto got = rademacher_on_device(like, key);
      EXPECT_EQ(got.scalar_type(), dtype);
      EXPECT_TRUE(torch::equal(got.to(torch::kFloat64), want)) << "n = " << n;
    }
  }
  auto like = torch::zeros({3, 5, 7});
  EXPECT_TRUE(torch::equal(rademacher_on_device(like, rng::make_key(0, rng::Stream::kProbe, 0, 1, 2)),
                           draw_probe(like, ProbeDistribution::kRademacher, 0, 0, 1, 2)));
}

TEST(Probes, JointDrawerEqualsDrawProbeBitwise) {
  // The GPU draw of all layers at once must give draw_probe's blocks: layers around the 64-element word
  // boundary (so words straddle no layer), an empty one, several dtypes, single and K draws.
  for (auto dtype : {torch::kFloat32, torch::kFloat64, torch::kFloat16}) {
    std::vector<torch::Tensor> like;
    for (std::vector<std::int64_t> shape : std::vector<std::vector<std::int64_t>>{
             {1}, {63}, {8, 8}, {65}, {0}, {3, 5, 7}, {2, 3, 33, 10}}) {
      like.push_back(torch::zeros(shape, dtype));
    }
    const JointRademacher drawer(like);
    const auto one = drawer.draw_one(11, 4, 9);
    const auto many = drawer.draw(11, 4, 7, 3);  // probes 7, 8, 9
    ASSERT_EQ(one.size(), like.size());
    ASSERT_EQ(many.size(), like.size());
    for (std::size_t i = 0; i < like.size(); ++i) {
      const auto want = draw_probe(like[i], ProbeDistribution::kRademacher, 11, 4, 9, static_cast<std::int64_t>(i));
      EXPECT_EQ(one[i].scalar_type(), dtype);
      EXPECT_EQ(one[i].sizes(), like[i].sizes());
      EXPECT_TRUE(torch::equal(one[i], want)) << "layer " << i;
      EXPECT_EQ(many[i].size(0), 3);
      for (std::int64_t j = 0; j < 3; ++j) {
        const auto want_j = draw_probe(like[i], ProbeDistribution::kRademacher, 11, 4, 7 + j, static_cast<std::int64_t>(i));
        EXPECT_TRUE(torch::equal(many[i][j], want_j)) << "layer " << i << " probe " << 7 + j;
      }
    }
  }
}

TEST(Probes, JointDrawerKeysThenSignsIsTheDraw) {
  // The two halves that ProbeUnit's graph replays (host keys, then the device work) give draw()'s probes.
  const std::vector<torch::Tensor> like{torch::zeros({65}), torch::zeros({3, 5}), torch::zeros({0})};
  const JointRademacher drawer(like);
  const torch::Tensor keys = drawer.keys(5, 2, 3, 2);  // probes 3 and 4
  ASSERT_EQ(keys.sizes(), torch::IntArrayRef({2, 3}));
  EXPECT_EQ(keys[1][2].item<std::int64_t>(), static_cast<std::int64_t>(rng::make_key(5, rng::Stream::kProbe, 2, 4, 2)));
  const torch::Tensor signs = drawer.signs_from_keys(keys);
  const auto want = drawer.draw(5, 2, 3, 2);
  for (std::int64_t j = 0; j < 2; ++j) {
    const auto blocks = drawer.blocks_of_row(signs[j]);
    for (std::size_t i = 0; i < like.size(); ++i) EXPECT_TRUE(torch::equal(blocks[i], want[i][j])) << i << " " << j;
  }
}

TEST(ProbeUnit, EagerValuesAreTheDrawersProbesThroughTheEngineBitwise) {
  // The unit --cuda-graphs captures, run eagerly (as on the CPU): bitwise dots64(z, H z) of the drawer's
  // probe, one product counted per probe, and the trace path through it unchanged.
  for (const Problem& p : {mlp_problem(), cnn_problem()}) {
    HvpEngine engine(p.loss(), p.params);
    const JointRademacher drawer(p.params);
    ProbeUnit unit(engine, drawer, /*graph=*/false);
    for (std::int64_t probe = 0; probe < 4; ++probe) {
      const long before = engine.products();
      const std::vector<double> got = unit.values(7, 3, probe);
      EXPECT_EQ(engine.products(), before + 1);
      const auto z = drawer.draw_one(7, 3, probe);
      const std::vector<double> want = dots64(z, engine.hvp(z));
      ASSERT_EQ(got.size(), want.size());
      for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]) << "probe " << probe << " layer " << i;
    }
    EXPECT_FALSE(unit.captured());
  }
}

TEST(ProbeUnit, CudaGraphsAreRefusedWhereTheyCannotRun) {
  TraceOptions o;
  o.cuda_graphs = true;
  EXPECT_NO_THROW(o.validate());
  o.in_flight = 2;  // one captured probe at a time
  EXPECT_THROW(o.validate(), Error);
  o = TraceOptions{};
  o.cuda_graphs = true;
  o.distribution = ProbeDistribution::kGaussian;
  EXPECT_THROW(o.validate(), Error);
  o = TraceOptions{};
  o.cuda_graphs = true;
  o.scope = ProbeScope::kLayer;
  EXPECT_THROW(o.validate(), Error);
  // On the CPU the side stream is nothing; a CPU LibTorch build cannot capture at all.
  EXPECT_NO_THROW(SideStreamScope(torch::kCPU, true));
  if (!cuda_graphs_built()) {
    EXPECT_THROW(capture_device_graph([] {}), Error);
  }
}

TEST(HvpEngine, Dots64EqualsPerBlockDots) {
  std::vector<torch::Tensor> a{torch::arange(5, torch::kFloat32), torch::ones({2, 3})};
  std::vector<torch::Tensor> b{torch::full({5}, 0.5f), torch::full({2, 3}, -2.0f)};
  const auto d = dots64(a, b);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_DOUBLE_EQ(d[0], 5.0);  // 0.5 * (0+1+2+3+4)
  EXPECT_DOUBLE_EQ(d[1], -12.0);
  EXPECT_TRUE(dots64({}, {}).empty());
}

TEST(Options, InvalidValuesAreRejected) {
  TraceOptions o;
  o.tol = 0;
  EXPECT_THROW(o.validate(), Error);
  o = TraceOptions{};
  o.max_probes = 0;
  EXPECT_THROW(o.validate(), Error);
  o = TraceOptions{};
  o.in_flight = 0;
  EXPECT_THROW(o.validate(), Error);
  o.in_flight = 257;
  EXPECT_THROW(o.validate(), Error);
  o.in_flight = 4;
  EXPECT_NO_THROW(o.validate());
  o.scope = ProbeScope::kLayer;  // batching is of joint probes
  EXPECT_THROW(o.validate(), Error);
  o.estimator = TraceEstimator::kHutchPlusPlus;
  EXPECT_THROW(o.validate(), Error);
  EXPECT_THROW(parse_probe_scope("diag"), Error);
  EXPECT_THROW(parse_measure_mode("full"), Error);
  EXPECT_THROW(parse_probe_distribution("uniform"), Error);
}

// ---- variance-reduced trace estimators (Hutch++, XTrace) ----------------------------------------------

namespace {

// A = U diag(λ) Uᵀ with a random orthogonal U (float64, d × d).
torch::Tensor matrix_with_spectrum(const torch::Tensor& lambda, int seed) {
  torch::manual_seed(seed);
  const auto d = lambda.numel();
  auto U = std::get<0>(torch::linalg_qr(torch::randn({d, d}, torch::kFloat64)));
  return U.mm(torch::diag(lambda)).mm(U.t());
}

struct Errors {
  double rms = 0, mean = 0, mean_reported_se2 = 0;
};

// Error of an estimator over `seeds` independent keys against tr(A), at `budget` products.
Errors errors_over_seeds(const torch::Tensor& A, TraceEstimator estimator, int budget, int seeds) {
  const double exact = A.trace().item<double>();
  const auto like = torch::zeros({A.size(0)}, torch::kFloat64);
  const TensorOperator op = [&](const torch::Tensor& x) { return A.mv(x); };
  Errors e;
  for (int s = 0; s < seeds; ++s) {
    const ProbeSource probe = [&](std::int64_t j) {
      return draw_probe(like, ProbeDistribution::kRademacher, 77, s, j, 0);
    };
    double estimate = 0, se = 0;
    if (estimator == TraceEstimator::kHutchinson) {
      std::vector<double> x;
      for (int j = 0; j < budget; ++j) {
        auto z = probe(j);
        x.push_back(z.dot(A.mv(z)).item<double>());
      }
      double m = 0, ss = 0;
      for (double v : x) m += v / budget;
      for (double v : x) ss += (v - m) * (v - m);
      estimate = m;
      se = std::sqrt(ss / (budget - 1) / budget);
    } else {
      const auto t = estimator == TraceEstimator::kHutchPlusPlus ? hutchpp_trace(op, probe, A.size(0), budget)
                                                                 : xtrace_trace(op, probe, A.size(0), budget);
      EXPECT_LE(t.products, budget);
      estimate = t.estimate;
      se = t.std_error;
    }
    e.mean += (estimate - exact) / seeds;
    e.rms += (estimate - exact) * (estimate - exact) / seeds;
    e.mean_reported_se2 += se * se / seeds;
  }
  e.rms = std::sqrt(e.rms);
  return e;
}

}  // namespace

TEST(TraceEstimators, ExactWhenTheRankIsBelowTheSketch) {
  // rank 3: Hutch++'s k = 4 and XTrace's k = 5 capture the whole range.
  auto lambda = torch::zeros({40}, torch::kFloat64);
  lambda[0] = 5.0, lambda[1] = -2.0, lambda[2] = 0.5;
  const auto A = matrix_with_spectrum(lambda, 11);
  const auto like = torch::zeros({40}, torch::kFloat64);
  const TensorOperator op = [&](const torch::Tensor& x) { return A.mv(x); };
  const ProbeSource probe = [&](std::int64_t j) { return draw_probe(like, ProbeDistribution::kRademacher, 1, 0, j, 0); };
  EXPECT_NEAR(hutchpp_trace(op, probe, 40, 12).estimate, 3.5, 1e-10);
  EXPECT_NEAR(xtrace_trace(op, probe, 40, 10).estimate, 3.5, 1e-10);
  // The same keys give the same estimate (a pure function of the probes).
  EXPECT_EQ(xtrace_trace(op, probe, 40, 8).estimate, xtrace_trace(op, probe, 40, 8).estimate);
}

TEST(TraceEstimators, LowerErrorThanHutchinsonOnADecayingSpectrumAtTheSameBudget) {
  // λ_j = 1/j^1.5, d = 200: PSD, and indefinite (every third sign flipped, as a Hessian block); 30
  // products each, 120 independent keys.
  for (bool indefinite : {false, true}) {
    SCOPED_TRACE(indefinite ? "indefinite" : "PSD");
    auto lambda = torch::arange(1, 201, torch::kFloat64).pow(-1.5);
    if (indefinite) {
      const auto every_third = torch::indexing::Slice(1, torch::indexing::None, 3);
      lambda.index_put_({every_third}, -lambda.index({every_third}));
    }
    const auto A = matrix_with_spectrum(lambda, 12);
    const auto hutch = errors_over_seeds(A, TraceEstimator::kHutchinson, 30, 120);
    const auto hpp = errors_over_seeds(A, TraceEstimator::kHutchPlusPlus, 30, 120);
    const auto xt = errors_over_seeds(A, TraceEstimator::kXTrace, 30, 120);
    EXPECT_LT(hpp.rms, 0.5 * hutch.rms) << "Hutch++ " << hpp.rms << " vs Hutchinson " << hutch.rms;
    EXPECT_LT(xt.rms, 0.5 * hutch.rms) << "XTrace " << xt.rms << " vs Hutchinson " << hutch.rms;
    EXPECT_LT(xt.rms, hpp.rms * 1.1) << "XTrace " << xt.rms << " vs Hutch++ " << hpp.rms;
    // Unbiased: the mean error is within 4 standard errors of the mean.
    for (const auto* e : {&hutch, &hpp, &xt}) EXPECT_LT(std::abs(e->mean), 4 * e->rms / std::sqrt(120.0));
    // Honest error estimates: the reported standard errors match the realised error within a factor 2.
    for (const auto* e : {&hutch, &hpp, &xt}) {
      const double ratio = std::sqrt(e->mean_reported_se2) / e->rms;
      EXPECT_GT(ratio, 0.5);
      EXPECT_LT(ratio, 2.0);
    }
  }
}

TEST(TraceEstimators, SmallCnnLayerBlocksAgainstTheExplicitHessian) {
  // Through the engine's block HVPs: Hutch++ with the sketch as large as the block is exact; XTrace at a
  // small budget is unbiased (mean over keys) and its error below Hutchinson's with the same products.
  auto p = cnn_problem();
  auto H = explicit_hessian(p.loss(), p.params);
  auto off = block_offsets(p.params);
  HvpEngine engine(p.loss(), p.params);
  auto local = comm::make_local();
  TraceOptions exact_opts;
  exact_opts.scope = ProbeScope::kLayer;
  exact_opts.estimator = TraceEstimator::kHutchPlusPlus;
  exact_opts.max_probes = 3 * 54;  // k = 54 = the largest block
  const auto t = estimate_traces(engine, exact_opts, 0, *local);
  for (std::size_t i = 0; i < p.params.size(); ++i) {
    const double exact = H.slice(0, off[i], off[i + 1]).slice(1, off[i], off[i + 1]).trace().item<double>();
    EXPECT_NEAR(t.mean[i], exact, 1e-10 * (1 + std::abs(exact))) << "layer " << i;
    EXPECT_LE(t.probes[i], 3 * 54);
  }
  EXPECT_EQ(t.hvps_computed, t.probes[0] + t.probes[1] + t.probes[2]);

  // Layer 1 (conv 3→2, 54 weights), 12 products, 60 keys.
  const auto Hb = H.slice(0, off[1], off[2]).slice(1, off[1], off[2]).contiguous();
  const auto hutch = errors_over_seeds(Hb, TraceEstimator::kHutchinson, 12, 60);
  TraceOptions o;
  o.scope = ProbeScope::kLayer;
  o.estimator = TraceEstimator::kXTrace;
  o.max_probes = 12;
  double mse = 0, mean = 0;
  const double exact = Hb.trace().item<double>();
  for (int s = 0; s < 60; ++s) {
    o.seed = static_cast<std::uint64_t>(s);
    const double e = estimate_traces(engine, o, 0, *local).mean[1] - exact;
    mse += e * e / 60;
    mean += e / 60;
  }
  EXPECT_LT(std::sqrt(mse), hutch.rms) << "XTrace " << std::sqrt(mse) << " vs Hutchinson " << hutch.rms;
  EXPECT_LT(std::abs(mean), 4 * std::sqrt(mse / 60));
}

TEST(TraceEstimators, OptionsAreChecked) {
  TraceOptions o;
  o.estimator = TraceEstimator::kXTrace;
  EXPECT_THROW(o.validate(), Error);  // joint scope
  o.scope = ProbeScope::kLayer;
  o.max_probes = 3;
  EXPECT_THROW(o.validate(), Error);  // XTrace needs 4
  o.max_probes = 4;
  EXPECT_NO_THROW(o.validate());
  EXPECT_THROW(parse_trace_estimator("hutch+"), Error);
  EXPECT_EQ(parse_trace_estimator("hutch++"), TraceEstimator::kHutchPlusPlus);
}

// ---- the PSD-part measure -------------------------------------------------------------------------------

TEST(PsdForms, MatchTheExplicitPsdPartOfEachBlock) {
  // Enough steps to exhaust each block's Krylov space: the quadrature is exact, v_iᵀ H_ii⁺ v_i from
  // the float64 eigendecomposition of the explicit block, to 1e-8.
  bool some_indefinite = false;
  for (const auto& p : {mlp_problem(), cnn_problem()}) {
    auto H = explicit_hessian(p.loss(), p.params);
    auto off = block_offsets(p.params);
    HvpEngine engine(p.loss(), p.params);
    auto v = random_direction(p.params, 9);
    PsdOptions opts;
    opts.steps = 100;
    opts.tol = 0;
    const auto forms = psd_quadratic_forms(engine, v, opts);
    for (std::size_t i = 0; i < p.params.size(); ++i) {
      auto Hii = H.slice(0, off[i], off[i + 1]).slice(1, off[i], off[i + 1]);
      auto [values, vectors] = torch::linalg_eigh(Hii);
      some_indefinite = some_indefinite || values.min().item<double>() < -1e-8;
      auto plus = vectors.mm(torch::diag(values.clamp_min(0))).mm(vectors.t());
      auto vi = v[i].reshape({-1});
      const double want = vi.dot(plus.mv(vi)).item<double>();
      const double want_block = vi.dot(Hii.mv(vi)).item<double>();
      EXPECT_NEAR(forms[i].psd, want, 1e-8 * (1 + std::abs(want))) << "layer " << i;
      EXPECT_NEAR(forms[i].block, want_block, 1e-8 * (1 + std::abs(want_block))) << "layer " << i;
      EXPECT_TRUE(forms[i].converged);
      EXPECT_LE(forms[i].steps, p.params[i].numel());
      EXPECT_GE(forms[i].psd, want_block - 1e-10 * (1 + std::abs(want_block)));  // H⁺ ⪰ H
    }
  }
  EXPECT_TRUE(some_indefinite);  // the PSD part differs from the block itself somewhere
}

TEST(PsdForms, ToleranceStopsEarlyAndRecordsTheChange) {
  auto p = cnn_problem();
  HvpEngine engine(p.loss(), p.params);
  auto v = random_direction(p.params, 4);
  PsdOptions exact;
  exact.steps = 100;
  exact.tol = 0;
  PsdOptions loose;
  loose.steps = 100;
  loose.tol = 1e-3;
  const auto a = psd_quadratic_forms(engine, v, exact);
  const auto b = psd_quadratic_forms(engine, v, loose);
  EXPECT_LT(b[1].steps, a[1].steps);
  EXPECT_TRUE(b[1].converged);
  EXPECT_LE(b[1].change, 1e-3);
  EXPECT_NEAR(b[1].psd, a[1].psd, 0.05 * std::abs(a[1].psd));
  // A zero direction costs nothing and is 0.
  std::vector<torch::Tensor> zero;
  for (auto& t : v) zero.push_back(torch::zeros_like(t));
  const auto z = psd_quadratic_forms(engine, zero, exact);
  EXPECT_EQ(z[0].steps, 0);
  EXPECT_EQ(z[0].psd, 0.0);
  // psd_quadrature of a diagonal T with one negative node: only the positive part counts.
  EXPECT_NEAR(psd_quadrature({2.0, -1.0}, {0.0}, 3.0), 6.0, 1e-14);
  PsdOptions bad;
  bad.steps = 0;
  EXPECT_THROW(bad.validate(), Error);
}

TEST(PsdForms, DoesNotStopBeforeTheNegativeEndIsResolved) {
  // H = A with 29 positive eigenvalues and one negative one that v barely touches: while every Ritz value
  // is positive the quadrature equals the block form, step after step; stopping on that would miss H⁻.
  torch::manual_seed(5);
  auto lambda = torch::linspace(1.0, 10.0, 30, torch::kFloat64);
  lambda[0] = -8.0;
  auto U = std::get<0>(torch::linalg_qr(torch::randn({30, 30}, torch::kFloat64)));
  auto A = U.mm(torch::diag(lambda)).mm(U.t());
  auto c = torch::ones({30}, torch::kFloat64);
  c[0] = 0.05;
  auto v = U.mv(c);
  auto w = torch::zeros({30}, torch::kFloat64).requires_grad_();
  HvpEngine engine(0.5 * w.dot(A.mv(w)), {w});
  PsdOptions opts;
  opts.steps = 30;
  opts.tol = 1e-3;
  const auto f = psd_quadratic_forms(engine, {v}, opts)[0];
  const double exact = (c * c * lambda.clamp_min(0)).sum().item<double>();
  const double block = (c * c * lambda).sum().item<double>();
  EXPECT_NEAR(f.block, block, 1e-10 * std::abs(block));
  EXPECT_NEAR(f.psd, exact, 1e-6 * exact) << "steps " << f.steps << ", block " << block;  // exact - block = 0.02
  EXPECT_GT(f.steps, 2);
  EXPECT_TRUE(f.converged);
}
