#include "app/options.h"

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>

#include "comm/communicator.h"
#include "data/dataset.h"
#include "data/registry.h"
#include "io/atomic_output.h"
#include "io/checkpoint.h"
#include "models/registry.h"
#include "util/error.h"
#include "util/log.h"

namespace hessgap::app {
namespace fs = std::filesystem;

std::string assets_dir() {
  if (const char* env = std::getenv("HESSGAP_ASSETS")) return env;
  return HG_ASSETS_DIR;
}

void add_dataset_options(CLI::App* cmd, data::DatasetSpec& d) {
  cmd->add_option("--data", d.path, "Dataset: an image folder (one sub-folder per class), an IDX folder, a CIFAR binary folder, a Caltech-256 / DomainNet / MIT-Indoor root, or a GLUE task folder or TSV file")->required();
  cmd->add_option("--data-format", d.kind, "imagefolder | idx | cifar10 | cifar100 | caltech256 | domainnet | mit-indoor | aircraft | cub200 | stanford-cars | stanford-dogs | flowers102 | awa2 | glue");
  cmd->add_option("--split", d.split, "idx, cifar10, cifar100: train | test; caltech256, domainnet, mit-indoor: train | val | test; glue: train | dev | test");
  cmd->add_option("--task", d.task, "glue: mrpc | sst2 | qqp | rte | qnli | wnli (default: from the folder name, e.g. MRPC, SST-2)");
  cmd->add_option("--tokenizer", d.tokenizer, "glue: tokenizer folder (vocab.json + merges.txt, or vocab.txt); default: the --checkpoint folder when it has one");
  cmd->add_option("--max-length", d.max_length, "glue: tokens per example including special tokens (padded to it)");
  cmd->add_option("--resize", d.resize, "Eval transform: resize the shorter side to this (0: none)");
  cmd->add_option("--crop", d.crop, "Eval transform: center crop to this square size (0: none)");
  cmd->add_option("--normalize", d.normalize, "Normalisation: imagenet | cifar10 | fashion-mnist | mnist | domain (domainnet) | none");
  cmd->add_option("--domain", d.domain, "domainnet: clipart | infograph | painting | quickdraw | real | sketch");
  cmd->add_option("--sample", d.sample, "domainnet: the class sample, 1 or 2 (the reference's --sample)");
  cmd->add_option("--label-source", d.label_source, "domainnet: weak (majority-vote labels) | true; default weak for train, true otherwise");
  cmd->add_option("--valid-split", d.valid_split, "mit-indoor: fraction of the training list held out for validation");
  cmd->add_option("--pad", d.pad, "idx: zero-pad every image by N pixels on each side, before normalisation (28 -> 32 for 2)");
  cmd->add_flag("--grey-to-rgb", d.grey_to_rgb, "idx: replicate the grey channel to 3 channels (then --normalize takes a 3-channel name such as cifar10)");
  cmd->add_option("--max-per-class", d.max_per_class, "Image folders: only the first N files of each class (0: all)");
  cmd->add_option("--subset", d.limit, "Keep only the first N samples of the split, in its natural order (0: all); label noise then applies to those");
  cmd->add_flag("--skip-unreadable", d.skip_unreadable, "imagefolder: leave unreadable or corrupt images out of their batch (counted in the output) instead of stopping");
  cmd->add_option("--label-noise", d.noise_rate, "Synthetic label noise rate rho in [0, 1] on the chosen split (SPEC §6); 0: none");
  cmd->add_option("--noise-mode", d.noise_mode, "auto (flip for glue, symmetric otherwise) | symmetric | flip");
  cmd->add_option("--noise-seed", d.noise_seed, "Seed of the label noise (keyed by sample id: the same at any rank count)");
  cmd->add_option("--noise-chunk", d.noise_chunk, "Noise drawn per chunk of this many ids (-1: 1000 for glue as the reference, else one chunk)");
}

void add_common_options(CLI::App* cmd, CommonOptions& o, bool needs_checkpoint) {
  auto* ck = cmd->add_option("--checkpoint", o.checkpoint,
                             "Model weights: safetensors file, Hugging Face folder or hessgap HDF5 checkpoint");
  if (needs_checkpoint) ck->required();
  // An empty value used to run on the architecture's random initial weights and exit 0.
  ck->check([](const std::string& v) {
    return v.empty() ? std::string("--checkpoint must not be empty (a file or folder of model weights)") : std::string();
  });
  cmd->add_option("--arch", o.arch, "Architecture (cifar-resnet20|32|44|56|110, resnet18|34|50|101, bert-base, roberta-base, vit-base|b16|b32|l16, hf:FOLDER, mlp[:...], small-cnn[:...]); default: hf:CHECKPOINT for a Hugging Face folder, else cifar-resnet20");
  cmd->add_option("--num-classes", o.num_classes, "Classes of the head (default: the dataset's)");
  cmd->add_flag("--new-head", o.new_head,
                "Accept a checkpoint whose head is missing or has another number of classes: the head keeps a fresh "
                "draw (seeded by --seed, initialised as the source library does) and this is logged");
  cmd->add_flag("--allow-nonfinite", o.allow_nonfinite,
                "Use a checkpoint holding NaN or infinite values (refused by default, naming the tensor)");
  add_dataset_options(cmd, o.data);
  cmd->add_option("--batch-size,--bs", o.batch_size, "Samples per batch (the reference's README uses 4)");
  cmd->add_option("--sample-size", o.sample_size, "Samples to use (0: all); see --sample-rule");
  cmd->add_option("--sample-rule", o.sample_rule,
                  "reference: whole batches until the count exceeds --sample-size; exact: exactly that many");
  auto* order = cmd->add_option("--sample-order", o.sample_order,
                                "random: batches from a permutation of the dataset keyed by --seed (the reference's seeded "
                                "sampler); natural: the dataset's order (an image folder's is class by class)");
  cmd->add_flag("--shuffle", o.shuffle, "The same as --sample-order random (the older spelling)")->excludes(order);
  cmd->add_option("--seed", o.seed, "Seed of probes, noise and the random sample order");
  cmd->add_option("--dtype", o.dtype, "Compute dtype: float32 | float64");
  cmd->add_option("--device", o.device, "cpu | cuda (this rank's GPU) | cuda:N");
  cmd->add_flag("--allow-tf32", o.allow_tf32,
                "On a CUDA device, let matrix products and convolutions use TF32 (off by default: it changes HVPs at "
                "the 1e-3 level); no effect on the CPU");
  cmd->add_option("--out", o.out, "Write results to this HDF5 file (written under a temporary name, then renamed)")
      ->check([](const std::string& v) { return v.empty() ? std::string("--out must not be empty (omit it to write no file)") : std::string(); });
  cmd->add_option("--threads", o.threads, "Intra-op threads per rank (1 is best with one rank per core)");
  cmd->add_option("--verbosity", o.verbosity, "0 quiet, 1 progress, 2 debug");
}

RunFn measure_command(std::shared_ptr<job::MeasureConfig> config,
                      std::function<void(const job::MeasureOutcome&)> print) {
  return [config, print](comm::Communicator& world, const std::string& command_line) {
    const job::MeasureOutcome outcome = job::run_measure(world, *config, command_line);
    if (world.rank() == 0) print(outcome);
    return 0;
  };
}

}  // namespace hessgap::app
