// The subcommands. Each registers its flags on the CLI11 app and returns the function that runs it
// after parsing. Run functions are collective over `world` and return the process exit code.
#pragma once

#include <functional>
#include <string>

namespace CLI {
class App;
}
namespace hessgap::comm {
class Communicator;
}

namespace hessgap::app {

using RunFn = std::function<int(comm::Communicator& world, const std::string& command_line)>;

RunFn add_traces_command(CLI::App& app);
RunFn add_measures_command(CLI::App& app);
RunFn add_stability_command(CLI::App& app);
RunFn add_eval_command(CLI::App& app);
RunFn add_spectrum_command(CLI::App& app);  // Lanczos eigenvalues and SLQ density (spectrum_command.cpp)
RunFn add_run_command(CLI::App& app);  // the main job on the embedded data
RunFn add_convert_command(CLI::App& app);
RunFn add_labels_command(CLI::App& app);
RunFn add_train_command(CLI::App& app);   // fine-tuning (train_command.cpp)
RunFn add_sweep_command(CLI::App& app);   // a grid of train runs over groups of ranks (sweep_command.cpp)

}  // namespace hessgap::app
