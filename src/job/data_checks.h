// Checks of a job's data against the job and its model, made once both are open (after open_session) and
// naming the flags at fault: without them an empty split or too long a --max-length failed in the measures
// or inside the model, with a message that named neither the flag nor the file.
#pragma once

#include <string>

namespace hessgap::data {
class Dataset;
struct DatasetSpec;
}  // namespace hessgap::data
namespace hessgap::models {
class Classifier;
}

namespace hessgap::job {

// Throws hessgap::Error naming --data and the file(s) (dataset.describe()) when `dataset`, opened from `spec`,
// holds no samples (a GLUE file with a header only, an IDX file of 0 images). `role` says what needed them
// ("hessgap eval", "training", ...). Not collective.
void require_samples(const data::Dataset& dataset, const data::DatasetSpec& spec, const std::string& role);

// Throws hessgap::Error naming --max-length when `spec` is text (glue, padded to max_length tokens) and
// `model` a BERT or RoBERTa with fewer positions than that. Anything else: nothing to check. Not collective.
void require_positions(const models::Classifier& model, const data::DatasetSpec& spec);

}  // namespace hessgap::job
