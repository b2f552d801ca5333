// The NCCL communicator (GPU builds only: compiled when CMake finds a CUDA LibTorch and NCCL).
// Host-side collectives (scalars, gathers, broadcasts, splits) go through the MPI communicator it
// wraps; all_reduce_sum of CUDA tensors goes through NCCL on the tensor's current CUDA stream.
// nccl.h stays out of this header.
#pragma once

#include <memory>

#include "comm/communicator.h"

namespace hessgap::comm {

// Collective over `host`: rank 0 creates the NCCL unique id, it is broadcast over `host`, and every
// rank joins an NCCL communicator of the same ranks on CUDA device `device_index`. NCCL refuses two
// ranks on one GPU: give each rank its own device (e.g. local rank). Throws hessgap::Error on NCCL
// failures (with NCCL's error string).
std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Communicator> host, int device_index);

}  // namespace hessgap::comm
