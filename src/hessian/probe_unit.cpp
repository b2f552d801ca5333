#include "hessian/probe_unit.h"

#include <torch/torch.h>

#include "hessian/device_graph.h"
#include "hessian/hvp_engine.h"
#include "hessian/joint_probes.h"
#include "util/error.h"

namespace hessgap::hessian {

ProbeUnit::ProbeUnit(HvpEngine& engine, const JointRademacher& drawer, bool graph)
    : engine_(engine), drawer_(drawer), capture_(graph) {
  HG_ASSERT(!graph || drawer.device().is_cuda(), "ProbeUnit: CUDA graphs on a " << drawer.device() << " device");
}

ProbeUnit::~ProbeUnit() = default;

torch::Tensor ProbeUnit::compute(const torch::Tensor& device_keys) {
  const std::vector<torch::Tensor> z = drawer_.blocks_of_row(drawer_.signs_from_keys(device_keys)[0]);
  const std::vector<torch::Tensor> hz = engine_.hvp(z);
  // As dots64: products in the layers' dtype, each layer's sum in float64.
  std::vector<torch::Tensor> sums;
  sums.reserve(z.size());
  for (std::size_t i = 0; i < z.size(); ++i) sums.push_back((z[i] * hz[i]).sum(torch::kFloat64));
  return torch::stack(sums);
}

std::vector<double> ProbeUnit::values(std::uint64_t seed, std::int64_t batch, std::int64_t probe) {
  const torch::Tensor host_keys = drawer_.keys(seed, batch, probe, 1);
  torch::Tensor out;
  if (!capture_ || eager_ < kEagerProbes) {
    ++eager_;
    out = compute(drawer_.upload_keys(host_keys));
  } else {
    if (graph_ == nullptr) {
      // The capture records the work without running it (and counts its product, which the first
      // replay below makes); the input is allocated outside the capture, the output inside it.
      keys_ = drawer_.upload_keys(host_keys);
      graph_ = capture_device_graph([this] { values_ = compute(keys_); });
    } else {
      drawer_.upload_keys(host_keys, keys_);
      engine_.count_replayed_product();
    }
    graph_->replay();
    out = values_;
  }
  const torch::Tensor host = out.to(torch::kCPU).contiguous();  // waits for this probe's work
  const double* p = host.data_ptr<double>();
  return std::vector<double>(p, p + host.numel());
}

}  // namespace hessgap::hessian
