// Oracles: batch plans in closed form; per-batch quadratic forms, traces and the bound against
// explicit float64 Hessians of a small MLP; stability deltas recomputed from the same noise draws,
// and E Δ ≈ (eps²/2)·Σ tr(H_ii); eval against a direct sample-weighted computation.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "comm/communicator.h"
#include "hessian/probes.h"
#include "measures/batch_plan.h"
#include "measures/distance.h"
#include "measures/eval.h"
#include "measures/spectrum.h"
#include "measures/stability.h"
#include "measures/traces.h"
#include "models/registry.h"
#include "tests/support/error_of.h"
#include "tests/support/explicit_hessian.h"
#include "tests/support/tensor_dataset.h"
#include "util/error.h"

using namespace hessgap;
using namespace hessgap::measures;
using hessgap::testing::error_of;
using hessgap::testing::block_offsets;
using hessgap::testing::explicit_hessian;
using hessgap::testing::flatten;

namespace {

struct Fixture {
  std::unique_ptr<hessgap::testing::TensorDataset> data = hessgap::testing::small_dataset();
  std::shared_ptr<models::Classifier> model = hessgap::testing::small_mlp();
  std::unique_ptr<comm::Communicator> local = comm::make_local();
  MeasureContext ctx(std::int64_t batch_size, std::int64_t sample_size, SampleRule rule) {
    MeasureContext c;
    c.model = model.get();
    c.dataset = data.get();
    c.world = local.get();
    c.dtype = torch::kFloat64;
    c.plan.batch_size = batch_size;
    c.plan.sample_size = sample_size;
    c.plan.rule = rule;
    return c;
  }
  // Loss of the samples `ids` as a function of the model's current Hessian-layer weights.
  torch::Tensor loss_of(const std::vector<std::int64_t>& ids) {
    auto b = data->get_batch(ids);
    return torch::nn::functional::cross_entropy(model->forward(b), b.labels);
  }
};

}  // namespace

TEST(BatchPlan, ReferenceRuleTakesBatchesUntilCountExceedsSampleSize) {
  PlanOptions o;
  o.batch_size = 4;
  o.sample_size = 100;
  auto p = plan_batches(10000, o);
  EXPECT_EQ(p.batches.size(), 26u);  // 100 is not > 100, so a 26th batch is taken
  EXPECT_EQ(p.num_samples(), 104);
  o.sample_size = 99;
  EXPECT_EQ(plan_batches(10000, o).batches.size(), 25u);
  o.rule = SampleRule::kExact;
  o.sample_size = 102;
  p = plan_batches(10000, o);
  EXPECT_EQ(p.batches.size(), 26u);
  EXPECT_EQ(p.batches.back().size(), 2u);
  EXPECT_EQ(p.batches[3][1], 13);
  o.sample_size = 0;
  EXPECT_EQ(plan_batches(10, o).num_samples(), 10);
  o.sample_size = 50;
  EXPECT_EQ(plan_batches(10, o).num_samples(), 10);  // capped by the dataset
}

TEST(BatchPlan, ShuffleIsASeededPermutation) {
  PlanOptions o;
  o.batch_size = 3;
  o.sample_size = 0;
  o.shuffle = true;
  o.seed = 9;
  auto a = plan_batches(20, o), b = plan_batches(20, o);
  EXPECT_EQ(a.batches, b.batches);
  std::vector<std::int64_t> all;
  for (auto& batch : a.batches) all.insert(all.end(), batch.begin(), batch.end());
  std::vector<std::int64_t> sorted = all;
  std::sort(sorted.begin(), sorted.end());
  for (std::int64_t i = 0; i < 20; ++i) EXPECT_EQ(sorted[i], i);
  EXPECT_NE(all, sorted);
  o.seed = 10;
  EXPECT_NE(plan_batches(20, o).batches, a.batches);
}

TEST(BatchPlan, OwnershipIsRoundRobinAndInvalidOptionsAreRejected) {
  PlanOptions o;
  o.batch_size = 2;
  o.sample_size = 0;
  auto p = plan_batches(9, o);  // 5 batches
  EXPECT_EQ(owned_batches(p, 1, 2), (std::vector<std::int64_t>{1, 3}));
  EXPECT_EQ(owned_batches(p, 0, 3), (std::vector<std::int64_t>{0, 3}));
  o.batch_size = 0;
  EXPECT_THROW(plan_batches(9, o), Error);
  o.batch_size = 2;
  EXPECT_THROW(plan_batches(0, o), Error);
  EXPECT_THROW(parse_sample_rule("all"), Error);
}

TEST(Distance, QuadraticFormsAndBoundMatchExplicitHessians) {
  for (auto mode : {hessian::MeasureMode::kJoint, hessian::MeasureMode::kBlock, hessian::MeasureMode::kPsd}) {
    Fixture f;
    auto ctx = f.ctx(4, 0, SampleRule::kExact);
    // W^(s): the weights perturbed deterministically; the head is measured around zero.
    const auto names = f.model->hessian_layers();
    ASSERT_EQ(names, (std::vector<std::string>{"fc0.weight", "head.weight"}));
    auto params = models::parameters_by_name(*f.model, names);
    std::map<std::string, torch::Tensor> init;
    init["fc0.weight"] = params[0].detach() - 0.1 * torch::ones_like(params[0]);
    DistanceOptions opts;
    opts.mode = mode;
    opts.train_size = 1000;
    opts.psd.steps = 100;  // more than either block's size: the quadrature is exact
    opts.psd.tol = 0;
    auto r = compute_distance(ctx, opts, init);
    ASSERT_EQ(r.block != nullptr, mode == hessian::MeasureMode::kPsd);

    std::vector<torch::Tensor> v = {0.1 * torch::ones_like(params[0]), params[1].detach().clone()};
    auto off = block_offsets(params);
    auto plan = plan_batches(f.data->size(), ctx.plan);
    ASSERT_EQ(r.batch_sizes.size(), 6u);
    EXPECT_EQ(r.batch_sizes.back(), 3);
    for (std::size_t b = 0; b < plan.batches.size(); ++b) {
      auto H = explicit_hessian(f.loss_of(plan.batches[b]), params);
      auto vf = flatten(v);
      auto Hv = H.mv(vf);
      for (std::size_t i = 0; i < 2; ++i) {
        auto vi = vf.slice(0, off[i], off[i + 1]);
        const auto Hii = H.slice(0, off[i], off[i + 1]).slice(1, off[i], off[i + 1]);
        const double block = vi.dot(Hii.mv(vi)).item<double>();
        auto [values, vectors] = torch::linalg_eigh(Hii);
        const double psd = vi.dot(vectors.mm(torch::diag(values.clamp_min(0))).mm(vectors.t()).mv(vi)).item<double>();
        const double want = mode == hessian::MeasureMode::kJoint ? vi.dot(Hv.slice(0, off[i], off[i + 1])).item<double>()
                            : mode == hessian::MeasureMode::kBlock ? block : psd;
        EXPECT_NEAR(r.quad[b * 2 + i], want, 1e-9 * (1 + std::abs(want))) << "batch " << b << " layer " << i;
        if (r.block) {
          EXPECT_NEAR(r.block->quad[b * 2 + i], block, 1e-9 * (1 + std::abs(block)));
          EXPECT_EQ(r.psd_converged[b * 2 + i], 1);
          EXPECT_LE(r.psd_steps[b * 2 + i], params[i].numel());
        }
      }
      EXPECT_NEAR(r.batch_loss[b], f.loss_of(plan.batches[b]).item<double>(), 1e-12);
    }
    double sum_sqrt = 0, max_loss = -1;
    for (std::size_t i = 0; i < 2; ++i) {
      double mx = r.quad[i];
      for (std::size_t b = 1; b < 6; ++b) mx = std::max(mx, r.quad[b * 2 + i]);
      EXPECT_DOUBLE_EQ(r.layer_max[i], mx);
      sum_sqrt += std::sqrt(std::max(mx, 0.0));
      EXPECT_NEAR(r.v_norm[i], v[i].norm().item<double>(), 1e-12);
    }
    for (double l : r.batch_loss) max_loss = std::max(max_loss, l);
    EXPECT_NEAR(r.sum_sqrt, sum_sqrt, 1e-12);
    EXPECT_NEAR(r.bound, sum_sqrt / std::sqrt(1000.0), 1e-12);
    EXPECT_NEAR(r.bound_c, std::sqrt(max_loss) * sum_sqrt / std::sqrt(1000.0), 1e-12);
    EXPECT_DOUBLE_EQ(r.max_loss, max_loss);
  }
}

TEST(Distance, HeadAroundInitAndErrors) {
  Fixture f;
  auto ctx = f.ctx(8, 0, SampleRule::kExact);
  auto params = models::parameters_by_name(*f.model, f.model->hessian_layers());
  std::map<std::string, torch::Tensor> init = {{"fc0.weight", params[0].detach().clone()},
                                               {"head.weight", params[1].detach().clone()}};
  DistanceOptions opts;
  opts.train_size = 10;
  opts.head_reference = HeadReference::kInit;
  auto r = compute_distance(ctx, opts, init);  // W == W^(s): every form is 0
  for (double q : r.quad) EXPECT_EQ(q, 0.0);
  EXPECT_EQ(r.bound, 0.0);
  init.erase("head.weight");
  EXPECT_THROW(compute_distance(ctx, opts, init), Error);
  init["head.weight"] = torch::zeros({2, 2}, torch::kFloat64);
  EXPECT_THROW(compute_distance(ctx, opts, init), Error);
  opts.train_size = 0;
  EXPECT_THROW(compute_distance(ctx, opts, init), Error);
}

TEST(Traces, LayerProbesConvergeToExactBlockTracesPerBatch) {
  Fixture f;
  auto ctx = f.ctx(8, 0, SampleRule::kExact);
  TracesOptions opts;
  opts.trace.scope = hessian::ProbeScope::kLayer;
  opts.trace.rule = hessian::StopRule::kStandardError;
  opts.trace.rel_se = 0.02;
  opts.trace.min_probes = 10;
  opts.trace.max_probes = 3000;
  auto r = compute_traces(ctx, opts);
  auto params = models::parameters_by_name(*f.model, f.model->hessian_layers());
  auto off = block_offsets(params);
  auto plan = plan_batches(f.data->size(), ctx.plan);
  const std::size_t L = 2;
  for (std::size_t b = 0; b < plan.batches.size(); ++b) {
    auto H = explicit_hessian(f.loss_of(plan.batches[b]), params);
    for (std::size_t i = 0; i < L; ++i) {
      const double exact = H.slice(0, off[i], off[i + 1]).slice(1, off[i], off[i + 1]).trace().item<double>();
      EXPECT_NEAR(r.mean[b * L + i], exact, 4.5 * r.std_error[b * L + i]) << "batch " << b << " layer " << i;
      // A layer stopped before the limit only when its relative standard error reached the target.
      if (r.probes[b * L + i] < 3000) EXPECT_LE(r.std_error[b * L + i], 0.02 * std::abs(r.mean[b * L + i]));
      EXPECT_GE(r.probes[b * L + i], 10);
    }
  }
  // Reductions over batches.
  for (std::size_t i = 0; i < L; ++i) {
    double mx = -INFINITY, mean = 0;
    for (std::size_t b = 0; b < r.num_batches(); ++b) {
      mx = std::max(mx, r.mean[b * L + i]);
      mean += r.mean[b * L + i] * static_cast<double>(r.batch_sizes[b]) / 23.0;
    }
    EXPECT_DOUBLE_EQ(r.layer_max[i], mx);
    EXPECT_NEAR(r.layer_mean[i], mean, 1e-12 * (1 + std::abs(mean)));
  }
  EXPECT_EQ(r.layers, f.model->hessian_layers());
}

TEST(Traces, InvalidProbeRanksAreRejected) {
  TracesOptions o;
  o.probe_ranks = 3;
  EXPECT_THROW(o.validate(2), Error);
  o.probe_ranks = 2;
  EXPECT_NO_THROW(o.validate(4));
  o.shard_batch = true;  // shards of samples or groups sharing probes, not both
  EXPECT_NE(error_of([&] { o.validate(4); }).find("--shard-batch splits every batch's samples over all ranks; it "
                                                  "cannot be combined with --probe-ranks 2"),
            std::string::npos);
  o.probe_ranks = 1;
  EXPECT_NO_THROW(o.validate(4));
  DistanceOptions d;
  d.train_size = 10;
  d.shard_batch = true;
  EXPECT_NO_THROW(d.validate());
  d.mode = hessian::MeasureMode::kPsd;
  EXPECT_NE(error_of([&] { d.validate(); }).find("--mode psd runs Lanczos on each batch's Hessian"), std::string::npos);
}

// One rank with --shard-batch holds whole batches: the same result as without, to the last bit.
TEST(Traces, ShardBatchOnOneRankIsTheWholeBatch) {
  Fixture f;
  auto ctx = f.ctx(4, 0, SampleRule::kExact);
  TracesOptions o;
  o.trace.max_probes = 6;
  o.trace.seed = 2;
  const auto want = compute_traces(ctx, o);
  o.shard_batch = true;
  const auto got = compute_traces(ctx, o);
  EXPECT_EQ(got.mean, want.mean);
  EXPECT_EQ(got.probes, want.probes);
  EXPECT_EQ(got.batch_loss, want.batch_loss);
}

TEST(Stability, DeltasEqualLossesUnderTheKeyedNoise) {
  Fixture f;
  auto ctx = f.ctx(4, 0, SampleRule::kExact);
  StabilityOptions opts;
  opts.eps = 0.01;
  opts.repeats = 3;
  opts.seed = 4;
  auto r = compute_stability(ctx, opts);
  std::vector<std::int64_t> all(23);
  std::iota(all.begin(), all.end(), 0);
  const double base = f.loss_of(all).item<double>();  // the mean over all samples
  EXPECT_NEAR(r.base_loss, base, 1e-12);
  auto params = models::parameters_by_name(*f.model, f.model->hessian_layers());
  ASSERT_EQ(r.deltas.size(), 3u);
  for (int rep = 0; rep < 3; ++rep) {
    torch::NoGradGuard ng;
    std::vector<torch::Tensor> saved;
    for (std::size_t i = 0; i < params.size(); ++i) {
      saved.push_back(params[i].clone());
      params[i].add_(hessian::draw_weight_noise(params[i], 0.01, 4, rep, static_cast<std::int64_t>(i)));
    }
    const double want = f.loss_of(all).item<double>() - base;
    for (std::size_t i = 0; i < params.size(); ++i) params[i].copy_(saved[i]);
    EXPECT_NEAR(r.deltas[rep], want, 1e-12) << "repeat " << rep;
  }
  // Weights are restored exactly.
  EXPECT_NEAR(f.loss_of(all).item<double>(), base, 0.0);
  double mean = (r.deltas[0] + r.deltas[1] + r.deltas[2]) / 3, var = 0;
  for (double d : r.deltas) var += (d - mean) * (d - mean) / 3;
  EXPECT_NEAR(r.mean, mean, 1e-15);
  EXPECT_NEAR(r.std, std::sqrt(var), 1e-15);
}

TEST(Stability, MeanLossChangeMatchesHalfEpsSquaredTimesTrace) {
  Fixture f;
  auto ctx = f.ctx(23, 0, SampleRule::kExact);
  StabilityOptions opts;
  opts.eps = 0.05;
  opts.repeats = 2000;
  auto r = compute_stability(ctx, opts);
  std::vector<std::int64_t> all(23);
  std::iota(all.begin(), all.end(), 0);
  auto params = models::parameters_by_name(*f.model, f.model->hessian_layers());
  const double trace = explicit_hessian(f.loss_of(all), params).trace().item<double>();
  const double predicted = 0.5 * opts.eps * opts.eps * trace;
  // The first-order term g·U averages out with standard error std/√R; higher orders are O(eps⁴).
  EXPECT_NEAR(r.mean, predicted, 4.0 * r.std / std::sqrt(2000.0) + 0.05 * std::abs(predicted))
      << "trace " << trace;
  EXPECT_GT(predicted, 0.0);
}

TEST(Eval, SampleWeightedLossAndAccuracy) {
  Fixture f;
  auto ctx = f.ctx(5, 0, SampleRule::kExact);  // batches 5,5,5,5,3
  auto r = evaluate(ctx);
  std::vector<std::int64_t> all(23);
  std::iota(all.begin(), all.end(), 0);
  auto b = f.data->get_batch(all);
  torch::NoGradGuard ng;
  auto logits = f.model->forward(b);
  EXPECT_NEAR(r.loss, torch::nn::functional::cross_entropy(logits, b.labels).item<double>(), 1e-12);
  EXPECT_EQ(r.correct, logits.argmax(1).eq(b.labels).sum().item<std::int64_t>());
  EXPECT_EQ(r.num_samples, 23);
  EXPECT_DOUBLE_EQ(r.accuracy, static_cast<double>(r.correct) / 23.0);
}

// The trainer's evaluations: an explicit plan of ids (plan_ids) with labels that replace the dataset's
// (ctx.labels, indexed by id), against a direct computation on those samples with those labels.
TEST(Eval, ExplicitIdsWithReplacedLabels) {
  Fixture f;
  const std::vector<std::int64_t> ids = {20, 3, 7, 11, 0, 15, 9};
  const BatchPlan plan = plan_ids(ids, 3);
  ASSERT_EQ(plan.batch_sizes(), (std::vector<std::int64_t>{3, 3, 1}));
  EXPECT_EQ(plan.batches[2], (std::vector<std::int64_t>{9}));
  EXPECT_TRUE(plan_ids({}, 3).batches.empty());
  std::vector<std::int64_t> labels(23);
  for (std::int64_t i = 0; i < 23; ++i) labels[static_cast<std::size_t>(i)] = (i * 7 + 1) % 3;
  auto ctx = f.ctx(5, 0, SampleRule::kExact);
  ctx.labels = &labels;
  const EvalResult r = evaluate(ctx, plan);
  auto b = f.data->get_batch(ids);
  std::vector<std::int64_t> y;
  for (std::int64_t id : ids) y.push_back(labels[static_cast<std::size_t>(id)]);
  const auto target = torch::tensor(y, torch::kInt64);
  torch::NoGradGuard ng;
  const auto logits = f.model->forward(b);
  EXPECT_NEAR(r.loss, torch::nn::functional::cross_entropy(logits, target).item<double>(), 1e-12);
  EXPECT_EQ(r.correct, logits.argmax(1).eq(target).sum().item<std::int64_t>());
  EXPECT_EQ(r.num_samples, 7);
  EXPECT_TRUE(std::isnan(r.f1));  // three classes: no F1
  const EvalResult none = evaluate(ctx, BatchPlan{});
  EXPECT_EQ(none.num_samples, 0);
  EXPECT_TRUE(std::isnan(none.loss));
}

// Unlabelled data (labels -1, as GLUE's test files): eval returns every sample's logits and prediction and no
// loss or accuracy; the Hessian measures refuse it by name before computing anything; a mix is an error.
TEST(Eval, UnlabelledDataGivesPredictionsOnly) {
  Fixture f;
  auto all = f.data->get_batch([] {
    std::vector<std::int64_t> ids(23);
    std::iota(ids.begin(), ids.end(), 0);
    return ids;
  }());
  hessgap::testing::TensorDataset unlabelled(all.inputs, torch::full({23}, -1, torch::kInt64), 3);
  auto ctx = f.ctx(5, 0, SampleRule::kExact);
  ctx.dataset = &unlabelled;
  const EvalResult r = evaluate(ctx);  // per_sample not asked for: the rows are the result
  EXPECT_FALSE(r.labelled);
  EXPECT_TRUE(std::isnan(r.loss) && std::isnan(r.accuracy));
  EXPECT_EQ(r.num_samples, 23);
  EXPECT_EQ(r.correct, 0);
  ASSERT_EQ(r.sample_ids.size(), 23u);
  ASSERT_EQ(r.logits.size(), 23u * 3u);
  torch::NoGradGuard ng;
  const auto want = f.model->forward(all);
  for (std::int64_t i = 0; i < 23; ++i) {
    EXPECT_EQ(r.sample_ids[static_cast<std::size_t>(i)], i);
    EXPECT_EQ(r.labels[static_cast<std::size_t>(i)], -1);
    EXPECT_TRUE(std::isnan(r.losses[static_cast<std::size_t>(i)]));
    for (std::int64_t k = 0; k < 3; ++k) {
      EXPECT_NEAR(r.logits[static_cast<std::size_t>(i * 3 + k)], want[i][k].item<double>(), 1e-13);
    }
  }
  // The Hessian measures need labels.
  TracesOptions t;
  t.trace.max_probes = 2;
  try {
    compute_traces(ctx, t);
    ADD_FAILURE() << "traces on unlabelled data did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("traces needs labelled data, but 23 of the 23 samples"), std::string::npos)
        << e.what();
  }
  StabilityOptions s;
  EXPECT_THROW(compute_stability(ctx, s), Error);
  // Some labelled, some not.
  auto mixed_labels = all.labels.clone();
  mixed_labels[4] = -1;
  hessgap::testing::TensorDataset mixed(all.inputs, mixed_labels, 3);
  ctx.dataset = &mixed;
  try {
    evaluate(ctx);
    ADD_FAILURE() << "eval on partly labelled data did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("1 of the 23 samples"), std::string::npos) << e.what();
  }
}

// The head reference by model family (SPEC §7.3): text models around their initialisation, image models around
// zero.
TEST(Distance, DefaultHeadReferenceByModelFamily) {
  const std::string hf = std::string(HG_SOURCE_DIR) + "/tests/fixtures/hf/";
  EXPECT_EQ(default_head_reference(*models::make_model("hf:" + hf + "roberta-tiny", 2)), HeadReference::kInit);
  EXPECT_EQ(default_head_reference(*models::make_model("hf:" + hf + "bert-tiny", 2)), HeadReference::kInit);
  EXPECT_EQ(default_head_reference(*models::make_model("hf:" + hf + "vit-tiny", 2)), HeadReference::kZero);
  EXPECT_EQ(default_head_reference(*models::make_model("cifar-resnet20", 10)), HeadReference::kZero);
  EXPECT_EQ(default_head_reference(*models::make_model("mlp:in=5,hidden=4", 3)), HeadReference::kZero);
}

// Lanczos on the mean-loss Hessian against the explicit float64 Hessian of the small MLP: with as many
// steps as dimensions the Ritz values are its eigenvalues (largest and smallest), the residuals vanish;
// a layer's block; SLQ's quadrature is exact for qᵀHq (degree 1) from its own start vector.
TEST(Spectrum, LanczosMatchesTheExplicitHessianEigenvalues) {
  Fixture f;
  auto ctx = f.ctx(5, 0, SampleRule::kExact);  // all 23 samples in batches 5,5,5,5,3: the mean loss
  std::vector<std::int64_t> all(23);
  std::iota(all.begin(), all.end(), 0);
  auto params = models::parameters_by_name(*f.model, f.model->hessian_layers());
  const torch::Tensor H = explicit_hessian(f.loss_of(all), params);
  const torch::Tensor eig = std::get<0>(torch::linalg_eigh(H));  // ascending
  const std::int64_t N = H.size(0);
  SpectrumOptions o;
  o.top_k = 3;
  o.lanczos_steps = static_cast<int>(N);
  o.slq_probes = 2;
  o.seed = 4;
  const SpectrumResult r = compute_spectrum(ctx, o);
  ASSERT_EQ(r.num_params, N);
  ASSERT_EQ(r.eigenvalues.size(), 3u);
  const double scale = eig.abs().max().item<double>();
  for (int k = 0; k < 3; ++k) {
    EXPECT_NEAR(r.eigenvalues[static_cast<std::size_t>(k)], eig[N - 1 - k].item<double>(), 1e-8 * scale) << k;
    EXPECT_LT(r.residuals[static_cast<std::size_t>(k)], 1e-6 * scale) << k;
  }
  EXPECT_EQ(r.num_samples, 23);
  // SLQ: Σ_j w_j θ_j = qᵀHq / qᵀq for the probe's start q (Rademacher, keyed as compute_spectrum keys it).
  ASSERT_EQ(r.slq_nodes.size(), 2u);
  for (std::int64_t p = 0; p < 2; ++p) {
    std::vector<torch::Tensor> q;
    for (std::size_t i = 0; i < params.size(); ++i) {
      q.push_back(hessian::draw_probe(params[i].detach(), hessian::ProbeDistribution::kRademacher, 4, -2, p,
                                      static_cast<std::int64_t>(i)));
    }
    const torch::Tensor qf = flatten(q);
    const double want = (qf.dot(H.mv(qf)) / qf.dot(qf)).item<double>();
    double got = 0, wsum = 0;
    for (std::size_t j = 0; j < r.slq_nodes[static_cast<std::size_t>(p)].size(); ++j) {
      const double w = r.slq_weights[static_cast<std::size_t>(p)][j];
      if (w > 0) got += w * r.slq_nodes[static_cast<std::size_t>(p)][j];
      wsum += w;
    }
    EXPECT_NEAR(wsum, 1.0, 1e-10);
    EXPECT_NEAR(got, want, 1e-9 * scale) << "probe " << p;
  }
  // The smallest (negative curvature) and one layer's diagonal block.
  o.smallest = true;
  o.slq_probes = 0;
  const SpectrumResult low = compute_spectrum(ctx, o);
  for (int k = 0; k < 3; ++k) {
    EXPECT_NEAR(low.eigenvalues[static_cast<std::size_t>(2 - k)], eig[k].item<double>(), 1e-8 * scale) << k;
  }
  const auto offsets = hessgap::testing::block_offsets(params);
  const std::string layer = f.model->hessian_layers()[1];
  const std::int64_t n1 = params[1].numel();
  const torch::Tensor H11 = H.narrow(0, offsets[1], n1).narrow(1, offsets[1], n1);
  const torch::Tensor eig11 = std::get<0>(torch::linalg_eigh(H11));
  o.smallest = false;
  o.layer = layer;
  o.lanczos_steps = static_cast<int>(n1);
  const SpectrumResult blk = compute_spectrum(ctx, o);
  EXPECT_EQ(blk.num_params, n1);
  EXPECT_NEAR(blk.eigenvalues[0], eig11[n1 - 1].item<double>(), 1e-8 * scale);
  // Bad options, by name.
  SpectrumOptions bad;
  bad.layer = "no.such.weight";
  EXPECT_THROW(compute_spectrum(ctx, bad), Error);
  bad = SpectrumOptions{};
  bad.top_k = 5;
  bad.lanczos_steps = 3;
  EXPECT_THROW(bad.validate(), Error);
  bad.lanczos_steps = 0;
  EXPECT_THROW(bad.validate(), Error);
}

// --per-layer against each explicit diagonal block, power iteration against the explicit eigenvalues of
// largest magnitude, and the landscape against the loss computed directly and its second difference.
TEST(Spectrum, PerLayerPowerAndLandscapeMatchTheExplicitHessian) {
  Fixture f;
  auto ctx = f.ctx(5, 0, SampleRule::kExact);
  std::vector<std::int64_t> all(23);
  std::iota(all.begin(), all.end(), 0);
  auto params = models::parameters_by_name(*f.model, f.model->hessian_layers());
  const torch::Tensor H = explicit_hessian(f.loss_of(all), params);
  const auto offsets = hessgap::testing::block_offsets(params);
  const double scale = H.abs().max().item<double>();

  SpectrumOptions o;
  o.top_k = 2;
  o.lanczos_steps = static_cast<int>(H.size(0));
  o.per_layer = true;
  o.slq_probes = 1;
  const SpectrumResult per = compute_spectrum(ctx, o);
  ASSERT_EQ(per.per_layer.size(), params.size());
  EXPECT_TRUE(per.eigenvalues.empty());
  for (std::size_t i = 0; i < params.size(); ++i) {
    const std::int64_t n = params[i].numel();
    const torch::Tensor e = std::get<0>(torch::linalg_eigh(H.narrow(0, offsets[i], n).narrow(1, offsets[i], n)));
    const auto& l = per.per_layer[i];
    EXPECT_EQ(l.num_params, n);
    ASSERT_EQ(l.eigenvalues.size(), 2u);
    EXPECT_NEAR(l.eigenvalues[0], e[n - 1].item<double>(), 1e-8 * scale) << i;
    EXPECT_NEAR(l.eigenvalues[1], e[n - 2].item<double>(), 1e-8 * scale) << i;
    EXPECT_LT(l.residuals[0], 1e-6 * scale);
    ASSERT_EQ(l.slq_weights.size(), 1u);
  }

  // Power iteration: the two eigenvalues of largest magnitude, reported descending, with their residuals.
  const torch::Tensor eig = std::get<0>(torch::linalg_eigh(H));
  std::vector<double> by_magnitude(eig.data_ptr<double>(), eig.data_ptr<double>() + eig.numel());
  std::sort(by_magnitude.begin(), by_magnitude.end(), [](double a, double b) { return std::abs(a) > std::abs(b); });
  SpectrumOptions p;
  p.method = SpectrumMethod::kPower;
  p.top_k = 2;
  p.max_iter = 3000;
  p.tol = 1e-13;
  const SpectrumResult pw = compute_spectrum(ctx, p);
  std::vector<double> want = {by_magnitude[0], by_magnitude[1]};
  std::sort(want.rbegin(), want.rend());
  ASSERT_EQ(pw.eigenvalues.size(), 2u);
  ASSERT_EQ(pw.iterations.size(), 2u);
  for (int k = 0; k < 2; ++k) {
    EXPECT_NEAR(pw.eigenvalues[static_cast<std::size_t>(k)], want[static_cast<std::size_t>(k)], 1e-6 * scale) << k;
    EXPECT_LT(pw.residuals[static_cast<std::size_t>(k)], 1e-2 * scale) << k;
  }
  EXPECT_EQ(pw.hvps, pw.iterations[0] + pw.iterations[1]);
  p.smallest = true;
  EXPECT_THROW(p.validate(), Error);

  // The landscape along the top eigenvector: loss(0) is the base loss, loss(t) the loss computed directly,
  // and the second difference at small t is the eigenvalue (the cubic terms cancel in a central difference).
  SpectrumOptions s;
  s.top_k = 1;
  s.lanczos_steps = static_cast<int>(H.size(0));
  s.landscape_points = 3;
  s.landscape_radius = 1e-3;
  s.keep_eigenvectors = true;
  const auto before = params[0].detach().clone();
  const SpectrumResult land = compute_spectrum(ctx, s);
  EXPECT_TRUE(torch::equal(params[0].detach(), before));  // weights restored bit for bit
  ASSERT_EQ(land.landscape_loss.size(), 3u);
  EXPECT_EQ(land.landscape_t[1], 0.0);
  const double base = f.loss_of(all).item<double>();
  EXPECT_NEAR(land.landscape_loss[1], base, 1e-14);
  const double h = land.landscape_t[2];
  const double second = (land.landscape_loss[0] - 2 * land.landscape_loss[1] + land.landscape_loss[2]) / (h * h);
  EXPECT_NEAR(second, land.eigenvalues[0], 1e-5 * scale);
  {
    torch::NoGradGuard ng;
    for (std::size_t i = 0; i < params.size(); ++i) params[i].add_(land.eigenvectors[0][i], h);
  }
  EXPECT_NEAR(f.loss_of(all).item<double>(), land.landscape_loss[2], 1e-13);
}
