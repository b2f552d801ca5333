// `hessgap traces`: per-layer Hutchinson traces per batch, the per-layer maximum over batches (the
// reference's output) and the sample-weighted mean, with batches sharded over groups of ranks and
// probes split within a group.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hessian/hutchinson.h"
#include "measures/measure_context.h"

namespace hessgap::measures {

struct TracesOptions {
  hessian::TraceOptions trace;
  // Ranks per batch: the world is split into world_size / probe_ranks groups; each group takes
  // batches round robin and splits the probes of a batch among its ranks.
  int probe_ranks = 1;
  // --shard-batch: every rank holds a shard of every batch (contiguous samples, data::shard_range)
  // and the per-probe values are summed over the ranks (estimate_traces_sharded): for batches too
  // large for one device, or more ranks than batches. Equal to the unsharded result up to rounding.
  bool shard_batch = false;
  void validate(int world_size) const;  // throws hessgap::Error naming the flag
};

// Row-major [num_batches × num_layers] arrays; identical on every rank after compute_traces.
struct TracesResult {
  std::vector<std::string> layers;
  std::vector<std::int64_t> batch_sizes;  // [B]
  std::vector<double> batch_loss;         // [B] batch-mean loss
  std::vector<double> mean;               // [B×L] per-batch trace estimates
  std::vector<double> std_error;          // [B×L]
  std::vector<std::int64_t> probes;       // [B×L]
  std::vector<std::int64_t> converged;    // [B] 1 if the stopping rule fired
  std::vector<double> layer_max;          // [L] max over batches (the reference's output)
  std::vector<double> layer_mean;         // [L] sample-weighted mean over batches
  std::vector<double> layer_mean_std_error;  // [L] from the per-batch standard errors
  std::int64_t hvps = 0;                  // HVPs computed on all ranks (including discarded)
  double seconds = 0.0;                   // wall time of the computation
  std::size_t num_batches() const { return batch_sizes.size(); }
};

// Collective over ctx.world. Throws hessgap::Error on invalid options (before any collective).
TracesResult compute_traces(const MeasureContext& ctx, const TracesOptions& opts);

}  // namespace hessgap::measures
