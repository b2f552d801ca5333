// Every measure run over the MPI world equals the single-process result computed in the same
// process (oracle), whatever the number of ranks: batches sharded round robin, probes split within
// groups, sums all-reduced.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "measures/distance.h"
#include "measures/eval.h"
#include "measures/spectrum.h"
#include "measures/stability.h"
#include "measures/traces.h"
#include "models/registry.h"
#include "tests/mpi/mpi_test_main.h"
#include "tests/support/tensor_dataset.h"

using namespace hessgap;
using namespace hessgap::measures;
using hessgap::testing::world;

namespace {

struct Problem {
  std::unique_ptr<hessgap::testing::TensorDataset> data = hessgap::testing::small_dataset(37);
  std::shared_ptr<models::Classifier> model = hessgap::testing::small_mlp();
  std::unique_ptr<comm::Communicator> local = comm::make_local();
  MeasureContext ctx(comm::Communicator& c) {
    MeasureContext m;
    m.model = model.get();
    m.dataset = data.get();
    m.world = &c;
    m.dtype = torch::kFloat64;
    m.plan.batch_size = 3;
    m.plan.sample_size = 30;  // reference rule: 11 batches
    return m;
  }
};

void expect_close(const std::vector<double>& got, const std::vector<double>& want, double rel, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], rel * (1 + std::abs(want[i]))) << what << "[" << i << "]";
  }
}

// Hutchinson with a stopping rule that fires on some batches and not on others.
TracesOptions hutchinson(hessian::ProbeScope scope, hessian::StopRule rule) {
  TracesOptions o;
  o.trace.scope = scope;
  o.trace.rule = rule;
  o.trace.rel_se = 0.1;
  o.trace.min_probes = 3;
  o.trace.max_probes = 40;
  o.trace.seed = 17;
  return o;
}

// A sketching estimator with a budget of 7 block HVPs per layer.
TracesOptions sketching(hessian::TraceEstimator e) {
  TracesOptions o;
  o.trace.estimator = e;
  o.trace.scope = hessian::ProbeScope::kLayer;
  o.trace.max_probes = 7;
  o.trace.seed = 4;
  return o;
}

// shard: --shard-batch (then probe_ranks must be 1); in_flight: --probes-in-flight of the multi-rank run
// (the oracle computes one probe at a time).
void check_traces(hessian::ProbeScope scope, hessian::StopRule rule, int probe_ranks, bool shard = false,
                  int in_flight = 1, hessian::ProbeBatching batching = hessian::ProbeBatching::kFunctorch) {
  Problem s;
  TracesOptions o = hutchinson(scope, rule);
  auto want = compute_traces(s.ctx(*s.local), o);
  o.probe_ranks = probe_ranks;
  o.shard_batch = shard;
  o.trace.in_flight = in_flight;
  o.trace.batching = batching;
  auto got = compute_traces(s.ctx(world()), o);
  if (shard && in_flight == 1) {
    // Every rank computes every probe on its shard: the work is the unsharded one times the ranks
    // holding samples (all of them unless a batch, of 3 here, has fewer samples than there are ranks).
    EXPECT_EQ(got.hvps, want.hvps * std::min<std::int64_t>(world().size(), 3));
  }
  EXPECT_EQ(got.num_batches(), 11u);
  EXPECT_EQ(got.probes, want.probes);
  EXPECT_EQ(got.converged, want.converged);
  expect_close(got.mean, want.mean, 1e-10, "mean");
  expect_close(got.std_error, want.std_error, 1e-10, "std_error");
  expect_close(got.batch_loss, want.batch_loss, 1e-12, "batch_loss");
  expect_close(got.layer_max, want.layer_max, 1e-10, "layer_max");
  expect_close(got.layer_mean, want.layer_mean, 1e-10, "layer_mean");
}

}  // namespace

TEST(MpiMeasures, TracesShardedByBatch) {
  check_traces(hessian::ProbeScope::kJoint, hessian::StopRule::kReference, 1);
  check_traces(hessian::ProbeScope::kLayer, hessian::StopRule::kStandardError, 1);
}

TEST(MpiMeasures, SketchingTraceEstimatorsShardedByBatch) {
  for (auto e : {hessian::TraceEstimator::kHutchPlusPlus, hessian::TraceEstimator::kXTrace}) {
    Problem s;
    const TracesOptions o = sketching(e);
    auto want = compute_traces(s.ctx(*s.local), o);
    auto got = compute_traces(s.ctx(world()), o);
    EXPECT_EQ(got.probes, want.probes);
    expect_close(got.mean, want.mean, 1e-10, "mean");
    expect_close(got.std_error, want.std_error, 1e-10, "std_error");
    EXPECT_EQ(got.hvps, want.hvps);
  }
}

TEST(MpiMeasures, TracesWithProbesSplitAcrossRanks) {
  // All ranks in one group, and (with 4 ranks) two groups of two.
  check_traces(hessian::ProbeScope::kJoint, hessian::StopRule::kStandardError, world().size());
  check_traces(hessian::ProbeScope::kLayer, hessian::StopRule::kStandardError, world().size());
  if (world().size() % 2 == 0) check_traces(hessian::ProbeScope::kLayer, hessian::StopRule::kReference, 2);
}

// --probes-in-flight 3 (joint probes batched through one backward pass) with the batches sharded over the
// ranks, the probes split over them, or every batch's samples sharded: the single-process one-probe-at-a-
// time result.
TEST(MpiMeasures, TracesWithProbesInFlight) {
  check_traces(hessian::ProbeScope::kJoint, hessian::StopRule::kReference, 1, false, 3);
  check_traces(hessian::ProbeScope::kJoint, hessian::StopRule::kStandardError, world().size(), false, 3);
  check_traces(hessian::ProbeScope::kJoint, hessian::StopRule::kReference, 1, /*shard=*/true, 3);
  check_traces(hessian::ProbeScope::kJoint, hessian::StopRule::kReference, 1, /*shard=*/true, 3,
               hessian::ProbeBatching::kLegacy);
}

// --shard-batch: every rank holds a shard of each batch of 3 (with 4 ranks one shard is empty) and the
// probe values, or block products, are summed over the ranks; the single-process whole-batch result is
// the oracle.
TEST(MpiMeasures, TracesWithShardedBatches) {
  const std::vector<std::pair<hessian::ProbeScope, hessian::StopRule>> cases{
      {hessian::ProbeScope::kJoint, hessian::StopRule::kReference},
      {hessian::ProbeScope::kLayer, hessian::StopRule::kStandardError}};
  for (const auto& [scope, rule] : cases) check_traces(scope, rule, 1, /*shard=*/true);
  for (auto e : {hessian::TraceEstimator::kHutchPlusPlus, hessian::TraceEstimator::kXTrace}) {
    Problem s;
    TracesOptions o = sketching(e);
    auto want = compute_traces(s.ctx(*s.local), o);
    o.shard_batch = true;
    auto got = compute_traces(s.ctx(world()), o);
    EXPECT_EQ(got.probes, want.probes);
    expect_close(got.mean, want.mean, 1e-9, "mean");
    expect_close(got.std_error, want.std_error, 1e-8, "std_error");
  }
}

// Batches sharded round robin, and (--shard-batch, joint and block modes) every batch's samples split over
// the ranks with the forms summed; with 4 ranks one shard of each batch of 3 is empty.
TEST(MpiMeasures, DistanceMeasure) {
  const std::vector<std::pair<hessian::MeasureMode, bool>> cases{
      {hessian::MeasureMode::kJoint, false}, {hessian::MeasureMode::kBlock, false},
      {hessian::MeasureMode::kPsd, false},   {hessian::MeasureMode::kJoint, true},
      {hessian::MeasureMode::kBlock, true}};
  for (const auto& [mode, shard] : cases) {
    Problem s;
    auto params = models::parameters_by_name(*s.model, s.model->hessian_layers());
    std::map<std::string, torch::Tensor> init = {{"fc0.weight", params[0].detach() * 0.9}};
    DistanceOptions o;
    o.mode = mode;
    o.train_size = 500;
    o.psd.steps = 6;  // fewer than the blocks' sizes: a truncated quadrature, still rank-independent
    auto want = compute_distance(s.ctx(*s.local), o, init);
    o.shard_batch = shard;
    auto got = compute_distance(s.ctx(world()), o, init);
    expect_close(got.quad, want.quad, 1e-12, "quad");
    expect_close(got.batch_loss, want.batch_loss, 1e-12, "batch_loss");
    if (mode == hessian::MeasureMode::kPsd) {
      ASSERT_TRUE(got.block && want.block);
      expect_close(got.block->quad, want.block->quad, 1e-12, "block quad");
      EXPECT_EQ(got.psd_steps, want.psd_steps);
      EXPECT_EQ(got.psd_converged, want.psd_converged);
    }
    expect_close(got.layer_max, want.layer_max, 1e-12, "layer_max");
    EXPECT_NEAR(got.bound_c, want.bound_c, 1e-12 * (1 + want.bound_c));
    EXPECT_NEAR(got.max_loss, want.max_loss, shard ? 1e-12 : 0.0);  // shards' loss shares: summed
  }
}

TEST(MpiMeasures, StabilityAndEval) {
  Problem s;
  StabilityOptions o;
  o.eps = 0.02;
  o.repeats = 5;
  o.seed = 3;
  auto want = compute_stability(s.ctx(*s.local), o);
  auto got = compute_stability(s.ctx(world()), o);
  EXPECT_EQ(got.num_samples, want.num_samples);
  EXPECT_NEAR(got.base_loss, want.base_loss, 1e-13);
  // Loss sums are added in a different order across ranks: agreement to rounding.
  expect_close(got.deltas, want.deltas, 1e-11, "deltas");
  auto e1 = evaluate(s.ctx(*s.local));
  auto e2 = evaluate(s.ctx(world()));
  EXPECT_EQ(e2.correct, e1.correct);
  EXPECT_EQ(e2.num_samples, e1.num_samples);
  EXPECT_NEAR(e2.loss, e1.loss, 1e-13);
}

// The default order of the CLI (--sample-order random): batches from a permutation keyed by the seed, the
// same on every rank, so every measure still equals the single-process result.
TEST(MpiMeasures, RandomSampleOrder) {
  Problem s;
  auto shuffled = [&](comm::Communicator& c) {
    MeasureContext m = s.ctx(c);
    m.plan.shuffle = true;
    m.plan.seed = 29;
    m.plan.sample_size = 13;  // reference rule: 5 batches (15 samples) of a 37-sample permutation
    return m;
  };
  TracesOptions t;
  t.trace.max_probes = 6;
  t.trace.seed = 2;
  auto tw = compute_traces(shuffled(*s.local), t);
  auto tg = compute_traces(shuffled(world()), t);
  EXPECT_EQ(tg.num_batches(), 5u);
  EXPECT_EQ(tg.probes, tw.probes);
  expect_close(tg.mean, tw.mean, 1e-10, "mean");
  expect_close(tg.batch_loss, tw.batch_loss, 1e-12, "batch_loss");
  // Not the natural order's first batches.
  auto natural = compute_traces(s.ctx(*s.local), t);
  EXPECT_NE(tw.batch_loss[0], natural.batch_loss[0]);

  auto params = models::parameters_by_name(*s.model, s.model->hessian_layers());
  std::map<std::string, torch::Tensor> init = {{"fc0.weight", params[0].detach() * 0.8}};
  DistanceOptions d;
  d.train_size = 100;
  auto dw = compute_distance(shuffled(*s.local), d, init);
  auto dg = compute_distance(shuffled(world()), d, init);
  expect_close(dg.quad, dw.quad, 1e-12, "quad");

  EvalOptions e;
  e.per_sample = true;
  auto ew = evaluate(shuffled(*s.local), e);
  auto eg = evaluate(shuffled(world()), e);
  EXPECT_EQ(eg.sample_ids, ew.sample_ids);  // the permutation's order, whatever the rank count
  EXPECT_EQ(eg.correct, ew.correct);
  expect_close(eg.losses, ew.losses, 1e-13, "losses");

  StabilityOptions o;
  o.eps = 0.02;
  o.repeats = 3;
  auto sw = compute_stability(shuffled(*s.local), o);
  auto sg = compute_stability(shuffled(world()), o);
  EXPECT_EQ(sg.num_samples, 15);
  expect_close(sg.deltas, sw.deltas, 1e-11, "deltas");
}

HG_MPI_TEST_MAIN()

// The mean-loss Hessian's Lanczos run and SLQ over the world equal the single-process run: the HVPs are
// all-reduced sums of the ranks' batches, so every rank runs the same steps on the same vectors.
TEST(MpiMeasures, SpectrumEigenvaluesAndSlq) {
  Problem s;
  SpectrumOptions o;
  o.top_k = 3;
  o.lanczos_steps = 12;
  o.slq_probes = 2;
  o.seed = 5;
  const auto want = compute_spectrum(s.ctx(*s.local), o);
  const auto got = compute_spectrum(s.ctx(world()), o);
  EXPECT_EQ(got.steps, want.steps);
  expect_close(got.eigenvalues, want.eigenvalues, 1e-10, "eigenvalues");
  expect_close(got.alpha, want.alpha, 1e-10, "alpha");
  expect_close(got.beta, want.beta, 1e-10, "beta");
  for (std::size_t p = 0; p < want.slq_nodes.size(); ++p) {
    expect_close(got.slq_nodes[p], want.slq_nodes[p], 1e-9, "slq nodes");
    expect_close(got.slq_weights[p], want.slq_weights[p], 1e-9, "slq weights");
  }
  EXPECT_EQ(got.hvps, want.hvps);
}

// --per-layer, power iteration and the landscape over the world equal the single-process run.
TEST(MpiMeasures, SpectrumPerLayerPowerAndLandscape) {
  Problem s;
  SpectrumOptions o;
  o.top_k = 2;
  o.lanczos_steps = 5;
  o.per_layer = true;
  o.slq_probes = 1;
  const auto want = compute_spectrum(s.ctx(*s.local), o);
  const auto got = compute_spectrum(s.ctx(world()), o);
  ASSERT_EQ(got.per_layer.size(), want.per_layer.size());
  for (std::size_t i = 0; i < want.per_layer.size(); ++i) {
    expect_close(got.per_layer[i].eigenvalues, want.per_layer[i].eigenvalues, 1e-10, "per-layer eigenvalues");
    expect_close(got.per_layer[i].slq_nodes[0], want.per_layer[i].slq_nodes[0], 1e-9, "per-layer slq");
  }
  SpectrumOptions p;
  p.method = SpectrumMethod::kPower;
  p.top_k = 2;
  p.max_iter = 15;
  p.landscape_points = 3;
  p.landscape_radius = 0.1;
  const auto pw = compute_spectrum(s.ctx(*s.local), p);
  const auto pg = compute_spectrum(s.ctx(world()), p);
  expect_close(pg.eigenvalues, pw.eigenvalues, 1e-10, "power eigenvalues");
  EXPECT_EQ(pg.iterations, pw.iterations);
  expect_close(pg.landscape_loss, pw.landscape_loss, 1e-12, "landscape");
}
