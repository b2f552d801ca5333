#include "job/measure_job.h"

#include <torch/torch.h>

#include <set>

#include "comm/communicator.h"
#include "comm/gather.h"
#include "data/dataset.h"
#include "data/image_folder.h"
#include "data/label_noise.h"
#include "data/subset_dataset.h"
#include "job/config_fields.h"
#include "job/data_checks.h"
#include "models/classifier.h"
#include "models/registry.h"
#include "results/results_file.h"
#include "util/error.h"
#include "util/json_bounded.h"
#include "util/log.h"

namespace hessgap::job {

// ---- configuration ------------------------------------------------------------------------------------

measures::TracesOptions MeasureConfig::resolved_traces() const {
  measures::TracesOptions t = traces;
  t.trace.scope = hessian::parse_probe_scope(probe_scope);
  t.trace.rule = hessian::parse_stop_rule(stop_rule);
  t.trace.distribution = hessian::parse_probe_distribution(distribution);
  t.trace.estimator = hessian::parse_trace_estimator(estimator);
  t.trace.batching = hessian::parse_probe_batching(probe_batching);
  t.trace.seed = common.seed;
  t.shard_batch = shard_batch;
  return t;
}

measures::DistanceOptions MeasureConfig::resolved_distance() const {
  HG_CHECK(head_reference == "auto" || head_reference == "zero" || head_reference == "init",
           "--head-reference must be auto, zero or init (got '" << head_reference << "')");
  measures::DistanceOptions d;
  d.mode = hessian::parse_measure_mode(mode);
  d.train_size = train_size;
  d.psd = psd;
  d.shard_batch = shard_batch;
  if (head_reference != "auto") d.head_reference = measures::parse_head_reference(head_reference);
  return d;
}

measures::StabilityOptions MeasureConfig::resolved_stability() const {
  measures::StabilityOptions s = stability;
  s.seed = common.seed;
  return s;
}

measures::SpectrumOptions MeasureConfig::resolved_spectrum() const {
  HG_CHECK(which == "largest" || which == "smallest", "--which must be largest or smallest (got '" << which << "')");
  measures::SpectrumOptions s = spectrum;
  s.smallest = which == "smallest";
  s.method = measures::parse_spectrum_method(spectrum_method);
  s.seed = common.seed;
  return s;
}

void MeasureConfig::validate(int world_size) const {
  if (kind == "traces") {
    resolved_traces().validate(world_size);
  } else if (kind == "measures") {
    resolved_distance().validate();
    HG_CHECK(!init_checkpoint.empty(), "--init-checkpoint is required (W(s), the weights before fine-tuning)");
  } else if (kind == "stability") {
    resolved_stability().validate();
  } else if (kind == "spectrum") {
    resolved_spectrum().validate();
  } else {
    HG_CHECK(kind == "eval", "unknown measurement '" << kind << "' (expected traces, measures, stability, eval or spectrum)");
  }
  // Per-batch weights of traces, measures and stability come from the plan, so they need whole batches.
  HG_CHECK(!common.data.skip_unreadable || kind == "eval",
           "--skip-unreadable is only supported by eval (the per-batch weights of " << kind << " assume whole batches)");
}

namespace {

#define HG_COMMON_FIELDS(X)                                                                                       \
  X(model, common.checkpoint, "checkpoint") X(model, common.arch, "arch") X(model, common.num_classes, "num_classes") \
  X(model, common.new_head, "new_head") X(model, common.allow_nonfinite, "allow_nonfinite")                     \
  X(data, common.data, "dataset") X(data, common.batch_size, "batch_size")     \
  X(data, common.sample_size, "sample_size") X(data, common.sample_rule, "sample_rule")                              \
  X(data, common.sample_order, "sample_order") X(compute, common.device, "device") X(compute, common.dtype, "dtype") \
  X(compute, common.allow_tf32, "allow_tf32")                                                                    \
  X(compute, common.threads, "threads") X(compute, common.verbosity, "verbosity") X(measure, kind, "kind")          \
  X(measure, common.seed, "seed") X(output, common.out, "out")
#define HG_TRACES_FIELDS(X)                                                                                        \
  X(measure, probe_scope, "probe_scope") X(measure, stop_rule, "stop_rule") X(measure, distribution, "distribution") \
  X(measure, traces.trace.tol, "tol") X(measure, traces.trace.rel_se, "rel_se")                                      \
  X(measure, traces.trace.min_probes, "min_probes") X(measure, traces.trace.max_probes, "max_probes")                \
  X(measure, traces.probe_ranks, "probe_ranks") X(measure, estimator, "estimator")  \
  X(measure, traces.trace.in_flight, "probes_in_flight") X(measure, probe_batching, "probe_batching")              \
  X(measure, shard_batch, "shard_batch") X(compute, traces.trace.cuda_graphs, "cuda_graphs")
#define HG_DISTANCE_FIELDS(X)                                                                          \
  X(measure, init_checkpoint, "init_checkpoint") X(measure, mode, "mode")                               \
  X(measure, head_reference, "head_reference") X(measure, train_size, "train_size")            \
  X(measure, psd.steps, "psd_steps") X(measure, psd.tol, "psd_tol") X(measure, shard_batch, "shard_batch")
#define HG_STABILITY_FIELDS(X) X(measure, stability.eps, "eps") X(measure, stability.repeats, "repeats")
#define HG_EVAL_FIELDS(X) X(measure, per_sample, "per_sample")
#define HG_SPECTRUM_FIELDS(X)                                                                                     \
  X(measure, spectrum.top_k, "top_k") X(measure, spectrum.lanczos_steps, "lanczos_steps")                         \
  X(measure, spectrum.tol, "tol") X(measure, which, "which") X(measure, spectrum.slq_probes, "slq_probes")       \
  X(measure, spectrum.layer, "layer") X(measure, spectrum.keep_eigenvectors, "save_eigenvectors")          \
  X(measure, spectrum_method, "method") X(measure, spectrum.max_iter, "max_iter")                               \
  X(measure, spectrum.per_layer, "per_layer") X(measure, spectrum.landscape_points, "landscape_points")            \
  X(measure, spectrum.landscape_radius, "landscape_radius")

}  // namespace

nlohmann::json to_json(const MeasureConfig& config) {
  MeasureConfig c = config;
  // --shuffle is the older spelling of --sample-order random: store what was used.
  if (c.common.shuffle) c.common.sample_order = "random";
  nlohmann::json j;
  HG_COMMON_FIELDS(HG_JSON_OUT)
  if (c.kind == "traces") {
    HG_TRACES_FIELDS(HG_JSON_OUT)
  } else if (c.kind == "measures") {
    HG_DISTANCE_FIELDS(HG_JSON_OUT)
  } else if (c.kind == "stability") {
    HG_STABILITY_FIELDS(HG_JSON_OUT)
  } else if (c.kind == "eval") {
    HG_EVAL_FIELDS(HG_JSON_OUT)
  } else if (c.kind == "spectrum") {
    HG_SPECTRUM_FIELDS(HG_JSON_OUT)
  }
  return j;
}

MeasureConfig measure_config_from_json(const nlohmann::json& j) {
  HG_CHECK(j.is_object(), "measure configuration: expected a JSON object of sections, got " << j.type_name());
  for (const auto& [section, values] : j.items()) {
    HG_CHECK(values.is_object(), "measure configuration: section '" << section << "' is not an object");
  }
  MeasureConfig c;
  try {
    HG_COMMON_FIELDS(HG_JSON_IN)
    HG_TRACES_FIELDS(HG_JSON_IN)
    HG_DISTANCE_FIELDS(HG_JSON_IN)
    HG_STABILITY_FIELDS(HG_JSON_IN)
    HG_EVAL_FIELDS(HG_JSON_IN)
    // "tol" is traces' and spectrum's name alike: read into both; only the kind's own is used (and written).
    HG_SPECTRUM_FIELDS(HG_JSON_IN)
  } catch (const nlohmann::json::exception& e) {
    HG_FAIL("measure configuration: " << e.what());
  }
  return c;
}

#undef HG_COMMON_FIELDS
#undef HG_TRACES_FIELDS
#undef HG_DISTANCE_FIELDS
#undef HG_STABILITY_FIELDS
#undef HG_EVAL_FIELDS
#undef HG_SPECTRUM_FIELDS

// ---- the job ------------------------------------------------------------------------------------------

namespace {

// The ids every rank's image folder left out as unreadable (--skip-unreadable), sorted and distinct, on
// every rank. Collective (all_gather_values).
std::vector<std::int64_t> all_skipped_ids(comm::Communicator& world, const data::Dataset& dataset) {
  const auto* folder = dynamic_cast<const data::ImageFolderDataset*>(&data::source_dataset(dataset));
  const std::vector<std::int64_t> mine = folder ? folder->skipped_ids() : std::vector<std::int64_t>{};
  std::set<std::int64_t> all;
  for (const auto& ids : comm::all_gather_values(world, mine)) all.insert(ids.begin(), ids.end());
  return {all.begin(), all.end()};
}

// W(s) of every Hessian layer, by name: the init checkpoint goes through the same adaptation and strict
// loading as --checkpoint, into a second model of the same architecture. Around zero the head is not
// needed, so it may be missing there or sized for another task. Not collective.
std::map<std::string, torch::Tensor> load_init(const MeasureConfig& c, const Session& s,
                                               measures::DistanceOptions& d) {
  if (c.head_reference == "auto") d.head_reference = measures::default_head_reference(*s.model);
  const bool head_from_init = d.head_reference == measures::HeadReference::kInit;
  auto init_model = models::make_model(s.model->arch(), s.model->num_classes());
  try {
    load_weights(*init_model, c.init_checkpoint, "--init-checkpoint", !head_from_init);
    if (!c.common.allow_nonfinite) require_finite(*init_model, c.init_checkpoint, "--init-checkpoint");
  } catch (const Error& e) {
    if (!head_from_init) throw;
    HG_FAIL(e.what() << " (the head is measured around its value in --init-checkpoint, --head-reference "
                     << c.head_reference << "; --head-reference zero measures it around zero and needs no head there)");
  }
  std::map<std::string, torch::Tensor> init;
  const auto names = init_model->hessian_layers();
  const auto params = models::parameters_by_name(*init_model, names);
  for (std::size_t i = 0; i < names.size(); ++i) init[names[i]] = params[i].detach();
  log::info("init: " + s.model->arch() + " from " + c.init_checkpoint + ", head measured around " +
            measures::to_string(d.head_reference) + (c.head_reference == "auto" ? " (auto)" : ""));
  return init;
}

}  // namespace

MeasureOutcome run_measure(comm::Communicator& world, const MeasureConfig& c, const std::string& command_line) {
  c.validate(world.size());
  Session s = open_session(c.common, world);
  // Everything read and checked before the first collective, so that a bad input fails every rank alike.
  require_samples(*s.dataset, c.common.data, "hessgap " + c.kind);
  require_positions(*s.model, c.common.data);
  measures::DistanceOptions distance;
  std::map<std::string, torch::Tensor> init;
  if (c.kind == "measures") {
    distance = c.resolved_distance();
    init = load_init(c, s, distance);
  }
  auto dev_world = device_world(world, s);
  auto ctx = s.context(*dev_world);

  MeasureOutcome out;
  out.class_names = s.dataset->class_names();
  out.logits_float32 = s.dtype == torch::kFloat32;
  const auto traces = c.kind == "traces" ? c.resolved_traces() : measures::TracesOptions{};
  const auto stability = c.kind == "stability" ? c.resolved_stability() : measures::StabilityOptions{};
  const auto spectrum = c.kind == "spectrum" ? c.resolved_spectrum() : measures::SpectrumOptions{};
  if (c.kind == "traces") out.traces = measures::compute_traces(ctx, traces);
  if (c.kind == "measures") out.distance = measures::compute_distance(ctx, distance, init);
  if (c.kind == "stability") out.stability = measures::compute_stability(ctx, stability);
  if (c.kind == "spectrum") out.spectrum = measures::compute_spectrum(ctx, spectrum);
  if (c.kind == "eval") {
    measures::EvalOptions e;
    e.per_sample = c.per_sample;
    out.eval = measures::evaluate(ctx, e);
  }
  const std::vector<std::int64_t> skipped = all_skipped_ids(world, *s.dataset);
  const PeakMemory peak = peak_memory_over(world, s.device);

  if (world.rank() == 0 && !c.common.out.empty()) {
    results::RunInfo info;
    info.subcommand = c.kind;
    info.command_line = command_line;
    info.config_json = json_text(to_json(c));
    info.world_size = dev_world->size();
    info.backend = dev_world->backend();
    info.arch = s.model->arch();
    info.checkpoint = s.checkpoint_path;
    info.load_notes = s.load_notes;
    info.data_description = s.dataset->describe();
    info.sample_order = s.plan.shuffle ? "random" : "natural";
    info.sample_seed = s.plan.seed;
    info.layers = s.model->hessian_layers();
    info.peak_memory_bytes = peak.bytes;
    info.peak_memory_source = peak.source;
    results::ResultsFile f(c.common.out, info);
    if (out.traces) f.write_traces(*out.traces, traces);
    if (out.distance) f.write_distance(*out.distance, distance, c.init_checkpoint);
    if (out.distance && out.distance->block) {
      // --mode psd: the clipped block measure from the same Lanczos runs, beside it (as train's /measures_block).
      measures::DistanceOptions block = distance;
      block.mode = hessian::MeasureMode::kBlock;
      f.write_distance(*out.distance->block, block, c.init_checkpoint, "/measures_block");
    }
    if (out.stability) f.write_stability(*out.stability, stability);
    if (out.spectrum) f.write_spectrum(*out.spectrum, spectrum);
    if (out.eval) f.write_eval(*out.eval, out.class_names, out.logits_float32);
    if (c.common.data.skip_unreadable) f.write_skipped(skipped);
    // Noisy or weak labels: record which ones, so the measures can be read against the realised noise.
    const data::LabelAudit audit = data::audit_labels(*s.dataset);
    if (audit.source != "clean") f.write_labels(audit, s.dataset->num_classes(), s.dataset->class_names());
    f.commit();
    log::info("results written to " + c.common.out);
  }
  return out;
}

}  // namespace hessgap::job
