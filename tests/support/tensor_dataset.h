// Test support: an in-memory labelled dataset over a tensor of inputs, and the tiny problems the
// measure tests share (a float64 tanh MLP on random data).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "models/classifier.h"
#include "models/registry.h"

namespace hessgap::testing {

class TensorDataset : public data::Dataset {
 public:
  TensorDataset(torch::Tensor inputs, torch::Tensor labels, std::int64_t classes)
      : inputs_(std::move(inputs)), labels_(std::move(labels)), classes_(classes) {}
  std::int64_t size() const override { return labels_.size(0); }
  std::int64_t num_classes() const override { return classes_; }
  std::vector<std::string> class_names() const override {
    std::vector<std::string> out;
    for (std::int64_t c = 0; c < classes_; ++c) out.push_back("class" + std::to_string(c));
    return out;
  }
  std::int64_t label(std::int64_t i) const override { return labels_[i].item<std::int64_t>(); }
  data::Batch get_batch(const std::vector<std::int64_t>& ids) const override {
    auto idx = torch::tensor(ids, torch::kInt64);
    data::Batch b;
    b.inputs = inputs_.index_select(0, idx);
    b.labels = labels_.index_select(0, idx);
    b.sample_ids = ids;
    return b;
  }
  std::string describe() const override { return "tensor dataset (" + std::to_string(size()) + " samples)"; }

 private:
  torch::Tensor inputs_, labels_;
  std::int64_t classes_;
};

// 23 samples of 5 features in 3 classes (so batches of 4 leave a partial last batch).
inline std::unique_ptr<TensorDataset> small_dataset(std::int64_t n = 23) {
  torch::manual_seed(21);
  auto x = torch::randn({n, 5}, torch::kFloat64);
  auto y = torch::randint(0, 3, {n}, torch::kInt64);
  return std::make_unique<TensorDataset>(x, y, 3);
}

// A float64 tanh MLP 5 → 4 → 3 with seeded weights.
inline std::shared_ptr<models::Classifier> small_mlp(int seed = 5) {
  torch::manual_seed(seed);
  auto m = models::make_model("mlp:in=5,hidden=4,act=tanh", 3);
  m->to(torch::kFloat64);
  m->eval();
  return m;
}

}  // namespace hessgap::testing
