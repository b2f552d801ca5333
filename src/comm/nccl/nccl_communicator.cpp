#include "comm/nccl/nccl_communicator.h"

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <nccl.h>

#include <cstring>

#include "util/error.h"

namespace hessgap::comm {
namespace {

void check_nccl(ncclResult_t rc, const char* what) {
  HG_CHECK(rc == ncclSuccess, what << " failed: " << ncclGetErrorString(rc));
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::unique_ptr<Communicator> host, int device) : host_(std::move(host)), device_(device) {
    ncclUniqueId id;
    std::string bytes;
    if (host_->rank() == 0) {
      check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
      bytes.assign(reinterpret_cast<const char*>(&id), sizeof id);
    }
    host_->broadcast(bytes, 0);
    HG_ASSERT(bytes.size() == sizeof id, "NCCL unique id of the wrong size");
    std::memcpy(&id, bytes.data(), sizeof id);
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
    check_nccl(ncclCommInitRank(&comm_, host_->size(), id, host_->rank()), "ncclCommInitRank");
  }
  ~NcclCommunicator() override {
    if (comm_ != nullptr) ncclCommDestroy(comm_);
  }
  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  std::string backend() const override { return "nccl"; }

  void all_reduce_sum(double* data, std::size_t n) override { host_->all_reduce_sum(data, n); }
  void all_reduce_max(double* data, std::size_t n) override { host_->all_reduce_max(data, n); }
  void all_reduce_sum(std::int64_t* data, std::size_t n) override { host_->all_reduce_sum(data, n); }
  void all_reduce_sum(at::Tensor& t) override {
    if (!t.is_cuda()) {
      host_->all_reduce_sum(t);
      return;
    }
    HG_CHECK(t.is_contiguous(), "all_reduce_sum: tensor must be contiguous");
    ncclDataType_t type;
    if (t.scalar_type() == at::kFloat) {
      type = ncclFloat32;
    } else if (t.scalar_type() == at::kDouble) {
      type = ncclFloat64;
    } else {
      HG_FAIL("all_reduce_sum: unsupported dtype " << t.scalar_type() << " (float32 or float64)");
    }
    c10::cuda::CUDAGuard guard(t.device());
    auto stream = c10::cuda::getCurrentCUDAStream(t.device().index());
    check_nccl(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<std::size_t>(t.numel()), type, ncclSum, comm_,
                             stream.stream()),
               "ncclAllReduce");
  }
  void all_gather(const double* send, std::size_t n, double* recv) override { host_->all_gather(send, n, recv); }
  void broadcast(std::string& bytes, int root) override { host_->broadcast(bytes, root); }
  void barrier() override { host_->barrier(); }
  std::unique_ptr<Communicator> split(int color, int key) override {
    return std::make_unique<NcclCommunicator>(host_->split(color, key), device_);
  }
  std::unique_ptr<Communicator> split_node() override { return host_->split_node(); }
  [[noreturn]] void abort(int code) override {
    if (comm_ != nullptr) ncclCommAbort(comm_);
    comm_ = nullptr;
    host_->abort(code);
  }

 private:
  std::unique_ptr<Communicator> host_;
  int device_;
  ncclComm_t comm_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Communicator> host, int device_index) {
  return std::make_unique<NcclCommunicator>(std::move(host), device_index);
}

}  // namespace hessgap::comm
