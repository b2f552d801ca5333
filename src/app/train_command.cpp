// `hessgap train`: flags -> a train::TrainerOptions and the data it trains on, then train::fine_tune on
// the world communicator, then run.h5 in --out-dir. The flags follow the reference's train scripts
// (SPEC §1.1, §1.5) in kebab-case with their defaults per model family (image: Adam amsgrad + StepLR,
// max val accuracy; text: AdamW + linear warm-up/decay, min val loss).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <iomanip>
#include <numeric>
#include <sstream>

#include "app/commands.h"
#include "app/train_job.h"
#include "app/config.h"
#include "app/options.h"
#include "app/results_file.h"
#include "comm/communicator.h"
#include "data/dataset.h"
#include "data/label_noise.h"
#include "data/registry.h"
#include "data/sampler.h"
#include "io/atomic_output.h"
#include "io/checkpoint.h"
#include "models/classifier.h"
#include "models/registry.h"
#include "train/reweight.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/log.h"
#include "util/rng.h"

namespace fs = std::filesystem;

namespace hessgap::app {

RunFn add_train_command(CLI::App& app) {
  auto st = std::make_shared<TrainFlags>();
  st->common.batch_size = 0;  // the family's default
  st->common.data.split = "train";
  st->common.data.valid_split = 0.1;
  auto* cmd = app.add_subcommand("train",
                                 "Fine-tune a pretrained model under label noise with distance constraints and loss reweighting "
                                 "(the reference's train_label_noise.py / train_glue_label_noise.py), data-parallel over the ranks");
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
  cmd->add_option("--measure-samples", st->measure_samples,
                  "After training, measure the best weights against W(s) on this many test samples (a seeded random "
                  "subset; the reference's rule: whole batches until the count exceeds it): the distance measure in "
                  "joint and block mode and the bound; 0: no measurement");
  cmd->add_option("--measure-batch-size", st->measure_batch_size, "Batch size of that measurement (reference 4)");
  cmd->add_option("--eval-batch-size", st->eval_batch_size, "Global batch size of validation, test and train-loss passes");

  return [st, cmd](comm::Communicator& world, const std::string& command_line) {
    run_train_job(world, *st, resolved_config_json(*cmd), command_line);
    return 0;
  };
}

}  // namespace hessgap::app
