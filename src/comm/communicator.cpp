#include "comm/communicator.h"

#include <ATen/core/Tensor.h>

#include <cstdlib>
#include <cstring>

#include "util/error.h"

namespace hessgap::comm {

double Communicator::sum(double x) {
  all_reduce_sum(&x, 1);
  return x;
}
double Communicator::max(double x) {
  all_reduce_max(&x, 1);
  return x;
}
std::int64_t Communicator::sum(std::int64_t x) {
  all_reduce_sum(&x, 1);
  return x;
}
std::vector<double> Communicator::all_gather(const std::vector<double>& send) {
  std::vector<double> recv(send.size() * static_cast<std::size_t>(size()));
  all_gather(send.data(), send.size(), recv.data());
  return recv;
}

namespace {

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "local"; }
  void all_reduce_sum(double*, std::size_t) override {}
  void all_reduce_max(double*, std::size_t) override {}
  void all_reduce_sum(std::int64_t*, std::size_t) override {}
  void all_reduce_sum(at::Tensor& t) override {
    HG_CHECK(t.is_contiguous(), "all_reduce_sum: tensor must be contiguous");
  }
  void all_gather(const double* send, std::size_t n, double* recv) override {
    if (n) std::memmove(recv, send, n * sizeof(double));
  }
  void broadcast(std::string&, int) override {}
  void barrier() override {}
  std::unique_ptr<Communicator> split(int, int) override { return std::make_unique<LocalCommunicator>(); }
  std::unique_ptr<Communicator> split_node() override { return std::make_unique<LocalCommunicator>(); }
  [[noreturn]] void abort(int code) override { std::exit(code); }
};

}  // namespace

std::unique_ptr<Communicator> make_local() { return std::make_unique<LocalCommunicator>(); }

}  // namespace hessgap::comm
