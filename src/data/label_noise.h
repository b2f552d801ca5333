// Synthetic label noise on the training set (SPEC §6.1 image, §6.3 text), keyed by global sample ids so
// that every rank, whatever the rank count, derives the same noisy labels without communication.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "data/dataset.h"

namespace hessgap::data {

struct LabelNoiseOptions {
  enum class Mode {
    kSymmetric,  // selected labels redrawn uniformly over all K classes (may keep their label): image §6.1,
                 // and text with K > 2
    kFlip,       // selected labels flipped, y -> 1 - y (K = 2 only): text §6.3
  };
  double rate = 0.0;         // rho in [0, 1]
  Mode mode = Mode::kSymmetric;
  std::uint64_t seed = 0;    // the reference seeds numpy with 0 (image) and 1024 (text)
  // Positions are chosen per chunk of `chunk_size` consecutive training ids, m = int(rate * chunk length)
  // in each (the last chunk may be shorter). 0: one chunk of all n ids (image). The text reference
  // injects noise through datasets.map(batched=True), i.e. chunks of 1000.
  std::int64_t chunk_size = 0;
};

// Which training samples get a noisy label, and which label.
//
// Selection: within each chunk of `train_ids` (in the given order, e.g. the training sampler's index list),
// the m = int(rate * chunk length) ids with the smallest keys rng::bits(make_key(seed, kLabelNoise, 0), id)
// (ties by id): m distinct positions drawn uniformly without replacement, as numpy's choice(replace=False)
// draws them, but from another generator, so not the reference's positions. New label of a selected id:
// kSymmetric: floor(K * rng::uniform(make_key(seed, kLabelNoise, 1), id)); kFlip: 1 - y.
// Everything depends on (seed, options, train_ids, id) only: querying any subset of ids, in any order, on any
// rank gives the same labels. Not collective.
class LabelNoise {
 public:
  // Throws hessgap::Error for rate outside [0, 1], num_classes < 1 (kFlip: != 2), chunk_size < 0, or a
  // repeated or negative id in train_ids.
  LabelNoise(const std::vector<std::int64_t>& train_ids, std::int64_t num_classes, LabelNoiseOptions options);

  // True when id is a training id chosen for relabelling.
  bool selected(std::int64_t id) const { return selected_.count(id) != 0; }
  // The label sample `id` trains with: `clean` for unselected (and non-training) ids, else the noisy draw.
  // Throws when clean is outside [0, K) for a selected id (kFlip: outside {0, 1}).
  std::int64_t label(std::int64_t id, std::int64_t clean) const;
  // Number of selected ids: the sum over chunks of int(rate * chunk length).
  std::int64_t num_selected() const { return static_cast<std::int64_t>(selected_.size()); }
  std::int64_t num_train() const { return num_train_; }
  const LabelNoiseOptions& options() const { return options_; }
  std::int64_t num_classes() const { return num_classes_; }

 private:
  LabelNoiseOptions options_;
  std::int64_t num_classes_;
  std::int64_t num_train_;
  std::uint64_t class_key_;
  std::unordered_set<std::int64_t> selected_;  // selected training ids
};

struct NoisyLabels {
  std::vector<std::int64_t> labels;   // the label each id trains with, aligned with the query
  std::vector<std::uint8_t> relabelled;  // 1 where the id was selected (its label may still equal the clean one)
};

// Applies `noise` to the labels of `ids` (clean[k] is the clean label of ids[k]).
// Throws hessgap::Error when the sizes differ and for every error of LabelNoise::label.
NoisyLabels apply_label_noise(const LabelNoise& noise, const std::vector<std::int64_t>& ids,
                              const std::vector<std::int64_t>& clean);

// A dataset whose labels are the noisy ones (inputs and everything else unchanged). `base` must outlive it,
// or is owned (second constructor). Throws hessgap::Error when noise is null or its class count differs.
class NoisyLabelDataset : public Dataset {
 public:
  NoisyLabelDataset(const Dataset& base, std::shared_ptr<const LabelNoise> noise);
  NoisyLabelDataset(std::unique_ptr<Dataset> owned_base, std::shared_ptr<const LabelNoise> noise);

  std::int64_t size() const override { return base_.size(); }
  std::int64_t num_classes() const override { return base_.num_classes(); }
  std::vector<std::string> class_names() const override { return base_.class_names(); }
  std::int64_t label(std::int64_t i) const override { return noise_->label(i, base_.label(i)); }
  Batch get_batch(const std::vector<std::int64_t>& ids) const override;
  std::string describe() const override;

  const Dataset& base() const { return base_; }
  const LabelNoise& noise() const { return *noise_; }

 private:
  std::unique_ptr<Dataset> owned_;  // null unless constructed owning
  const Dataset& base_;
  std::shared_ptr<const LabelNoise> noise_;
};

// The labels a dataset trains with, set against the clean ones, for output files (the realised noise).
struct LabelAudit {
  // "clean": no noise; "synthetic": a NoisyLabelDataset (clean = its base's labels); "weak": DomainNet
  // weak-supervision labels (clean = the true labels).
  std::string source = "clean";
  std::vector<std::int64_t> clean;          // [N] by sample id
  std::vector<std::int64_t> used;           // [N] the labels get_batch returns
  std::vector<std::uint8_t> relabelled;     // [N] 1 where synthetic noise selected the id; weak: used != clean
  std::int64_t num_noisy = 0;               // ids with used != clean
  double realised_rate = 0.0;               // num_noisy / N (0 for N = 0)
  std::string description;                  // the dataset's describe()
  LabelNoiseOptions noise;                  // "synthetic": the noise's resolved options; else rate 0
};

// Reads every label of `d` (no decoding). Not collective. Throws what the labels' lookups throw (e.g.
// DomainNet without true labels).
LabelAudit audit_labels(const Dataset& d);

}  // namespace hessgap::data
