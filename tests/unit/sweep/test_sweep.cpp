// Sweep specs and the sweep folder. Oracles: hand-written expansions; exclusive creation (a second claim
// fails while the first holder lives); a claim of a dead process (a reaped child's pid) is broken; the
// index read back with the HDF5 reader.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "io/h5.h"
#include "sweep/spec.h"
#include "sweep/store.h"
#include "tests/support/error_of.h"

using namespace hessgap;
using hessgap::testing::error_of;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  const fs::path p = fs::path(HG_TEST_TMP) / ("sweep-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

// A pid that certainly belongs to no process: a child that has exited and been reaped.
long dead_pid() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  return static_cast<long>(child);
}

}  // namespace

TEST(SweepSpec, GridExpandsInKeyOrderLastKeyFastestThenExplicitRuns) {
  const auto spec = sweep::parse_spec(
      json::parse(R"({"base": {"epochs": 2, "label_noise": 0.1, "--seed": 0},
                      "grid": {"seed": [0, 1], "label-noise": [0.2, 0.4, 0.6]},
                      "runs": [{"reg-method": "constraint", "constraint-reweight": true}],
                      "ranks_per_run": 2})"),
      "test");
  EXPECT_EQ(spec.ranks_per_run, 2);
  EXPECT_EQ(spec.base, json::parse(R"({"epochs": 2, "label-noise": 0.1, "seed": 0})"));  // names normalised
  const auto points = sweep::expand(spec);
  ASSERT_EQ(points.size(), 7u);
  // keys sorted: label-noise, seed; seed varies fastest
  const std::vector<std::pair<double, int>> want = {{0.2, 0}, {0.2, 1}, {0.4, 0}, {0.4, 1}, {0.6, 0}, {0.6, 1}};
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(points[i].overrides, json({{"label-noise", want[i].first}, {"seed", want[i].second}})) << i;
    EXPECT_EQ(points[i].flags["epochs"], 2);
    EXPECT_EQ(points[i].flags["label-noise"], want[i].first);  // the grid overrides the base
  }
  EXPECT_EQ(points[6].flags["reg-method"], "constraint");
  EXPECT_EQ(points[6].flags["label-noise"], 0.1);
  EXPECT_EQ(sweep::to_arguments(points[6].flags),
            (std::vector<std::string>{"--constraint-reweight", "--epochs", "2", "--label-noise", "0.1", "--reg-method",
                                      "constraint", "--seed", "0"}));
  EXPECT_EQ(sweep::to_arguments(json({{"sync-bn", false}, {"lr", 0.001}})), (std::vector<std::string>{"--lr", "0.001"}));
}

TEST(SweepSpec, NamedGroupsOfFlagsAreCrossedLikeValues) {
  const auto spec = sweep::parse_spec(
      json::parse(R"({"base": {"reg-method": "none"},
                      "grid": {"method": {"plain": {},
                                          "constraint": {"reg_method": "constraint"},
                                          "reweight": {"reg-method": "constraint", "constraint-reweight": true}},
                               "seed": [0, 1]}})"),
      "test");
  const auto points = sweep::expand(spec);
  ASSERT_EQ(points.size(), 6u);  // names sorted: constraint, plain, reweight; seed fastest
  EXPECT_EQ(points[0].overrides, json({{"method", "constraint"}, {"seed", 0}}));
  EXPECT_EQ(points[0].flags, json({{"reg-method", "constraint"}, {"seed", 0}}));
  EXPECT_EQ(points[3].overrides, json({{"method", "plain"}, {"seed", 1}}));
  EXPECT_EQ(points[3].flags, json({{"reg-method", "none"}, {"seed", 1}}));
  EXPECT_EQ(points[5].flags, json({{"constraint-reweight", true}, {"reg-method", "constraint"}, {"seed", 1}}));
  EXPECT_FALSE(points[5].flags.contains("method"));
  EXPECT_NE(error_of([] { sweep::parse_spec(json::parse(R"({"grid": {"method": {}}})"), "t"); }).find("empty group"),
            std::string::npos);
}

TEST(SweepSpec, BadSpecsAreRefusedNamingTheKey) {
  auto err = [](const std::string& text) { return error_of([&] { sweep::parse_spec(json::parse(text), "'s.json'"); }); };
  EXPECT_NE(err(R"({"base": {"epochs": 1}, "grid": {}})").find("the grid is empty"), std::string::npos);
  EXPECT_NE(err(R"({"base": {}, "grid": {"seed": []}})").find("grid 'seed' must be a non-empty array"), std::string::npos);
  EXPECT_NE(err(R"({"base": {}, "grid": {"seed": 3}})").find("grid 'seed' must be a non-empty array"), std::string::npos);
  EXPECT_NE(err(R"({"base": {"a": {"b": 1}}, "grid": {"seed": [1]}})").find("'a' must be a string, number or boolean"),
            std::string::npos);
  EXPECT_NE(err(R"({"grid": {"seed": [1]}, "ranks": 2})").find("unknown key 'ranks'"), std::string::npos);
  EXPECT_NE(err(R"({"grid": {"seed": [1]}, "ranks_per_run": 0})").find("ranks_per_run must be an integer >= 1"),
            std::string::npos);
  EXPECT_NE(err(R"({"grid": {"seed": [1], "--seed": [2]}})").find("'seed' is given twice"), std::string::npos);
  const fs::path dir = fresh_dir("spec");
  fs::create_directories(dir);
  std::ofstream(dir / "bad.json") << "{ not json";
  EXPECT_NE(error_of([&] { sweep::read_spec((dir / "bad.json").string()); }).find("is not valid JSON"), std::string::npos);
  EXPECT_NE(error_of([&] { sweep::read_spec((dir / "missing.json").string()); }).find("cannot read the sweep spec"),
            std::string::npos);
}

TEST(SweepStore, IdentityClaimsAndStaleClaims) {
  const fs::path dir = fresh_dir("store");
  sweep::SweepStore store(dir.string(), /*lease_seconds=*/3600);
  const json identity = {{"sweep", {{"base", {{"epochs", 1}}}, {"grid", {{"seed", {0, 1}}}}}}, {"run_ids", {"a", "b"}}};
  store.open_or_create(identity);
  EXPECT_TRUE(fs::exists(dir / "sweep.json"));
  store.open_or_create(identity);  // the same sweep again: fine
  json other = identity;
  other["sweep"]["base"]["epochs"] = 2;
  EXPECT_NE(error_of([&] { store.check_identity(other); }).find("holds a different sweep"), std::string::npos);

  // Exclusive: a live holder (this process) keeps its claim.
  const sweep::Owner me = sweep::Owner::self();
  ASSERT_TRUE(store.try_claim("a", me));
  EXPECT_FALSE(store.try_claim("a", me));
  EXPECT_TRUE(store.live_claim("a").has_value());
  store.release("a");
  EXPECT_FALSE(store.live_claim("a").has_value());

  // A claim of a process of this host that no longer exists is stale and broken by the next claim; a
  // temporary file such a writer left behind goes with it.
  sweep::Owner gone = me;
  gone.pid = dead_pid();
  ASSERT_TRUE(store.try_claim("b", gone));
  const long dead = gone.pid;
  std::ofstream(fs::path(store.run_dir("b")) / ("last.h5.tmp-" + std::to_string(dead))) << "partial";
  std::ofstream(fs::path(store.run_dir("b")) / ("run.h5.tmp-" + std::to_string(::getpid()))) << "live writer";
  EXPECT_FALSE(store.live_claim("b").has_value());
  ASSERT_TRUE(store.try_claim("b", me));
  EXPECT_FALSE(fs::exists(fs::path(store.run_dir("b")) / ("last.h5.tmp-" + std::to_string(dead))));
  EXPECT_TRUE(fs::exists(fs::path(store.run_dir("b")) / ("run.h5.tmp-" + std::to_string(::getpid()))));

  // A claim on another host is live until its heartbeat is older than the lease.
  sweep::Owner far = me;
  far.host = "another-host";
  far.pid = 1;
  ASSERT_TRUE(store.try_claim("c", far));
  EXPECT_TRUE(store.live_claim("c").has_value());
  sweep::SweepStore short_lease(dir.string(), /*lease_seconds=*/0.0);
  fs::last_write_time(fs::path(store.run_dir("c")) / "claim", fs::file_time_type::clock::now() - std::chrono::seconds(5));
  EXPECT_FALSE(short_lease.live_claim("c").has_value());
  EXPECT_TRUE(store.live_claim("c").has_value());
}

TEST(SweepStore, StatesAndTheIndex) {
  const fs::path dir = fresh_dir("index");
  sweep::SweepStore store(dir.string());
  store.open_or_create({{"sweep", {{"grid", {{"seed", {0, 1}}}}}}, {"run_ids", {"r0", "r1"}}});
  sweep::RunState s = store.read_state("r0");
  EXPECT_EQ(s.status, "pending");
  EXPECT_EQ(s.attempts, 0);
  s.status = "failed";
  s.attempts = 2;
  s.final = true;
  s.message = "boom";
  s.seconds = 1.5;
  store.write_state("r0", s);
  const sweep::RunState back = store.read_state("r0");
  EXPECT_EQ(back.status, "failed");
  EXPECT_EQ(back.attempts, 2);
  EXPECT_TRUE(back.final);
  EXPECT_EQ(back.message, "boom");
  ASSERT_TRUE(store.try_claim("r1", sweep::Owner::self()));
  store.rebuild_index({"r0", "r1"}, {json{{"seed", 0}}, json{{"seed", 1}}}, {"{}", "{}"});
  const io::H5File f = io::H5File::open_read((dir / "index.h5").string());
  EXPECT_EQ(f.attr_string("/", "format"), "hessgap-sweep-index");
  EXPECT_EQ(f.read_strings("/runs/run_id"), (std::vector<std::string>{"r0", "r1"}));
  EXPECT_EQ(f.read_strings("/runs/status"), (std::vector<std::string>{"failed", "running"}));
  EXPECT_EQ(f.read_int64("/runs/attempts"), (std::vector<std::int64_t>{2, 0}));
  EXPECT_EQ(f.read_strings("/runs/message")[0], "boom");
  EXPECT_EQ(f.read_strings("/runs/overrides")[1], R"({"seed":1})");
  EXPECT_TRUE(std::isnan(f.read_doubles("/runs/test_accuracy")[0]));
  for (const auto& e : fs::directory_iterator(dir)) {
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
  }
}
