// --config FILE.json and --set key=value: turned into ordinary command-line flags before CLI11
// parses, so a config file, the command line and --set overrides go through the same validation.
// Precedence (last wins): config file < command line < --set. Torch-free.
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace hessgap::app {

// Rewrites argv: args[0] program, args[1] subcommand (if any), then the config file's entries as
// "--key value" (true booleans as "--key", false ones dropped, arrays as repeated values), then the
// remaining arguments, then each --set as "--key value". Keys are flag names without dashes
// (kebab-case; snake_case is accepted and converted). Throws hessgap::Error naming the file for an
// unreadable or malformed config (not a JSON object, nested objects) or a --set without '='.
std::vector<std::string> expand_config_args(const std::vector<std::string>& argv);


}  // namespace hessgap::app
