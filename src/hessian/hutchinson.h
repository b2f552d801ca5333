// Per-layer Hessian traces by Hutchinson's estimator, tr(H_ii) ≈ mean_k ⟨z_i, (H z)_i⟩, with the
// reference's stopping rule or a standard-error rule, and probes optionally split across the ranks
// of a group.
//
// Two probe scopes:
//  * joint (the reference): one probe z over all layers, one HVP per probe; the per-layer read-out
//    ⟨z_i,(Hz)_i⟩ = z_iᵀH_ii z_i + Σ_{j≠i} z_iᵀH_ij z_j is unbiased for tr(H_ii) but carries the
//    cross-layer terms as extra variance (large on ResNets);
//  * layer: z nonzero on one layer at a time, one block HVP per layer per probe; no cross-layer
//    variance, and with the standard-error rule each layer stops on its own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hessian/hvp_engine.h"
#include "hessian/probes.h"
#include "hessian/trace_estimators.h"

namespace hessgap::comm {
class Communicator;
}

namespace hessgap::hessian {

enum class ProbeScope { kJoint, kLayer };
enum class StopRule {
  // |mean_k(total) − mean_{k−1}(total)| / (|mean_{k−1}(total)| + 1e-6) < tol, k ≥ min_probes.
  kReference,
  // every (still active) layer: stderr_i ≤ rel_se · |mean_i|, k_i ≥ min_probes.
  kStandardError,
};

ProbeScope parse_probe_scope(const std::string& name);  // "joint" | "layer"
StopRule parse_stop_rule(const std::string& name);      // "reference" | "stderr"
std::string to_string(ProbeScope s);
std::string to_string(StopRule r);

struct TraceOptions {
  // kHutchinson: probe by probe with a stopping rule; kHutchPlusPlus / kXTrace: each layer's block
  // (scope must be kLayer) with a fixed budget of max_probes block HVPs, no stopping rule
  // (trace_estimators.h), the whole batch on one rank.
  TraceEstimator estimator = TraceEstimator::kHutchinson;
  ProbeDistribution distribution = ProbeDistribution::kRademacher;
  ProbeScope scope = ProbeScope::kJoint;
  StopRule rule = StopRule::kReference;
  double tol = 1e-3;     // reference rule (image default; text uses 1e-4)
  double rel_se = 0.05;  // standard-error rule: target relative standard error per layer
  int min_probes = 2;
  int max_probes = 100;
  // --probes-in-flight: joint probes whose HVPs run as one batched backward pass (HvpEngine::hvps).
  // The values are fed to the stopping rule in probe order, so the estimate and the probes used are
  // those of 1 (up to rounding); up to K−1 products past the stopping point are discarded.
  int in_flight = 1;
  ProbeBatching batching = ProbeBatching::kFunctorch;  // --probe-batching: how K > 1 probes are batched
  // --cuda-graphs: each joint Rademacher probe after the first ProbeUnit::kEagerProbes of a batch is a
  // replay of one CUDA graph captured per batch (probe_unit.h); the engine must have been built inside a
  // SideStreamScope. Needs the joint scope, Rademacher probes and one probe in flight.
  bool cuda_graphs = false;
  std::uint64_t seed = 0;
  // Throws hessgap::Error naming the flag when a value is out of range.
  void validate() const;
};

// Per-layer estimates for one batch. Vectors have one entry per Hessian layer, in layer order.
struct LayerTraces {
  std::vector<double> mean;       // estimate of tr(H_ii) (units of the loss per weight²)
  std::vector<double> std_error;  // sample std of the probe values / √probes (NaN with 1 probe)
  std::vector<std::int64_t> probes;  // probes used by each layer (equal across layers unless the
                                     // layer scope with the standard-error rule)
  bool converged = false;  // the stopping rule fired before max_probes for every layer
  long hvps_computed = 0;  // products computed on this rank (including discarded ones)
};

// Collective over `group` (a sketching estimator needs a group of one rank): every rank of the group must call it with an engine built on the same
// batch and parameters. With K = opts.in_flight, round n covers probes nPK … (n+1)PK − 1, rank r
// computing the K probes from (nP + r)K (K = 1: probes r, r+P, r+2P, …); the P·K·L per-probe values
// are all-gathered each round and the stopping rule is applied in probe order, so the probes used and
// the result do not depend on P or K (values computed past the stopping point are discarded).
// Probe k for layer i is draw_probe(..., seed, batch_id, k, i): in joint scope layer i of probe k
// uses the same key for every i-block (the layer index keys the block), so a joint probe is the
// concatenation of the L layer blocks.
LayerTraces estimate_traces(HvpEngine& engine, const TraceOptions& opts, std::int64_t batch_id,
                            comm::Communicator& group);

// Collective over `shards`, whose ranks each hold one shard of the same batch (`--shard-batch`): the
// engine is built on the shard's loss weighted by (shard size / batch size), so that the shards'
// Hessians sum to the batch's; null for an empty shard (a batch smaller than the rank count). Every
// rank computes every probe on its shard; the L per-layer values of a probe are gathered and summed
// in rank order (one collective of L doubles per rank per probe), and the stopping rule runs on the
// sums (K = opts.in_flight probes per collective). Hutch++ / XTrace all-reduce each block product instead (one tensor collective per product).
// `params` are the Hessian layers (for the probes' shapes). The result equals estimate_traces on the
// whole batch up to rounding (probes are keyed, not drawn per rank); hvps_computed counts this rank's.
LayerTraces estimate_traces_sharded(HvpEngine* engine, const std::vector<torch::Tensor>& params,
                                    const TraceOptions& opts, std::int64_t batch_id, comm::Communicator& shards);

// The sequential part of estimate_traces, exposed for tests: consumes probe values in order and
// decides when each layer stops. `values[i]` is layer i's value for the next probe (ignored for
// layers that have stopped).
class TraceAccumulator {
 public:
  TraceAccumulator(std::size_t num_layers, const TraceOptions& opts);
  // Feeds probe k = probes_seen(); returns true when every layer has stopped.
  bool add(const std::vector<double>& values);
  bool active(std::size_t layer) const { return active_[layer]; }
  bool done() const;
  std::int64_t probes_seen() const { return seen_; }
  LayerTraces result() const;

 private:
  void stop_all();
  TraceOptions opts_;
  std::vector<double> mean_, m2_;  // Welford
  std::vector<std::int64_t> count_;
  std::vector<bool> active_;
  std::int64_t seen_ = 0;
  double previous_total_ = 0.0;
  bool converged_ = false;
};

}  // namespace hessgap::hessian
