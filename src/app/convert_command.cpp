// `hessgap convert`: checkpoints between formats (any readable one to safetensors or the HDF5 format).
#include <CLI/CLI.hpp>

#include <map>

#include "app/commands.h"
#include "comm/communicator.h"
#include "io/atomic_output.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "util/error.h"
#include "util/log.h"

namespace hessgap::app {

RunFn add_convert_command(CLI::App& app) {
  struct State {
    std::string in, out;
  };
  auto st = std::make_shared<State>();
  auto* cmd = app.add_subcommand("convert", "Convert a checkpoint (safetensors, Hugging Face folder, torch.save zip, Google ViT .npz, hessgap HDF5) to safetensors or the hessgap HDF5 format (by --out's extension)");
  cmd->add_option("--in", st->in, "Checkpoint to read: any format --checkpoint accepts (recognised by content)")->required();
  cmd->add_option("--out", st->out, "File to write: *.safetensors, or *.h5 / *.hdf5 (hessgap checkpoint)")->required();
  return [st](comm::Communicator& world, const std::string& command_line) {
    auto ends_with = [&](const std::string& suffix) {
      return st->out.size() >= suffix.size() && st->out.compare(st->out.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    const bool to_h5 = ends_with(".h5") || ends_with(".hdf5");
    HG_CHECK(to_h5 || ends_with(".safetensors"),
             "--out '" << st->out << "' must end in .safetensors, .h5 or .hdf5 (the format is chosen by the extension)");
    io::check_writable_output(st->out);
    // Not a distributed computation: rank 0 converts, the other ranks only wait for it.
    if (world.rank() == 0) {
      std::map<std::string, std::string> metadata;
      const auto state = io::read_checkpoint(st->in, &metadata);
      metadata["converted_by"] = command_line;
      if (to_h5) {
        io::write_checkpoint_h5(st->out, state, metadata);
      } else {
        io::write_safetensors(st->out, state, metadata);
      }
      log::info("wrote " + std::to_string(state.size()) + " tensors to " + st->out);
    }
    world.barrier();
    return 0;
  };
}

}  // namespace hessgap::app
