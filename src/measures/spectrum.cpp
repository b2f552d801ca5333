#include "measures/spectrum.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <sstream>

#include "comm/communicator.h"
#include "data/dataset.h"
#include "hessian/hvp_engine.h"
#include "hessian/lanczos.h"
#include "hessian/power_iteration.h"
#include "hessian/probes.h"
#include "measures/batch_loop.h"
#include "models/classifier.h"
#include "util/error.h"
#include "util/log.h"
#include "util/rng.h"
#include "util/timer.h"

namespace hessgap::measures {

SpectrumMethod parse_spectrum_method(const std::string& name) {
  if (name == "lanczos") return SpectrumMethod::kLanczos;
  if (name == "power") return SpectrumMethod::kPower;
  HG_FAIL("--method must be lanczos or power (got '" << name << "')");
}
std::string to_string(SpectrumMethod m) { return m == SpectrumMethod::kLanczos ? "lanczos" : "power"; }

void SpectrumOptions::validate() const {
  HG_CHECK(top_k >= 1, "--top-k must be >= 1 (got " << top_k << ")");
  HG_CHECK(lanczos_steps >= 1, "--lanczos-steps must be >= 1 (got " << lanczos_steps << ")");
  HG_CHECK(method == SpectrumMethod::kPower || top_k <= lanczos_steps,
           "--top-k " << top_k << " needs at least as many --lanczos-steps (got " << lanczos_steps << ")");
  HG_CHECK(tol >= 0 && std::isfinite(tol), "--tol must be >= 0 (got " << tol << ")");
  HG_CHECK(slq_probes >= 0, "--slq-probes must be >= 0 (got " << slq_probes << ")");
  HG_CHECK(max_iter >= 1, "--max-iter must be >= 1 (got " << max_iter << ")");
  HG_CHECK(method == SpectrumMethod::kLanczos || !smallest,
           "--method power finds the eigenvalues of largest magnitude: --which smallest needs --method lanczos");
  HG_CHECK(!per_layer || layer.empty(), "--per-layer and --layer exclude each other");
  HG_CHECK(landscape_points >= 0 && landscape_points != 1 && landscape_points <= 10001,
           "--landscape-points must be 0 or between 2 and 10001 (got " << landscape_points << ")");
  HG_CHECK(landscape_radius > 0 && std::isfinite(landscape_radius),
           "--landscape-radius must be > 0 (got " << landscape_radius << ")");
  HG_CHECK(landscape_points == 0 || !per_layer, "--landscape-points needs one operator: not with --per-layer");
}

namespace {

// Probe ids of the start vectors, apart from Hutchinson's batch ids (which are >= 0).
constexpr std::int64_t kEigenStart = -1;
constexpr std::int64_t kSlqStart = -2;
constexpr std::int64_t kPowerStart = -3;

// The start vector keyed by (seed, which, probe, layer): block b is Hessian layer first_layer + b, so a
// layer's start is the same block of the joint one.
hessian::BlockVector start_vector(const std::vector<torch::Tensor>& like, std::uint64_t seed, std::int64_t which,
                                  std::int64_t probe, std::int64_t first_layer, hessian::ProbeDistribution dist) {
  hessian::BlockVector v;
  for (std::size_t i = 0; i < like.size(); ++i) {
    v.push_back(hessian::draw_probe(like[i], dist, seed, which, probe, first_layer + static_cast<std::int64_t>(i)));
  }
  return v;
}

// What one symmetric operator (the whole Hessian or one layer's block) gave.
struct OperatorSpectrum {
  std::vector<double> eigenvalues, residuals, ritz_values, alpha, beta;
  std::vector<std::int64_t> iterations;
  std::vector<hessian::BlockVector> vectors;  // unit eigenvectors, in the order of eigenvalues
  int steps = 0;
  bool converged = false;
  std::vector<std::vector<double>> slq_nodes, slq_weights;
};

// Lanczos (or power iteration) and SLQ on `op`, whose vectors are shaped like `like`.
OperatorSpectrum analyse(const hessian::Operator& op, const std::vector<torch::Tensor>& like, std::int64_t dim,
                         std::int64_t first_layer, const SpectrumOptions& opts, std::string& phase, int& step,
                         const std::string& label) {
  OperatorSpectrum out;
  const int K = static_cast<int>(std::min<std::int64_t>(opts.top_k, dim));
  const int m = static_cast<int>(std::min<std::int64_t>(opts.lanczos_steps, dim));
  phase = "eigenvalues";
  step = 0;
  if (opts.method == SpectrumMethod::kPower) {
    hessian::PowerOptions po;
    po.count = K;
    po.max_iter = opts.max_iter;
    po.tol = opts.tol;
    po.start = [&](int k) {
      return start_vector(like, opts.seed, kPowerStart, k, first_layer, hessian::ProbeDistribution::kGaussian);
    };
    auto pairs = power_iteration(op, po);
    // Found by magnitude; reported descending like Lanczos'.
    std::vector<std::size_t> order(pairs.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return pairs[a].value > pairs[b].value; });
    out.converged = true;
    for (auto i : order) {
      out.eigenvalues.push_back(pairs[i].value);
      out.residuals.push_back(pairs[i].residual);
      out.iterations.push_back(pairs[i].iterations);
      out.vectors.push_back(pairs[i].vector);
      out.steps += pairs[i].iterations;
      out.converged = out.converged && pairs[i].converged;
    }
  } else {
    hessian::LanczosOptions lo;
    lo.steps = m;
    lo.tol = opts.tol;
    lo.watch = K;
    lo.smallest = opts.smallest;
    lo.keep_basis = true;
    log::Progress progress(label + ": Lanczos", lo.steps);
    lo.on_step = [&](int j, const std::vector<double>& values) {
      std::ostringstream d;
      d << "Ritz values " << values.front() << " .. " << values.back();
      progress.update(j, d.str());
    };
    const auto run = hessian::lanczos(op, start_vector(like, opts.seed, kEigenStart, 0, first_layer,
                                                       hessian::ProbeDistribution::kRademacher), lo);
    progress.finish();
    out.alpha = run.alpha;
    out.beta = run.beta;
    out.steps = run.steps;
    out.converged = run.converged || run.invariant;
    const hessian::RitzPairs rp = hessian::ritz_pairs(run.alpha, run.beta);
    out.ritz_values = rp.values;
    phase = "residuals";
    step = 0;
    for (int k = 0; k < std::min(K, run.steps); ++k) {
      const int i = opts.smallest ? std::min(K, run.steps) - 1 - k : run.steps - 1 - k;  // descending either way
      const double lambda = rp.values[static_cast<std::size_t>(i)];
      auto y = hessian::combine(run.basis, rp.vectors.select(1, i));
      const auto hy = op(y);
      out.eigenvalues.push_back(lambda);
      out.residuals.push_back(hessian::norm64(hessian::axpby(1.0, hy, -lambda, y)));
      out.vectors.push_back(std::move(y));
    }
  }

  // SLQ: m steps from each Rademacher start; nodes θ_j and weights (e_1ᵀ s_j)².
  for (int p = 0; p < opts.slq_probes; ++p) {
    phase = "SLQ probe " + std::to_string(p);
    step = 0;
    hessian::LanczosOptions so;
    so.steps = m;
    so.keep_basis = false;
    const auto s = hessian::lanczos(
        op, start_vector(like, opts.seed, kSlqStart, p, first_layer, hessian::ProbeDistribution::kRademacher), so);
    const auto pairs = hessian::ritz_pairs(s.alpha, s.beta);
    std::vector<double> nodes(static_cast<std::size_t>(m), std::nan("")), weights(static_cast<std::size_t>(m), 0.0);
    for (int j = 0; j < s.steps; ++j) {
      nodes[static_cast<std::size_t>(j)] = pairs.values[static_cast<std::size_t>(j)];
      const double first = pairs.vectors[0][j].item<double>();
      weights[static_cast<std::size_t>(j)] = first * first;
    }
    out.slq_nodes.push_back(nodes);
    out.slq_weights.push_back(weights);
    log::info(label + ": SLQ probe " + std::to_string(p + 1) + "/" + std::to_string(opts.slq_probes) + " done");
  }
  return out;
}

// The sample-weighted mean loss at W + t·y for each t (y over `blocks` of params) on this rank's batches
// (weights: their shares of the samples), all-reduced. The weights are perturbed in place without
// autograd and restored from a copy afterwards.
std::vector<double> landscape(const MeasureContext& ctx, const std::vector<std::pair<data::Batch, double>>& batches,
                              std::vector<torch::Tensor>& params, const std::vector<std::int64_t>& blocks,
                              const hessian::BlockVector& y, const std::vector<double>& ts) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> saved;
  for (auto b : blocks) saved.push_back(params[static_cast<std::size_t>(b)].detach().clone());
  std::vector<double> loss(ts.size(), 0.0);
  for (std::size_t k = 0; k < ts.size(); ++k) {
    for (std::size_t j = 0; j < blocks.size(); ++j) {
      params[static_cast<std::size_t>(blocks[j])].detach().copy_(saved[j] + y[j].to(saved[j].scalar_type()) * ts[k]);
    }
    for (const auto& [batch, weight] : batches) loss[k] += batch_loss(*ctx.model, batch).item<double>() * weight;
  }
  for (std::size_t j = 0; j < blocks.size(); ++j) params[static_cast<std::size_t>(blocks[j])].detach().copy_(saved[j]);
  ctx.world->all_reduce_sum(loss.data(), loss.size());
  return loss;
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
  std::int64_t only = -1;
  if (!opts.layer.empty()) {
    const auto it = std::find(names.begin(), names.end(), opts.layer);
    HG_CHECK(it != names.end(), "--layer '" << opts.layer << "' is not a Hessian layer of " << ctx.model->arch()
                                           << " (its first is '" << names.front() << "', its last '" << names.back()
                                           << "'; hessgap traces lists them all)");
    only = it - names.begin();
    r.layers = {opts.layer};
  } else {
    r.layers = names;
  }
  // The operators: the joint Hessian (all layers), one layer (--layer), or every layer in turn (--per-layer).
  std::vector<std::vector<std::int64_t>> operators;
  if (opts.per_layer) {
    for (std::size_t i = 0; i < params.size(); ++i) operators.push_back({static_cast<std::int64_t>(i)});
  } else if (only >= 0) {
    operators.push_back({only});
  } else {
    operators.emplace_back(params.size());
    std::iota(operators.back().begin(), operators.back().end(), 0);
  }
  if (!opts.per_layer) {  // one operator: its dimension bounds K (per layer, K is capped at each block's)
    for (auto b : operators.front()) r.num_params += params[static_cast<std::size_t>(b)].numel();
    HG_CHECK(opts.top_k <= r.num_params, "--top-k " << opts.top_k << " exceeds the " << r.num_params
                                                    << " parameters of the operator");
  }

  // This rank's batches, each with its first-order graph kept for every product (memory: one graph per
  // batch), weighted by its share of the samples.
  const double n = static_cast<double>(plan.num_samples());
  r.num_samples = plan.num_samples();
  struct Owned {
    std::unique_ptr<hessian::HvpEngine> engine;
    double weight;
  };
  std::vector<Owned> mine;
  std::vector<std::pair<data::Batch, double>> landscape_batches;  // kept for the landscape: no second read
  for_each_batch(ctx, plan, {}, [&](std::int64_t, const data::Batch& batch) {
    mine.push_back({std::make_unique<hessian::HvpEngine>(batch_loss(*ctx.model, batch), params),
                    static_cast<double>(batch.size()) / n});
    if (opts.landscape_points > 0) landscape_batches.emplace_back(batch, mine.back().weight);
    return std::string();
  });

  std::string phase;
  int step = 0;
  OperatorSpectrum joint;  // the one operator's result (not --per-layer)
  for (const auto& blocks : operators) {
    std::vector<torch::Tensor> like;
    std::int64_t dim = 0;
    for (auto b : blocks) {
      like.push_back(params[static_cast<std::size_t>(b)].detach());
      dim += like.back().numel();
    }
    const std::string label = opts.per_layer ? "spectrum " + names[static_cast<std::size_t>(blocks[0])] : "spectrum";
    // H v for the mean loss: Σ_b w_b H_b v over this rank's batches, then one flat all-reduce.
    hessian::Operator op = [&](const hessian::BlockVector& v) {
      hessian::BlockVector sum;
      for (const auto& t : v) sum.push_back(torch::zeros_like(t));
      for (auto& o : mine) {
        if (blocks.size() == 1) {
          sum[0].add_(o.engine->block_hvp(static_cast<std::size_t>(blocks[0]), v[0]), o.weight);
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
      HG_CHECK(torch::isfinite(all).all().item<bool>(), label << ": the Hessian-vector product is not finite ("
                                                              << phase << ", step " << step << ")");
      hessian::BlockVector out;
      std::int64_t at = 0;
      for (const auto& t : sum) {
        out.push_back(all.narrow(0, at, t.numel()).view(t.sizes()));
        at += t.numel();
      }
      return out;
    };
    OperatorSpectrum o = analyse(op, like, dim, blocks[0], opts, phase, step, label);
    if (!opts.per_layer) {
      joint = std::move(o);
    } else {
      LayerSpectrum l;
      l.layer = names[static_cast<std::size_t>(blocks[0])];
      l.num_params = dim;
      l.eigenvalues = std::move(o.eigenvalues);
      l.residuals = std::move(o.residuals);
      l.steps = o.steps;
      l.converged = o.converged;
      l.slq_nodes = std::move(o.slq_nodes);
      l.slq_weights = std::move(o.slq_weights);
      r.per_layer.push_back(std::move(l));
      log::info(label + ": top eigenvalue " + std::to_string(r.per_layer.back().eigenvalues.front()));
    }
  }
  mine.clear();  // the graphs hold the weights: free them before the landscape moves the weights

  if (!opts.per_layer) {
    OperatorSpectrum& o = joint;
    r.eigenvalues = o.eigenvalues;
    r.residuals = o.residuals;
    r.ritz_values = o.ritz_values;
    r.alpha = o.alpha;
    r.beta = o.beta;
    r.steps = o.steps;
    r.converged = o.converged;
    r.iterations = o.iterations;
    r.slq_nodes = std::move(o.slq_nodes);
    r.slq_weights = std::move(o.slq_weights);
    if (opts.keep_eigenvectors) {
      for (const auto& y : o.vectors) {
        std::vector<torch::Tensor> cpu;
        for (const auto& t : y) cpu.push_back(t.to(torch::kCPU));
        r.eigenvectors.push_back(cpu);
      }
    }
    if (opts.landscape_points > 0) {
      const int N = opts.landscape_points;
      for (int k = 0; k < N; ++k) {
        r.landscape_t.push_back(-opts.landscape_radius + 2.0 * opts.landscape_radius * k / (N - 1));
      }
      r.landscape_loss = landscape(ctx, landscape_batches, params, operators.front(), o.vectors.front(), r.landscape_t);
    }
  }
  r.seconds = world.max(clock.seconds());
  return r;
}

}  // namespace hessgap::measures
