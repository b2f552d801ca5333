// The dataset interface: random access to samples by global index, batched.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/batch.h"

namespace hessgap::data {

// A finite, indexable labelled dataset. Index i is the sample's global id: it is what sharding,
// seeding and output files refer to, so the order must be deterministic (e.g. an image folder
// lists classes sorted and files sorted within a class, as torchvision's ImageFolder).
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual std::int64_t size() const = 0;
  virtual std::int64_t num_classes() const = 0;
  virtual std::vector<std::string> class_names() const = 0;
  // Label of sample i without decoding its input.
  virtual std::int64_t label(std::int64_t i) const = 0;
  // Samples `ids` (each in [0, size())) stacked into a CPU batch in that order. Thread-safe.
  // Throws hessgap::Error naming the file when a sample cannot be read.
  virtual Batch get_batch(const std::vector<std::int64_t>& ids) const = 0;
  // One line for logs and output files, e.g. "image folder /data/x (1000 images, 10 classes)".
  virtual std::string describe() const = 0;
};

}  // namespace hessgap::data
