#include "measures/batch_loop.h"

#include <memory>

#include "comm/communicator.h"
#include "data/loader.h"
#include "data/sampler.h"
#include "models/classifier.h"
#include "util/error.h"
#include "util/log.h"

namespace hessgap::measures {

void BatchLoopOptions::shard_every_batch(const comm::Communicator& world) {
  part = 0;
  num_parts = 1;
  shard = world.rank();
  num_shards = world.size();
}

torch::Tensor shard_loss(models::Classifier& model, const data::Batch& shard, std::int64_t whole_batch) {
  HG_ASSERT(shard.size() > 0 && shard.size() <= whole_batch, "shard_loss: " << shard.size() << " of " << whole_batch);
  const torch::Tensor loss = batch_loss(model, shard);
  if (shard.size() == whole_batch) return loss;  // no extra node: the unsharded graph, bit for bit
  return loss * (static_cast<double>(shard.size()) / static_cast<double>(whole_batch));
}

void for_each_batch(const MeasureContext& ctx, const BatchPlan& plan, const BatchLoopOptions& opts,
                    const std::function<std::string(std::int64_t b, const data::Batch& batch)>& body) {
  const int part = opts.part >= 0 ? opts.part : ctx.world->rank();
  const int parts = opts.num_parts > 0 ? opts.num_parts : ctx.world->size();
  const auto mine = owned_batches(plan, part, parts);
  const bool sharded = opts.num_shards > 0;
  auto load = [&](std::size_t k) {
    const std::vector<std::int64_t>& ids = plan.batches[static_cast<std::size_t>(mine[k])];
    if (!sharded) return load_batch(ctx, ids);
    const auto [begin, end] = data::shard_range(static_cast<std::int64_t>(ids.size()), opts.shard, opts.num_shards);
    if (begin == end) return data::Batch{};
    return load_batch(ctx, std::vector<std::int64_t>(ids.begin() + begin, ids.begin() + end));
  };
  std::unique_ptr<data::PrefetchLoader> loader;
  if (opts.prefetch) {
    data::LoaderOptions prefetch;
    prefetch.num_workers = 1;
    prefetch.prefetch = 2;
    loader = std::make_unique<data::PrefetchLoader>(
        static_cast<std::int64_t>(mine.size()), [&](std::int64_t k) { return load(static_cast<std::size_t>(k)); },
        prefetch);
  }
  std::unique_ptr<log::Progress> progress;
  if (!opts.label.empty()) {
    const std::string whose = sharded ? " (rank 0's shards)" : " (rank 0's batches)";
    progress = std::make_unique<log::Progress>(opts.label + whose, static_cast<long>(mine.size()));
  }
  for (std::size_t k = 0; k < mine.size(); ++k) {
    const data::Batch batch = loader ? *loader->next() : load(k);
    const std::string detail = body(mine[k], batch);
    if (progress) progress->update(static_cast<long>(k + 1), detail);
  }
  if (progress) progress->finish();
}

}  // namespace hessgap::measures
