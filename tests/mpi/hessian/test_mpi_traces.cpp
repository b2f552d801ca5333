// Probes split across the ranks of a group give exactly the single-process estimates: same probes
// used, same per-layer means and standard errors (oracle: estimate_traces on a local communicator
// in the same process).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "hessian/hutchinson.h"
#include "hessian/hvp_engine.h"
#include "tests/mpi/mpi_test_main.h"

using namespace hessgap;
using namespace hessgap::hessian;
using hessgap::testing::world;

namespace {

// A small tanh MLP loss in float64 with three weight layers; identical on every rank (seeded).
struct Mlp {
  torch::Tensor x, y, w1, w2, w3;
  Mlp() {
    torch::manual_seed(11);
    x = torch::randn({8, 6}, torch::kFloat64);
    y = torch::randint(0, 3, {8}, torch::kInt64);
    w1 = (torch::randn({5, 6}, torch::kFloat64) * 0.6).requires_grad_();
    w2 = (torch::randn({4, 5}, torch::kFloat64) * 0.6).requires_grad_();
    w3 = (torch::randn({3, 4}, torch::kFloat64) * 0.6).requires_grad_();
  }
  HvpEngine engine() {
    auto h = torch::tanh(x.mm(w1.t()));
    h = torch::tanh(h.mm(w2.t()));
    auto loss = torch::nn::functional::cross_entropy(h.mm(w3.t()), y);
    return HvpEngine(loss, {w1, w2, w3});
  }
};

void compare(const TraceOptions& opts) {
  Mlp m;
  auto e1 = m.engine();
  auto local = comm::make_local();
  auto want = estimate_traces(e1, opts, /*batch_id=*/4, *local);
  auto e2 = m.engine();
  auto got = estimate_traces(e2, opts, 4, world());
  ASSERT_EQ(got.mean.size(), want.mean.size());
  for (std::size_t i = 0; i < want.mean.size(); ++i) {
    EXPECT_EQ(got.probes[i], want.probes[i]) << "layer " << i;
    EXPECT_NEAR(got.mean[i], want.mean[i], 1e-12 * (1 + std::abs(want.mean[i]))) << "layer " << i;
    EXPECT_NEAR(got.std_error[i], want.std_error[i], 1e-12 * (1 + std::abs(want.std_error[i])));
  }
  EXPECT_EQ(got.converged, want.converged);
  // Each rank computed only its share of the probes (plus at most one round of discarded ones).
  const long max_probe = *std::max_element(want.probes.begin(), want.probes.end());
  const long per_probe = opts.scope == ProbeScope::kJoint ? 1 : static_cast<long>(want.mean.size());
  EXPECT_LE(got.hvps_computed, per_probe * ((max_probe + world().size() - 1) / world().size() + 1));
}

}  // namespace

TEST(MpiTraces, JointReferenceRule) {
  TraceOptions o;
  o.tol = 1e-3;
  o.max_probes = 60;
  compare(o);
}

TEST(MpiTraces, LayerScopeStandardErrorRule) {
  TraceOptions o;
  o.scope = ProbeScope::kLayer;
  o.rule = StopRule::kStandardError;
  o.rel_se = 0.15;
  o.min_probes = 4;
  o.max_probes = 80;
  compare(o);
}

TEST(MpiTraces, GaussianJointStandardErrorRule) {
  TraceOptions o;
  o.distribution = ProbeDistribution::kGaussian;
  o.rule = StopRule::kStandardError;
  o.rel_se = 0.2;
  o.min_probes = 3;
  o.max_probes = 41;
  compare(o);
}

HG_MPI_TEST_MAIN()
