// hessgap: the command-line entry point. Starts MPI, parses the subcommand (after expanding
// --config/--set), runs it, and maps failures to exit codes: 0 ok, 2 bad usage or input, 1 other
// failure. After an error on any rank the whole job is aborted so that no rank waits forever in a
// collective.
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "app/commands.h"
#include "app/config.h"
#include "comm/communicator.h"
#include "comm/mpi/mpi_communicator.h"
#include "hessgap_version.h"
#include "util/error.h"
#include "util/log.h"
#include "util/signals.h"

namespace {

std::string join(const std::vector<std::string>& args) {
  std::string s;
  for (const auto& a : args) s += (s.empty() ? "" : " ") + a;
  return s;
}

// OpenBLAS 0.3.21 does not recognise some virtualised CPUs and falls back to its SSE3 "Prescott"
// kernels (3-5x slower GEMMs, ~20% slower HVPs). The choice is made when the library loads, so all
// we can do is say how to override it at launch.
void warn_about_generic_blas() {
  using CoreName = char* (*)();
  auto core = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (core == nullptr || std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  const std::string name = core();
  if (name != "Prescott" && name != "prescott") return;
  const char* hint = __builtin_cpu_supports("avx512f") ? "SkylakeX" : (__builtin_cpu_supports("avx2") ? "Haswell" : nullptr);
  if (hint == nullptr) return;
  hessgap::log::info(std::string("note: OpenBLAS uses its generic Prescott kernels on this CPU; launch with OPENBLAS_CORETYPE=") +
                     hint + " (mpirun -x OPENBLAS_CORETYPE=" + hint + ") for faster HVPs");
}

int fail(hessgap::comm::Communicator& world, int code, const std::string& msg) {
  hessgap::log::error(msg);
  if (world.size() > 1) world.abort(code);  // does not return
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  hessgap::comm::MpiSession session(&argc, &argv);
  // One inter-op thread per rank: ranks, not threads, use the cores (BUILD.md: spinning OpenMP
  // threads under load made gradients 30x slower). --threads sets the intra-op count.
  at::set_num_interop_threads(1);
  at::set_num_threads(1);
  auto world = session.world();
  hessgap::log::set_identity(world->rank(), world->size(), hessgap::comm::MpiSession::host_name());

  const std::vector<std::string> original(argv, argv + argc);
  CLI::App app{"hessgap " HG_VERSION " (" HG_GIT_SHA "): Hessian-based generalization measures of fine-tuned networks.\n"
               "Run under mpirun to shard batches and probes over ranks. --config FILE.json and --set key=value "
               "supply flags from a file."};
  app.require_subcommand(1);
  app.option_defaults()->always_capture_default();
  // A flag given twice (config file, then command line, then --set) keeps the last value.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.set_version_flag("--version", std::string("hessgap ") + HG_VERSION + " (" + HG_GIT_SHA + ")");
  const std::vector<std::pair<std::string, hessgap::app::RunFn>> commands = {
      {"traces", hessgap::app::add_traces_command(app)},
      {"measures", hessgap::app::add_measures_command(app)},
      {"stability", hessgap::app::add_stability_command(app)},
      {"eval", hessgap::app::add_eval_command(app)},
      {"spectrum", hessgap::app::add_spectrum_command(app)},
      {"run", hessgap::app::add_run_command(app)},
      {"convert", hessgap::app::add_convert_command(app)},
      {"labels", hessgap::app::add_labels_command(app)},
      {"train", hessgap::app::add_train_command(app)},
      {"sweep", hessgap::app::add_sweep_command(app)},
  };

  try {
    if (original.size() > 1 && !original[1].empty() && original[1][0] != '-') {
      std::string known;
      bool found = false;
      for (const auto& c : commands) {
        known += (known.empty() ? "" : ", ") + c.first;
        found = found || c.first == original[1];
      }
      HG_CHECK(found, "unknown subcommand '" << original[1] << "' (expected one of: " << known << "; see --help)");
    }
    std::vector<std::string> args = hessgap::app::expand_config_args(original);
    std::vector<std::string> reversed(args.rbegin(), args.rend() - 1);  // CLI11 wants reversed, no argv[0]
    try {
      app.parse(reversed);
    } catch (const CLI::ParseError& e) {
      // Every rank parses the same arguments, so every rank gets here: no abort needed.
      const int rc = world->rank() == 0 ? app.exit(e) : (e.get_exit_code() == 0 ? 0 : 2);
      return rc == 0 ? 0 : 2;
    }
    for (const auto& [name, fn] : commands) {
      CLI::App* cmd = app.get_subcommand(name);
      if (cmd->parsed()) {
        hessgap::log::set_verbosity(1);
        if (auto* v = cmd->get_option_no_throw("--verbosity"); v && v->count() > 0) {
          hessgap::log::set_verbosity(v->as<int>());
        }
        warn_about_generic_blas();
        // A signal ends a measurement at once, removing its temporary output (train and sweep then put
        // their stop-at-the-next-step handlers in place of SIGTERM's and SIGUSR1's).
        hessgap::signals::install_exit_handlers();
        return fn(*world, join(original));
      }
    }
    return 2;
  } catch (const hessgap::signals::Interrupted& e) {
    // Every rank stopped at the same step (the request was all-reduced): no abort needed.
    hessgap::log::info("interrupted by signal " + std::to_string(e.signo) +
                       ": the last checkpoint is intact; rerun the same command to resume");
    return hessgap::signals::kExitInterrupted;
  } catch (const hessgap::Error& e) {
    return fail(*world, 2, e.what());
  } catch (const std::filesystem::filesystem_error& e) {
    // A path the user gave that the file system refuses (a symbolic-link loop, a name too long, a file
    // where a folder is expected): bad input, not an internal error. The message names the path(s).
    std::string msg = "cannot use path '" + e.path1().string() + "'";
    if (!e.path2().empty()) msg += " (and '" + e.path2().string() + "')";
    return fail(*world, 2, msg + ": " + e.code().message() + " (" + e.what() + ")");
  } catch (const std::exception& e) {
    return fail(*world, 1, std::string("internal error: ") + e.what());
  }
}
