#include "results/results_file.h"

#include <algorithm>
#include <ctime>

#include "hessgap_version.h"
#include "io/atomic_output.h"
#include "io/h5.h"

namespace hessgap::results {

namespace {
std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}
}  // namespace

ResultsFile::ResultsFile(const std::string& path, const RunInfo& info) {
  if (path.empty()) return;
  out_ = std::make_unique<io::AtomicOutput>(path);
  file_ = std::make_unique<io::H5File>(io::H5File::create(out_->temp_path()));
  auto& f = *file_;
  f.set_attr("/", "format", "hessgap-results");
  f.set_attr("/", "format_version", static_cast<std::int64_t>(1));
  f.set_attr("/", "hessgap_version", HG_VERSION);
  f.set_attr("/", "git_sha", HG_GIT_SHA);
  f.set_attr("/", "subcommand", info.subcommand);
  f.set_attr("/", "command_line", info.command_line);
  f.set_attr("/", "config", info.config_json);
  f.set_attr("/", "world_size", static_cast<std::int64_t>(info.world_size));
  f.set_attr("/", "backend", info.backend);
  f.set_attr("/", "created_utc", utc_now());
  if (info.peak_memory_bytes >= 0) {
    f.set_attr("/", "peak_memory_bytes", info.peak_memory_bytes);
    f.set_attr("/", "peak_memory_source", info.peak_memory_source + ", largest over the ranks");
  }
  if (!info.run_id.empty()) {
    // A run file is written once, complete (AtomicOutput): status and complete say so to readers
    // that index a sweep folder.
    f.set_attr("/", "run_id", info.run_id);
    f.set_attr("/", "status", info.complete ? "complete" : "partial");
    f.set_attr("/", "complete", static_cast<std::int64_t>(info.complete ? 1 : 0));
  }
  f.create_group("/model");
  f.set_attr("/model", "arch", info.arch);
  f.set_attr("/model", "checkpoint", info.checkpoint);
  if (!info.load_notes.empty()) {
    f.write_strings("/model/load_notes", info.load_notes,
                    "What loading the checkpoint changed (prefixes, dropped tensors, resized position embeddings, a new head)");
  }
  f.create_group("/data");
  f.set_attr("/data", "description", info.data_description);
  if (!info.sample_order.empty()) {
    f.set_attr("/data", "sample_order", info.sample_order);
    f.set_attr("/data", "sample_seed", static_cast<std::int64_t>(info.sample_seed));
  }
  f.write_strings("/layers/names", info.layers,
                  "Hessian layers (parameter names), in the order of every per-layer array");
}

ResultsFile::~ResultsFile() = default;

void ResultsFile::write_traces(const measures::TracesResult& r, const measures::TracesOptions& opts) {
  if (!file_) return;
  auto& f = *file_;
  const auto B = static_cast<std::int64_t>(r.num_batches());
  const auto L = static_cast<std::int64_t>(r.layers.size());
  f.create_group("/traces");
  f.set_attr("/traces", "estimator", hessian::to_string(opts.trace.estimator));
  f.set_attr("/traces", "probe_scope", hessian::to_string(opts.trace.scope));
  f.set_attr("/traces", "stop_rule", hessian::to_string(opts.trace.rule));
  f.set_attr("/traces", "distribution", hessian::to_string(opts.trace.distribution));
  f.set_attr("/traces", "tol", opts.trace.tol);
  f.set_attr("/traces", "rel_se", opts.trace.rel_se);
  f.set_attr("/traces", "min_probes", static_cast<std::int64_t>(opts.trace.min_probes));
  f.set_attr("/traces", "max_probes", static_cast<std::int64_t>(opts.trace.max_probes));
  f.set_attr("/traces", "seed", static_cast<std::int64_t>(opts.trace.seed));
  f.set_attr("/traces", "probe_ranks", static_cast<std::int64_t>(opts.probe_ranks));
  f.set_attr("/traces", "probes_in_flight", static_cast<std::int64_t>(opts.trace.in_flight));
  f.set_attr("/traces", "probe_batching", hessian::to_string(opts.trace.batching));
  f.set_attr("/traces", "shard_batch", static_cast<std::int64_t>(opts.shard_batch ? 1 : 0));
  f.set_attr("/traces", "cuda_graphs", static_cast<std::int64_t>(opts.trace.cuda_graphs ? 1 : 0));
  f.write("/traces/batch_mean", r.mean, {B, L}, "Hutchinson estimate of tr(H_ii) per batch and layer", "loss/weight^2");
  f.write("/traces/batch_std_error", r.std_error, {B, L}, "Standard error of batch_mean (sample std of probe values / sqrt(probes)); NaN with one probe", "loss/weight^2");
  f.write("/traces/batch_probes", r.probes, {B, L}, "Probes used per batch and layer");
  f.write("/traces/batch_converged", r.converged, {B}, "1 if the stopping rule fired before --max-probes");
  f.write("/traces/batch_sizes", r.batch_sizes, {B}, "Samples in each batch");
  f.write("/traces/batch_loss", r.batch_loss, {B}, "Batch-mean cross-entropy", "nats");
  f.write("/traces/layer_max", r.layer_max, {L}, "Per-layer maximum over batches of batch_mean (the reference's output)", "loss/weight^2");
  f.write("/traces/layer_mean", r.layer_mean, {L}, "Per-layer sample-weighted mean over batches of batch_mean", "loss/weight^2");
  f.write("/traces/layer_mean_std_error", r.layer_mean_std_error, {L}, "Standard error of layer_mean from the per-batch standard errors", "loss/weight^2");
  f.write("/traces/hvps", r.hvps, "Hessian-vector products computed on all ranks (including discarded ones)");
  f.write("/traces/seconds", r.seconds, "Wall time of the trace computation", "s");
}

void ResultsFile::write_distance(const measures::DistanceResult& r, const measures::DistanceOptions& opts,
                                 const std::string& init_checkpoint, const std::string& group) {
  if (!file_) return;
  auto& f = *file_;
  const auto B = static_cast<std::int64_t>(r.batch_sizes.size());
  const auto L = static_cast<std::int64_t>(r.layers.size());
  f.create_group(group);
  f.set_attr(group, "mode", hessian::to_string(opts.mode));
  f.set_attr(group, "head_reference", to_string(opts.head_reference));
  f.set_attr(group, "init_checkpoint", init_checkpoint);
  f.set_attr(group, "shard_batch", static_cast<std::int64_t>(opts.shard_batch ? 1 : 0));
  f.write(group + "/batch_quad", r.quad, {B, L}, opts.mode == hessian::MeasureMode::kJoint
          ? "Per batch and layer <v_i,(Hv)_i> with one joint HVP (cross-layer terms included), v = W - W_init"
          : opts.mode == hessian::MeasureMode::kBlock
          ? "Per batch and layer v_i^T H_ii v_i (block diagonal, no cross-layer terms), v = W - W_init"
          : "Per batch and layer v_i^T H_ii+ v_i, H_ii+ the PSD part of the layer's block, by Lanczos quadrature from v_i", "loss");
  if (opts.mode == hessian::MeasureMode::kPsd) {
    f.set_attr(group, "psd_steps", static_cast<std::int64_t>(opts.psd.steps));
    f.set_attr(group, "psd_tol", opts.psd.tol);
    f.write(group + "/psd_steps", r.psd_steps, {B, L}, "Lanczos steps (block HVPs) of each quadrature");
    f.write(group + "/psd_converged", r.psd_converged, {B, L},
            "1 if the quadrature met --psd-tol or exhausted its Krylov space (then exact)");
    f.write(group + "/psd_change", r.psd_change, {B, L},
            "Relative change of the quadrature in its last step (0: exact; inf: a single step)");
  }
  f.write(group + "/batch_sizes", r.batch_sizes, {B}, "Samples in each batch");
  f.write(group + "/batch_loss", r.batch_loss, {B}, "Batch-mean cross-entropy", "nats");
  f.write(group + "/layer_max", r.layer_max, {L}, "H_i: per-layer maximum over batches of batch_quad (starts from batch 0, may be negative)", "loss");
  f.write(group + "/v_norm", r.v_norm, {L}, "Frobenius norm of v_i = W_i - W_i^(s) (head: W_i when head_reference = zero)", "weight");
  f.write(group + "/max_loss", r.max_loss, "C: the largest batch-mean loss seen", "nats");
  f.write(group + "/train_size", r.train_size, "n: number of training samples of the bound (--train-size)");
  f.write(group + "/sum_sqrt", r.sum_sqrt, "sum_i sqrt(max(H_i, 0))");
  f.write(group + "/bound", r.bound, "sum_i sqrt(max(H_i, 0)) / sqrt(n)");
  f.write(group + "/bound_c", r.bound_c, "sqrt(C) * sum_i sqrt(max(H_i, 0)) / sqrt(n) (Theorem 2.1's term)");
  f.write(group + "/negative_layers", r.negative_layers, "Layers whose H_i < 0 (clipped to 0 in the bound)");
  f.write(group + "/seconds", r.seconds, "Wall time of the measure computation", "s");
}

void ResultsFile::write_stability(const measures::StabilityResult& r, const measures::StabilityOptions& opts) {
  if (!file_) return;
  auto& f = *file_;
  f.create_group("/stability");
  f.set_attr("/stability", "eps", opts.eps);
  f.set_attr("/stability", "repeats", static_cast<std::int64_t>(opts.repeats));
  f.set_attr("/stability", "seed", static_cast<std::int64_t>(opts.seed));
  f.write_strings("/stability/perturbed_layers", r.layers, "Tensors that received N(0, eps^2) noise");
  f.write("/stability/deltas", r.deltas, {static_cast<std::int64_t>(r.deltas.size())},
          "f(W + U_r) - f(W) per repeat; f = sample-weighted mean cross-entropy on the subset", "nats");
  f.write("/stability/mean", r.mean, "Mean of deltas", "nats");
  f.write("/stability/std", r.std, "Population standard deviation of deltas", "nats");
  f.write("/stability/base_loss", r.base_loss, "f(W) on the subset", "nats");
  f.write("/stability/base_accuracy", r.base_accuracy, "Accuracy of the unperturbed model on the subset", "fraction");
  f.write("/stability/num_samples", r.num_samples, "Samples in the subset");
  f.write("/stability/seconds", r.seconds, "Wall time", "s");
}

namespace {

// [P, M] row-major from per-probe rows.
std::vector<double> rows(const std::vector<std::vector<double>>& x) {
  std::vector<double> out;
  for (const auto& r : x) out.insert(out.end(), r.begin(), r.end());
  return out;
}

}  // namespace

void ResultsFile::write_spectrum(const measures::SpectrumResult& r, const measures::SpectrumOptions& opts) {
  if (!file_) return;
  auto& f = *file_;
  f.create_group("/spectrum");
  f.set_attr("/spectrum", "method", measures::to_string(opts.method));
  f.set_attr("/spectrum", "which", opts.smallest ? "smallest" : "largest");
  f.set_attr("/spectrum", "top_k", static_cast<std::int64_t>(opts.top_k));
  f.set_attr("/spectrum", "lanczos_steps", static_cast<std::int64_t>(opts.lanczos_steps));
  f.set_attr("/spectrum", "tol", opts.tol);
  if (opts.method == measures::SpectrumMethod::kPower) f.set_attr("/spectrum", "max_iter", static_cast<std::int64_t>(opts.max_iter));
  f.set_attr("/spectrum", "seed", static_cast<std::int64_t>(opts.seed));
  f.set_attr("/spectrum", "layer", opts.per_layer ? "(every layer's block, per_layer)" : opts.layer.empty() ? "(all layers, joint)" : opts.layer);
  f.write_strings("/spectrum/layers", r.layers, "The operator's layers (its vectors are blocks in this order)");
  f.write("/spectrum/num_samples", r.num_samples, "Samples of the mean loss");
  f.write("/spectrum/hvps", r.hvps, "Hessian-vector products of the mean loss");
  f.write("/spectrum/seconds", r.seconds, "Wall time", "s");
  if (!r.per_layer.empty()) {
    // Each layer's block on its own: [L, K] (rows shorter than K, for a layer with fewer weights, end in NaN).
    const auto L = static_cast<std::int64_t>(r.per_layer.size());
    const auto K = static_cast<std::int64_t>(opts.top_k);
    std::vector<double> ev(static_cast<std::size_t>(L * K), std::nan("")), res(ev);
    std::vector<std::int64_t> steps, converged, num_params;
    std::vector<std::vector<double>> nodes, weights;
    for (std::int64_t i = 0; i < L; ++i) {
      const auto& l = r.per_layer[static_cast<std::size_t>(i)];
      for (std::size_t k = 0; k < l.eigenvalues.size(); ++k) {
        ev[static_cast<std::size_t>(i * K) + k] = l.eigenvalues[k];
        res[static_cast<std::size_t>(i * K) + k] = l.residuals[k];
      }
      steps.push_back(l.steps);
      converged.push_back(l.converged ? 1 : 0);
      num_params.push_back(l.num_params);
      for (std::size_t p = 0; p < l.slq_nodes.size(); ++p) {
        std::vector<double> n(static_cast<std::size_t>(opts.lanczos_steps), std::nan("")), w(n.size(), 0.0);
        std::copy(l.slq_nodes[p].begin(), l.slq_nodes[p].end(), n.begin());
        std::copy(l.slq_weights[p].begin(), l.slq_weights[p].end(), w.begin());
        nodes.push_back(n);
        weights.push_back(w);
      }
    }
    f.create_group("/spectrum/per_layer");
    f.write("/spectrum/per_layer/eigenvalues", ev, {L, K}, "Per Hessian layer (rows as /spectrum/layers), the K largest "
            "(or smallest) eigenvalues of its diagonal block of the mean-loss Hessian, descending", "loss/weight^2");
    f.write("/spectrum/per_layer/residuals", res, {L, K}, "||H_ii y - lambda y|| of each unit Ritz vector", "loss/weight^2");
    f.write("/spectrum/per_layer/steps", steps, {L}, "Lanczos steps (power: iterations) of each layer");
    f.write("/spectrum/per_layer/converged", converged, {L}, "1 if the layer's run met --tol or exhausted its Krylov space");
    f.write("/spectrum/per_layer/num_params", num_params, {L}, "Dimension of each block");
    if (opts.slq_probes > 0) {
      const auto P = static_cast<std::int64_t>(opts.slq_probes), M = static_cast<std::int64_t>(opts.lanczos_steps);
      f.write("/spectrum/per_layer/slq_nodes", rows(nodes), {L, P, M}, "SLQ nodes per layer and probe (NaN: fewer steps)", "loss/weight^2");
      f.write("/spectrum/per_layer/slq_weights", rows(weights), {L, P, M}, "SLQ weights per layer and probe (each row sums to 1)");
    }
    return;
  }
  f.set_attr("/spectrum", "steps_run", static_cast<std::int64_t>(r.steps));
  f.set_attr("/spectrum", "converged", static_cast<std::int64_t>(r.converged ? 1 : 0));
  const auto K = static_cast<std::int64_t>(r.eigenvalues.size());
  f.write("/spectrum/eigenvalues", r.eigenvalues, {K},
          "Ritz values of the Hessian of the mean loss over the samples, descending (the K largest, or smallest; "
          "power: the K of largest magnitude, sorted descending)", "loss/weight^2");
  f.write("/spectrum/residuals", r.residuals, {K}, "||H y - lambda y|| of each unit Ritz vector y", "loss/weight^2");
  if (!r.iterations.empty()) {
    f.write("/spectrum/iterations", r.iterations, {K}, "Power iterations (HVPs) of each eigenpair");
  } else {
    f.write("/spectrum/ritz_values", r.ritz_values, {static_cast<std::int64_t>(r.ritz_values.size())},
            "Every Ritz value of the eigenvalue run, ascending", "loss/weight^2");
    f.write("/spectrum/alpha", r.alpha, {static_cast<std::int64_t>(r.alpha.size())}, "Diagonal of the Lanczos tridiagonal T");
    f.write("/spectrum/beta", r.beta, {static_cast<std::int64_t>(r.beta.size())}, "Off-diagonal of T");
  }
  f.write("/spectrum/num_params", r.num_params, "Dimension of the operator");
  if (!r.slq_nodes.empty()) {
    const auto P = static_cast<std::int64_t>(r.slq_nodes.size());
    const auto M = static_cast<std::int64_t>(r.slq_nodes[0].size());
    f.create_group("/spectrum/slq");
    f.write("/spectrum/slq/nodes", rows(r.slq_nodes), {P, M}, "Per probe, the Ritz values of its Lanczos run (NaN: fewer steps)",
            "loss/weight^2");
    f.write("/spectrum/slq/weights", rows(r.slq_weights), {P, M},
            "Per probe, the squared first components of T's eigenvectors (sum 1): density = mean over probes of "
            "sum_j w_j delta(x - node_j)");
  }
  if (!r.landscape_t.empty()) {
    const auto N = static_cast<std::int64_t>(r.landscape_t.size());
    f.create_group("/spectrum/landscape");
    f.set_attr("/spectrum/landscape", "eigenvalue", r.eigenvalues.front());
    f.write("/spectrum/landscape/t", r.landscape_t, {N}, "Step along the unit top eigenvector y", "weight");
    f.write("/spectrum/landscape/loss", r.landscape_loss, {N},
            "Mean cross-entropy over the samples at W + t*y (a quadratic model: loss(0) + eigenvalue * t^2 / 2)", "nats");
  }
  if (!r.eigenvectors.empty()) {
    f.create_group("/spectrum/eigenvectors");
    for (std::size_t i = 0; i < r.layers.size(); ++i) {
      std::vector<double> data;
      std::vector<std::int64_t> shape = {static_cast<std::int64_t>(r.eigenvectors.size())};
      for (auto d : r.eigenvectors[0][i].sizes()) shape.push_back(d);
      for (const auto& vec : r.eigenvectors) {
        const auto t = vec[i].to(torch::kFloat64).contiguous();
        data.insert(data.end(), t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
      }
      f.write("/spectrum/eigenvectors/" + r.layers[i], data, shape,
              "Block of each unit Ritz vector (rows in the order of eigenvalues)");
    }
  }
}

void ResultsFile::write_eval(const measures::EvalResult& r, const std::vector<std::string>& class_names,
                             bool logits_float32) {
  if (!file_) return;
  auto& f = *file_;
  f.create_group("/eval");
  f.set_attr("/eval", "labelled", static_cast<std::int64_t>(r.labelled ? 1 : 0));
  if (r.labelled) {
    f.write("/eval/loss", r.loss, "Mean cross-entropy per sample", "nats");
    f.write("/eval/accuracy", r.accuracy, "Fraction of samples whose argmax logit equals the label", "fraction");
    f.write("/eval/correct", r.correct, "Correctly classified samples");
  } else {
    f.set_attr("/eval", "note", "unlabelled data (every label -1, e.g. a GLUE test split): predictions and logits "
                                "only, no loss, accuracy or correct count");
  }
  f.write("/eval/num_samples", r.num_samples, "Samples evaluated");
  f.write("/eval/seconds", r.seconds, "Wall time", "s");
  if (!class_names.empty()) f.write_strings("/eval/class_names", class_names, "Class index -> name");
  if (r.sample_ids.empty()) return;
  const auto n = static_cast<std::int64_t>(r.sample_ids.size());
  f.write("/eval/samples/sample_id", r.sample_ids, {n}, "Global dataset index of each row (plan order)");
  f.write("/eval/samples/label", r.labels, {n}, r.labelled ? "Label evaluated against" : "Label: -1 (unlabelled)");
  std::vector<std::int64_t> predicted(static_cast<std::size_t>(n));
  const auto k = static_cast<std::size_t>(r.num_classes);
  for (std::size_t i = 0; i < predicted.size(); ++i) {
    const auto row = r.logits.begin() + static_cast<std::ptrdiff_t>(i * k);
    predicted[i] = std::max_element(row, row + static_cast<std::ptrdiff_t>(k)) - row;
  }
  f.write("/eval/samples/predicted", predicted, {n}, "argmax of the logits (first index on ties, as torch)");
  if (r.labelled) f.write("/eval/samples/loss", r.losses, {n}, "Cross-entropy of the sample", "nats");
  const std::string what = "Logits [N, K] (K = classes of the head)";
  if (logits_float32) {
    f.write("/eval/samples/logits", std::vector<float>(r.logits.begin(), r.logits.end()), {n, r.num_classes}, what);
  } else {
    f.write("/eval/samples/logits", r.logits, {n, r.num_classes}, what);
  }
}

void ResultsFile::write_labels(const data::LabelAudit& a, std::int64_t num_classes,
                               const std::vector<std::string>& class_names) {
  if (!file_) return;
  auto& f = *file_;
  const auto n = static_cast<std::int64_t>(a.used.size());
  f.create_group("/labels");
  f.set_attr("/labels", "source", a.source);
  f.set_attr("/labels", "description", a.description);
  f.set_attr("/labels", "noise_rate", a.noise.rate);
  f.set_attr("/labels", "noise_mode", a.noise.mode == data::LabelNoiseOptions::Mode::kFlip ? "flip" : "symmetric");
  f.set_attr("/labels", "noise_seed", static_cast<std::int64_t>(a.noise.seed));
  f.set_attr("/labels", "noise_chunk", a.noise.chunk_size);
  f.write("/labels/clean", a.clean, {n}, "Clean label of each sample id (DomainNet weak labels: the true label)");
  f.write("/labels/used", a.used, {n}, "Label each sample id is used with (noisy where noise applies)");
  std::vector<std::int64_t> mask(a.relabelled.begin(), a.relabelled.end());
  f.write("/labels/relabelled", mask, {n},
          "1 where synthetic noise selected the id (its new label may equal the clean one); weak labels: used != clean");
  f.write("/labels/num_noisy", a.num_noisy, "Samples whose used label differs from the clean one");
  f.write("/labels/realised_noise_rate", a.realised_rate, "num_noisy / N", "fraction");
  if (num_classes > 0) {
    std::vector<std::int64_t> counts(static_cast<std::size_t>(num_classes * num_classes), 0);
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t c = a.clean[static_cast<std::size_t>(i)], u = a.used[static_cast<std::size_t>(i)];
      if (c >= 0 && c < num_classes && u >= 0 && u < num_classes) ++counts[static_cast<std::size_t>(c * num_classes + u)];
    }
    f.write("/labels/transitions", counts, {num_classes, num_classes},
            "Counts [clean, used]: row = clean label, column = used label (the realised transition matrix)");
  }
  if (!class_names.empty()) f.write_strings("/labels/class_names", class_names, "Class index -> name");
}

void ResultsFile::write_skipped(const std::vector<std::int64_t>& ids) {
  if (!file_) return;
  file_->set_attr("/data", "num_skipped", static_cast<std::int64_t>(ids.size()));
  file_->write("/data/skipped_ids", ids, {static_cast<std::int64_t>(ids.size())},
               "Sample ids left out because their file could not be read (--skip-unreadable)");
}

void ResultsFile::commit() {
  if (!file_) return;
  file_->close();
  out_->commit();
}

}  // namespace hessgap::results
