// GPU checks (label gpu; every test skips without CUDA): HVPs, traces and quadratic forms on a CUDA
// device equal the CPU float64 results (oracle) for the small MLP and the ResNet-20 with its weights;
// with NCCL, the NCCL communicator sums CUDA tensors (one rank: NCCL refuses two ranks on one GPU).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>

#include "comm/communicator.h"
#include "hessian/device_graph.h"
#include "hessian/hutchinson.h"
#include "hessian/hvp_engine.h"
#include "hessian/joint_probes.h"
#include "hessian/probe_unit.h"
#include "hessian/probes.h"
#include "hessian/quadratic_forms.h"
#include "io/checkpoint.h"
#include "measures/measure_context.h"
#include "models/registry.h"
#include "train/trainer.h"
#include "tests/support/tensor_dataset.h"

#if HG_WITH_NCCL
#include "comm/mpi/mpi_communicator.h"
#include "comm/nccl/nccl_communicator.h"
#endif

using namespace hessgap;

namespace {

#define SKIP_WITHOUT_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

struct Run {
  std::vector<double> quad_joint, quad_block, traces;
  std::vector<torch::Tensor> hv;
};

Run run_on(const std::string& arch, const std::string& ckpt, torch::Device device, torch::Dtype dtype,
           const data::Batch& cpu_batch, int in_flight = 1,
           hessian::ProbeBatching batching = hessian::ProbeBatching::kFunctorch) {
  torch::manual_seed(3);
  auto model = models::make_model(arch, 10);
  if (!ckpt.empty()) io::load_state_dict(*model, io::read_checkpoint(ckpt));
  model->to(device, dtype);
  auto params = measures::prepare_hessian_params(*model);
  auto batch = cpu_batch.to(device, dtype);
  hessian::HvpEngine engine(measures::batch_loss(*model, batch), params);
  std::vector<torch::Tensor> v;
  for (std::size_t i = 0; i < params.size(); ++i) {
    v.push_back(hessian::draw_probe(params[i], hessian::ProbeDistribution::kGaussian, 1, 0, 0, static_cast<std::int64_t>(i)));
  }
  Run r;
  r.hv = engine.hvp(v);
  for (auto& t : r.hv) t = t.to(torch::kCPU, torch::kFloat64);
  r.quad_joint = hessian::quadratic_forms(engine, v, hessian::MeasureMode::kJoint);
  r.quad_block = hessian::quadratic_forms(engine, v, hessian::MeasureMode::kBlock);
  hessian::TraceOptions o;
  o.max_probes = 5;
  o.min_probes = 5;
  o.in_flight = in_flight;
  o.batching = batching;
  auto local = comm::make_local();
  r.traces = hessian::estimate_traces(engine, o, 0, *local).mean;
  return r;
}

void compare(const Run& got, const Run& want, double rel) {
  for (std::size_t i = 0; i < want.hv.size(); ++i) {
    const double scale = want.hv[i].abs().max().item<double>() + 1e-30;
    EXPECT_LT((got.hv[i] - want.hv[i]).abs().max().item<double>() / scale, rel) << "hv block " << i;
    EXPECT_NEAR(got.quad_joint[i], want.quad_joint[i], rel * (1 + std::abs(want.quad_joint[i])));
    EXPECT_NEAR(got.quad_block[i], want.quad_block[i], rel * (1 + std::abs(want.quad_block[i])));
    EXPECT_NEAR(got.traces[i], want.traces[i], rel * (1 + std::abs(want.traces[i])));
  }
}

data::Batch cifar_batch() {
  torch::manual_seed(9);
  data::Batch b;
  b.inputs = torch::randn({4, 3, 32, 32});
  b.labels = torch::tensor({0, 3, 5, 9}, torch::kInt64);
  return b;
}

std::string resnet20_path() { return std::string(HG_SOURCE_DIR) + "/assets/models/cifar10-resnet20/resnet20.safetensors"; }

}  // namespace

TEST(Gpu, Resnet20Float64MatchesCpu) {
  SKIP_WITHOUT_CUDA();
  auto b = cifar_batch();
  auto want = run_on("cifar-resnet20", resnet20_path(), torch::kCPU, torch::kFloat64, b);
  auto got = run_on("cifar-resnet20", resnet20_path(), torch::Device("cuda"), torch::kFloat64, b);
  compare(got, want, 1e-8);
}

// --probes-in-flight 4 on the device (5 probes: one batched round of 4, then 1), both --probe-batching
// ways, against one probe at a time on the CPU.
TEST(Gpu, BatchedProbesOnTheDeviceMatchTheCpu) {
  SKIP_WITHOUT_CUDA();
  auto b = cifar_batch();
  auto want = run_on("cifar-resnet20", resnet20_path(), torch::kCPU, torch::kFloat64, b);
  for (auto how : {hessian::ProbeBatching::kFunctorch, hessian::ProbeBatching::kLegacy}) {
    SCOPED_TRACE(hessian::to_string(how));
    auto got = run_on("cifar-resnet20", resnet20_path(), torch::Device("cuda"), torch::kFloat64, b, 4, how);
    compare(got, want, 1e-8);
  }
}

TEST(Gpu, Resnet20Float32NoTf32MatchesCpuFloat64) {
  SKIP_WITHOUT_CUDA();
  at::globalContext().setAllowTF32CuBLAS(false);
  at::globalContext().setAllowTF32CuDNN(false);
  auto b = cifar_batch();
  auto want = run_on("cifar-resnet20", resnet20_path(), torch::kCPU, torch::kFloat64, b);
  auto got = run_on("cifar-resnet20", resnet20_path(), torch::Device("cuda"), torch::kFloat32, b);
  compare(got, want, 2e-3);
}

TEST(Gpu, RademacherProbesOnTheDeviceEqualTheHostDraws) {
  SKIP_WITHOUT_CUDA();
  for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
    auto cpu = torch::zeros({17, 3, 65}, dtype);
    auto want = hessian::draw_probe(cpu, hessian::ProbeDistribution::kRademacher, 4, 1, 2, 3);
    auto got = hessian::draw_probe(cpu.to(torch::kCUDA), hessian::ProbeDistribution::kRademacher, 4, 1, 2, 3);
    EXPECT_TRUE(got.is_cuda());
    EXPECT_TRUE(torch::equal(got.cpu(), want));
  }
}

TEST(Gpu, JointRademacherOnTheDeviceEqualsTheHostDraws) {
  // The joint trace path's draw on the GPU: SplitMix64 in CUDA int64 arithmetic must wrap and shift
  // exactly as the host's uint64 does, and the byte order of the words must be the host's.
  SKIP_WITHOUT_CUDA();
  for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
    std::vector<torch::Tensor> cpu{torch::zeros({17, 3, 65}, dtype), torch::zeros({1}, dtype), torch::zeros({64, 64}, dtype)};
    std::vector<torch::Tensor> cuda;
    for (const auto& t : cpu) cuda.push_back(t.to(torch::kCUDA));
    const hessian::JointRademacher drawer(cuda);
    const auto one = drawer.draw_one(4, 1, 2);
    const auto many = drawer.draw(4, 1, 0, 3);
    for (std::size_t i = 0; i < cpu.size(); ++i) {
      const auto layer = static_cast<std::int64_t>(i);
      EXPECT_TRUE(one[i].is_cuda());
      EXPECT_TRUE(torch::equal(one[i].cpu(), hessian::draw_probe(cpu[i], hessian::ProbeDistribution::kRademacher, 4, 1, 2, layer)));
      for (std::int64_t j = 0; j < 3; ++j) {
        EXPECT_TRUE(torch::equal(many[i][j].cpu(), hessian::draw_probe(cpu[i], hessian::ProbeDistribution::kRademacher, 4, 1, j, layer)));
      }
    }
  }
}

TEST(Gpu, Dots64OnTheDeviceEqualsTheHost) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(1);
  std::vector<torch::Tensor> a{torch::randn({1000}, torch::kFloat64), torch::randn({3, 7}, torch::kFloat64)};
  std::vector<torch::Tensor> b{torch::randn({1000}, torch::kFloat64), torch::randn({3, 7}, torch::kFloat64)};
  const auto want = hessian::dots64(a, b);
  const auto got = hessian::dots64({a[0].cuda(), a[1].cuda()}, {b[0].cuda(), b[1].cuda()});
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-12 * (1 + std::abs(want[i])));
}

// --cuda-graphs: the probe captured once and replayed with new keys gives each probe's eager values (the
// capture must read its input from the refreshed keys, not from the probe it was captured with), one
// product counted per probe; and the traces through the graph equal the eager ones.
TEST(Gpu, CudaGraphReplaysEqualTheEagerProbes) {
  SKIP_WITHOUT_CUDA();
  ASSERT_TRUE(hessian::cuda_graphs_built());
  for (auto dtype : {torch::kFloat64, torch::kFloat32}) {
    SCOPED_TRACE(dtype == torch::kFloat64 ? "float64" : "float32");
    torch::manual_seed(3);
    auto model = models::make_model("cifar-resnet20", 10);
    io::load_state_dict(*model, io::read_checkpoint(resnet20_path()));
    model->to(torch::kCUDA, dtype);
    auto params = measures::prepare_hessian_params(*model);
    auto batch = cifar_batch().to(torch::kCUDA, dtype);
    const double rel = dtype == torch::kFloat64 ? 1e-10 : 1e-4;
    hessian::TraceOptions o;
    o.max_probes = 6;
    o.min_probes = 6;
    o.seed = 2;
    auto local = comm::make_local();
    hessian::LayerTraces eager, graphed;
    {
      const hessian::SideStreamScope side(torch::kCUDA, true);
      hessian::HvpEngine engine(measures::batch_loss(*model, batch), params);
      const hessian::JointRademacher drawer(params);
      hessian::ProbeUnit unit(engine, drawer, /*graph=*/true);
      for (std::int64_t probe = 0; probe < 5; ++probe) {
        const long before = engine.products();
        const auto got = unit.values(2, 0, probe);
        EXPECT_EQ(engine.products(), before + 1);
        EXPECT_EQ(unit.captured(), probe >= hessian::ProbeUnit::kEagerProbes);
        const auto z = drawer.draw_one(2, 0, probe);
        const auto want = hessian::dots64(z, engine.hvp(z));
        for (std::size_t i = 0; i < want.size(); ++i) {
          EXPECT_NEAR(got[i], want[i], rel * (1 + std::abs(want[i]))) << "probe " << probe << " layer " << i;
        }
      }
      eager = hessian::estimate_traces(engine, o, 0, *local);
      o.cuda_graphs = true;
      graphed = hessian::estimate_traces(engine, o, 0, *local);
      o.cuda_graphs = false;
    }
    EXPECT_EQ(graphed.probes, eager.probes);
    EXPECT_EQ(graphed.hvps_computed, eager.hvps_computed);
    for (std::size_t i = 0; i < eager.mean.size(); ++i) {
      EXPECT_NEAR(graphed.mean[i], eager.mean[i], rel * (1 + std::abs(eager.mean[i]))) << "layer " << i;
    }
  }
}

TEST(Gpu, TrainingOnTheDeviceEqualsTheCpuAndResumesBitwise) {
  // A float64 MLP fine-tuned with constraints and the reweighted loss: CUDA equals CPU to 1e-10, and a run
  // stopped after one epoch and resumed from last.h5 (optimizer state through LibTorch 2.x's state map)
  // ends where the uninterrupted CUDA run does.
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(21);
  auto x = torch::randn({40, 5}, torch::kFloat64);
  auto y = torch::randint(0, 3, {40}, torch::kInt64);
  hessgap::testing::TensorDataset data(x, y, 3);
  train::TrainData td;
  td.train = &data;
  for (std::int64_t i = 0; i < 40; ++i) {
    (i % 5 == 0 ? td.valid_ids : td.train_ids).push_back(i);
    td.train_labels.push_back(y[i].item<std::int64_t>());
  }
  train::TrainerOptions o;
  o.epochs = 3;
  o.batch_size = 8;
  o.optimizer.lr = 0.05;
  o.reg_method = "constraint";
  o.groups = {{"body", "", "head", 0.3, true}, {"head", "head", "", 0.8, false}};
  auto build = [](torch::Device d) {
    torch::manual_seed(5);
    auto m = models::make_model("mlp:in=5,hidden=4,act=tanh", 3);
    m->to(d, torch::kFloat64);
    return m;
  };
  auto local = comm::make_local();
  auto cpu = build(torch::kCPU);
  train::fine_tune(*cpu, td, o, *local, torch::kCPU);
  auto gpu = build(torch::kCUDA);
  // A fresh folder from mkdtemp: std::filesystem::remove_all resolves to the PyTorch wheel's own copy in
  // libtorch.so on the GPU machine and crashes there (seen on an H200 with torch 2.11).
  char tmpl[] = "/tmp/hg-gpu-train-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  o.out_dir = dir;
  o.run_id = "gpu";
  o.stop_after_epochs = 1;
  train::fine_tune(*gpu, td, o, *local, torch::kCUDA);
  o.stop_after_epochs = 0;
  o.resume = true;
  auto resumed = build(torch::kCUDA);
  train::fine_tune(*resumed, td, o, *local, torch::kCUDA);
  const auto a = io::state_dict_of(*cpu), b = io::state_dict_of(*resumed);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_LT((a[i].second - b[i].second.cpu()).abs().max().item<double>(), 1e-10) << a[i].first;
  }
}

#if HG_WITH_NCCL
TEST(Gpu, NcclSumsCudaTensorsAtOneRank) {
  SKIP_WITHOUT_CUDA();
  int argc = 0;
  char** argv = nullptr;
  comm::MpiSession session(&argc, &argv);
  auto nccl = comm::make_nccl_communicator(session.world(), 0);
  EXPECT_EQ(nccl->backend(), "nccl");
  auto t = torch::arange(6, torch::TensorOptions().dtype(torch::kFloat32).device(torch::kCUDA));
  nccl->all_reduce_sum(t);
  EXPECT_TRUE(torch::equal(t.cpu(), torch::arange(6, torch::kFloat32) * nccl->size()));
  EXPECT_DOUBLE_EQ(nccl->sum(2.0), 2.0 * nccl->size());
  auto sub = nccl->split(0, nccl->rank());
  auto u = torch::ones({3}, torch::TensorOptions().dtype(torch::kFloat64).device(torch::kCUDA));
  sub->all_reduce_sum(u);
  EXPECT_DOUBLE_EQ(u.sum().item<double>(), 3.0 * sub->size());
  // The MPI communicator's host fallback for a CUDA tensor (copy out, MPI, copy back), and the node split.
  auto mpi = session.world();
  auto w = torch::full({4}, 2.5, torch::TensorOptions().dtype(torch::kFloat64).device(torch::kCUDA));
  mpi->all_reduce_sum(w);
  EXPECT_TRUE(w.is_cuda());
  EXPECT_DOUBLE_EQ(w.sum().item<double>(), 10.0 * mpi->size());
  EXPECT_EQ(nccl->split_node()->rank(), 0);
}
#endif
