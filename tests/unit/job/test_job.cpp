// TrainConfig as typed JSON in sections: a round trip keeps every field and type; the run id ignores
// where and how loudly a run is written and changes with anything that changes its results.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "job/train_job.h"
#include "util/error.h"

using namespace hessgap;
using job::TrainConfig;

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
}
