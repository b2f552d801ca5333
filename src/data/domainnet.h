// DomainNet (the reference's mini_domain_net.py, SPEC.md §3.2 and §6.2) from an image-folder layout
// converted from the reference's pickles by analysis/tools/domainnet_from_pickles.py.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/transforms.h"

namespace hessgap::data {

// On-disk layout under `root` (the reference's data/domain_net folder, images unpickled):
//   <root>/sample_classes_{s}.txt                 class names, one a line; class id = line index
//   <root>/sample_{s}/{partition}_{domain}_mv_labels.npy   weak (majority-vote) labels, 1-D int,
//                                                 aligned with the images (as shipped by the reference)
//   <root>/sample_{s}/{partition}_{domain}/labels.txt      true class NAME of image i on line i
//   <root>/sample_{s}/{partition}_{domain}/{i:06d}.png     image i (i = 0..N-1, N = lines of labels.txt)
//   <root>/sample_{s}/train_{domain}/norm_stats.json       optional: {"mean":[3],"std":[3]}
// partition: train | val | test; domain: clipart infograph painting quickdraw real sketch (any name
// is accepted if the files exist); s: 1 or 2. The pickle's `data[i]` is image i and `labels[i]` line i.
//
// Labels: label_source "weak" uses the mv_labels file, "true" labels.txt. The default ("") is the
// reference's: weak for train, true for val and test. The mv file is read whenever it exists (it is
// required for "weak"); its length must equal N and its values lie in [0, K).
//
// Transform (every partition, as the reference): Resize(resize, shorter side; 224 by default) →
// ToTensor → Normalize(mean, std) with the per-channel mean and (population) std of data/255 over
// all pixels of the domain's TRAIN images (numpy: (data/255).mean((0,1,2)), .std((0,1,2))). They are
// read from train_{domain}/norm_stats.json when present (the converter writes it from the pickle
// itself), else computed once by decoding every train image (exact integer sums) and cached in
// memory for the process (keyed by the train folder). No crop or flip. All images of one batch must
// have the same size after the resize (the pickles hold one N×H×W×3 array, so they do).
//
// Errors (hessgap::Error, naming the file): bad sample, partition or label_source; a missing
// sample_classes / labels.txt / mv_labels file (when needed) or image {i:06d}.png; an image file
// beyond N ({N:06d}.png exists); a class name in labels.txt not in sample_classes; an mv_labels file
// whose length differs from N ("N images but M labels") or with a value out of range; for the
// statistics, a missing train_{domain} folder (needed by val and test too) or an unreadable train image.
struct DomainNetOptions {
  int sample = 1;                // 1 or 2
  std::string domain = "clipart";
  std::string partition = "train";  // train | val | test
  std::string label_source;      // "", "weak" or "true"
  int resize = 224;              // shorter side; 0 = keep the image size
  std::int64_t max_per_class = 0;  // keep the first N samples (index order) of each class (by the used label); 0 = all
  int num_threads = 4;           // decoding threads per get_batch call
};

class DomainNetDataset : public Dataset {
 public:
  DomainNetDataset(std::string root, DomainNetOptions options = {});

  std::int64_t size() const override { return static_cast<std::int64_t>(index_.size()); }
  std::int64_t num_classes() const override { return static_cast<std::int64_t>(classes_.size()); }
  std::vector<std::string> class_names() const override { return classes_; }
  std::int64_t label(std::int64_t i) const override;  // the label_source's label
  Batch get_batch(const std::vector<std::int64_t>& ids) const override;
  std::string describe() const override;

  std::int64_t true_label(std::int64_t i) const;
  bool has_weak_labels() const { return !weak_.empty(); }
  std::int64_t weak_label(std::int64_t i) const;  // throws when the mv file is absent
  // Fraction of samples (of this dataset, after max_per_class) whose weak label differs from the true
  // one: the realised weak-supervision noise rate (on train). Throws when the mv file is absent.
  double weak_noise_rate() const;
  const std::string& label_source() const { return label_source_; }
  const std::string& file(std::int64_t i) const;  // full path of sample i
  const EvalTransform& transform() const { return transform_; }  // resize + per-domain mean/std

  // Per-channel mean / population std of data/255 over the images of `folder` (norm_stats.json if
  // present, else decoded and cached in memory).
  static std::array<std::array<double, 3>, 2> folder_stats(const std::string& folder);

 private:
  std::string root_, dir_, label_source_;
  DomainNetOptions options_;
  EvalTransform transform_;
  std::vector<std::string> classes_;
  std::vector<std::string> files_;       // all N images
  std::vector<std::int64_t> true_, weak_;  // all N images
  std::vector<std::int64_t> index_;      // dataset index -> image index
};

}  // namespace hessgap::data
