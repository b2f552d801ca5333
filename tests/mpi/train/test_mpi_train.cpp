// Data-parallel fine-tuning over the MPI world equals the single-process run computed in the same
// process (oracle) for a model without BatchNorm or dropout, whatever the number of ranks (float64, to
// 1e-10): the same global batches, shards reduced as sums divided by the global batch size, one flat
// gradient all-reduce per step. Ranks with empty shards still take every step. With BatchNorm every
// rank ends with rank 0's weights and buffers (DDP's semantics), bit for bit.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "data/sampler.h"
#include "io/checkpoint.h"
#include "models/registry.h"
#include "tests/mpi/mpi_test_main.h"
#include "tests/support/tensor_dataset.h"
#include "train/reweight.h"
#include "train/trainer.h"

using namespace hessgap;
using namespace hessgap::train;
using hessgap::testing::world;
namespace fs = std::filesystem;

namespace {

double max_diff(const io::StateDict& a, const io::StateDict& b) {
  std::map<std::string, torch::Tensor> by_name(b.begin(), b.end());
  double d = a.size() == b.size() ? 0.0 : 1e300;
  for (const auto& [n, t] : a) {
    auto it = by_name.find(n);
    d = it == by_name.end() ? 1e300 : std::max(d, (t.to(torch::kFloat64) - it->second.to(torch::kFloat64)).abs().max().item<double>());
  }
  return d;
}

struct Fixture {
  std::unique_ptr<hessgap::testing::TensorDataset> data = hessgap::testing::small_dataset(41);
  TrainData td;
  TrainerOptions o;
  Fixture(std::int64_t batch) {
    td.train = data.get();
    const auto split = data::split_train_valid(data->size(), 0.2, 5);
    td.train_ids = split.train;
    td.valid_ids = split.valid;
    for (std::int64_t i = 0; i < data->size(); ++i) td.train_labels.push_back((data->label(i) + (i % 4 == 0)) % 3);
    td.test = data.get();
    o.epochs = 3;
    o.batch_size = batch;
    o.eval_batch_size = 7;
    o.optimizer.lr = 0.05;
    o.step_size = 2;
    o.seed = 9;
    o.reg_method = "constraint";
    o.groups = {{"body", "", "head", 0.2, true}, {"head", "head", "", 0.7, false}};
    o.reweight = reweight_matrix(synthetic_transition_matrix(3, 0.25));
  }
};

void expect_same_as_one_process(std::int64_t batch, const std::string& reg) {
  Fixture s(batch);
  s.o.reg_method = reg;
  auto distributed = hessgap::testing::small_mlp(3);
  auto alone = hessgap::testing::small_mlp(3);
  auto local = comm::make_local();
  const TrainResult a = fine_tune(*alone, s.td, s.o, *local, torch::kCPU);
  const TrainResult d = fine_tune(*distributed, s.td, s.o, world(), torch::kCPU);
  EXPECT_LT(max_diff(io::state_dict_of(*alone), io::state_dict_of(*distributed)), 1e-10) << "batch " << batch << " " << reg;
  EXPECT_EQ(a.best_epoch, d.best_epoch);
  ASSERT_EQ(a.steps.size(), d.steps.size());
  for (std::size_t i = 0; i < a.steps.size(); ++i) {
    EXPECT_NEAR(a.steps[i].loss, d.steps[i].loss, 1e-10) << i;
    EXPECT_NEAR(a.steps[i].accuracy, d.steps[i].accuracy, 1e-12) << i;
  }
  EXPECT_NEAR(a.test.loss, d.test.loss, 1e-10);
  EXPECT_NEAR(a.train_clean.loss, d.train_clean.loss, 1e-10);
  EXPECT_NEAR(a.train_noisy.loss, d.train_noisy.loss, 1e-10);
  EXPECT_EQ(a.test.samples, d.test.samples);
}

}  // namespace

TEST(MpiTrain, EqualsOneProcessWithConstraints) { expect_same_as_one_process(8, "constraint"); }

TEST(MpiTrain, EqualsOneProcessWithThePenalty) { expect_same_as_one_process(8, "penalty"); }

TEST(MpiTrain, EmptyShardsStillTakeEveryStep) {
  // Batches of 2 at 4 ranks: two ranks hold nothing in every step.
  expect_same_as_one_process(2, "constraint");
}

TEST(MpiTrain, RankZeroWritesTheCheckpointsEveryRankReadsThemOnResume) {
  Fixture s(8);
  const std::string dir = std::string(HG_TEST_TMP) + "/mpi-train-np" + std::to_string(world().size());
  if (world().rank() == 0) {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  world().barrier();
  s.o.out_dir = dir;
  s.o.run_id = "mpi";
  s.o.stop_after_epochs = 2;
  auto first = hessgap::testing::small_mlp(3);
  fine_tune(*first, s.td, s.o, world(), torch::kCPU);
  s.o.stop_after_epochs = 0;
  s.o.resume = true;
  auto resumed = hessgap::testing::small_mlp(3);
  fine_tune(*resumed, s.td, s.o, world(), torch::kCPU);
  s.o.resume = false;
  s.o.out_dir = "";
  auto whole = hessgap::testing::small_mlp(3);
  fine_tune(*whole, s.td, s.o, world(), torch::kCPU);
  EXPECT_EQ(max_diff(io::state_dict_of(*whole), io::state_dict_of(*resumed)), 0.0);
  for (const char* f : {"epoch_0.h5", "best.h5", "last.h5"}) EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
}

TEST(MpiTrain, BatchNormRanksKeepIdenticalWeightsAndRankZerosBuffers) {
  torch::manual_seed(4);
  auto x = torch::randn({24, 2, 6, 6}, torch::kFloat64);
  auto y = torch::randint(0, 3, {24}, torch::kInt64);
  hessgap::testing::TensorDataset data(x, y, 3);
  TrainData td;
  td.train = &data;
  for (std::int64_t i = 0; i < 24; ++i) {
    td.train_ids.push_back(i);
    td.train_labels.push_back(y[i].item<std::int64_t>());
  }
  TrainerOptions o;
  o.epochs = 2;
  o.batch_size = 6;
  o.optimizer.lr = 0.01;
  o.reg_method = "constraint";
  o.groups = {{"body", "", "fc", 0.5, true}};
  torch::manual_seed(8);
  auto model = models::make_model("small-cnn:in=2,c1=3,c2=4", 3);
  model->to(torch::kFloat64);
  fine_tune(*model, td, o, world(), torch::kCPU);
  // Every rank holds the same weights and buffers: their sums and sums of squares agree exactly.
  std::vector<double> mine;
  for (const auto& [n, t] : io::state_dict_of(*model)) {
    mine.push_back(t.to(torch::kFloat64).sum().item<double>());
    mine.push_back(t.to(torch::kFloat64).pow(2).sum().item<double>());
  }
  const std::vector<double> all = world().all_gather(mine);
  for (int r = 1; r < world().size(); ++r) {
    for (std::size_t i = 0; i < mine.size(); ++i) EXPECT_EQ(all[r * mine.size() + i], all[i]) << "rank " << r << " value " << i;
  }
}

TEST(MpiTrain, SyncBatchNormEqualsOneProcess) {
  // A BatchNorm CNN with --sync-bn: the same weights and running statistics as one process (float64,
  // 1e-10), including batches of 2 at 4 ranks where two shards are empty.
  torch::manual_seed(4);
  auto x = torch::randn({26, 2, 5, 5}, torch::kFloat64);
  auto y = torch::randint(0, 3, {26}, torch::kInt64);
  hessgap::testing::TensorDataset data(x, y, 3);
  for (std::int64_t batch : {6, 2}) {
    TrainData td;
    td.train = &data;
    const auto split = data::split_train_valid(26, 0.25, 1);
    td.train_ids = split.train;
    td.valid_ids = split.valid;
    for (std::int64_t i = 0; i < 26; ++i) td.train_labels.push_back(y[i].item<std::int64_t>());
    TrainerOptions o;
    o.epochs = 2;
    o.batch_size = batch;
    o.optimizer.lr = 0.01;
    o.sync_bn = true;
    o.reg_method = "constraint";
    o.groups = {{"body", "", "fc", 0.5, true}};
    auto build = [] {
      torch::manual_seed(8);
      auto m = models::make_model("small-cnn:in=2,c1=3,c2=4", 3);
      m->to(torch::kFloat64);
      return m;
    };
    auto alone = build();
    auto distributed = build();
    auto local = comm::make_local();
    const TrainResult a = fine_tune(*alone, td, o, *local, torch::kCPU);
    const TrainResult d = fine_tune(*distributed, td, o, world(), torch::kCPU);
    EXPECT_LT(max_diff(io::state_dict_of(*alone), io::state_dict_of(*distributed)), 1e-10) << "batch " << batch;
    EXPECT_NEAR(a.valid.loss, d.valid.loss, 1e-10) << "batch " << batch;
  }
}

HG_MPI_TEST_MAIN()
