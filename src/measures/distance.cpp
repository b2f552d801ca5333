#include "measures/distance.h"

#include <torch/torch.h>

#include <cmath>
#include <sstream>

#include "comm/communicator.h"
#include "data/dataset.h"
#include "hessian/hvp_engine.h"
#include "measures/batch_loop.h"
#include "models/classifier.h"
#include "models/transformer_text.h"
#include "util/error.h"
#include "util/timer.h"

namespace hessgap::measures {

HeadReference parse_head_reference(const std::string& name) {
  if (name == "zero") return HeadReference::kZero;
  if (name == "init") return HeadReference::kInit;
  HG_FAIL("unknown head reference '" << name << "' (expected zero or init)");
}
std::string to_string(HeadReference h) { return h == HeadReference::kZero ? "zero" : "init"; }

HeadReference default_head_reference(const models::Classifier& model) {
  return dynamic_cast<const models::TextTransformer*>(&model) != nullptr ? HeadReference::kInit : HeadReference::kZero;
}

void DistanceOptions::validate() const {
  HG_CHECK(train_size > 0, "--train-size must be > 0 (the n of the bound; got " << train_size << ")");
  if (mode == hessian::MeasureMode::kPsd) psd.validate();
  HG_CHECK(!shard_batch || mode != hessian::MeasureMode::kPsd,
           "--shard-batch applies to --mode joint and block (forms linear in the Hessian, summed over the shards); "
           "--mode psd runs Lanczos on each batch's Hessian and needs whole batches");
}

namespace {

bool starts_with(const std::string& s, const std::string& prefix) {
  return !prefix.empty() && s.compare(0, prefix.size(), prefix) == 0;
}

std::vector<torch::Tensor> direction(const models::Classifier& model, const std::vector<std::string>& names,
                                     const std::vector<torch::Tensor>& params, HeadReference head,
                                     const std::map<std::string, torch::Tensor>& init) {
  std::vector<torch::Tensor> v;
  const std::string head_prefix = model.head_prefix();
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto w = params[i].detach();
    if (head == HeadReference::kZero && starts_with(names[i], head_prefix)) {
      v.push_back(w.clone());
      continue;
    }
    auto it = init.find(names[i]);
    HG_CHECK(it != init.end(), "the initialisation checkpoint has no tensor '" << names[i] << "'");
    HG_CHECK(it->second.sizes() == w.sizes(), "initialisation tensor '" << names[i] << "' has shape "
                                                  << it->second.sizes() << ", the model's is " << w.sizes());
    v.push_back(w - it->second.to(w.device(), w.scalar_type()));
  }
  return v;
}

// layer_max, C, the clipped sum and the bounds from quad and batch_loss.
void summarize(DistanceResult& r, std::int64_t train_size) {
  const std::size_t L = r.layers.size();
  const std::size_t B = r.batch_sizes.size();
  // As the reference: the running max starts from the first batch's values (so it can be < 0).
  r.layer_max.assign(r.quad.begin(), r.quad.begin() + static_cast<std::ptrdiff_t>(L));
  r.max_loss = r.batch_loss[0];
  for (std::size_t b = 1; b < B; ++b) {
    r.max_loss = std::max(r.max_loss, r.batch_loss[b]);
    for (std::size_t i = 0; i < L; ++i) r.layer_max[i] = std::max(r.layer_max[i], r.quad[b * L + i]);
  }
  r.sum_sqrt = 0;
  r.negative_layers = 0;
  for (double h : r.layer_max) {
    // H⁺ is approximated by clipping at 0 (SPEC §10.16): negative maxima contribute nothing.
    if (h < 0) ++r.negative_layers;
    r.sum_sqrt += std::sqrt(std::max(h, 0.0));
  }
  r.train_size = train_size;
  r.bound = r.sum_sqrt / std::sqrt(static_cast<double>(train_size));
  r.bound_c = std::sqrt(std::max(r.max_loss, 0.0)) * r.bound;
}

}  // namespace

DistanceResult compute_distance(const MeasureContext& ctx, const DistanceOptions& opts,
                                const std::map<std::string, torch::Tensor>& init) {
  comm::Communicator& world = *ctx.world;
  opts.validate();
  Stopwatch clock;
  const BatchPlan plan = plan_batches(ctx.dataset->size(), ctx.plan);
  require_labels(*ctx.dataset, plan, "the distance measure");
  auto params = prepare_hessian_params(*ctx.model);
  DistanceResult r;
  r.layers = ctx.model->hessian_layers();
  const auto v = direction(*ctx.model, r.layers, params, opts.head_reference, init);
  const std::size_t L = params.size();
  const std::size_t B = plan.batches.size();
  r.batch_sizes = plan.batch_sizes();
  r.batch_loss.assign(B, 0.0);
  r.quad.assign(B * L, 0.0);
  for (const auto& vi : v) r.v_norm.push_back(std::sqrt(hessian::dot64(vi, vi)));

  const bool psd = opts.mode == hessian::MeasureMode::kPsd;
  std::vector<double> block_quad;
  if (psd) {
    block_quad.assign(B * L, 0.0);
    r.psd_steps.assign(B * L, 0);
    r.psd_converged.assign(B * L, 0);
    r.psd_change.assign(B * L, 0.0);
  }
  BatchLoopOptions loop;
  loop.label = "measures";
  if (opts.shard_batch) loop.shard_every_batch(world);  // the shards' shares add up in the sums below
  for_each_batch(ctx, plan, loop, [&](std::int64_t b, const data::Batch& batch) {
    if (batch.size() == 0) return std::string("batch ") + std::to_string(b) + ": empty shard";
    const auto n = static_cast<std::int64_t>(plan.batches[static_cast<std::size_t>(b)].size());
    hessian::HvpEngine engine(shard_loss(*ctx.model, batch, n), params);  // whole batches: batch_loss
    std::vector<double> q;
    std::int64_t steps = 0;
    if (psd) {
      const auto forms = hessian::psd_quadratic_forms(engine, v, opts.psd);
      for (std::size_t i = 0; i < L; ++i) {
        q.push_back(forms[i].psd);
        block_quad[b * L + i] = forms[i].block;
        r.psd_steps[b * L + i] = forms[i].steps;
        r.psd_converged[b * L + i] = forms[i].converged ? 1 : 0;
        r.psd_change[b * L + i] = forms[i].change;
        steps += forms[i].steps;
      }
    } else {
      q = hessian::quadratic_forms(engine, v, opts.mode);
    }
    r.batch_loss[static_cast<std::size_t>(b)] = engine.loss();
    double total = 0;
    for (std::size_t i = 0; i < L; ++i) {
      r.quad[b * L + i] = q[i];
      total += q[i];
    }
    std::ostringstream detail;
    detail << "batch " << b << ": loss " << engine.loss() << ", sum " << total;
    if (psd) detail << ", " << steps << " Lanczos steps";
    return detail.str();
  });
  world.all_reduce_sum(r.batch_loss.data(), B);
  world.all_reduce_sum(r.quad.data(), B * L);
  if (psd) {
    world.all_reduce_sum(block_quad.data(), B * L);
    world.all_reduce_sum(r.psd_steps.data(), B * L);
    world.all_reduce_sum(r.psd_converged.data(), B * L);
    world.all_reduce_sum(r.psd_change.data(), B * L);
    r.block = std::make_shared<DistanceResult>();
    DistanceResult& c = *r.block;
    c.layers = r.layers;
    c.batch_sizes = r.batch_sizes;
    c.batch_loss = r.batch_loss;
    c.v_norm = r.v_norm;
    c.quad = std::move(block_quad);
    summarize(c, opts.train_size);
  }
  summarize(r, opts.train_size);
  r.seconds = world.max(clock.seconds());
  if (r.block) r.block->seconds = r.seconds;
  return r;
}

}  // namespace hessgap::measures
