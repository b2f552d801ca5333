// `hessgap labels`: the labels a split trains with, clean vs noisy, and the realised noise.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "app/commands.h"
#include "app/options.h"
#include "comm/communicator.h"
#include "data/dataset.h"
#include "data/label_noise.h"
#include "io/atomic_output.h"
#include "job/config_fields.h"
#include "results/results_file.h"
#include "util/json_bounded.h"
#include "util/log.h"

namespace hessgap::app {

RunFn add_labels_command(CLI::App& app) {
  struct State {
    data::DatasetSpec data;
    std::string out;
    int verbosity = 1;
  };
  auto st = std::make_shared<State>();
  st->data.split = "train";
  auto* cmd = app.add_subcommand(
      "labels", "The labels a split trains with: clean vs noisy (synthetic noise or DomainNet weak labels), the realised noise rate and transition counts");
  add_dataset_options(cmd, st->data);
  cmd->add_option("--out", st->out, "Write /labels to this HDF5 file");
  cmd->add_option("--verbosity", st->verbosity, "0 quiet, 1 progress, 2 debug");
  return [st](comm::Communicator& world, const std::string& command_line) {
    if (!st->out.empty()) io::check_writable_output(st->out);
    // Labels only: no images are decoded. Rank 0 works, the other ranks wait.
    if (world.rank() == 0) {
      const auto dataset = data::open_dataset(st->data);
      const data::LabelAudit audit = data::audit_labels(*dataset);
      results::RunInfo info;
      info.subcommand = "labels";
      info.command_line = command_line;
      // Typed as the jobs' configurations: the dataset description and the output.
      nlohmann::json config;
      config["data"]["dataset"] = st->data;
      config["output"]["out"] = st->out;
      info.config_json = json_text(config);
      info.world_size = world.size();
      info.backend = world.backend();
      info.data_description = audit.description;
      results::ResultsFile out(st->out, info);
      out.write_labels(audit, dataset->num_classes(), dataset->class_names());
      out.commit();
      std::printf("%s\n  labels: %s, %zu samples, %lld differ from the clean label: realised noise rate %.6f\n",
                  audit.description.c_str(), audit.source.c_str(), audit.used.size(),
                  static_cast<long long>(audit.num_noisy), audit.realised_rate);
      std::fflush(stdout);
      if (!st->out.empty()) log::info("labels written to " + st->out);
    }
    world.barrier();
    return 0;
  };
}

}  // namespace hessgap::app
