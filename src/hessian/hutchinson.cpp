#include "hessian/hutchinson.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>

#include "comm/communicator.h"
#include "hessian/hvp_engine.h"
#include "hessian/joint_probes.h"
#include "hessian/probe_unit.h"
#include "util/error.h"

namespace hessgap::hessian {

ProbeScope parse_probe_scope(const std::string& name) {
  if (name == "joint") return ProbeScope::kJoint;
  if (name == "layer") return ProbeScope::kLayer;
  HG_FAIL("unknown probe scope '" << name << "' (expected joint or layer)");
}
StopRule parse_stop_rule(const std::string& name) {
  if (name == "reference") return StopRule::kReference;
  if (name == "stderr") return StopRule::kStandardError;
  HG_FAIL("unknown stopping rule '" << name << "' (expected reference or stderr)");
}
std::string to_string(ProbeScope s) { return s == ProbeScope::kJoint ? "joint" : "layer"; }
std::string to_string(StopRule r) { return r == StopRule::kReference ? "reference" : "stderr"; }

void TraceOptions::validate() const {
  HG_CHECK(tol > 0, "--tol must be > 0 (got " << tol << ")");
  HG_CHECK(rel_se > 0, "--rel-se must be > 0 (got " << rel_se << ")");
  HG_CHECK(min_probes >= 1, "--min-probes must be >= 1 (got " << min_probes << ")");
  HG_CHECK(max_probes >= 1, "--max-probes must be >= 1 (got " << max_probes << ")");
  HG_CHECK(min_probes <= max_probes,
           "--min-probes (" << min_probes << ") must not exceed --max-probes (" << max_probes << ")");
  HG_CHECK(in_flight >= 1 && in_flight <= 256, "--probes-in-flight must be in [1, 256] (got " << in_flight << ")");
  HG_CHECK(in_flight == 1 || (scope == ProbeScope::kJoint && estimator == TraceEstimator::kHutchinson),
           "--probes-in-flight " << in_flight << " batches joint Hutchinson probes: it needs --probe-scope joint and "
                                    "--estimator hutchinson");
  HG_CHECK(!cuda_graphs || (scope == ProbeScope::kJoint && estimator == TraceEstimator::kHutchinson &&
                             distribution == ProbeDistribution::kRademacher && in_flight == 1),
           "--cuda-graphs captures one joint Rademacher probe of Hutchinson's estimator: it needs --probe-scope joint, "
           "--distribution rademacher, --estimator hutchinson and --probes-in-flight 1");
  if (estimator != TraceEstimator::kHutchinson) {
    HG_CHECK(scope == ProbeScope::kLayer, "--estimator " << to_string(estimator)
                                              << " works on each layer's block: it needs --probe-scope layer");
    HG_CHECK(max_probes >= minimum_budget(estimator), "--estimator " << to_string(estimator) << " needs --max-probes >= "
                                                                     << minimum_budget(estimator) << " (its budget of block HVPs per layer; got "
                                                                     << max_probes << ")");
  }
}

TraceAccumulator::TraceAccumulator(std::size_t num_layers, const TraceOptions& opts)
    : opts_(opts), mean_(num_layers, 0.0), m2_(num_layers, 0.0), count_(num_layers, 0),
      active_(num_layers, true) {}

bool TraceAccumulator::done() const {
  for (bool a : active_) {
    if (a) return false;
  }
  return true;
}

void TraceAccumulator::stop_all() { std::fill(active_.begin(), active_.end(), false); }

bool TraceAccumulator::add(const std::vector<double>& values) {
  HG_ASSERT(values.size() == mean_.size(), "TraceAccumulator: wrong number of values");
  if (done()) return true;
  ++seen_;
  for (std::size_t i = 0; i < mean_.size(); ++i) {
    if (!active_[i]) continue;
    const double x = values[i];
    HG_ASSERT(!std::isnan(x), "TraceAccumulator: missing value for active layer " << i);
    ++count_[i];
    const double delta = x - mean_[i];
    mean_[i] += delta / static_cast<double>(count_[i]);
    m2_[i] += delta * (x - mean_[i]);
  }

  if (opts_.rule == StopRule::kReference) {
    // The reference compares the running mean of the total trace with its previous value.
    double total = 0.0;
    for (double m : mean_) total += m;
    const bool settled = std::abs(total - previous_total_) / (std::abs(previous_total_) + 1e-6) < opts_.tol;
    previous_total_ = total;
    if (seen_ >= opts_.min_probes && settled) {
      converged_ = true;
      stop_all();
    }
  } else {
    bool all_converged = true;
    std::vector<bool> converged(mean_.size(), false);
    for (std::size_t i = 0; i < mean_.size(); ++i) {
      if (!active_[i]) continue;
      const std::int64_t k = count_[i];
      const double se = k > 1 ? std::sqrt(m2_[i] / static_cast<double>(k - 1) / static_cast<double>(k))
                              : std::numeric_limits<double>::infinity();
      converged[i] = k >= opts_.min_probes && se <= opts_.rel_se * std::abs(mean_[i]);
      all_converged = all_converged && converged[i];
    }
    if (opts_.scope == ProbeScope::kLayer) {
      // Layer probes are independent: a converged layer stops spending HVPs.
      for (std::size_t i = 0; i < mean_.size(); ++i) {
        if (converged[i]) active_[i] = false;
      }
      if (done()) converged_ = true;
    } else if (all_converged) {
      converged_ = true;
      stop_all();
    }
  }
  if (seen_ >= opts_.max_probes) stop_all();
  return done();
}

LayerTraces TraceAccumulator::result() const {
  LayerTraces out;
  out.mean = mean_;
  out.probes = count_;
  out.std_error.resize(mean_.size());
  for (std::size_t i = 0; i < mean_.size(); ++i) {
    const std::int64_t k = count_[i];
    out.std_error[i] = k > 1 ? std::sqrt(m2_[i] / static_cast<double>(k - 1) / static_cast<double>(k))
                             : std::numeric_limits<double>::quiet_NaN();
  }
  out.converged = converged_;
  return out;
}

namespace {

// Joint probes first … first+count−1 of every layer: shaped like the layers for one probe, [count, ...]
// for more. From `drawer` when there is one (Rademacher), else drawn layer by layer (Gaussian).
std::vector<torch::Tensor> joint_probes(const std::vector<torch::Tensor>& params, const TraceOptions& opts,
                                        std::int64_t batch_id, std::int64_t first, std::int64_t count,
                                        const JointRademacher* drawer) {
  if (drawer != nullptr) {
    return count == 1 ? drawer->draw_one(opts.seed, batch_id, first) : drawer->draw(opts.seed, batch_id, first, count);
  }
  std::vector<torch::Tensor> z(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    std::vector<torch::Tensor> rows;
    for (std::int64_t j = 0; j < count; ++j) {
      rows.push_back(draw_probe(params[i], opts.distribution, opts.seed, batch_id, first + j, static_cast<std::int64_t>(i)));
    }
    z[i] = count == 1 ? rows[0] : torch::stack(rows);
  }
  return z;
}

// Values of probes first … first+count−1 (count ≥ 1; more than one only in joint scope), probe-major
// (count × L), for every active layer (NaN for the others). `engine` null: an empty shard of a batch,
// whose Hessian is zero (0 for the active layers, no probe drawn).
std::vector<double> probe_values(HvpEngine* engine, const std::vector<torch::Tensor>& params,
                                 const TraceOptions& opts, std::int64_t batch_id, std::int64_t first,
                                 std::int64_t count, const TraceAccumulator& acc,
                                 const JointRademacher* drawer, ProbeUnit* unit) {
  const std::size_t L = params.size();
  std::vector<double> values(static_cast<std::size_t>(count) * L, std::numeric_limits<double>::quiet_NaN());
  if (engine == nullptr) {
    for (std::size_t j = 0; j < static_cast<std::size_t>(count); ++j) {
      for (std::size_t i = 0; i < L; ++i) {
        if (acc.active(i)) values[j * L + i] = 0.0;
      }
    }
  } else if (unit != nullptr && count == 1) {
    values = unit->values(opts.seed, batch_id, first);
  } else if (opts.scope == ProbeScope::kJoint) {
    const std::vector<torch::Tensor> z = joint_probes(params, opts, batch_id, first, count, drawer);
    values = count == 1 ? dots64(z, engine->hvp(z)) : batched_dots64(z, engine->hvps(z, opts.batching));
  } else {
    HG_ASSERT(count == 1, "layer-scope probes one at a time");
    for (std::size_t i = 0; i < L; ++i) {
      if (!acc.active(i)) continue;
      auto z = draw_probe(params[i], opts.distribution, opts.seed, batch_id, first, static_cast<std::int64_t>(i));
      values[i] = dot64(z, engine->block_hvp(i, z));
    }
  }
  return values;
}

// Joint Rademacher probes come from one JointRademacher per batch: all layers in a few kernels where
// the weights live (on a GPU no host loop, per-layer copy or sync; on the CPU 1.7–2× faster than
// draw_probe's per-element loop), bitwise draw_probe's values.
std::optional<JointRademacher> joint_drawer(const std::vector<torch::Tensor>& params, const TraceOptions& opts) {
  std::optional<JointRademacher> drawer;
  if (opts.scope == ProbeScope::kJoint && opts.distribution == ProbeDistribution::kRademacher && !params.empty()) {
    drawer.emplace(params);
  }
  return drawer;
}

// Joint Rademacher probes one at a time go through a ProbeUnit (eager, or captured with --cuda-graphs):
// the same values as the drawer and the engine, in a form a CUDA graph can replay.
std::unique_ptr<ProbeUnit> probe_unit(HvpEngine* engine, const std::optional<JointRademacher>& drawer,
                                      const TraceOptions& opts) {
  if (engine == nullptr || !drawer || opts.in_flight != 1) return nullptr;
  return std::make_unique<ProbeUnit>(*engine, *drawer, opts.cuda_graphs);
}

// Hutch++ / XTrace on every layer's block with the budget max_probes; probe j of layer i is the same
// keyed draw as Hutchinson's probe j of that layer. `shards` non-null: the engine holds one shard of
// the batch (null: an empty one) and every block product is summed over the shards' ranks, so each
// rank runs the same sketch on the whole batch's block.
LayerTraces sketched_traces(HvpEngine* engine, const std::vector<torch::Tensor>& params, const TraceOptions& opts,
                            std::int64_t batch_id, comm::Communicator* shards) {
  LayerTraces out;
  for (std::size_t i = 0; i < params.size(); ++i) {
    const TensorOperator op = [&](const torch::Tensor& x) {
      torch::Tensor y = engine != nullptr ? engine->block_hvp(i, x).contiguous() : torch::zeros_like(x);
      if (shards != nullptr) shards->all_reduce_sum(y);
      return y;
    };
    const ProbeSource probe = [&](std::int64_t j) {
      return draw_probe(params[i], opts.distribution, opts.seed, batch_id, j, static_cast<std::int64_t>(i));
    };
    const SketchedTrace t = opts.estimator == TraceEstimator::kHutchPlusPlus
                                ? hutchpp_trace(op, probe, params[i].numel(), opts.max_probes)
                                : xtrace_trace(op, probe, params[i].numel(), opts.max_probes);
    out.mean.push_back(t.estimate);
    out.std_error.push_back(t.std_error);
    out.probes.push_back(t.products);
  }
  out.converged = false;  // no stopping rule: the budget is spent
  return out;
}

}  // namespace

LayerTraces estimate_traces(HvpEngine& engine, const TraceOptions& opts, std::int64_t batch_id,
                            comm::Communicator& group) {
  if (opts.estimator != TraceEstimator::kHutchinson) {
    HG_CHECK(group.size() == 1, "--estimator " << to_string(opts.estimator)
                                               << " computes a batch on one rank: use --probe-ranks 1");
    const long before = engine.products();
    LayerTraces out = sketched_traces(&engine, engine.params(), opts, batch_id, nullptr);
    out.hvps_computed = engine.products() - before;
    return out;
  }
  const std::size_t L = engine.num_layers();
  const int P = group.size();
  const int r = group.rank();
  const std::int64_t K = opts.in_flight;
  const std::size_t per_rank = static_cast<std::size_t>(K) * L;
  TraceAccumulator acc(L, opts);
  const std::optional<JointRademacher> drawer = joint_drawer(engine.params(), opts);
  const std::unique_ptr<ProbeUnit> unit = probe_unit(&engine, drawer, opts);
  const long hvps_before = engine.products();
  std::vector<double> mine(per_rank), gathered(per_rank * static_cast<std::size_t>(P));
  for (std::int64_t round = 0; !acc.done(); ++round) {
    // All ranks agree on acc's state (it is fed the same gathered values), so every rank takes
    // the same number of rounds and reaches all_gather the same number of times.
    const std::int64_t first = (round * P + r) * K;
    const std::int64_t count = std::clamp<std::int64_t>(opts.max_probes - first, 0, K);
    std::fill(mine.begin(), mine.end(), std::numeric_limits<double>::quiet_NaN());
    if (count > 0) {
      const auto v = probe_values(&engine, engine.params(), opts, batch_id, first, count, acc,
                                  drawer ? &*drawer : nullptr, unit.get());
      std::copy(v.begin(), v.end(), mine.begin());
    }
    group.all_gather(mine.data(), per_rank, gathered.data());
    // Rank q's K probes follow rank q−1's: the gathered rows are in probe order.
    for (std::size_t row = 0; row < static_cast<std::size_t>(P * K) && !acc.done(); ++row) {
      acc.add(std::vector<double>(gathered.begin() + static_cast<std::ptrdiff_t>(row * L),
                                  gathered.begin() + static_cast<std::ptrdiff_t>((row + 1) * L)));
    }
  }
  LayerTraces out = acc.result();
  out.hvps_computed = engine.products() - hvps_before;
  return out;
}

LayerTraces estimate_traces_sharded(HvpEngine* engine, const std::vector<torch::Tensor>& params,
                                    const TraceOptions& opts, std::int64_t batch_id, comm::Communicator& shards) {
  HG_ASSERT(engine == nullptr || engine->num_layers() == params.size(), "estimate_traces_sharded: layer count");
  const long before = engine != nullptr ? engine->products() : 0;
  auto products = [&] { return engine != nullptr ? engine->products() - before : 0L; };
  if (opts.estimator != TraceEstimator::kHutchinson) {
    LayerTraces out = sketched_traces(engine, params, opts, batch_id, &shards);
    out.hvps_computed = products();
    return out;
  }
  const std::size_t L = params.size();
  const auto P = static_cast<std::size_t>(shards.size());
  TraceAccumulator acc(L, opts);
  const std::optional<JointRademacher> drawer = engine != nullptr ? joint_drawer(params, opts) : std::nullopt;
  const std::unique_ptr<ProbeUnit> unit = probe_unit(engine, drawer, opts);
  std::vector<double> gathered, sum(L);
  for (std::int64_t first = 0; !acc.done(); first += opts.in_flight) {
    // acc stops at max_probes, so count ≥ 1 here, and the same on every rank.
    const std::int64_t count = std::min<std::int64_t>(opts.in_flight, opts.max_probes - first);
    const std::size_t n = static_cast<std::size_t>(count) * L;
    const std::vector<double> mine =
        probe_values(engine, params, opts, batch_id, first, count, acc, drawer ? &*drawer : nullptr,
                     unit.get());
    // Gathered and summed in rank order rather than all-reduced: every rank then holds bitwise the
    // same sums, whatever MPI's reduction order, so all take the same stopping decision.
    gathered.resize(n * P);
    shards.all_gather(mine.data(), n, gathered.data());
    for (std::size_t j = 0; j < static_cast<std::size_t>(count) && !acc.done(); ++j) {
      std::fill(sum.begin(), sum.end(), 0.0);
      for (std::size_t q = 0; q < P; ++q) {
        for (std::size_t i = 0; i < L; ++i) sum[i] += gathered[q * n + j * L + i];
      }
      acc.add(sum);
    }
  }
  LayerTraces out = acc.result();
  out.hvps_computed = products();
  return out;
}

}  // namespace hessgap::hessian
