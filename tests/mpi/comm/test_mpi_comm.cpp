// Collectives with closed-form results (sums of ranks), whatever the world size.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "comm/gather.h"
#include "tests/mpi/mpi_test_main.h"

using hessgap::testing::world;

TEST(MpiCommunicator, SumMaxAndGatherOfRanks) {
  auto& w = world();
  const int n = w.size(), r = w.rank();
  EXPECT_EQ(w.backend(), "mpi");
  EXPECT_DOUBLE_EQ(w.sum(static_cast<double>(r)), n * (n - 1) / 2.0);
  EXPECT_EQ(w.sum(static_cast<std::int64_t>(r + 1)), static_cast<std::int64_t>(n) * (n + 1) / 2);
  EXPECT_DOUBLE_EQ(w.max(static_cast<double>(r)), n - 1.0);
  auto g = w.all_gather(std::vector<double>{static_cast<double>(r), 10.0 * r});
  ASSERT_EQ(g.size(), 2u * n);
  for (int q = 0; q < n; ++q) {
    EXPECT_EQ(g[2 * q], q);
    EXPECT_EQ(g[2 * q + 1], 10.0 * q);
  }
}

TEST(MpiCommunicator, TensorSumAndBroadcast) {
  auto& w = world();
  const int n = w.size();
  auto t = torch::full({3, 2}, static_cast<double>(w.rank() + 1), torch::kFloat64);
  w.all_reduce_sum(t);
  EXPECT_TRUE(torch::allclose(t, torch::full({3, 2}, n * (n + 1) / 2.0, torch::kFloat64)));
  auto f = torch::ones({5}, torch::kFloat32);
  w.all_reduce_sum(f);
  EXPECT_FLOAT_EQ(f[4].item<float>(), static_cast<float>(n));
  std::string s = w.rank() == 0 ? "config from rank 0" : "";
  w.broadcast(s, 0);
  EXPECT_EQ(s, "config from rank 0");
}

// Rank r contributes r values r*10 .. r*10 + r - 1 (rank 0 nothing): sizes differ by rank.
TEST(MpiCommunicator, GatherOfVariableSizes) {
  auto& w = world();
  std::vector<std::int64_t> mine;
  for (int k = 0; k < w.rank(); ++k) mine.push_back(10 * w.rank() + k);
  const auto all = hessgap::comm::all_gather_values(w, mine);
  ASSERT_EQ(all.size(), static_cast<std::size_t>(w.size()));
  for (int q = 0; q < w.size(); ++q) {
    ASSERT_EQ(all[q].size(), static_cast<std::size_t>(q));
    for (int k = 0; k < q; ++k) EXPECT_EQ(all[q][k], 10 * q + k);
  }
}

TEST(MpiCommunicator, SplitIntoGroups) {
  auto& w = world();
  // Groups of 2 consecutive ranks (the last may be smaller).
  auto g = w.split(w.rank() / 2, w.rank());
  const int expected = std::min(2, w.size() - (w.rank() / 2) * 2);
  EXPECT_EQ(g->size(), expected);
  EXPECT_EQ(g->rank(), w.rank() % 2);
  EXPECT_DOUBLE_EQ(g->sum(1.0), expected);
}

// The tests run on one host: the node split holds every rank, in world order; Open MPI's launcher says
// the same in its environment (srun sets SLURM_LOCALID instead, also checked when present).
TEST(MpiCommunicator, NodeSplitGivesTheNodeLocalRank) {
  auto& w = world();
  auto node = w.split_node();
  EXPECT_EQ(node->backend(), "mpi");
  EXPECT_EQ(node->size(), w.size());
  EXPECT_EQ(node->rank(), w.rank());
  EXPECT_DOUBLE_EQ(node->sum(1.0), w.size());
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"}) {
    if (const char* v = std::getenv(var)) EXPECT_EQ(std::atoi(v), node->rank()) << var;
  }
  // Split again within a group: the node split of a sub-communicator is in that communicator's ranks.
  auto half = w.split(w.rank() % 2, w.rank());
  auto half_node = half->split_node();
  EXPECT_EQ(half_node->size(), half->size());
  EXPECT_EQ(half_node->rank(), half->rank());
}

HG_MPI_TEST_MAIN()

// MpiSession sets MPI_ERRORS_RETURN on the world: a failed call (here an invalid root, refused by Open MPI's
// argument check on every rank alike) throws an exception naming the call and MPI's reason, instead of
// MPI's default abort that says neither; communicators split from the world inherit the handler.
TEST(MpiCommunicator, AFailedCallThrowsNamingTheCall) {
  auto& w = world();
  const auto group = w.split(0, w.rank());
  for (hessgap::comm::Communicator* c : {&w, group.get()}) {
    std::string bytes = "x";
    try {
      c->broadcast(bytes, c->size() + 3);
      ADD_FAILURE() << "a broadcast from rank " << c->size() + 3 << " did not fail";
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("MPI call failed: MPI_Bcast"), std::string::npos) << what;
      EXPECT_NE(what.find("root"), std::string::npos) << what;
    }
    c->barrier();  // still usable afterwards
  }
}
