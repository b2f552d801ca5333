#include "comm/mpi/mpi_communicator.h"

#include <ATen/core/Tensor.h>
#include <mpi.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "util/error.h"

namespace hessgap::comm {
namespace {

// A failed MPI call (the world's handler is MPI_ERRORS_RETURN) becomes an exception naming the call and
// MPI's reason. Not a hessgap::Error: it is no user error, so main reports it as an internal error (exit
// 1) with the rank and host in the log prefix, and aborts the other ranks.
void check_mpi(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw std::runtime_error(std::string("MPI call failed: ") + what + ": " + std::string(msg, static_cast<std::size_t>(len)));
  }
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owned_ && !finalized) MPI_Comm_free(&comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }

  void all_reduce_sum(double* data, std::size_t n) override {
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_DOUBLE, MPI_SUM, comm_), "MPI_Allreduce");
  }
  void all_reduce_max(double* data, std::size_t n) override {
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_DOUBLE, MPI_MAX, comm_), "MPI_Allreduce");
  }
  void all_reduce_sum(std::int64_t* data, std::size_t n) override {
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_INT64_T, MPI_SUM, comm_),
              "MPI_Allreduce");
  }
  void all_reduce_sum(at::Tensor& t) override {
    HG_CHECK(t.is_contiguous(), "MPI all_reduce_sum needs a contiguous tensor");
    if (!t.device().is_cpu()) {
      // The host fallback for device tensors when no device communicator is built (a CUDA LibTorch
      // without NCCL): copy out, reduce over MPI, copy back.
      at::Tensor host = t.to(at::kCPU);
      all_reduce_sum(host);
      t.copy_(host);
      return;
    }
    MPI_Datatype type;
    if (t.scalar_type() == at::kFloat) {
      type = MPI_FLOAT;
    } else if (t.scalar_type() == at::kDouble) {
      type = MPI_DOUBLE;
    } else {
      HG_FAIL("MPI all_reduce_sum: unsupported dtype " << t.scalar_type());
    }
    // Chunk so that counts fit in an int.
    const std::int64_t chunk = 1LL << 30;
    char* base = static_cast<char*>(t.data_ptr());
    for (std::int64_t off = 0; off < t.numel(); off += chunk) {
      const std::int64_t n = std::min(chunk, t.numel() - off);
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, base + off * static_cast<std::int64_t>(t.element_size()),
                              static_cast<int>(n), type, MPI_SUM, comm_),
                "MPI_Allreduce");
    }
  }
  void all_gather(const double* send, std::size_t n, double* recv) override {
    check_mpi(MPI_Allgather(send, static_cast<int>(n), MPI_DOUBLE, recv, static_cast<int>(n), MPI_DOUBLE, comm_),
              "MPI_Allgather");
  }
  void broadcast(std::string& bytes, int root) override {
    long long len = static_cast<long long>(bytes.size());
    check_mpi(MPI_Bcast(&len, 1, MPI_LONG_LONG, root, comm_), "MPI_Bcast");
    bytes.resize(static_cast<std::size_t>(len));
    if (len) check_mpi(MPI_Bcast(bytes.data(), static_cast<int>(len), MPI_CHAR, root, comm_), "MPI_Bcast");
  }
  void barrier() override { check_mpi(MPI_Barrier(comm_), "MPI_Barrier"); }
  std::unique_ptr<Communicator> split(int color, int key) override {
    MPI_Comm sub;
    check_mpi(MPI_Comm_split(comm_, color, key, &sub), "MPI_Comm_split");
    return std::make_unique<MpiCommunicator>(sub, true);
  }
  std::unique_ptr<Communicator> split_node() override {
    MPI_Comm sub;
    check_mpi(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &sub), "MPI_Comm_split_type");
    return std::make_unique<MpiCommunicator>(sub, true);
  }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::exit(code);
  }

 private:
  MPI_Comm comm_;
  bool owned_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

MpiSession::MpiSession(int* argc, char*** argv) {
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  // Failed calls return their code (instead of MPI's default abort, which says neither which call nor
  // where), so that check_mpi names the call, and main's log prefix the rank and host, before aborting.
  // Communicators split from the world inherit the handler.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

std::unique_ptr<Communicator> MpiSession::world() const {
  return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, false);
}

std::string MpiSession::host_name() {
  char name[MPI_MAX_PROCESSOR_NAME];
  int len = 0;
  MPI_Get_processor_name(name, &len);
  return std::string(name, len);
}

}  // namespace hessgap::comm
