#include "models/dropout.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "util/error.h"
#include "util/rng.h"

namespace hessgap::models {
namespace {

struct Active {
  bool on = false;
  DropoutPlan plan;
  std::uint64_t site = 0;
};
thread_local Active g_active;

}  // namespace

DropoutScope::DropoutScope(const DropoutPlan& plan) {
  HG_ASSERT(!g_active.on, "nested DropoutScope");
  g_active.on = true;
  g_active.plan = plan;
  g_active.site = 0;
}

DropoutScope::~DropoutScope() { g_active.on = false; }

torch::Tensor keyed_dropout(const torch::Tensor& x, double p, bool training) {
  if (!training || p <= 0.0) return x;
  if (!g_active.on) return torch::dropout(x, p, /*train=*/true);
  const DropoutPlan& plan = g_active.plan;
  const std::int64_t n = x.size(0);
  HG_CHECK(plan.row_offset >= 0 && plan.row_offset + n <= plan.global_batch,
           "dropout: rows [" << plan.row_offset << ", " << plan.row_offset + n << ") outside the global batch of "
                             << plan.global_batch);
  auto shape = x.sizes().vec();
  shape[0] = plan.global_batch;
  // The same generator state on every rank: a 64-bit key per (step, site), the global batch's mask drawn
  // whole, this shard's rows kept.
  at::Generator gen = at::detail::createCPUGenerator(rng::make_key(plan.key, rng::Stream::kDropout, g_active.site++, 0));
  torch::Tensor keep = torch::empty(shape, torch::TensorOptions().dtype(torch::kFloat32));
  keep.bernoulli_(1.0 - p, gen);
  keep = keep.narrow(0, plan.row_offset, n).to(x.device(), x.scalar_type());
  return x * keep * (1.0 / (1.0 - p));
}

}  // namespace hessgap::models
