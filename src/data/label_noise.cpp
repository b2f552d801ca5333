#include "data/label_noise.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <utility>

#include "data/domainnet.h"
#include "data/subset_dataset.h"
#include "util/error.h"
#include "util/rng.h"

namespace hessgap::data {

LabelNoise::LabelNoise(const std::vector<std::int64_t>& train_ids, std::int64_t num_classes, LabelNoiseOptions options)
    : options_(options), num_classes_(num_classes), num_train_(static_cast<std::int64_t>(train_ids.size())) {
  const bool flip = options_.mode == LabelNoiseOptions::Mode::kFlip;
  HG_CHECK(std::isfinite(options_.rate) && options_.rate >= 0.0 && options_.rate <= 1.0,
           "label noise rate must be in [0, 1], got " << options_.rate);
  HG_CHECK(num_classes_ >= 1, "label noise: the number of classes must be >= 1, got " << num_classes_);
  HG_CHECK(!flip || num_classes_ == 2,
           "label noise by flipping needs 2 classes, got " << num_classes_ << " (use symmetric noise for K > 2)");
  HG_CHECK(options_.chunk_size >= 0, "label noise chunk size must be >= 0, got " << options_.chunk_size);
  {
    std::unordered_set<std::int64_t> seen;
    seen.reserve(train_ids.size());
    for (std::int64_t id : train_ids) {
      HG_CHECK(id >= 0, "label noise: negative training sample id " << id);
      HG_CHECK(seen.insert(id).second, "label noise: training sample id " << id << " is listed twice");
    }
  }
  const std::uint64_t select_key = rng::make_key(options_.seed, rng::Stream::kLabelNoise, 0);
  class_key_ = rng::make_key(options_.seed, rng::Stream::kLabelNoise, 1);
  const std::int64_t n = num_train_;
  const std::int64_t chunk = options_.chunk_size > 0 ? options_.chunk_size : std::max<std::int64_t>(n, 1);
  std::vector<std::pair<std::uint64_t, std::int64_t>> keyed;
  for (std::int64_t begin = 0; begin < n; begin += chunk) {
    const std::int64_t end = std::min(n, begin + chunk);
    // int(rate * length), as the reference computes it in Python (the same double product, truncated).
    const auto m = static_cast<std::int64_t>(options_.rate * static_cast<double>(end - begin));
    keyed.clear();
    for (std::int64_t k = begin; k < end; ++k) {
      const std::int64_t id = train_ids[static_cast<std::size_t>(k)];
      keyed.emplace_back(rng::bits(select_key, static_cast<std::uint64_t>(id)), id);
    }
    std::nth_element(keyed.begin(), keyed.begin() + m, keyed.end());
    for (std::int64_t k = 0; k < m; ++k) selected_.insert(keyed[static_cast<std::size_t>(k)].second);
  }
}

std::int64_t LabelNoise::label(std::int64_t id, std::int64_t clean) const {
  if (!selected(id)) return clean;
  if (options_.mode == LabelNoiseOptions::Mode::kFlip) {
    HG_CHECK(clean == 0 || clean == 1, "label noise (flip): sample " << id << " has label " << clean << " (expected 0 or 1)");
    return 1 - clean;
  }
  HG_CHECK(clean >= 0 && clean < num_classes_, "label noise: sample " << id << " has label " << clean
                                                                      << " outside [0, " << num_classes_ << ")");
  const auto draw = static_cast<std::int64_t>(rng::uniform(class_key_, static_cast<std::uint64_t>(id)) *
                                              static_cast<double>(num_classes_));
  return std::min(draw, num_classes_ - 1);
}

NoisyLabels apply_label_noise(const LabelNoise& noise, const std::vector<std::int64_t>& ids,
                              const std::vector<std::int64_t>& clean) {
  HG_CHECK(ids.size() == clean.size(), "apply_label_noise: " << ids.size() << " ids but " << clean.size() << " labels");
  NoisyLabels out;
  out.labels.reserve(ids.size());
  out.relabelled.reserve(ids.size());
  for (std::size_t k = 0; k < ids.size(); ++k) {
    out.labels.push_back(noise.label(ids[k], clean[k]));
    out.relabelled.push_back(noise.selected(ids[k]) ? 1 : 0);
  }
  return out;
}

NoisyLabelDataset::NoisyLabelDataset(std::unique_ptr<Dataset> owned_base, std::shared_ptr<const LabelNoise> noise)
    : NoisyLabelDataset(*owned_base, std::move(noise)) {
  owned_ = std::move(owned_base);
}

NoisyLabelDataset::NoisyLabelDataset(const Dataset& base, std::shared_ptr<const LabelNoise> noise)
    : base_(base), noise_(std::move(noise)) {
  HG_CHECK(noise_, "noisy-label dataset over " << base_.describe() << ": no label noise given");
  HG_CHECK(noise_->num_classes() == base_.num_classes(), "label noise for " << noise_->num_classes()
                                                                           << " classes applied to " << base_.describe());
}

Batch NoisyLabelDataset::get_batch(const std::vector<std::int64_t>& ids) const {
  Batch batch = base_.get_batch(ids);
  // By the batch's own ids: a dataset that skips unreadable files returns fewer rows than asked for.
  std::int64_t* labels = batch.labels.data_ptr<std::int64_t>();
  for (std::size_t k = 0; k < batch.sample_ids.size(); ++k) labels[k] = noise_->label(batch.sample_ids[k], labels[k]);
  return batch;
}

std::string NoisyLabelDataset::describe() const {
  const LabelNoiseOptions& o = noise_->options();
  std::ostringstream os;
  os << base_.describe() << " with " << (o.mode == LabelNoiseOptions::Mode::kFlip ? "flipped" : "symmetric")
     << " label noise (rate " << o.rate << ", seed " << o.seed << ", " << noise_->num_selected() << " of "
     << noise_->num_train() << " training labels relabelled";
  if (o.chunk_size > 0) os << ", per chunk of " << o.chunk_size;
  os << ")";
  return os.str();
}

LabelAudit audit_labels(const Dataset& d) {
  LabelAudit a;
  a.description = d.describe();
  const std::int64_t n = d.size();
  const auto* noisy = dynamic_cast<const NoisyLabelDataset*>(&d);
  // Under a subset too (source_dataset): DomainNet's weak labels are still weak on its first N samples.
  const auto* domainnet = dynamic_cast<const DomainNetDataset*>(&source_dataset(d));
  const bool weak = !noisy && domainnet && domainnet->label_source() == "weak";
  a.source = noisy ? "synthetic" : weak ? "weak" : "clean";
  if (noisy) a.noise = noisy->noise().options();
  for (std::int64_t i = 0; i < n; ++i) {
    // The clean label: DomainNet's true label where it is the reference (weak labels), else the base's.
    const std::int64_t clean = weak ? domainnet->true_label(i) : noisy ? noisy->base().label(i) : d.label(i);
    const std::int64_t used = d.label(i);
    a.clean.push_back(clean);
    a.used.push_back(used);
    a.relabelled.push_back(noisy ? static_cast<std::uint8_t>(noisy->noise().selected(i)) : static_cast<std::uint8_t>(used != clean));
    if (used != clean) ++a.num_noisy;
  }
  a.realised_rate = n > 0 ? static_cast<double>(a.num_noisy) / static_cast<double>(n) : 0.0;
  return a;
}

}  // namespace hessgap::data
