// Gathering variable-size byte blocks from every rank, for results whose size only their owner knows
// (per-sample eval rows, ids of skipped files). Torch-free; built on Communicator::broadcast.
#pragma once

#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

namespace hessgap::comm {

class Communicator;

// Collective: every rank passes its own bytes and receives every rank's, indexed by rank (one broadcast
// per rank, so meant for small to moderate payloads at the end of a computation).
std::vector<std::string> all_gather_bytes(Communicator& world, const std::string& mine);

// The same for trivially copyable values: every rank's vector, indexed by rank.
template <typename T>
std::vector<std::vector<T>> all_gather_values(Communicator& world, const std::vector<T>& mine) {
  static_assert(std::is_trivially_copyable_v<T>, "all_gather_values needs trivially copyable values");
  const std::string bytes(reinterpret_cast<const char*>(mine.data()), mine.size() * sizeof(T));
  std::vector<std::vector<T>> out;
  for (const std::string& b : all_gather_bytes(world, bytes)) {
    std::vector<T> values(b.size() / sizeof(T));
    if (!values.empty()) std::memcpy(values.data(), b.data(), values.size() * sizeof(T));
    out.push_back(std::move(values));
  }
  return out;
}

}  // namespace hessgap::comm
