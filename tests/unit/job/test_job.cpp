// The typed configurations (TrainConfig, MeasureConfig) as JSON in sections: a round trip keeps every field and type; the run id ignores
// where and how loudly a run is written and changes with anything that changes its results.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <torch/cuda.h>

#include "comm/communicator.h"
#include "job/measure_job.h"
#include "job/config_fields.h"
#include "job/train_job.h"
#include "tests/support/error_of.h"
#include "util/error.h"
#include "util/json_bounded.h"

using namespace hessgap;
using job::TrainConfig;
using job::gpu_for_local_rank;
using job::rank_device;
using hessgap::testing::error_of;

namespace {

TrainConfig example() {
  TrainConfig c;
  c.common.checkpoint = "w.safetensors";
  c.common.data.kind = "idx";
  c.common.data.path = "/data/fmnist";
  c.common.data.pad = 2;
  c.common.data.grey_to_rgb = true;
  c.common.data.noise_rate = 0.4;
  c.common.seed = 7;
  c.epochs = 3;
  c.lr = 1e-3;
  c.reg_method = "constraint";
  c.reg_extractor = 0.5;
  c.constraint_reweight = true;
  c.reweight_noise_rate = 0.3;
  c.sync_bn = true;
  c.out_dir = "runs/a";
  return c;
}

}  // namespace

TEST(TrainConfigJson, RoundTripKeepsEveryFieldWithItsType) {
  const TrainConfig c = example();
  const nlohmann::json j = job::to_json(c);
  for (const char* section : {"model", "data", "compute", "train", "measure", "output"}) {
    EXPECT_TRUE(j.contains(section)) << section;
  }
  EXPECT_TRUE(j["train"]["lr"].is_number_float());
  EXPECT_TRUE(j["train"]["epochs"].is_number_integer());
  EXPECT_TRUE(j["compute"]["sync_bn"].is_boolean());
  EXPECT_EQ(j["data"]["dataset"]["pad"], 2);
  EXPECT_EQ(j["train"]["seed"], 7);
  const TrainConfig back = job::train_config_from_json(j);
  EXPECT_EQ(job::to_json(back), j);
  EXPECT_EQ(back.common.data.path, "/data/fmnist");
  EXPECT_DOUBLE_EQ(back.reweight_noise_rate, 0.3);
}

TEST(TrainConfigJson, MissingKeysKeepDefaultsAndWrongTypesAreNamed) {
  const TrainConfig d = job::train_config_from_json(nlohmann::json::parse(R"({"train": {"epochs": 2}})"));
  EXPECT_EQ(d.epochs, 2);
  EXPECT_EQ(d.reg_method, "none");
  EXPECT_EQ(d.common.data.kind, "imagefolder");
  try {
    job::train_config_from_json(nlohmann::json::parse(R"({"train": {"epochs": "two"}})"));
    FAIL() << "accepted a string for epochs";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train configuration"), std::string::npos) << e.what();
  }
  EXPECT_THROW(job::train_config_from_json(nlohmann::json::array()), Error);
}

TEST(TrainConfigJson, RunIdIgnoresWhereAndHowLoudButNotWhat) {
  const TrainConfig c = example();
  const std::string id = job::run_id_of(c);
  EXPECT_EQ(id.size(), 16u);
  EXPECT_EQ(id, job::run_id_of(example()));
  TrainConfig where = c;
  where.out_dir = "elsewhere";
  where.resume = true;
  where.stop_after_epochs = 1;
  where.common.verbosity = 0;
  where.common.threads = 4;
  where.subcommand = "run";
  EXPECT_EQ(job::run_id_of(where), id);
  TrainConfig lr = c;
  lr.lr = 2e-3;
  EXPECT_NE(job::run_id_of(lr), id);
  TrainConfig seed = c;
  seed.common.seed = 8;
  EXPECT_NE(job::run_id_of(seed), id);
  TrainConfig noise = c;
  noise.common.data.noise_rate = 0.2;
  EXPECT_NE(job::run_id_of(noise), id);
  // TF32 changes results: allowing it names another run, while the default keeps the ids that runs
  // had before the flag existed (the hash of the configuration without the key).
  TrainConfig tf32 = c;
  tf32.common.allow_tf32 = true;
  EXPECT_NE(job::run_id_of(tf32), id);
  EXPECT_TRUE(job::train_config_from_json(job::to_json(tf32)).common.allow_tf32);
  nlohmann::json without = job::to_json(c);
  ASSERT_TRUE(without["compute"].contains("allow_tf32"));
  without["compute"].erase("allow_tf32");
  without.erase("output");
  without["compute"].erase("verbosity");
  without["compute"].erase("threads");
  EXPECT_EQ(job::fnv1a_hex(json_text(without)), id);
}

// The measuring subcommands' configuration: a round trip keeps every field of its kind with its type;
// only the kind's own options are written; --shuffle is stored as the order it means; validation names
// the flag.
// --device cuda means this rank's GPU: its node-local rank modulo the visible GPUs.
TEST(RankDevice, NodeLocalRankPicksTheGpu) {
  EXPECT_EQ(gpu_for_local_rank(0, 1), 0);
  EXPECT_EQ(gpu_for_local_rank(3, 1), 0);  // one GPU per rank made visible by the launcher
  EXPECT_EQ(gpu_for_local_rank(3, 4), 3);  // all of a node's GPUs visible
  EXPECT_EQ(gpu_for_local_rank(5, 4), 1);  // more ranks than GPUs: shared
  auto local = comm::make_local();
  EXPECT_EQ(rank_device("cpu", *local), "cpu");
  EXPECT_EQ(rank_device("cuda:1", *local), "cuda:1");
  if (!torch::cuda::is_available()) {
    EXPECT_EQ(rank_device("cuda", *local), "cuda");  // left for open_session to refuse by name
  } else {
    EXPECT_EQ(rank_device("cuda", *local), "cuda:0");
  }
}

TEST(MeasureConfigJson, RoundTripPerKindWithTypes) {
  job::MeasureConfig c;
  c.kind = "traces";
  c.common.checkpoint = "w.safetensors";
  c.common.data.path = "/data/images";
  c.common.data.max_per_class = 3;
  c.common.batch_size = 5;
  c.common.shuffle = true;
  c.common.sample_order = "natural";
  c.common.seed = 11;
  c.probe_scope = "layer";
  c.traces.trace.max_probes = 7;
  c.traces.trace.tol = 2e-4;
  c.traces.probe_ranks = 2;
  c.common.out = "t.h5";
  const nlohmann::json j = job::to_json(c);
  EXPECT_EQ(j["measure"]["kind"], "traces");
  EXPECT_TRUE(j["measure"]["max_probes"].is_number_integer());
  EXPECT_EQ(j["measure"]["max_probes"].get<int>(), 7);
  EXPECT_DOUBLE_EQ(j["measure"]["tol"].get<double>(), 2e-4);
  EXPECT_EQ(j["data"]["sample_order"], "random");  // what --shuffle means
  EXPECT_EQ(j["data"]["dataset"]["max_per_class"].get<std::int64_t>(), 3);
  EXPECT_FALSE(j["measure"].contains("eps"));       // stability's, not written for traces
  EXPECT_FALSE(j["measure"].contains("train_size"));
  const job::MeasureConfig back = job::measure_config_from_json(j);
  EXPECT_EQ(job::to_json(back), j);
  EXPECT_EQ(back.common.seed, 11u);
  EXPECT_EQ(back.traces.probe_ranks, 2);
  EXPECT_EQ(back.resolved_traces().trace.scope, hessian::ProbeScope::kLayer);
  EXPECT_EQ(back.resolved_traces().trace.seed, 11u);

  job::MeasureConfig m;
  m.kind = "measures";
  m.init_checkpoint = "epoch_0.h5";
  m.mode = "block";
  m.train_size = 500;
  const nlohmann::json jm = job::to_json(m);
  EXPECT_EQ(jm["measure"]["train_size"].get<std::int64_t>(), 500);
  EXPECT_FALSE(jm["measure"].contains("max_probes"));
  EXPECT_EQ(job::to_json(job::measure_config_from_json(jm)), jm);
  EXPECT_EQ(m.resolved_distance().mode, hessian::MeasureMode::kBlock);
}

TEST(MeasureConfigJson, ValidationAndWrongTypesAreNamed) {
  job::MeasureConfig c;
  c.kind = "stability";
  c.stability.repeats = 0;
  EXPECT_NE(error_of([&] { c.validate(1); }).find("--repeats"), std::string::npos);
  c.kind = "measures";
  c.train_size = 10;
  EXPECT_NE(error_of([&] { c.validate(1); }).find("--init-checkpoint"), std::string::npos);
  c.init_checkpoint = "i.h5";
  c.head_reference = "middle";
  EXPECT_NE(error_of([&] { c.validate(1); }).find("--head-reference"), std::string::npos);
  c.kind = "traces";
  c.traces.probe_ranks = 3;
  EXPECT_NE(error_of([&] { c.validate(4); }).find("--probe-ranks 3 must divide"), std::string::npos);
  c.kind = "hessian";
  EXPECT_NE(error_of([&] { c.validate(1); }).find("unknown measurement 'hessian'"), std::string::npos);
  nlohmann::json j = job::to_json(job::MeasureConfig{});
  j["data"]["batch_size"] = "four";
  EXPECT_NE(error_of([&] { job::measure_config_from_json(j); }).find("measure configuration"), std::string::npos);
}
