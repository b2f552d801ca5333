// One joint Rademacher probe of the Hutchinson trace estimator as a unit with one input and one output:
// the probe's L per-layer keys in (one small host-to-device copy), its L values z_iᵀ(Hz)_i out (one copy
// back). Everything between — the draw (JointRademacher), the joint HVP (HvpEngine) and the per-layer
// dots — runs where the weights live with no host work, so a CUDA build can capture it once per batch
// as a CUDA graph and replay it for every later probe of the batch (`hessgap traces --cuda-graphs`):
// one launch in place of the thousands of kernel launches and the autograd engine's host work per node
// that bound a small batch's HVP on a GPU (ResNet-50 at batch 4: 37 ms an HVP on an H200, against
// 103 ms at batch 32, 8 times the samples).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace hessgap::hessian {

class DeviceGraph;
class HvpEngine;
class JointRademacher;

class ProbeUnit {
 public:
  // `engine` and `drawer` are over the same layers and outlive the unit. `graph`: capture the unit
  // as a CUDA graph after kEagerProbes eager ones; needs a build with CUDA graphs, an engine on a CUDA device, and engine and unit made
  // inside one SideStreamScope (device_graph.h). Without `graph` it runs eagerly on any device.
  ProbeUnit(HvpEngine& engine, const JointRademacher& drawer, bool graph);
  ~ProbeUnit();
  ProbeUnit(const ProbeUnit&) = delete;
  ProbeUnit& operator=(const ProbeUnit&) = delete;

  // Eager probes before the capture: they run whatever must not happen inside one — cuDNN's benchmark
  // search for this batch's shapes, cuBLAS's workspace for the side stream — on the same threads and
  // stream. One is enough for that, and every batch pays it (its shapes may be new).
  static constexpr int kEagerProbes = 1;

  // The L values of joint probe `probe` of batch `batch` (float64 sums of products in the layers'
  // dtype), probe-major like dots64: eagerly bitwise dots64(z, engine.hvp(z)) with z =
  // drawer.draw_one(seed, batch, probe); replayed, the same kernels on the same data (tests/gpu compares
  // them with the eager values). Counts one product of the engine. Not collective. Throws
  // hessgap::Error naming --cuda-graphs when the capture fails.
  std::vector<double> values(std::uint64_t seed, std::int64_t batch, std::int64_t probe);

  // Whether the later probes are replays of a captured graph.
  bool captured() const { return graph_ != nullptr; }

 private:
  // keys [1, L] int64 on the device → the L values, [L] float64 on the device.
  torch::Tensor compute(const torch::Tensor& device_keys);

  HvpEngine& engine_;
  const JointRademacher& drawer_;
  bool capture_;
  int eager_ = 0;
  // Declared before the graph's input and output so that they are released first.
  std::unique_ptr<DeviceGraph> graph_;
  torch::Tensor keys_;    // the graph's input: [1, L] int64, refreshed before each replay
  torch::Tensor values_;  // the graph's output: [L] float64, from its private pool
};

}  // namespace hessgap::hessian
