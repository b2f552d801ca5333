// `hessgap run`, the main job: the paper's pipeline on embedded real data. The pretrained CIFAR-10
// ResNet-20 is fine-tuned on Fashion-MNIST (Debian's dataset-fashion-mnist: 28 -> 32 px by zero padding,
// grey replicated to RGB, the checkpoint's CIFAR-10 normalisation) under symmetric label noise three
// ways — plain, distance-constrained, constrained + reweighted loss — and each fine-tuned network is
// measured against its own W(s): the Hessian distance measure and the bound (SPEC §7.3) beside its
// generalization gap. One table, one run folder per method (run.h5 with /train, /labels, /measures and
// /measures_block), summary.csv.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "app/commands.h"
#include "app/config.h"
#include "app/options.h"
#include "results/results_file.h"
#include "job/train_job.h"
#include "comm/communicator.h"
#include "data/dataset.h"
#include "io/atomic_output.h"
#include "measures/distance.h"
#include "models/classifier.h"
#include "util/error.h"
#include "util/log.h"

namespace fs = std::filesystem;

namespace hessgap::app {

using results::ResultsFile;
using results::RunInfo;
using job::run_train;
using job::TrainConfig;
using job::TrainOutcome;
namespace {

struct RunFlags {
  std::string checkpoint, data = "/usr/share/datasets/fashion-mnist", out_dir = "hessgap-run";
  std::vector<std::string> methods = {"plain", "constraint", "constraint-reweight"};
  std::int64_t train_subset = 5000, test_subset = 2000, epochs = 4, batch_size = 32;
  double lr = 1e-3, label_noise = 0.4, reweight_noise_rate = 0.4;
  double reg_extractor = 1.0, reg_predictor = 3.0, scale_factor = 1.0;
  std::uint64_t noise_seed = 0, seed = 0;
  std::int64_t measure_samples = 100, measure_batch_size = 4;
  bool sync_bn = true;
  int verbosity = 1, threads = 1;
  std::string dtype = "float32", device = "cpu";
  bool allow_tf32 = false;
};

struct Row {
  std::string method;
  train::TrainResult r;
  measures::DistanceResult d;        // joint mode (the reference)
  measures::DistanceResult d_block;  // block mode
};

std::string table(const std::vector<Row>& rows) {
  std::ostringstream t;
  t << std::left << std::setw(22) << "method" << std::right << std::setw(9) << "test acc" << std::setw(12)
    << "train loss" << std::setw(12) << "(noisy)" << std::setw(11) << "test loss" << std::setw(10) << "gap"
    << std::setw(13) << "sum sqrt H_i" << std::setw(10) << "bound" << std::setw(10) << "bound_c" << std::setw(12)
    << "bound block" << "\n";
  t << std::fixed;
  for (const auto& row : rows) {
    t << std::left << std::setw(22) << row.method << std::right << std::setprecision(4) << std::setw(9)
      << row.r.test.accuracy << std::setw(12) << row.r.train_clean.loss << std::setw(12) << row.r.train_noisy.loss
      << std::setw(11) << row.r.test.loss << std::setw(10) << row.r.test.loss - row.r.train_clean.loss
      << std::setw(13) << row.d.sum_sqrt << std::setw(10) << row.d.bound << std::setw(10) << row.d.bound_c
      << std::setw(12) << row.d_block.bound << "\n";
  }
  t << "train loss: cross-entropy of the best weights on the training ids with clean labels (noisy: the labels "
       "trained on); gap = test loss - train loss (clean);\nsum sqrt H_i = sum over layers of sqrt(max(H_i, 0)), "
       "H_i = max over test batches of v_i^T H v_i (joint), v = W - W(s), head around 0; bound = sum / sqrt(n), "
       "bound_c = sqrt(C) * bound; bound block: the same with v_i^T H_ii v_i\n";
  return t.str();
}

}  // namespace

RunFn add_run_command(CLI::App& app) {
  auto st = std::make_shared<RunFlags>();
  st->checkpoint = assets_dir() + "/models/cifar10-resnet20/resnet20.safetensors";
  auto* cmd = app.add_subcommand(
      "run",
      "The main job: fine-tune the embedded CIFAR-10 ResNet-20 on Fashion-MNIST with label noise three ways (plain, "
      "constraint, constraint + reweighting), measure each (Hessian distance measure, bound) and print one table");
  cmd->add_option("--checkpoint", st->checkpoint, "Pretrained CIFAR ResNet-20 weights");
  cmd->add_option("--data", st->data, "Fashion-MNIST IDX folder (Debian's dataset-fashion-mnist)");
  cmd->add_option("--methods", st->methods, "Comma-separated: plain, constraint, constraint-reweight")->delimiter(',');
  cmd->add_option("--train-subset", st->train_subset, "First N training images (10% of them validate)");
  cmd->add_option("--test-subset", st->test_subset, "First N test images");
  cmd->add_option("--epochs", st->epochs, "Epochs per method");
  cmd->add_option("--batch-size,--bs", st->batch_size, "Global training batch size");
  cmd->add_option("--lr", st->lr, "Adam (amsgrad) learning rate");
  cmd->add_option("--label-noise", st->label_noise, "Symmetric label noise on the training ids");
  cmd->add_option("--noise-seed", st->noise_seed, "Seed of the label noise");
  cmd->add_option("--reg-extractor", st->reg_extractor, "Radius of layer1 and layer2 (layer3: times --scale-factor)");
  cmd->add_option("--reg-predictor", st->reg_predictor, "Radius of the head, around zero");
  cmd->add_option("--scale-factor", st->scale_factor, "layer3 radius factor");
  cmd->add_option("--reweight-noise-rate", st->reweight_noise_rate, "rho of the reweighting matrix");
  cmd->add_option("--measure-samples", st->measure_samples, "Test samples of the distance measure (seeded random subset)");
  cmd->add_option("--measure-batch-size", st->measure_batch_size, "Batch size of the distance measure (reference 4)");
  cmd->add_option("--seed", st->seed, "Seed of the order, split, head and measure subset");
  cmd->add_option("--sync-bn", st->sync_bn, "Synchronised BatchNorm (the result is then the same at any rank count)");
  cmd->add_option("--out-dir", st->out_dir, "Folder for one run folder per method and summary.csv");
  cmd->add_option("--threads", st->threads, "Intra-op threads per rank");
  cmd->add_option("--dtype", st->dtype, "float32 | float64 (training and measurement)");
  cmd->add_option("--device", st->device, "cpu | cuda | cuda:N");
  cmd->add_flag("--allow-tf32", st->allow_tf32, "On a CUDA device, allow TF32 in matrix products and convolutions");
  cmd->add_option("--verbosity", st->verbosity, "0 quiet, 1 progress, 2 debug");

  return [st, cmd](comm::Communicator& world, const std::string& command_line) {
    const RunFlags& g = *st;
    const auto& methods = g.methods;
    HG_CHECK(!g.checkpoint.empty(), "--checkpoint must not be empty (a file or folder of model weights)");
    HG_CHECK(!g.out_dir.empty(), "--out-dir must not be empty (it wrote into the current folder)");
    HG_CHECK(!methods.empty(), "--methods: no method given");
    for (const auto& m : methods) {
      HG_CHECK(m == "plain" || m == "constraint" || m == "constraint-reweight",
               "--methods: unknown method '" << m << "' (expected plain, constraint, constraint-reweight)");
    }
    HG_CHECK(g.measure_samples >= 1 && g.measure_batch_size >= 1, "--measure-samples and --measure-batch-size must be >= 1");
    std::vector<Row> rows;
    for (const auto& m : methods) {
      TrainConfig f;
      f.common.checkpoint = g.checkpoint;
      f.common.arch = "cifar-resnet20";
      f.common.data.kind = "idx";
      f.common.data.path = g.data;
      f.common.data.pad = 2;
      f.common.data.grey_to_rgb = true;
      f.common.data.normalize = "cifar10";
      f.common.data.valid_split = 0.1;
      f.common.data.noise_rate = g.label_noise;
      f.common.data.noise_seed = g.noise_seed;
      f.common.batch_size = g.batch_size;
      f.common.seed = g.seed;
      f.common.threads = g.threads;
      f.common.dtype = g.dtype;
      f.common.device = g.device;
      f.common.allow_tf32 = g.allow_tf32;
      f.common.verbosity = g.verbosity;
      f.epochs = g.epochs;
      f.lr = g.lr;
      f.train_subset = g.train_subset;
      f.test_subset = g.test_subset;
      f.sync_bn = g.sync_bn;
      f.reg_method = m == "plain" ? "none" : "constraint";
      f.reg_extractor = g.reg_extractor;
      f.reg_predictor = g.reg_predictor;
      f.scale_factor = g.scale_factor;
      f.constraint_reweight = m == "constraint-reweight";
      f.reweight_noise_rate = g.reweight_noise_rate;
      f.out_dir = (fs::path(g.out_dir) / m).string();
      f.measure_samples = g.measure_samples;
      f.measure_batch_size = g.measure_batch_size;
      f.subcommand = "run";
      log::info("== " + m + " ==");
      TrainOutcome out = run_train(world, f, command_line);
      log::set_run(out.run_id.substr(0, 8));

      HG_CHECK(out.distance.size() == 2, "run: method " << m << " was not measured");
      Row row{m, out.result, out.distance[0], out.distance[1]};
      rows.push_back(std::move(row));
      log::set_run("");
    }
    if (world.rank() == 0) {
      const std::string csv_path = (fs::path(g.out_dir) / "summary.csv").string();
      io::AtomicOutput csv(csv_path);
      {
        std::ofstream o(csv.temp_path());
        o << "method,test_accuracy,test_loss,train_loss_clean,train_loss_noisy,gap_loss_clean,sum_sqrt_h,bound,bound_c,"
             "bound_block,max_loss,negative_layers,train_size,best_epoch,train_seconds\n";
        o << std::setprecision(10);
        for (const auto& r : rows) {
          o << r.method << "," << r.r.test.accuracy << "," << r.r.test.loss << "," << r.r.train_clean.loss << ","
            << r.r.train_noisy.loss << "," << r.r.test.loss - r.r.train_clean.loss << "," << r.d.sum_sqrt << ","
            << r.d.bound << "," << r.d.bound_c << "," << r.d_block.bound << "," << r.d.max_loss << "," << r.d.negative_layers << ","
            << r.d.train_size << "," << r.r.best_epoch << "," << r.r.seconds << "\n";
        }
        HG_CHECK(o.good(), "cannot write '" << csv_path << "'");
      }
      csv.commit();
      std::printf("\n%s\nper method: %s/<method>/{run.h5,epoch_0.h5,best.h5,last.h5}; table: %s\n",
                  table(rows).c_str(), g.out_dir.c_str(), csv_path.c_str());
    }
    return 0;
  };
}

}  // namespace hessgap::app
