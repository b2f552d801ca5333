// device_graph.h in a build without a CUDA LibTorch: nothing to capture, and nothing to switch.
#include "hessian/device_graph.h"

#include "util/error.h"

namespace hessgap::hessian {

namespace {
constexpr const char* kNoGraphs = "--cuda-graphs: this build has no CUDA graphs (it was built against a CPU LibTorch)";
}  // namespace

bool cuda_graphs_built() { return false; }

struct SideStreamScope::Impl {};

SideStreamScope::SideStreamScope(torch::Device device, bool enabled) {
  HG_CHECK(!enabled || !device.is_cuda(), kNoGraphs);
}

SideStreamScope::~SideStreamScope() = default;

std::unique_ptr<DeviceGraph> capture_device_graph(const std::function<void()>&) {
  HG_FAIL(kNoGraphs);
  return nullptr;
}

}  // namespace hessgap::hessian
