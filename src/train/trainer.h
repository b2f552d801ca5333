// The fine-tuning loop (SPEC §3, the paper's Algorithm 1): data-parallel SGD steps with the reference's
// optimizer and schedule, the reweighted loss under label noise (§5), the distance constraints or
// penalty around the pretrained weights after every step (§4), validation and early stopping, and
// checkpoints from which a killed run resumes to the same weights. CLI-free: app/ builds the options.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "data/batch.h"
#include "train/constraints.h"
#include "train/schedule.h"

namespace hessgap::comm {
class Communicator;
}
namespace hessgap::data {
class Dataset;
}
namespace hessgap::models {
class Classifier;
}

namespace hessgap::train {

struct TrainerOptions {
  std::int64_t epochs = 30;
  std::int64_t batch_size = 32;        // GLOBAL batch (all ranks together), as the reference's loader
  std::int64_t eval_batch_size = 100;  // global, validation / test / train-loss passes
  OptimizerSpec optimizer;
  // "step": StepLR(step_size, gamma) per epoch (image); "linear": transformers' linear schedule per
  // optimizer step with round(warmup_epochs · steps per epoch) warm-up steps (text).
  std::string schedule = "step";
  std::int64_t step_size = 10;
  double gamma = 0.1;
  double warmup_epochs = 0.0;
  // "constraint": project after every optimizer step; "penalty": add λ·D(W − W0) to the loss; "none".
  std::string reg_method = "none";
  Norm norm = Norm::kFrobenius;
  std::vector<ConstraintGroup> groups;
  // R = pinv(C), [K, K] float64 (train/reweight.h): epochs with epoch+1 >= reweight_epoch (1-based, as
  // the reference) train with the reweighted loss; undefined: plain cross-entropy throughout.
  torch::Tensor reweight;
  std::int64_t reweight_epoch = 1;
  // Early stopping (train/schedule.h): "max" validation accuracy (image) or "min" validation loss (text).
  // BatchNorm in training mode normalises with the whole global batch's statistics, all-reduced
  // (models/batch_norm.h): the run is then the same at any rank count. Off: each rank's own shard (DDP).
  bool sync_bn = false;
  std::string monitor = "max";
  std::int64_t patience = 10;
  std::uint64_t seed = 0;
  // Checkpoints epoch_0.h5 (W(s)), best.h5, last.h5 in this folder (rank 0 writes; "" = none).
  std::string out_dir;
  // Continue from out_dir/last.h5 (it must exist and carry the same run_id).
  bool resume = false;
  // End this invocation after this many epochs (0: run to --epochs): last.h5 then holds the state a
  // later call with resume continues from (a time-limited job, and the resume tests).
  std::int64_t stop_after_epochs = 0;
  std::string run_id;                                   // recorded in every checkpoint
  std::map<std::string, std::string> checkpoint_metadata;  // e.g. arch, recorded too
  // Called on every rank after every optimizer step and projection (progress, tests of invariants).
  std::function<void(const struct StepRecord&)> on_step;
  // Polled on every rank before every optimizer step; must give the same answer on every rank of `world`
  // (an all-reduced signal flag). true: fine_tune throws signals::Interrupted there, leaving last.h5 as the
  // previous epoch wrote it (a resume repeats the interrupted epoch exactly, every draw being keyed).
  std::function<bool()> stop_requested;
  // Throws hessgap::Error naming the field (epochs, batch sizes, schedule, reg method, radii, R's shape).
  void validate(std::int64_t num_classes) const;
};

// What the loop trains on. Validation and test use the datasets' own (clean) labels.
struct TrainData {
  const data::Dataset* train = nullptr;   // the training split
  std::vector<std::int64_t> train_ids;    // ids of *train that train (after the validation split)
  std::vector<std::int64_t> valid_ids;    // ids that validate (may be empty: no early stopping): of *valid
                                          // when set, else of *train
  // A separate validation split (DomainNet's and Caltech-256's own val split, with its own clean labels);
  // null: the validation ids are held out of *train.
  const data::Dataset* valid = nullptr;
  // The clean labels of *train by id when the dataset's own are not (DomainNet's weak labels: the true
  // ones), for validation held out of *train and the clean training loss; empty: the dataset's are clean.
  std::vector<std::int64_t> clean_labels;
  std::vector<std::int64_t> train_labels; // [train->size()]: the label each id trains with (noisy or clean)
  const data::Dataset* test = nullptr;    // optional
  std::vector<std::int64_t> test_ids;     // ids of *test to evaluate (empty: all of it)
  // Training batches with augmentation, e.g. data::augmented_batch keyed by (seed, epoch, sample id):
  // ids and the 0-based epoch -> a CPU batch of those samples. Empty: train->get_batch(ids). Validation
  // and the final passes always use train->get_batch (the eval transform).
  std::function<data::Batch(const std::vector<std::int64_t>&, std::int64_t)> train_batch;
};

struct StepRecord {
  std::int64_t step = 0, epoch = 0;  // 0-based
  double loss = 0, accuracy = 0, lr = 0;  // the global batch's mean training loss and accuracy
};

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct EpochRecord {
  std::int64_t epoch = 0;  // 0-based
  double lr = 0;           // the rate at the epoch's last step
  double train_loss = 0, train_accuracy = 0;  // sample-weighted over the epoch's steps (training labels)
  double train_accuracy_batch_mean = 0;       // the reference's unweighted mean of batch accuracies
  double val_loss = kNaN, val_accuracy = kNaN;
  double seconds = 0;
  std::int64_t projected = 0;  // tensors the constraints changed during the epoch
};

struct Metrics {
  double loss = kNaN;      // mean cross-entropy per sample
  double accuracy = kNaN;  // fraction
  // Two classes only (NaN otherwise): F1 of class 1, the positive class of GLUE MRPC/QQP, as
  // load_metric("glue", "mrpc") reports it: 2·TP / (2·TP + FP + FN).
  double f1 = kNaN;
  std::int64_t samples = 0;
};

struct TrainResult {
  std::vector<StepRecord> steps;
  std::vector<EpochRecord> epochs;
  std::int64_t best_epoch = -1;  // 0-based epoch whose weights best.h5 holds (the last without validation)
  bool stopped_early = false;
  bool finished = false;  // all epochs run or stopped early (false after stop_after_epochs cut it short)
  std::int64_t resumed_at_epoch = -1;  // first epoch this invocation ran when resuming
  // Of the best weights (the reference tests model_best): test split; the training ids under their
  // clean and their training (noisy) labels; the validation ids.
  Metrics test, train_clean, train_noisy, valid;
  double seconds = 0;
};

// Collective over `world`: every rank holds the same model (same weights) and the same data, takes its
// shard of every global batch (data::ShardedSampler keyed by opts.seed), and the gradients travel as
// one flat sum per step (losses as sums and counts; a rank with an empty shard still reaches it), so
// the weights stay identical on every rank. BatchNorm layers use each rank's own batch statistics (as
// DDP does by default), their running statistics then being rank 0's (broadcast after every step, as
// DDP's broadcast_buffers does before every forward, so that the BatchNorm box of the constraints sees
// the same values everywhere); or, with sync_bn, the global batch's (a rank with an empty shard then
// runs a batch of zero samples, since every BatchNorm layer is a collective). The model ends with the best weights loaded. Throws hessgap::Error for invalid
// options, a non-finite training loss (naming the epoch and step; last.h5 stays the last good one) or a
// bad resume; I/O errors of rank 0 propagate there (main aborts the job).
TrainResult fine_tune(models::Classifier& model, const TrainData& data, const TrainerOptions& opts,
                      comm::Communicator& world, torch::Device device);

// Loss and accuracy of `model` (eval mode) on `ids` of `dataset`, with `labels` (indexed by id; empty:
// the dataset's labels). Collective over `world`: ids are sharded, sums and counts all-reduced.
Metrics evaluate_ids(models::Classifier& model, const data::Dataset& dataset, const std::vector<std::int64_t>& ids,
                     const std::vector<std::int64_t>& labels, std::int64_t batch_size, comm::Communicator& world,
                     torch::Device device);

}  // namespace hessgap::train
