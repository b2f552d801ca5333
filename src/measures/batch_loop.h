// The one sharded-batch loop that traces, the distance measure, noise stability and eval share: the
// batches of a plan that one part owns (owned_batches: batch b goes to part b mod parts), loaded on the
// context's device and dtype, optionally decoded ahead by a worker thread, with a progress line.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "measures/measure_context.h"

namespace hessgap::measures {

struct BatchLoopOptions {
  std::string label;    // progress line "<label> (rank 0's batches)"; "" for none
  int part = -1;        // the part this rank serves; -1: the rank of ctx.world
  int num_parts = -1;   // -1: the size of ctx.world (traces use probe groups: world size / probe ranks)
  // One worker decodes the next two batches while `body` runs on this one: worth it where decoding costs
  // as much as the model (eval); off where a batch costs many HVPs and a thread would only compete.
  bool prefetch = false;
};

// Calls body(b, batch) for every batch b this part owns, in increasing b; body returns a detail for the
// progress line ("" for none). Not collective: the caller reduces what body accumulated. Errors from
// loading or from body propagate (hessgap::Error naming the file for a bad sample).
void for_each_batch(const MeasureContext& ctx, const BatchPlan& plan, const BatchLoopOptions& opts,
                    const std::function<std::string(std::int64_t b, const data::Batch& batch)>& body);

}  // namespace hessgap::measures
