// The fine-tuning loop on one process (local communicator). Oracles: a hand-written reference loop
// (plain PyTorch ops: the reference's Algorithm 1 on the same batches) for the weights after training;
// LibTorch's own optimizer continued without interruption for the optimizer-state round trip; the
// projection bound (||W - W0|| <= r) after every step; an uninterrupted run for a resumed one (bitwise);
// the HDF5 checkpoint read back for the /state sections.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>

#include "comm/communicator.h"
#include "data/sampler.h"
#include "io/checkpoint.h"
#include "tests/support/error_of.h"
#include "tests/support/tensor_dataset.h"
#include "train/checkpoint_state.h"
#include "train/constraints.h"
#include "train/reweight.h"
#include "train/schedule.h"
#include "train/trainer.h"
#include "util/error.h"

using namespace hessgap;
using namespace hessgap::train;
namespace fs = std::filesystem;

namespace {

using hessgap::testing::error_of;

std::string tmp_dir(const std::string& name) {
  const fs::path p = fs::path(HG_TEST_TMP) / ("trainer-" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

// Largest |a - b| over tensors matched by name (HDF5 checkpoints list them sorted by name).
double max_diff(const io::StateDict& a, const io::StateDict& b) {
  EXPECT_EQ(a.size(), b.size());
  std::map<std::string, torch::Tensor> by_name(b.begin(), b.end());
  double d = 0;
  for (const auto& [name, t] : a) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      ADD_FAILURE() << name << " is missing";
      continue;
    }
    d = std::max(d, (t.to(torch::kFloat64) - it->second.to(torch::kFloat64)).abs().max().item<double>());
  }
  return d;
}

io::StateDict snapshot(const torch::nn::Module& m) {
  io::StateDict out;
  for (const auto& [n, t] : io::state_dict_of(m)) out.emplace_back(n, t.clone());
  return out;
}

// 40 samples, 5 features, 3 classes; labels with some noise drawn here.
struct Problem {
  std::unique_ptr<hessgap::testing::TensorDataset> data = hessgap::testing::small_dataset(40);
  TrainData td() const {
    TrainData t;
    t.train = data.get();
    const auto split = data::split_train_valid(data->size(), 0.25, 3);
    t.train_ids = split.train;
    t.valid_ids = split.valid;
    for (std::int64_t i = 0; i < data->size(); ++i) t.train_labels.push_back(data->label(i));
    t.train_labels[static_cast<std::size_t>(t.train_ids[0])] = (t.train_labels[static_cast<std::size_t>(t.train_ids[0])] + 1) % 3;
    t.test = data.get();
    return t;
  }
};

TrainerOptions base_options() {
  TrainerOptions o;
  o.epochs = 4;
  o.batch_size = 8;
  o.eval_batch_size = 16;
  o.optimizer.lr = 0.05;
  o.step_size = 2;
  o.gamma = 0.5;
  o.seed = 11;
  return o;
}

}  // namespace

TEST(Trainer, WeightsEqualAHandWrittenReferenceLoop) {
  // Adam (amsgrad) + StepLR + reweighted loss + Frobenius projections, as Algorithm 1 on the batches
  // ShardedSampler forms; the oracle loop uses LibTorch's optimizer and plain tensor ops.
  Problem p;
  const TrainData td = p.td();
  TrainerOptions o = base_options();
  o.reg_method = "constraint";
  o.groups = {{"body", "", "head", 0.3, true}, {"head", "head", "", 0.8, false}};
  o.reweight = reweight_matrix(synthetic_transition_matrix(3, 0.2));
  o.reweight_epoch = 2;  // epoch 1 plain CE, then reweighted
  auto model = hessgap::testing::small_mlp(5);
  auto oracle = hessgap::testing::small_mlp(5);
  auto local = comm::make_local();
  const TrainResult r = fine_tune(*model, td, o, *local, torch::kCPU);

  const Reference ref = capture_reference(*oracle);
  auto opt = make_optimizer(*oracle, o.optimizer);
  data::SamplerOptions so;
  so.batch_size = o.batch_size;
  so.seed = o.seed;
  data::ShardedSampler sampler(td.train_ids, so);
  EarlyStopping es("max", o.patience);
  io::StateDict best;
  for (std::int64_t e = 0; e < o.epochs; ++e) {
    set_learning_rate(*opt, step_lr(o.optimizer.lr, e, o.step_size, o.gamma));
    oracle->train();
    for (const auto& ids : sampler.global_batches(e)) {
      opt->zero_grad();
      data::Batch b = td.train->get_batch(ids);
      std::vector<std::int64_t> y;
      for (auto id : ids) y.push_back(td.train_labels[static_cast<std::size_t>(id)]);
      b.labels = torch::tensor(y, torch::kInt64);
      const auto logits = oracle->forward(b);
      const auto loss = e + 1 >= o.reweight_epoch ? reweighted_cross_entropy(logits, b.labels, o.reweight)
                                                  : torch::nn::functional::cross_entropy(logits, b.labels);
      loss.backward();
      opt->step();
      project(*oracle, o.norm, o.groups, ref);
    }
    oracle->eval();
    torch::NoGradGuard ng;
    const auto vb = td.train->get_batch(td.valid_ids);
    const double acc = oracle->forward(vb).argmax(1).eq(vb.labels).to(torch::kFloat64).mean().item<double>();
    if (es.update(acc)) best = snapshot(*oracle);
  }
  EXPECT_LT(max_diff(io::state_dict_of(*model), best), 1e-12);
  EXPECT_EQ(r.best_epoch, es.best_epoch());
  EXPECT_EQ(r.epochs.size(), 4u);
  EXPECT_EQ(static_cast<std::int64_t>(r.steps.size()), 4 * sampler.num_batches());
  EXPECT_NEAR(r.epochs[3].lr, 0.05 * 0.5, 1e-15);  // StepLR(2, 0.5): epochs 2-3 at half the rate
  EXPECT_EQ(r.test.samples, 40);
  EXPECT_TRUE(r.finished);
  // The final train losses: clean labels and the training labels differ exactly at the flipped sample.
  EXPECT_NE(r.train_clean.loss, r.train_noisy.loss);
}

TEST(Trainer, EveryStepLeavesEachConstrainedTensorInsideItsBall) {
  for (const Norm norm : {Norm::kFrobenius, Norm::kMars}) {
    Problem p;
    TrainerOptions o = base_options();
    o.optimizer.lr = 0.2;  // large steps, so that projections happen
    o.reg_method = "constraint";
    o.norm = norm;
    o.groups = {{"body", "", "head", 0.05, true}, {"head", "head", "", 0.4, false}};
    auto model = hessgap::testing::small_mlp(6);
    const Reference ref = capture_reference(*model);
    std::int64_t checked = 0;
    o.on_step = [&](const StepRecord& s) {
      for (const auto& prm : model->named_parameters()) {
        if (prm.key().find("bias") != std::string::npos) continue;
        const bool head = prm.key().rfind("head", 0) == 0;
        const double r = head ? 0.4 : 0.05;
        const auto t = (head ? prm.value() : prm.value() - ref.at(prm.key())).detach();
        const double size = norm == Norm::kFrobenius ? t.norm().item<double>() : t.abs().sum(1).max().item<double>();
        EXPECT_LE(size, r * (1 + 1e-6)) << prm.key() << " at step " << s.step;
        ++checked;
      }
    };
    auto local = comm::make_local();
    const TrainResult res = fine_tune(*model, p.td(), o, *local, torch::kCPU);
    EXPECT_EQ(checked, 2 * static_cast<std::int64_t>(res.steps.size()));
    std::int64_t projected = 0;
    for (const auto& e : res.epochs) projected += e.projected;
    EXPECT_GT(projected, 0) << "the radii were meant to bind";
  }
}

TEST(Trainer, AKilledRunResumesToTheSameWeightsBitwise) {
  Problem p;
  const TrainData td = p.td();
  TrainerOptions o = base_options();
  o.reg_method = "constraint";
  o.groups = {{"body", "", "head", 0.3, true}, {"head", "head", "", 0.8, false}};
  o.epochs = 5;
  o.patience = 1;  // early stopping state must survive the resume too
  auto local = comm::make_local();

  const std::string whole_dir = tmp_dir("whole");
  o.out_dir = whole_dir;
  o.run_id = "r1";
  auto whole = hessgap::testing::small_mlp(7);
  const TrainResult a = fine_tune(*whole, td, o, *local, torch::kCPU);

  o.out_dir = tmp_dir("parts");
  o.stop_after_epochs = 2;
  auto first = hessgap::testing::small_mlp(7);
  const TrainResult b1 = fine_tune(*first, td, o, *local, torch::kCPU);
  EXPECT_FALSE(b1.finished);
  EXPECT_EQ(b1.epochs.size(), 2u);
  // A new process: the model is rebuilt from the pretrained weights, then resumes from last.h5.
  o.stop_after_epochs = 0;
  o.resume = true;
  auto second = hessgap::testing::small_mlp(7);
  const TrainResult b2 = fine_tune(*second, td, o, *local, torch::kCPU);
  EXPECT_EQ(b2.resumed_at_epoch, 2);
  EXPECT_EQ(max_diff(io::state_dict_of(*whole), io::state_dict_of(*second)), 0.0);
  ASSERT_EQ(a.epochs.size(), b2.epochs.size());
  ASSERT_EQ(a.steps.size(), b2.steps.size());
  for (std::size_t i = 0; i < a.steps.size(); ++i) EXPECT_EQ(a.steps[i].loss, b2.steps[i].loss) << i;
  EXPECT_EQ(a.best_epoch, b2.best_epoch);
  EXPECT_EQ(a.stopped_early, b2.stopped_early);
  EXPECT_EQ(a.test.loss, b2.test.loss);
  // last.h5 of both folders holds the same weights; epoch_0.h5 the pretrained ones.
  EXPECT_EQ(max_diff(io::read_checkpoint(o.out_dir + "/last.h5"), io::read_checkpoint(whole_dir + "/last.h5")), 0.0);
  EXPECT_EQ(max_diff(io::read_checkpoint(o.out_dir + "/best.h5"), io::read_checkpoint(whole_dir + "/best.h5")), 0.0);
  EXPECT_EQ(max_diff(io::read_checkpoint(o.out_dir + "/epoch_0.h5"), io::state_dict_of(*hessgap::testing::small_mlp(7))), 0.0);
}

TEST(Trainer, OptimizerStateRoundTripContinuesTheSameUpdate) {
  for (const std::string name : {"adam", "adamw"}) {
    auto a = hessgap::testing::small_mlp(3);
    auto b = hessgap::testing::small_mlp(3);
    OptimizerSpec spec;
    spec.name = name;
    spec.lr = 0.01;
    spec.weight_decay = name == "adamw" ? 0.1 : 0.0;
    auto oa = make_optimizer(*a, spec);
    auto x = torch::randn({6, 5}, torch::kFloat64);
    auto step = [&](models::Classifier& m, torch::optim::Optimizer& opt) {
      opt.zero_grad();
      data::Batch batch;
      batch.inputs = x;
      m.forward(batch).pow(2).sum().backward();
      opt.step();
    };
    for (int i = 0; i < 3; ++i) step(*a, *oa);
    const NamedTensors state = optimizer_state(*oa, *a);
    EXPECT_EQ(state.size(), (name == "adam" ? 4u : 3u) * a->parameters().size()) << name;  // amsgrad only for adam
    {
      torch::NoGradGuard ng;
      for (std::size_t i = 0; i < a->parameters().size(); ++i) b->parameters()[i].copy_(a->parameters()[i]);
    }
    auto ob = make_optimizer(*b, spec);
    load_optimizer_state(*ob, *b, state);
    step(*a, *oa);
    step(*b, *ob);
    EXPECT_EQ(max_diff(io::state_dict_of(*a), io::state_dict_of(*b)), 0.0) << name;
  }
  auto m = hessgap::testing::small_mlp(3);
  OptimizerSpec spec;
  auto opt = make_optimizer(*m, spec);
  NamedTensors bad{{"fc0.weight.step", torch::tensor(1, torch::kInt64)}, {"fc0.weight.exp_avg", torch::zeros({2, 2})}};
  EXPECT_NE(error_of([&] { load_optimizer_state(*opt, *m, bad); }).find("fc0.weight.exp_avg' has shape"), std::string::npos);
  NamedTensors stray{{"nothing.step", torch::tensor(1, torch::kInt64)}};
  EXPECT_NE(error_of([&] { load_optimizer_state(*opt, *m, stray); }).find("name no parameter"), std::string::npos);
}

TEST(Trainer, CheckpointSectionsRoundTripBesideTheModel) {
  const std::string path = tmp_dir("sections") + "/c.h5";
  auto m = hessgap::testing::small_mlp(2);
  NamedTensors extra{{"w.exp_avg", torch::arange(6, torch::kFloat64).view({2, 3})}, {"w.step", torch::tensor(7, torch::kInt64)}};
  io::write_checkpoint_h5(path, io::state_dict_of(*m), {{"run_id", "x"}}, {{"optimizer", extra}});
  std::map<std::string, std::string> meta;
  const auto weights = io::read_checkpoint(path, &meta);
  EXPECT_EQ(weights.size(), io::state_dict_of(*m).size());  // the sections are not model tensors
  EXPECT_EQ(meta["run_id"], "x");
  const auto back = io::read_checkpoint_section(path, "optimizer");
  ASSERT_EQ(back.size(), 2u);
  EXPECT_TRUE(torch::equal(back[0].second, extra[0].second));
  EXPECT_EQ(back[1].second.scalar_type(), torch::kInt64);
  EXPECT_EQ(back[1].second.item<std::int64_t>(), 7);
  EXPECT_NE(error_of([&] { io::read_checkpoint_section(path, "trainer"); }).find("has no trainer state"), std::string::npos);
}

// Batches turn to NaN after the first `good` reads (corrupt data appearing mid-run).
class PoisonedDataset : public hessgap::testing::TensorDataset {
 public:
  PoisonedDataset(const hessgap::testing::TensorDataset& base, int good)
      : TensorDataset(base.get_batch(all_ids(base.size())).inputs, base.get_batch(all_ids(base.size())).labels,
                      base.num_classes()),
        good_(good) {}
  data::Batch get_batch(const std::vector<std::int64_t>& ids) const override {
    data::Batch b = TensorDataset::get_batch(ids);
    if (++reads_ > good_) b.inputs = torch::full_like(b.inputs, std::nan(""));
    return b;
  }

 private:
  static std::vector<std::int64_t> all_ids(std::int64_t n) {
    std::vector<std::int64_t> v(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
    return v;
  }
  int good_;
  mutable int reads_ = 0;
};

TEST(Trainer, ANonFiniteLossStopsNamingTheStepAndKeepsTheLastGoodCheckpoint) {
  Problem p;
  // Epoch 1 reads 4 training batches and 1 validation batch; the 2nd step of epoch 2 turns to NaN.
  PoisonedDataset poisoned(*p.data, 6);
  TrainData td = p.td();
  td.train = &poisoned;
  TrainerOptions o = base_options();
  o.out_dir = tmp_dir("nan");
  o.run_id = "nan";
  auto model = hessgap::testing::small_mlp(4);
  auto local = comm::make_local();
  io::StateDict after_epoch1;
  o.on_step = [&](const StepRecord& s) {
    if (s.step == 3) after_epoch1 = snapshot(*model);
  };
  const std::string msg = error_of([&] { fine_tune(*model, td, o, *local, torch::kCPU); });
  EXPECT_NE(msg.find("the training loss is NaN at epoch 2, step 2 of 4 (global step 6"), std::string::npos) << msg;
  EXPECT_NE(msg.find("last.h5' holds the last good epoch"), std::string::npos) << msg;
  ASSERT_TRUE(fs::exists(o.out_dir + "/last.h5"));
  EXPECT_EQ(max_diff(io::read_checkpoint(o.out_dir + "/last.h5"), after_epoch1), 0.0);
}

TEST(Trainer, InvalidOptionsNameTheFlag) {
  TrainerOptions o = base_options();
  o.reg_method = "constraint";
  o.groups = {{"layer1", "layer1", "", 0.0, true}};
  EXPECT_NE(error_of([&] { o.validate(3); }).find("constraint group 'layer1' must be > 0"), std::string::npos);
  o = base_options();
  o.reweight = torch::eye(2, torch::kFloat64);
  EXPECT_NE(error_of([&] { o.validate(3); }).find("the model has 3 classes"), std::string::npos);
  o = base_options();
  o.schedule = "cosine";
  EXPECT_NE(error_of([&] { o.validate(3); }).find("--schedule"), std::string::npos);
  o = base_options();
  o.epochs = 0;
  EXPECT_NE(error_of([&] { o.validate(3); }).find("--epochs"), std::string::npos);
}

TEST(Reweight, SumFormAllowsAnEmptyShardAndMatchesTheMean) {
  const auto R = reweight_matrix(synthetic_transition_matrix(3, 0.3));
  const auto logits = torch::randn({5, 3}, torch::kFloat64);
  const auto y = torch::tensor({0, 2, 1, 1, 0}, torch::kInt64);
  EXPECT_NEAR(reweighted_cross_entropy_sum(logits, y, R).item<double>(),
              5 * reweighted_cross_entropy(logits, y, R).item<double>(), 1e-12);
  EXPECT_EQ(reweighted_cross_entropy_sum(torch::zeros({0, 3}, torch::kFloat64), torch::zeros({0}, torch::kInt64), R)
                .item<double>(),
            0.0);
}

TEST(Trainer, EvaluationMatchesDirectComputationIncludingBinaryF1) {
  // Loss, accuracy and class-1 F1 of evaluate_ids against the same quantities computed here in one pass.
  torch::manual_seed(13);
  auto x = torch::randn({37, 5}, torch::kFloat64);
  auto y = torch::randint(0, 2, {37}, torch::kInt64);
  hessgap::testing::TensorDataset data(x, y, 2);
  torch::manual_seed(2);
  auto model = models::make_model("mlp:in=5,hidden=4,act=tanh", 2);
  model->to(torch::kFloat64);
  model->eval();
  std::vector<std::int64_t> ids;
  for (std::int64_t i = 0; i < 37; i += 2) ids.push_back(i);
  auto local = comm::make_local();
  const Metrics m = evaluate_ids(*model, data, ids, {}, 4, *local, torch::kCPU);
  torch::NoGradGuard ng;
  const auto b = data.get_batch(ids);
  const auto logits = model->forward(b);
  const auto pred = logits.argmax(1);
  const double tp = (pred.eq(1) & b.labels.eq(1)).sum().item<double>();
  const double fp = (pred.eq(1) & b.labels.eq(0)).sum().item<double>();
  const double fn = (pred.eq(0) & b.labels.eq(1)).sum().item<double>();
  EXPECT_EQ(m.samples, 19);
  EXPECT_NEAR(m.loss, torch::nn::functional::cross_entropy(logits, b.labels).item<double>(), 1e-12);
  EXPECT_NEAR(m.accuracy, pred.eq(b.labels).to(torch::kFloat64).mean().item<double>(), 1e-15);
  EXPECT_NEAR(m.f1, 2 * tp / (2 * tp + fp + fn), 1e-15);
  EXPECT_GT(tp, 0);  // the F1 is not a degenerate 0
}
