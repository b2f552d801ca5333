// main() for GoogleTest binaries run under mpiexec: one MPI session around RUN_ALL_TESTS, and the
// world communicator available to tests. Only rank 0 prints the gtest listener output.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "comm/communicator.h"
#include "comm/mpi/mpi_communicator.h"

namespace hessgap::testing {
inline comm::Communicator* g_world = nullptr;
inline comm::Communicator& world() { return *g_world; }
}  // namespace hessgap::testing

#define HG_MPI_TEST_MAIN()                                                              \
  int main(int argc, char** argv) {                                                     \
    ::hessgap::comm::MpiSession session(&argc, &argv);                                  \
    ::testing::InitGoogleTest(&argc, argv);                                             \
    auto world = session.world();                                                       \
    ::hessgap::testing::g_world = world.get();                                          \
    if (world->rank() != 0) {                                                           \
      auto& listeners = ::testing::UnitTest::GetInstance()->listeners();                \
      delete listeners.Release(listeners.default_result_printer());                     \
    }                                                                                   \
    int rc = RUN_ALL_TESTS();                                                           \
    /* Any rank's failure fails the job: reduce the return codes. */                    \
    std::int64_t failed = rc != 0 ? 1 : 0;                                              \
    world->all_reduce_sum(&failed, 1);                                                  \
    if (failed != 0 && world->rank() == 0) std::fprintf(stderr, "%lld rank(s) failed\n", (long long)failed); \
    return failed != 0 ? 1 : 0;                                                         \
  }
