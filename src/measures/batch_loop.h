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
  // --shard-batch: every batch of the part is cut into num_shards contiguous shards
  // (data::shard_range) and this rank loads only shard `shard` of it; an empty shard (a batch smaller
  // than num_shards) reaches body as a Batch of size 0, nothing loaded. -1: whole batches.
  int shard = -1;
  int num_shards = -1;
  // --shard-batch over `world`: one part (every rank visits every batch), this rank's shard of each.
  void shard_every_batch(const comm::Communicator& world);
};

// What shard `shard` of a batch of `whole_batch` samples contributes: batch_loss on the shard weighted by
// its share (shard size / whole_batch), so the shards' losses, gradients and Hessians sum to the whole
// batch's; exactly batch_loss when the shard is the whole batch. [] scalar; the shard must not be empty.
torch::Tensor shard_loss(models::Classifier& model, const data::Batch& shard, std::int64_t whole_batch);

// Calls body(b, batch) for every batch b this part owns, in increasing b; body returns a detail for the
// progress line ("" for none); with shards, `batch` holds this rank's shard of batch b and
// plan.batches[b].size() is the whole batch's size. Not collective: the caller reduces what body accumulated. Errors from
// loading or from body propagate (hessgap::Error naming the file for a bad sample).
void for_each_batch(const MeasureContext& ctx, const BatchPlan& plan, const BatchLoopOptions& opts,
                    const std::function<std::string(std::int64_t b, const data::Batch& batch)>& body);

}  // namespace hessgap::measures
