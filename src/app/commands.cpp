#include "app/commands.h"

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <functional>
#include <map>
#include <set>
#include <memory>

#include "app/config.h"
#include "app/options.h"
#include "results/results_file.h"
#include "app/summary.h"
#include "comm/communicator.h"
#include "comm/gather.h"
#include "data/dataset.h"
#include "data/image_folder.h"
#include "data/label_noise.h"
#include "data/registry.h"
#include "data/subset_dataset.h"
#include "io/atomic_output.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "models/classifier.h"
#include "models/registry.h"
#include "util/error.h"
#include "util/log.h"

namespace hessgap::app {

using results::ResultsFile;
using results::RunInfo;
namespace {

void add_trace_flags(CLI::App* cmd, measures::TracesOptions& t, std::string& scope, std::string& rule,
                     std::string& dist) {
  cmd->add_option("--probe-scope", scope,
                  "joint: one probe over all layers (the reference); layer: one layer at a time (no cross-layer variance)");
  cmd->add_option("--stop-rule", rule,
                  "reference: relative change of the running mean total trace < --tol; stderr: every layer's relative standard error < --rel-se");
  cmd->add_option("--distribution", dist, "Probe entries: rademacher | gaussian");
  cmd->add_option("--tol", t.trace.tol, "Tolerance of the reference stopping rule (image 1e-3, text 1e-4)");
  cmd->add_option("--rel-se", t.trace.rel_se, "Target relative standard error of the stderr rule");
  cmd->add_option("--min-probes", t.trace.min_probes, "Probes before a stopping rule may fire");
  cmd->add_option("--max-probes", t.trace.max_probes, "Probe limit per batch (the reference's maxIter)");
  cmd->add_option("--probe-ranks", t.probe_ranks, "Ranks sharing the probes of one batch (must divide the rank count)");
}

void resolve_trace_flags(measures::TracesOptions& t, const std::string& scope, const std::string& rule,
                         const std::string& dist, std::uint64_t seed) {
  t.trace.scope = hessian::parse_probe_scope(scope);
  t.trace.rule = hessian::parse_stop_rule(rule);
  t.trace.distribution = hessian::parse_probe_distribution(dist);
  t.trace.seed = seed;
}

// What a measurement leaves behind: how to write it into the results file and how to print it.
struct Outcome {
  std::function<void(ResultsFile&)> write;
  std::function<void()> print;
};

// The ids every rank's image folder left out as unreadable (--skip-unreadable), sorted and distinct, on
// every rank. Collective (all_gather_values).
std::vector<std::int64_t> all_skipped_ids(comm::Communicator& world, const data::Dataset& dataset) {
  const auto* folder = dynamic_cast<const data::ImageFolderDataset*>(&data::source_dataset(dataset));
  const std::vector<std::int64_t> mine = folder ? folder->skipped_ids() : std::vector<std::int64_t>{};
  std::set<std::int64_t> all;
  for (const auto& ids : comm::all_gather_values(world, mine)) all.insert(ids.begin(), ids.end());
  return {all.begin(), all.end()};
}

// Opens the session, runs `prepare` (optional, not collective: whatever else the subcommand reads
// and checks, before the first collective), then `compute` (collective), and only then has rank 0
// write the results file, so that an error on any rank (which aborts the job) leaves no file, not
// even a temporary one.
int run_measurement(comm::Communicator& world, const std::string& sub, const std::string& command_line,
                    const CLI::App& cmd, const CommonOptions& common,
                    const std::function<Outcome(const Session&, measures::MeasureContext&)>& compute,
                    const std::function<void(const Session&)>& prepare = nullptr) {
  // Per-batch weights of traces, measures and stability come from the plan, so they need whole batches.
  HG_CHECK(!common.data.skip_unreadable || sub == "eval",
           "--skip-unreadable is only supported by eval (the per-batch weights of " << sub << " assume whole batches)");
  Session s = open_session(common);
  if (prepare) prepare(s);
  auto dev_world = device_world(world, s);
  auto ctx = s.context(*dev_world);
  Outcome outcome = compute(s, ctx);
  const std::vector<std::int64_t> skipped = all_skipped_ids(world, *s.dataset);
  RunInfo info;
  info.subcommand = sub;
  info.command_line = command_line;
  info.config_json = resolved_config_json(cmd);
  info.world_size = dev_world->size();
  info.backend = dev_world->backend();
  info.arch = s.model->arch();
  info.checkpoint = s.checkpoint_path;
  info.load_notes = s.load_notes;
  info.data_description = s.dataset->describe();
  info.sample_order = s.plan.shuffle ? "random" : "natural";
  info.sample_seed = s.plan.seed;
  info.layers = s.model->hessian_layers();
  if (world.rank() == 0 && !common.out.empty()) {
    ResultsFile out(common.out, info);
    outcome.write(out);
    // Noisy or weak labels: record which ones, so the measures can be read against the realised noise.
    if (common.data.skip_unreadable) out.write_skipped(skipped);
    const data::LabelAudit audit = data::audit_labels(*s.dataset);
    if (audit.source != "clean") {
      out.write_labels(audit, s.dataset->num_classes(), s.dataset->class_names());
    }
    out.commit();
    log::info("results written to " + common.out);
  }
  outcome.print();
  return 0;
}

}  // namespace

RunFn add_traces_command(CLI::App& app) {
  struct State {
    CommonOptions common;
    measures::TracesOptions traces;
    std::string scope = "joint", rule = "reference", dist = "rademacher";
  };
  auto st = std::make_shared<State>();
  auto* cmd = app.add_subcommand("traces", "Per-layer Hessian traces by Hutchinson's estimator (compute_hessian_traces)");
  add_common_options(cmd, st->common);
  add_trace_flags(cmd, st->traces, st->scope, st->rule, st->dist);
  return [st, cmd](comm::Communicator& world, const std::string& command_line) {
    resolve_trace_flags(st->traces, st->scope, st->rule, st->dist, st->common.seed);
    st->traces.validate(world.size());
    return run_measurement(world, "traces", command_line, *cmd, st->common, [&](const Session&, measures::MeasureContext& ctx) {
      auto r = std::make_shared<measures::TracesResult>(measures::compute_traces(ctx, st->traces));
      return Outcome{[=](ResultsFile& f) { f.write_traces(*r, st->traces); }, [=] { print_traces(*r); }};
    });
  };
}

RunFn add_measures_command(CLI::App& app) {
  struct State {
    CommonOptions common;
    measures::DistanceOptions dist;
    std::string init_checkpoint, mode = "joint", head = "auto";
    std::map<std::string, torch::Tensor> init;  // W^(s) of every Hessian layer, by name
  };
  auto st = std::make_shared<State>();
  auto* cmd = app.add_subcommand("measures", "The Hessian distance measure v_i^T H v_i and the bound (compute_hessian_measures)");
  add_common_options(cmd, st->common);
  cmd->add_option("--init-checkpoint", st->init_checkpoint,
                  "W^(s): the weights before fine-tuning (model_epoch_0), any format --checkpoint reads, adapted alike")
      ->required();
  cmd->add_option("--mode", st->mode, "joint: <v_i,(Hv)_i> with one HVP (the reference); block: v_i^T H_ii v_i");
  cmd->add_option("--head-reference", st->head,
                  "Measure the head around zero or around its value in --init-checkpoint (init); auto: init for text "
                  "models (BERT, RoBERTa), zero for image models, as the references do");
  cmd->add_option("--train-size", st->dist.train_size, "n of the bound: number of training samples")->required();
  return [st, cmd](comm::Communicator& world, const std::string& command_line) {
    st->dist.mode = hessian::parse_measure_mode(st->mode);
    HG_CHECK(st->head == "auto" || st->head == "zero" || st->head == "init",
             "--head-reference must be auto, zero or init (got '" << st->head << "')");
    st->dist.validate();
    // W^(s): the init checkpoint goes through the same adaptation and strict loading as --checkpoint,
    // into a second model of the same architecture; only its Hessian layers are kept. Around zero the
    // head is not needed, so it may be missing there or sized for another task.
    auto prepare = [&](const Session& s) {
      st->dist.head_reference = st->head == "auto" ? measures::default_head_reference(*s.model)
                                                   : measures::parse_head_reference(st->head);
      const bool head_from_init = st->dist.head_reference == measures::HeadReference::kInit;
      auto init_model = models::make_model(s.model->arch(), s.model->num_classes());
      try {
        load_weights(*init_model, st->init_checkpoint, "--init-checkpoint", !head_from_init);
      } catch (const Error& e) {
        if (!head_from_init) throw;
        HG_FAIL(e.what() << " (the head is measured around its value in --init-checkpoint, --head-reference "
                         << st->head << "; --head-reference zero measures it around zero and needs no head there)");
      }
      const auto names = init_model->hessian_layers();
      const auto params = models::parameters_by_name(*init_model, names);
      for (std::size_t i = 0; i < names.size(); ++i) st->init[names[i]] = params[i].detach();
      log::info("init: " + s.model->arch() + " from " + st->init_checkpoint + ", head measured around " +
                measures::to_string(st->dist.head_reference) + (st->head == "auto" ? " (auto)" : ""));
    };
    auto compute = [&](const Session&, measures::MeasureContext& ctx) {
      auto r = std::make_shared<measures::DistanceResult>(measures::compute_distance(ctx, st->dist, st->init));
      return Outcome{[=](ResultsFile& f) { f.write_distance(*r, st->dist, st->init_checkpoint); },
                     [=] { print_distance(*r); }};
    };
    return run_measurement(world, "measures", command_line, *cmd, st->common, compute, prepare);
  };
}

RunFn add_stability_command(CLI::App& app) {
  struct State {
    CommonOptions common;
    measures::StabilityOptions stab;
  };
  auto st = std::make_shared<State>();
  st->common.sample_size = 1000;
  st->common.sample_rule = "exact";
  auto* cmd = app.add_subcommand("stability", "Noise stability: loss change under N(0, eps^2) weight noise (compute_noise_stability)");
  add_common_options(cmd, st->common);
  cmd->add_option("--eps", st->stab.eps, "Standard deviation of the weight noise");
  cmd->add_option("--repeats", st->stab.repeats, "Number of noise draws R (image reference 20, text 100)");
  return [st, cmd](comm::Communicator& world, const std::string& command_line) {
    st->stab.seed = st->common.seed;
    st->stab.validate();
    return run_measurement(world, "stability", command_line, *cmd, st->common, [&](const Session&, measures::MeasureContext& ctx) {
      auto r = std::make_shared<measures::StabilityResult>(measures::compute_stability(ctx, st->stab));
      return Outcome{[=](ResultsFile& f) { f.write_stability(*r, st->stab); }, [=] { print_stability(*r, st->stab.eps); }};
    });
  };
}

RunFn add_eval_command(CLI::App& app) {
  struct State {
    CommonOptions common;
    measures::EvalOptions eval;
  };
  auto st = std::make_shared<State>();
  st->common.sample_size = 0;
  st->common.batch_size = 100;
  st->common.sample_rule = "exact";
  st->common.sample_order = "natural";  // per-sample rows in dataset order; every sample by default
  auto* cmd = app.add_subcommand("eval", "Loss and accuracy of a checkpoint on a dataset (predictions only on unlabelled data)");
  add_common_options(cmd, st->common);
  cmd->add_flag("--per-sample", st->eval.per_sample,
                "Also write every sample's logits, label, prediction and loss to --out (/eval/samples); always on for "
                "unlabelled data (a GLUE test split), whose predictions are the result");
  return [st, cmd](comm::Communicator& world, const std::string& command_line) {
    return run_measurement(world, "eval", command_line, *cmd, st->common, [&](const Session& s, measures::MeasureContext& ctx) {
      auto r = std::make_shared<measures::EvalResult>(measures::evaluate(ctx, st->eval));
      auto names = std::make_shared<std::vector<std::string>>(s.dataset->class_names());
      const bool f32 = s.dtype == torch::kFloat32;
      return Outcome{[=](ResultsFile& f) { f.write_eval(*r, *names, f32); }, [=] { print_eval(*r); }};
    });
  };
}

RunFn add_labels_command(CLI::App& app) {
  struct State {
    data::DatasetSpec data;
    std::string out;
    int verbosity = 1;
  };
  auto st = std::make_shared<State>();
  st->data.split = "train";
  auto* cmd = app.add_subcommand(
      "labels", "The labels a split trains with: clean vs noisy (synthetic noise or DomainNet weak labels), the realised noise rate and transition counts");
  add_dataset_options(cmd, st->data);
  cmd->add_option("--out", st->out, "Write /labels to this HDF5 file");
  cmd->add_option("--verbosity", st->verbosity, "0 quiet, 1 progress, 2 debug");
  return [st, cmd](comm::Communicator& world, const std::string& command_line) {
    if (!st->out.empty()) io::check_writable_output(st->out);
    // Labels only: no images are decoded. Rank 0 works, the other ranks wait.
    if (world.rank() == 0) {
      const auto dataset = data::open_dataset(st->data);
      const data::LabelAudit audit = data::audit_labels(*dataset);
      RunInfo info;
      info.subcommand = "labels";
      info.command_line = command_line;
      info.config_json = resolved_config_json(*cmd);
      info.world_size = world.size();
      info.backend = world.backend();
      info.data_description = audit.description;
      ResultsFile out(st->out, info);
      out.write_labels(audit, dataset->num_classes(), dataset->class_names());
      out.commit();
      std::printf("%s\n  labels: %s, %zu samples, %lld differ from the clean label: realised noise rate %.6f\n",
                  audit.description.c_str(), audit.source.c_str(), audit.used.size(),
                  static_cast<long long>(audit.num_noisy), audit.realised_rate);
      std::fflush(stdout);
      if (!st->out.empty()) log::info("labels written to " + st->out);
    }
    world.barrier();
    return 0;
  };
}

RunFn add_convert_command(CLI::App& app) {
  struct State {
    std::string in, out;
  };
  auto st = std::make_shared<State>();
  auto* cmd = app.add_subcommand("convert", "Convert a checkpoint (safetensors, Hugging Face folder, torch.save zip, Google ViT .npz, hessgap HDF5) to safetensors or the hessgap HDF5 format (by --out's extension)");
  cmd->add_option("--in", st->in, "Checkpoint to read: any format --checkpoint accepts (recognised by content)")->required();
  cmd->add_option("--out", st->out, "File to write: *.safetensors, or *.h5 / *.hdf5 (hessgap checkpoint)")->required();
  return [st](comm::Communicator& world, const std::string& command_line) {
    auto ends_with = [&](const std::string& suffix) {
      return st->out.size() >= suffix.size() && st->out.compare(st->out.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    const bool to_h5 = ends_with(".h5") || ends_with(".hdf5");
    HG_CHECK(to_h5 || ends_with(".safetensors"),
             "--out '" << st->out << "' must end in .safetensors, .h5 or .hdf5 (the format is chosen by the extension)");
    io::check_writable_output(st->out);
    // Not a distributed computation: rank 0 converts, the other ranks only wait for it.
    if (world.rank() == 0) {
      std::map<std::string, std::string> metadata;
      const auto state = io::read_checkpoint(st->in, &metadata);
      metadata["converted_by"] = command_line;
      if (to_h5) {
        io::write_checkpoint_h5(st->out, state, metadata);
      } else {
        io::write_safetensors(st->out, state, metadata);
      }
      log::info("wrote " + std::to_string(state.size()) + " tensors to " + st->out);
    }
    world.barrier();
    return 0;
  };
}

}  // namespace hessgap::app
