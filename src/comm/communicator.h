// The whole distributed API in one small interface: rank, size, and a few collectives.
// Math code receives a Communicator& and never includes mpi.h or nccl.h; the transport
// (local, MPI, NCCL) is chosen in app/ and tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace at {
class Tensor;
}

namespace hessgap::comm {

// Every method marked "collective" must be reached by every rank of the communicator,
// unconditionally and in the same order. Reductions carry sums (and counts) so that uneven
// shards combine correctly; divide once at the end.
class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "local", "mpi" or "nccl": recorded in output files.
  virtual std::string backend() const = 0;

  // Collective: in-place element-wise sum / max of n doubles over all ranks.
  virtual void all_reduce_sum(double* data, std::size_t n) = 0;
  virtual void all_reduce_max(double* data, std::size_t n) = 0;
  // Collective: in-place element-wise sum of n int64 values.
  virtual void all_reduce_sum(std::int64_t* data, std::size_t n) = 0;
  // Collective: in-place sum of a contiguous float32/float64 tensor. NCCL reduces CUDA tensors on the
  // device; MPI reduces CPU tensors in place and device tensors through a host copy (the fallback of a
  // CUDA build without NCCL). Throws hessgap::Error on other dtypes or non-contiguous tensors.
  virtual void all_reduce_sum(at::Tensor& tensor) = 0;
  // Collective: every rank contributes n doubles; recv (size()*n) holds rank r's at [r*n, (r+1)*n).
  virtual void all_gather(const double* send, std::size_t n, double* recv) = 0;
  // Collective: root's bytes replace every other rank's.
  virtual void broadcast(std::string& bytes, int root) = 0;
  virtual void barrier() = 0;
  // Collective: split into sub-communicators of the ranks that pass the same color, ordered by key.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;
  // Collective: the ranks of this communicator that share this rank's node (shared memory), ordered by
  // rank; its rank() is the node-local rank, which picks the rank's GPU. A host communicator (MPI or
  // local) whatever this one's transport.
  virtual std::unique_ptr<Communicator> split_node() = 0;
  // Ends every rank of the job with `code` (does not return). Used by main() when a rank throws
  // after the first collective, so that no rank is left waiting in a collective.
  [[noreturn]] virtual void abort(int code) = 0;

  // Convenience wrappers over the above (collective).
  double sum(double x);
  double max(double x);
  std::int64_t sum(std::int64_t x);
  std::vector<double> all_gather(const std::vector<double>& send);
};

// A communicator of size 1: every collective is a no-op (or a copy).
std::unique_ptr<Communicator> make_local();

}  // namespace hessgap::comm
