// The helpers of src/job's typed configurations (app/ uses the dataset description's JSON form): the X-macro pattern of the typed configurations. A list X(section, member, "name")
// is written as j["section"]["name"] = c.member and read back key by key (missing keys keep their
// defaults); and the stable hash that names runs.
#pragma once

#include <cstdint>
#include <iomanip>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "data/registry.h"

#define HG_JSON_OUT(section, field, name) j[#section][name] = c.field;
#define HG_JSON_IN(section, field, name) \
  if (j.contains(#section) && j[#section].contains(name)) j[#section][name].get_to(c.field);

namespace hessgap::data {
// Every field of the dataset description, by its C++ name; missing keys keep their defaults.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(DatasetSpec, kind, path, split, resize, crop, normalize, pad,
                                                grey_to_rgb, max_per_class, limit, skip_unreadable, domain, sample,
                                                label_source, valid_split, split_seed, task, tokenizer, max_length,
                                                lowercase, noise_rate, noise_mode, noise_seed, noise_chunk)
}  // namespace hessgap::data

namespace hessgap::job {

// FNV-1a (64 bit) of `text` as 16 hex digits: stable across builds, platforms and runs.
inline std::string fnv1a_hex(const std::string& text) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char ch : text) h = (h ^ ch) * 1099511628211ULL;
  std::ostringstream s;
  s << std::hex << std::setw(16) << std::setfill('0') << h;
  return s.str();
}

}  // namespace hessgap::job
