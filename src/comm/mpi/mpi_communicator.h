// The MPI communicator (CPU tensors): the only place besides app/ that sees mpi.h, and it does
// not leak it: this header is MPI-free.
#pragma once

#include <memory>

#include "comm/communicator.h"

namespace hessgap::comm {

// RAII for MPI_Init_thread(FUNNELED) / MPI_Finalize. Create one in main() before anything else.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  // The world communicator (a new handle each call; all wrap MPI_COMM_WORLD).
  std::unique_ptr<Communicator> world() const;
  static std::string host_name();
};

}  // namespace hessgap::comm
