#include "comm/gather.h"

#include "comm/communicator.h"

namespace hessgap::comm {

std::vector<std::string> all_gather_bytes(Communicator& world, const std::string& mine) {
  std::vector<std::string> all(static_cast<std::size_t>(world.size()));
  for (int root = 0; root < world.size(); ++root) {
    if (root == world.rank()) all[static_cast<std::size_t>(root)] = mine;
    world.broadcast(all[static_cast<std::size_t>(root)], root);
  }
  return all;
}

}  // namespace hessgap::comm
