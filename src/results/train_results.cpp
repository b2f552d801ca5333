// /train of a run file (docs/output-format.md): the trainer's history and final metrics as computed by
// train::fine_tune; nothing is computed here beyond unpacking records into columns and the gaps.
#include "results/results_file.h"

#include <cmath>

#include "io/h5.h"

namespace hessgap::results {

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
  std::vector<std::int64_t> step(S), step_epoch(S);
  std::vector<double> loss(S), acc(S), lr(S);
  for (std::int64_t i = 0; i < S; ++i) {
    const auto& s = r.steps[static_cast<std::size_t>(i)];
    step[i] = s.step;
    step_epoch[i] = s.epoch;
    loss[i] = s.loss;
    acc[i] = s.accuracy;
    lr[i] = s.lr;
  }
  f.write("/train/history/step", step, {S}, "Optimizer step (0-based, over the whole run)");
  f.write("/train/history/epoch", step_epoch, {S}, "Epoch of the step (0-based)");
  f.write("/train/history/loss", loss, {S}, "Mean training loss of the global batch (the loss trained on: reweighted where it applies; training labels)");
  f.write("/train/history/accuracy", acc, {S}, "Accuracy of the global batch against its training labels", "fraction");
  f.write("/train/history/lr", lr, {S}, "Learning rate of the step");

  const auto E = static_cast<std::int64_t>(r.epochs.size());
  std::vector<std::int64_t> epoch(E), projected(E);
  std::vector<double> elr(E), tl(E), ta(E), tab(E), vl(E), va(E), secs(E);
  for (std::int64_t i = 0; i < E; ++i) {
    const auto& e = r.epochs[static_cast<std::size_t>(i)];
    epoch[i] = e.epoch;
    projected[i] = e.projected;
    elr[i] = e.lr;
    tl[i] = e.train_loss;
    ta[i] = e.train_accuracy;
    tab[i] = e.train_accuracy_batch_mean;
    vl[i] = e.val_loss;
    va[i] = e.val_accuracy;
    secs[i] = e.seconds;
  }
  f.write("/train/epochs/epoch", epoch, {E}, "Epoch (0-based)");
  f.write("/train/epochs/lr", elr, {E}, "Learning rate at the epoch's last step");
  f.write("/train/epochs/train_loss", tl, {E}, "Sample-weighted mean training loss over the epoch's steps (training labels)");
  f.write("/train/epochs/train_accuracy", ta, {E}, "Sample-weighted training accuracy over the epoch (training labels)", "fraction");
  f.write("/train/epochs/train_accuracy_batch_mean", tab, {E},
          "The reference's training accuracy: unweighted mean of the batches' accuracies", "fraction");
  f.write("/train/epochs/val_loss", vl, {E}, "Validation cross-entropy (clean labels; NaN without validation)");
  f.write("/train/epochs/val_accuracy", va, {E}, "Validation accuracy (clean labels; NaN without validation)", "fraction");
  f.write("/train/epochs/seconds", secs, {E}, "Wall time of the epoch", "s");
  f.write("/train/epochs/projected", projected, {E}, "Tensors changed by the constraint projections during the epoch");

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
