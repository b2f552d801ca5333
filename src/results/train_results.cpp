// /train of a run file (docs/output-format.md): the trainer's history and final metrics as computed by
// train::fine_tune; nothing is computed here beyond unpacking records into columns and the gaps.
#include "results/results_file.h"

#include <cmath>

#include "io/h5.h"

namespace hessgap::results {
namespace {

// One field of every record, as the column a dataset stores.
template <typename Record, typename T>
std::vector<T> column(const std::vector<Record>& records, T Record::*field) {
  std::vector<T> out;
  out.reserve(records.size());
  for (const auto& r : records) out.push_back(r.*field);
  return out;
}

}  // namespace

void ResultsFile::write_train(const train::TrainResult& r, const TrainRecordInfo& info) {
  if (!file_) return;
  auto& f = *file_;
  f.create_group("/train");
  if (info.options != nullptr) {
    const auto& o = *info.options;
    f.set_attr("/train", "optimizer", o.optimizer.name);
    f.set_attr("/train", "lr", o.optimizer.lr);
    f.set_attr("/train", "weight_decay", o.optimizer.weight_decay);
    f.set_attr("/train", "schedule", o.schedule);
    f.set_attr("/train", "epochs", o.epochs);
    f.set_attr("/train", "batch_size", o.batch_size);
    f.set_attr("/train", "reg_method", o.reg_method);
    f.set_attr("/train", "reg_norm", train::to_string(o.norm));
    f.set_attr("/train", "reweighted", static_cast<std::int64_t>(o.reweight.defined()));
    f.set_attr("/train", "reweight_epoch", o.reweight_epoch);
    f.set_attr("/train", "monitor", o.monitor == "max" ? "max val_accuracy" : "min val_loss");
    f.set_attr("/train", "early_stop", o.patience);
    f.set_attr("/train", "seed", static_cast<std::int64_t>(o.seed));
    std::vector<std::string> groups;
    for (const auto& g : o.groups) {
      groups.push_back(g.name + ": include '" + g.including_key + "', exclude '" + g.excluding_key + "', " +
                       (o.reg_method == "penalty" ? "coefficient " : "radius ") + std::to_string(g.radius) +
                       (g.around_reference ? " around W(s)" : " around 0"));
    }
    if (!groups.empty()) f.write_strings("/train/constraint_groups", groups, "Constraint groups in the order they apply");
    if (o.reweight.defined()) {
      const auto R = o.reweight.to(torch::kCPU, torch::kFloat64).contiguous();
      f.write("/train/reweight_matrix", R.data_ptr<double>(), {R.size(0), R.size(1)},
              "R = pinv(C) of the reweighted loss, [noisy label, class]");
    }
  }
  f.set_attr("/train", "out_dir", info.out_dir);
  f.set_attr("/train", "resumed_at_epoch", r.resumed_at_epoch);

  const auto S = static_cast<std::int64_t>(r.steps.size());
  const auto E = static_cast<std::int64_t>(r.epochs.size());
  using train::EpochRecord;
  using train::StepRecord;
  f.write("/train/history/step", column(r.steps, &StepRecord::step), {S}, "Optimizer step (0-based, over the whole run)");
  f.write("/train/history/epoch", column(r.steps, &StepRecord::epoch), {S}, "Epoch of the step (0-based)");
  f.write("/train/history/loss", column(r.steps, &StepRecord::loss), {S}, "Mean training loss of the global batch (the loss trained on: reweighted where it applies; training labels)");
  f.write("/train/history/accuracy", column(r.steps, &StepRecord::accuracy), {S}, "Accuracy of the global batch against its training labels", "fraction");
  f.write("/train/history/lr", column(r.steps, &StepRecord::lr), {S}, "Learning rate of the step");

  f.write("/train/epochs/epoch", column(r.epochs, &EpochRecord::epoch), {E}, "Epoch (0-based)");
  f.write("/train/epochs/lr", column(r.epochs, &EpochRecord::lr), {E}, "Learning rate at the epoch's last step");
  f.write("/train/epochs/train_loss", column(r.epochs, &EpochRecord::train_loss), {E}, "Sample-weighted mean training loss over the epoch's steps (training labels)");
  f.write("/train/epochs/train_accuracy", column(r.epochs, &EpochRecord::train_accuracy), {E}, "Sample-weighted training accuracy over the epoch (training labels)", "fraction");
  f.write("/train/epochs/train_accuracy_batch_mean", column(r.epochs, &EpochRecord::train_accuracy_batch_mean), {E},
          "The reference's training accuracy: unweighted mean of the batches' accuracies", "fraction");
  f.write("/train/epochs/val_loss", column(r.epochs, &EpochRecord::val_loss), {E}, "Validation cross-entropy (clean labels; NaN without validation)");
  f.write("/train/epochs/val_accuracy", column(r.epochs, &EpochRecord::val_accuracy), {E}, "Validation accuracy (clean labels; NaN without validation)", "fraction");
  f.write("/train/epochs/seconds", column(r.epochs, &EpochRecord::seconds), {E}, "Wall time of the epoch", "s");
  f.write("/train/epochs/projected", column(r.epochs, &EpochRecord::projected), {E}, "Tensors changed by the constraint projections during the epoch");

  f.create_group("/train/final");
  f.set_attr("/train/final", "description", "Metrics of the best weights (best.h5), as the reference tests model_best");
  f.write("/train/final/best_epoch", r.best_epoch, "0-based epoch whose weights best.h5 holds");
  f.write("/train/final/epochs_run", E, "Epochs trained (early stopping may end before --epochs)");
  f.write("/train/final/stopped_early", static_cast<std::int64_t>(r.stopped_early), "1 when early stopping ended the run");
  f.write("/train/final/test_accuracy", r.test.accuracy, "Test accuracy, sample-weighted", "fraction");
  f.write("/train/final/test_loss", r.test.loss, "Test cross-entropy per sample");
  f.write("/train/final/num_test", r.test.samples, "Test samples");
  if (std::isfinite(r.test.f1)) {  // two classes: GLUE MRPC/QQP report F1 beside accuracy
    f.write("/train/final/test_f1", r.test.f1, "F1 of class 1 on the test split: 2TP / (2TP + FP + FN)", "fraction");
    if (std::isfinite(r.valid.f1)) {
      f.write("/train/final/valid_f1", r.valid.f1, "F1 of class 1 on the validation ids", "fraction");
    }
  }
  f.write("/train/final/train_loss_clean", r.train_clean.loss, "Cross-entropy on the training ids with their clean labels");
  f.write("/train/final/train_loss_noisy", r.train_noisy.loss, "Cross-entropy on the training ids with the labels trained on (noisy)");
  f.write("/train/final/train_accuracy_clean", r.train_clean.accuracy, "Training accuracy against clean labels", "fraction");
  f.write("/train/final/train_accuracy_noisy", r.train_noisy.accuracy, "Training accuracy against the labels trained on", "fraction");
  f.write("/train/final/valid_loss", r.valid.loss, "Validation cross-entropy (NaN without validation)");
  f.write("/train/final/valid_accuracy", r.valid.accuracy, "Validation accuracy (NaN without validation)", "fraction");
  f.write("/train/final/gap_loss_clean", r.test.loss - r.train_clean.loss, "Generalization gap: test loss - train loss (clean labels)");
  f.write("/train/final/gap_loss_noisy", r.test.loss - r.train_noisy.loss, "Generalization gap: test loss - train loss (training labels)");
  f.write("/train/final/gap_accuracy", r.train_clean.accuracy - r.test.accuracy, "Train accuracy (clean) - test accuracy", "fraction");
  f.write("/train/final/num_train", info.num_train, "Training ids");
  f.write("/train/final/num_valid", info.num_valid, "Validation ids");
  f.write("/train/final/seconds", r.seconds, "Wall time of the training job", "s");
}

}  // namespace hessgap::results
