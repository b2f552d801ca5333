#include "measures/measure_context.h"

#include <torch/torch.h>

#include <set>

#include "comm/communicator.h"
#include "data/dataset.h"
#include "models/classifier.h"
#include "util/error.h"

namespace hessgap::measures {

std::vector<torch::Tensor> prepare_hessian_params(models::Classifier& model) {
  model.eval();
  const auto names = model.hessian_layers();
  const std::set<std::string> wanted(names.begin(), names.end());
  std::map<std::string, torch::Tensor> found;
  for (auto& item : model.named_parameters(/*recurse=*/true)) {
    const bool selected = wanted.count(item.key()) > 0;
    item.value().set_requires_grad(selected);
    if (selected) found[item.key()] = item.value();
  }
  std::vector<torch::Tensor> out;
  for (const auto& n : names) {
    auto it = found.find(n);
    HG_CHECK(it != found.end(), "model " << model.arch() << " has no parameter '" << n << "' (a Hessian layer)");
    out.push_back(it->second);
  }
  return out;
}

torch::Tensor batch_loss(models::Classifier& model, const data::Batch& batch) {
  auto logits = model.forward(batch);
  return torch::nn::functional::cross_entropy(logits, batch.labels);
}

LossSums loss_sums(models::Classifier& model, const data::Batch& batch) {
  torch::NoGradGuard no_grad;
  const auto logits = model.forward(batch);
  const auto loss = torch::nn::functional::cross_entropy(
      logits.to(torch::kFloat64), batch.labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  LossSums s;
  s.loss = loss.item<double>();
  s.correct = logits.argmax(1).eq(batch.labels).sum().item<std::int64_t>();
  s.count = batch.size();
  return s;
}

LossSums all_reduce(comm::Communicator& world, const LossSums& s) {
  LossSums g;
  g.loss = world.sum(s.loss);
  std::int64_t counts[2] = {s.correct, s.count};
  world.all_reduce_sum(counts, 2);
  g.correct = counts[0];
  g.count = counts[1];
  return g;
}

std::int64_t count_unlabelled(const data::Dataset& dataset, const BatchPlan& plan) {
  std::int64_t n = 0;
  for (const auto& batch : plan.batches) {
    for (std::int64_t id : batch) n += dataset.label(id) < 0 ? 1 : 0;
  }
  return n;
}

void require_labels(const data::Dataset& dataset, const BatchPlan& plan, const std::string& what) {
  const std::int64_t missing = count_unlabelled(dataset, plan);
  HG_CHECK(missing == 0, what << " needs labelled data, but " << missing << " of the " << plan.num_samples()
                              << " samples of " << dataset.describe()
                              << " have none (label -1: a test split whose labels are hidden, as GLUE's; use "
                              << "--split dev, or eval for predictions)");
}

data::Batch load_batch(const MeasureContext& ctx, const std::vector<std::int64_t>& ids) {
  data::Batch batch = ctx.dataset->get_batch(ids);
  // A dataset that skips unreadable files may return fewer rows; none at all would make a mean loss NaN.
  HG_CHECK(batch.size() > 0 || ids.empty(), "every sample of a batch of " << ids.size() << " (ids " << ids.front()
                                                                           << "...) was unreadable and skipped");
  if (ctx.labels != nullptr) {
    std::vector<std::int64_t> y;
    for (std::int64_t id : batch.sample_ids) y.push_back(ctx.labels->at(static_cast<std::size_t>(id)));
    batch.labels = torch::tensor(y, torch::kInt64);
  }
  return batch.to(ctx.device, ctx.dtype);
}

}  // namespace hessgap::measures
