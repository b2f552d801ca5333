#include "measures/spectrum.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <sstream>

#include "comm/communicator.h"
#include "data/dataset.h"
#include "hessian/hvp_engine.h"
#include "hessian/lanczos.h"
#include "hessian/probes.h"
#include "measures/batch_loop.h"
#include "models/classifier.h"
#include "util/error.h"
#include "util/log.h"
#include "util/rng.h"
#include "util/timer.h"

namespace hessgap::measures {

void SpectrumOptions::validate() const {
  HG_CHECK(top_k >= 1, "--top-k must be >= 1 (got " << top_k << ")");
  HG_CHECK(lanczos_steps >= 1, "--lanczos-steps must be >= 1 (got " << lanczos_steps << ")");
  HG_CHECK(top_k <= lanczos_steps, "--top-k " << top_k << " needs at least as many --lanczos-steps (got "
                                              << lanczos_steps << ")");
  HG_CHECK(tol >= 0 && std::isfinite(tol), "--tol must be >= 0 (got " << tol << ")");
  HG_CHECK(slq_probes >= 0, "--slq-probes must be >= 0 (got " << slq_probes << ")");
}

namespace {

// Probe ids of the start vectors, apart from Hutchinson's batch ids (which are >= 0).
constexpr std::int64_t kEigenStart = -1;
constexpr std::int64_t kSlqStart = -2;

hessian::BlockVector start_vector(const std::vector<torch::Tensor>& like, std::uint64_t seed, std::int64_t which,
                                  std::int64_t probe) {
  hessian::BlockVector v;
  for (std::size_t i = 0; i < like.size(); ++i) {
    v.push_back(hessian::draw_probe(like[i], hessian::ProbeDistribution::kRademacher, seed, which, probe,
                                    static_cast<std::int64_t>(i)));
  }
  return v;
}

}  // namespace

SpectrumResult compute_spectrum(const MeasureContext& ctx, const SpectrumOptions& opts) {
  comm::Communicator& world = *ctx.world;
  opts.validate();
  Stopwatch clock;
  const BatchPlan plan = plan_batches(ctx.dataset->size(), ctx.plan);
  require_labels(*ctx.dataset, plan, "spectrum");
  auto params = prepare_hessian_params(*ctx.model);
  SpectrumResult r;
  const auto names = ctx.model->hessian_layers();
  std::int64_t block = -1;
  if (!opts.layer.empty()) {
    const auto it = std::find(names.begin(), names.end(), opts.layer);
    HG_CHECK(it != names.end(), "--layer '" << opts.layer << "' is not a Hessian layer of " << ctx.model->arch()
                                           << " (its first is '" << names.front() << "', its last '" << names.back()
                                           << "'; hessgap traces lists them all)");
    block = it - names.begin();
    r.layers = {opts.layer};
  } else {
    r.layers = names;
  }
  std::vector<torch::Tensor> like;
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (block < 0 || static_cast<std::int64_t>(i) == block) like.push_back(params[i].detach());
  }
  for (const auto& t : like) r.num_params += t.numel();
  HG_CHECK(opts.top_k <= r.num_params, "--top-k " << opts.top_k << " exceeds the " << r.num_params
                                                  << " parameters of the operator");

  // This rank's batches, each with its first-order graph kept for every product (memory: one graph per
  // batch), weighted by its share of the samples.
  const double n = static_cast<double>(plan.num_samples());
  r.num_samples = plan.num_samples();
  struct Owned {
    std::unique_ptr<hessian::HvpEngine> engine;
    double weight;
  };
  std::vector<Owned> mine;
  for_each_batch(ctx, plan, {}, [&](std::int64_t, const data::Batch& batch) {
    mine.push_back({std::make_unique<hessian::HvpEngine>(batch_loss(*ctx.model, batch), params),
                    static_cast<double>(batch.size()) / n});
    return std::string();
  });

  // H v for the mean loss: Σ_b w_b H_b v over this rank's batches, then one flat all-reduce.
  std::string phase = "eigenvalues";
  int step = 0;
  hessian::Operator op = [&](const hessian::BlockVector& v) {
    hessian::BlockVector sum;
    for (const auto& t : v) sum.push_back(torch::zeros_like(t));
    for (auto& o : mine) {
      if (block >= 0) {
        sum[0].add_(o.engine->block_hvp(static_cast<std::size_t>(block), v[0]), o.weight);
      } else {
        const auto hv = o.engine->hvp(v);
        for (std::size_t i = 0; i < sum.size(); ++i) sum[i].add_(hv[i], o.weight);
      }
    }
    std::vector<torch::Tensor> flat;
    for (const auto& t : sum) flat.push_back(t.reshape({-1}));
    torch::Tensor all = torch::cat(flat);
    world.all_reduce_sum(all);
    ++r.hvps;
    ++step;
    HG_CHECK(torch::isfinite(all).all().item<bool>(),
             "spectrum: the Hessian-vector product is not finite (" << phase << ", step " << step << ")");
    hessian::BlockVector out;
    std::int64_t at = 0;
    for (const auto& t : sum) {
      out.push_back(all.narrow(0, at, t.numel()).view(t.sizes()));
      at += t.numel();
    }
    return out;
  };

  hessian::LanczosOptions lo;
  lo.steps = static_cast<int>(std::min<std::int64_t>(opts.lanczos_steps, r.num_params));
  lo.tol = opts.tol;
  lo.watch = opts.top_k;
  lo.smallest = opts.smallest;
  lo.keep_basis = true;
  log::Progress progress("spectrum: Lanczos", lo.steps);
  lo.on_step = [&](int j, const std::vector<double>& values) {
    std::ostringstream d;
    d << "Ritz values " << values.front() << " .. " << values.back();
    progress.update(j, d.str());
  };
  const auto run = hessian::lanczos(op, start_vector(like, opts.seed, kEigenStart, 0), lo);
  progress.finish();
  r.alpha = run.alpha;
  r.beta = run.beta;
  r.steps = run.steps;
  r.converged = run.converged || run.invariant;
  const hessian::RitzPairs rp = hessian::ritz_pairs(run.alpha, run.beta);
  r.ritz_values = rp.values;
  const int K = std::min(opts.top_k, run.steps);
  phase = "residuals";
  step = 0;
  for (int k = 0; k < K; ++k) {
    const int i = opts.smallest ? K - 1 - k : run.steps - 1 - k;  // descending either way
    const double lambda = rp.values[static_cast<std::size_t>(i)];
    const auto y = hessian::combine(run.basis, rp.vectors.select(1, i));
    const auto hy = op(y);
    r.eigenvalues.push_back(lambda);
    r.residuals.push_back(hessian::norm64(hessian::axpby(1.0, hy, -lambda, y)));
    if (opts.keep_eigenvectors) {
      std::vector<torch::Tensor> cpu;
      for (const auto& t : y) cpu.push_back(t.to(torch::kCPU));
      r.eigenvectors.push_back(cpu);
    }
  }

  // SLQ: m steps from each Rademacher start; nodes θ_j and weights (e_1ᵀ s_j)².
  for (int p = 0; p < opts.slq_probes; ++p) {
    phase = "SLQ probe " + std::to_string(p);
    step = 0;
    hessian::LanczosOptions so;
    so.steps = lo.steps;
    so.keep_basis = false;
    const auto s = hessian::lanczos(op, start_vector(like, opts.seed, kSlqStart, p), so);
    const auto pairs = hessian::ritz_pairs(s.alpha, s.beta);
    std::vector<double> nodes(static_cast<std::size_t>(lo.steps), std::nan("")), weights(static_cast<std::size_t>(lo.steps), 0.0);
    for (int j = 0; j < s.steps; ++j) {
      nodes[static_cast<std::size_t>(j)] = pairs.values[static_cast<std::size_t>(j)];
      const double first = pairs.vectors[0][j].item<double>();
      weights[static_cast<std::size_t>(j)] = first * first;
    }
    r.slq_nodes.push_back(nodes);
    r.slq_weights.push_back(weights);
    log::info("spectrum: SLQ probe " + std::to_string(p + 1) + "/" + std::to_string(opts.slq_probes) + " done");
  }
  r.seconds = world.max(clock.seconds());
  return r;
}

}  // namespace hessgap::measures
