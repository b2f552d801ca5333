#include "job/data_checks.h"

#include "data/dataset.h"
#include "data/registry.h"
#include "models/transformer_text.h"
#include "util/error.h"

namespace hessgap::job {

void require_samples(const data::Dataset& dataset, const data::DatasetSpec& spec, const std::string& role) {
  HG_CHECK(dataset.size() > 0, role << " needs samples, but --data '" << spec.path << "' holds none ("
                                    << dataset.describe() << ")");
}

void require_positions(const models::Classifier& model, const data::DatasetSpec& spec) {
  const auto* text = dynamic_cast<const models::TextTransformer*>(&model);
  if (spec.kind != "glue" || text == nullptr) return;
  const models::TransformerConfig& config = text->config();
  const std::int64_t positions = text->available_positions();
  HG_CHECK(spec.max_length <= positions,
           "--max-length " << spec.max_length << " exceeds the " << positions << " token positions of model "
                           << model.arch() << " (max_position_embeddings " << config.max_position_embeddings
                           << (text->is_roberta() ? ", less pad_token_id + 1" : "")
                           << "); give --max-length " << positions << " or less");
}

}  // namespace hessgap::job
