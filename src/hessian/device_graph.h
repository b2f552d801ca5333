// CUDA graphs, behind an interface that every build compiles: device_graph_cuda.cpp implements it
// with LibTorch's at::cuda::CUDAGraph in a build against a CUDA LibTorch, device_graph_none.cpp (every
// other build) says that it cannot. ProbeUnit (probe_unit.h) is the one user.
#pragma once

#include <torch/types.h>

#include <functional>
#include <memory>

namespace hessgap::hessian {

// Whether this build can capture CUDA graphs (it was built against a CUDA LibTorch).
bool cuda_graphs_built();

// While it lives, a fresh side stream from LibTorch's pool is the current stream of `device`; when
// `enabled` is false or the device is not CUDA it does nothing. CUDA graphs cannot be captured on the
// default stream, and the autograd engine runs every backward op on the stream of its forward op, so
// the batch's forward pass and first-order graph must be built inside the scope too (HvpEngine), before
// the capture. The side stream starts after the work queued on the previous stream, and that stream
// waits for the side stream's work when the scope ends, so nothing outside sees the switch.
// Not collective. Throws hessgap::Error when enabled on a CUDA device in a build without CUDA graphs.
class SideStreamScope {
 public:
  SideStreamScope(torch::Device device, bool enabled);
  ~SideStreamScope();
  SideStreamScope(const SideStreamScope&) = delete;
  SideStreamScope& operator=(const SideStreamScope&) = delete;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Device work recorded once and replayed as one launch: the kernels `work` queued during the capture,
// on the same memory (inputs are refreshed by copying into the tensors the work read; outputs are the
// tensors it wrote, allocated from the graph's private pool).
class DeviceGraph {
 public:
  virtual ~DeviceGraph() = default;
  // Queues the recorded kernels on the current stream (asynchronous, like the ops it recorded).
  virtual void replay() = 0;
};

// Captures `work` on the current stream, which must be a SideStreamScope's: `work` is not executed,
// its kernels are recorded (so it must not read device values on the host, nor synchronise).
// Throws hessgap::Error when the capture fails (an op that synchronises with the host, or one that
// CUDA graphs do not support), with the reason, or in a build without CUDA graphs.
std::unique_ptr<DeviceGraph> capture_device_graph(const std::function<void()>& work);

}  // namespace hessgap::hessian
