// device_graph.h with LibTorch's CUDA graphs (at::cuda::CUDAGraph): compiled only against a CUDA
// LibTorch (src/hessian/CMakeLists.txt), so nothing here is built or run on the CPU machines; the GPU
// check (scripts/gpu-check.sh, tests/gpu) is where it runs.
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include "hessian/device_graph.h"
#include "util/error.h"

namespace hessgap::hessian {

bool cuda_graphs_built() { return true; }

struct SideStreamScope::Impl {
  Impl(c10::cuda::CUDAStream previous_stream, c10::cuda::CUDAStream side_stream)
      : previous(previous_stream), side(side_stream), guard(side_stream) {}
  c10::cuda::CUDAStream previous;
  c10::cuda::CUDAStream side;
  c10::cuda::CUDAStreamGuard guard;  // restores `previous` as the current stream when destroyed
};

SideStreamScope::SideStreamScope(torch::Device device, bool enabled) {
  if (!enabled || !device.is_cuda()) return;
  const c10::DeviceIndex index = device.has_index() ? device.index() : c10::cuda::current_device();
  auto previous = c10::cuda::getCurrentCUDAStream(index);
  auto side = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, index);
  at::cuda::CUDAEvent queued;
  queued.record(previous);
  queued.block(side);  // the side stream starts after the weights' and the batch's copies
  impl_ = std::make_unique<Impl>(previous, side);
}

SideStreamScope::~SideStreamScope() {
  if (!impl_) return;
  at::cuda::CUDAEvent done;
  done.record(impl_->side);
  done.block(impl_->previous);  // what follows on the previous stream sees the side stream's results
}

namespace {

class CudaGraph final : public DeviceGraph {
 public:
  explicit CudaGraph(const std::function<void()>& work) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    HG_CHECK(stream != c10::cuda::getDefaultCUDAStream(stream.device_index()),
             "--cuda-graphs: a capture needs a side stream (SideStreamScope)");
    // As torch.cuda.graph does: nothing queued before may still be running when the capture starts.
    stream.synchronize();
    graph_.capture_begin();
    try {
      work();
    } catch (const std::exception& e) {
      end_failed_capture();
      HG_FAIL("--cuda-graphs: this model's probe could not be captured as a CUDA graph (" << first_line(e.what())
                                                                                           << "); run without --cuda-graphs");
    }
    try {
      graph_.capture_end();
    } catch (const std::exception& e) {
      HG_FAIL("--cuda-graphs: ending the capture failed (" << first_line(e.what()) << "); run without --cuda-graphs");
    }
  }

  void replay() override { graph_.replay(); }

 private:
  static std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

  // An op failed mid-capture: end the stream's capture so that the error, not a stream left capturing,
  // is what the caller sees (LibTorch's capture_end would throw on the invalidated capture).
  void end_failed_capture() {
    try {
      graph_.capture_end();
    } catch (const std::exception&) {
      cudaGraph_t partial = nullptr;
      if (cudaStreamEndCapture(c10::cuda::getCurrentCUDAStream().stream(), &partial) == cudaSuccess && partial != nullptr) {
        cudaGraphDestroy(partial);
      }
      cudaGetLastError();  // clear the capture error so that the error message is the next thing seen
    }
  }

  at::cuda::CUDAGraph graph_;
};

}  // namespace

std::unique_ptr<DeviceGraph> capture_device_graph(const std::function<void()>& work) {
  return std::make_unique<CudaGraph>(work);
}

}  // namespace hessgap::hessian
