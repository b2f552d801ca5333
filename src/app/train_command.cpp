// `hessgap train`: registers the flags (the reference's train scripts' in kebab-case, SPEC §1.1, §1.5)
// and runs the train job (train_job.h) once, or --runs times with consecutive seeds.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <sstream>

#include "app/commands.h"
#include "app/config.h"
#include "app/options.h"
#include "job/train_job.h"
#include "comm/communicator.h"
#include "io/atomic_output.h"
#include "util/error.h"
#include "util/log.h"
#include "util/signals.h"

namespace hessgap::app {

using job::run_train;
using job::TrainConfig;
using job::TrainOutcome;
namespace {

// Mean and population standard deviation (numpy's std, as the reference reports) over the runs, printed
// and written as CSV: one row per run, then "mean" and "std".
void write_runs_summary(const std::vector<train::TrainResult>& rs, const std::string& path) {
  const std::vector<std::pair<std::string, std::function<double(const train::TrainResult&)>>> cols = {
      {"test_accuracy", [](const train::TrainResult& r) { return r.test.accuracy; }},
      {"test_loss", [](const train::TrainResult& r) { return r.test.loss; }},
      {"train_loss_clean", [](const train::TrainResult& r) { return r.train_clean.loss; }},
      {"train_loss_noisy", [](const train::TrainResult& r) { return r.train_noisy.loss; }},
      {"gap_loss_clean", [](const train::TrainResult& r) { return r.test.loss - r.train_clean.loss; }},
      {"best_epoch", [](const train::TrainResult& r) { return static_cast<double>(r.best_epoch); }},
  };
  io::AtomicOutput out(path);
  std::ostringstream table;
  {
    std::ofstream o(out.temp_path());
    o << "run";
    for (const auto& c : cols) o << "," << c.first;
    o << "\n" << std::setprecision(10);
    for (std::size_t k = 0; k < rs.size(); ++k) {
      o << k;
      for (const auto& c : cols) o << "," << c.second(rs[k]);
      o << "\n";
    }
    std::vector<double> mean(cols.size(), 0.0), var(cols.size(), 0.0);
    for (std::size_t c = 0; c < cols.size(); ++c) {
      for (const auto& r : rs) mean[c] += cols[c].second(r) / static_cast<double>(rs.size());
      for (const auto& r : rs) var[c] += std::pow(cols[c].second(r) - mean[c], 2) / static_cast<double>(rs.size());
    }
    o << "mean";
    for (double m : mean) o << "," << m;
    o << "\nstd";
    for (double v : var) o << "," << std::sqrt(v);
    o << "\n";
    HG_CHECK(o.good(), "cannot write '" << path << "'");
    table << std::fixed << std::setprecision(4) << rs.size() << " runs: test accuracy " << mean[0] << " ± "
          << std::sqrt(var[0]) << ", test loss " << mean[1] << " ± " << std::sqrt(var[1]) << ", gap " << mean[4]
          << " ± " << std::sqrt(var[4]) << " (population std)";
  }
  out.commit();
  std::printf("%s; per run: %s\n", table.str().c_str(), path.c_str());
}

}  // namespace

void train_defaults(TrainConfig& c) {
  c.common.batch_size = 0;  // the family's default
  c.common.data.split = "train";
  c.common.data.valid_split = 0.1;
}

void add_train_flags(CLI::App* cmd, TrainConfig& c) {
  TrainConfig* st = &c;
  add_common_options(cmd, st->common);
  // Measurement-only flags; the splits are fixed (train, and --test-split).
  for (const char* flag : {"--sample-size", "--sample-rule", "--shuffle", "--out", "--split", "--sample-order", "--subset"}) {
    if (auto* o = cmd->get_option_no_throw(flag)) cmd->remove_option(o);
  }
  cmd->get_option("--batch-size")->description("Global batch size over all ranks (default: image 32, text 8)");
  cmd->get_option("--valid-split")->description("Fraction of the training split held out for validation and early stopping (0: none; the last epoch is then the best)");
  cmd->get_option("--label-noise")->description("Synthetic label noise rate in [0, 1) on the training ids (after the validation split)");
  cmd->add_option("--out-dir", st->out_dir, "Folder for run.h5 and the checkpoints epoch_0.h5, best.h5, last.h5")->required();
  cmd->add_option("--epochs", st->epochs, "Epochs (-1: image 30, text 5, as the reference's configs)");
  cmd->add_option("--lr,--learning-rate", st->lr, "Base learning rate (-1: image 1e-4, text 2e-5)");
  cmd->add_option("--weight-decay", st->weight_decay, "Weight decay (AdamW: not on biases and LayerNorm weights)");
  cmd->add_option("--optimizer", st->optimizer, "auto (image adam with amsgrad, text adamw) | adam | adamw | sgd");
  cmd->add_option("--schedule", st->schedule, "auto (image step, text linear) | step (StepLR per epoch) | linear (warm-up + linear decay per step)");
  cmd->add_option("--step-size", st->step_size, "StepLR: epochs per decay");
  cmd->add_option("--gamma", st->gamma, "StepLR: decay factor");
  cmd->add_option("--warm-up", st->warm_up, "linear: warm-up length in epochs (the text reference's --warm_up)");
  cmd->add_option("--monitor", st->monitor, "Early stopping on: auto (image max val accuracy, text min val loss) | max | min");
  cmd->add_option("--early-stop", st->early_stop, "Stop when this many epochs pass without improvement");
  cmd->add_option("--reg-method", st->reg_method, "constraint (projection after every step) | penalty | none");
  cmd->add_option("--reg-norm", st->reg_norm, "frob | inf-op (MARS)");
  cmd->add_option("--reg-extractor", st->reg_extractor, "Radius (coefficient for penalty) of the feature extractor groups");
  cmd->add_option("--reg-predictor", st->reg_predictor, "Radius of the head, around zero");
  cmd->add_option("--scale-factor", st->scale_factor, "ResNets: layer3 gets reg-extractor * s, layer4 * s^2");
  cmd->add_option("--reg-attention", st->reg_attention, "Text: radius of the attention weights");
  cmd->add_option("--reg-linear", st->reg_linear, "Text: radius of the encoder feed-forward weights");
  cmd->add_flag("--constraint-reweight", st->constraint_reweight,
                "Train with the loss reweighted by the inverse synthetic transition matrix (SPEC §5)");
  cmd->add_option("--reweight-noise-rate", st->reweight_noise_rate,
                  "rho of the synthetic transition matrix; must be < (K-1)/K (the reference's default 0.8 is degenerate for K <= 5)");
  cmd->add_flag("--load-matrix", st->load_matrix,
                "With --constraint-reweight: the Dual-T estimate of the transition matrix instead of the synthetic one "
                "(read from --matrix-file, or estimated after a plain first pass in --out-dir/dual_t and stored there)");
  cmd->add_option("--matrix-file", st->matrix_file, "HDF5 file of --load-matrix (default: --out-dir/transition_matrix.h5)");
  cmd->add_option("--reweight-epoch", st->reweight_epoch, "Epochs (1-based) before this one train with plain cross-entropy");
  cmd->add_flag("--sync-bn", st->sync_bn,
                "BatchNorm normalises with the whole global batch's statistics, all-reduced over the ranks, so the run "
                "is the same at any rank count (default: each rank's own shard, as DDP)");
  cmd->add_flag("--reset-head", st->reset_head, "Re-initialise the head as its source library would (seeded by --seed)");
  cmd->add_flag("--resume", st->resume,
                "Continue from --out-dir/last.h5 even though it holds a run of another configuration "
                "(the same configuration resumes without it)");
  cmd->add_option("--train-subset", st->train_subset, "Only the first N samples of the training split (0: all)");
  cmd->add_option("--test-subset", st->test_subset, "Only the first N samples of the test split (0: all)");
  cmd->add_option("--test-split", st->test_split, "Split the final test uses (auto: test; glue: dev, whose labels are public)");
  cmd->add_option("--stop-after-epochs", st->stop_after_epochs,
                  "End this invocation after N epochs (0: run to --epochs); the same command later resumes from last.h5 "
                  "(for time-limited jobs)");
  cmd->add_option("--augment", st->augment,
                  "Training augmentation: auto (on for image folders: RandomResizedCrop + horizontal flip as the "
                  "reference, keyed by seed, epoch and sample) | on | off");
  cmd->add_option("--augment-size", st->augment_size, "Side of the augmentation crop (0: --crop, else --resize, else 224)");
  cmd->add_option("--measure-samples", st->measure_samples,
                  "After training, measure the best weights against W(s) on this many test samples (a seeded random "
                  "subset; the reference's rule: whole batches until the count exceeds it): the distance measure in "
                  "joint and block mode and the bound; 0: no measurement");
  cmd->add_option("--measure-batch-size", st->measure_batch_size, "Batch size of that measurement (reference 4)");
  cmd->add_option("--measure-trace-probes", st->measure_trace_probes,
                  "Also per-layer Hessian traces on that subset: joint Rademacher probes, the reference's stopping rule "
                  "(tol 1e-3), at most this many per batch (0: no traces)");
  cmd->add_option("--measure-stability-repeats", st->measure_stability_repeats,
                  "Also noise stability on that subset: this many draws of N(0, 1e-3^2) weight noise (0: none)");
  cmd->add_option("--eval-batch-size", st->eval_batch_size, "Global batch size of validation, test and train-loss passes");

}

RunFn add_train_command(CLI::App& app) {
  auto st = std::make_shared<TrainConfig>();
  train_defaults(*st);
  auto* cmd = app.add_subcommand("train",
                                 "Fine-tune a pretrained model under label noise with distance constraints and loss reweighting "
                                 "(the reference's train_label_noise.py / train_glue_label_noise.py), data-parallel over the ranks");
  add_train_flags(cmd, *st);

  auto runs = std::make_shared<std::int64_t>(1);
  cmd->add_option("--runs", *runs,
                  "Independent fine-tuning runs with seeds seed, seed+1, ... in --out-dir/run_<k> (the reference's --runs); "
                  "their mean and population std are printed and written to --out-dir/runs.csv");
  return [st, cmd, runs](comm::Communicator& world, const std::string& command_line) {
    HG_CHECK(*runs >= 1, "--runs must be >= 1 (got " << *runs << ")");
    // SIGTERM / SIGUSR1 end the job at the next step on every rank alike (one all-reduce per step),
    // last.h5 intact; main exits with signals::kExitInterrupted and the same command resumes.
    signals::install_stop_handlers();
    job::TrainHooks hooks;
    hooks.stop_requested = [&world] {
      std::int64_t requested = signals::stop_signal() != 0 ? 1 : 0;
      world.all_reduce_sum(&requested, 1);
      return requested > 0;
    };
    if (*runs == 1) {
      run_train(world, *st, command_line, hooks);
      return 0;
    }
    // Run k: seed + k (order, split, noise-free parts, head), its own folder and run id.
    std::vector<train::TrainResult> results;
    for (std::int64_t k = 0; k < *runs; ++k) {
      TrainConfig f = *st;
      f.common.seed = st->common.seed + static_cast<std::uint64_t>(k);
      f.out_dir = (std::filesystem::path(st->out_dir) / ("run_" + std::to_string(k))).string();
      log::info("== run " + std::to_string(k + 1) + "/" + std::to_string(*runs) + " (seed " +
                std::to_string(f.common.seed) + ") ==");
      results.push_back(run_train(world, f, command_line, hooks).result);
      log::set_run("");
    }
    if (world.rank() == 0) write_runs_summary(results, (std::filesystem::path(st->out_dir) / "runs.csv").string());
    return 0;
  };
}

}  // namespace hessgap::app
