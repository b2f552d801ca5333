#include "measures/measure_context.h"

#include <torch/torch.h>

#include <set>

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

data::Batch load_batch(const MeasureContext& ctx, const std::vector<std::int64_t>& ids) {
  data::Batch batch = ctx.dataset->get_batch(ids);
  // A dataset that skips unreadable files may return fewer rows; none at all would make a mean loss NaN.
  HG_CHECK(batch.size() > 0 || ids.empty(), "every sample of a batch of " << ids.size() << " (ids " << ids.front()
                                                                           << "...) was unreadable and skipped");
  return batch.to(ctx.device, ctx.dtype);
}

}  // namespace hessgap::measures
