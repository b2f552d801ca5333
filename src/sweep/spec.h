// A sweep specification: a base configuration plus a grid of overrides (and optional explicit runs), in
// `hessgap train`'s flag names, expanded into one flag set per run. Torch-free; knows nothing of the
// flags' meaning (app/ turns each flag set into a job::TrainConfig).
//
//   {"base": {"data": "/usr/share/datasets/fashion-mnist", "epochs": 2, ...},
//    "grid": {"label-noise": [0.2, 0.4], "reg-method": ["none", "constraint"], "seed": [0, 1]},
//    "runs": [{"reg-method": "constraint", "constraint-reweight": true}],   (optional)
//
// A grid entry may also be a named group of flags set together, its key then a label (not a flag):
//    "grid": {"method": {"plain": {"reg-method": "none"},
//                        "constraint-reweight": {"reg-method": "constraint", "constraint-reweight": true}}}
// (the run's overrides then hold "method": "plain", its flags the group's).
//    "ranks_per_run": 1}
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace hessgap::sweep {

// The most runs one sweep spec may define (grid product plus explicit runs): far above any real sweep,
// low enough that listing them (--dry-run) takes seconds, not minutes or all the memory.
constexpr std::int64_t kMaxSweepRuns = 100000;

struct SweepSpec {
  nlohmann::json base = nlohmann::json::object();   // flag -> value
  nlohmann::json grid = nlohmann::json::object();   // flag -> [values], or label -> {name: {flag: value}} (sorted)
  nlohmann::json runs = nlohmann::json::array();    // explicit override objects, each crossed with nothing
  std::int64_t ranks_per_run = 1;
  std::string path;  // where it was read from ("" when built in memory)

  // The canonical JSON form (base, grid, runs, ranks_per_run): what identifies a sweep in its folder.
  nlohmann::json to_json() const;
};

// One run of a sweep: the overrides that distinguish it (grid values, or an explicit run's entries) and
// its whole flag set (base with the overrides applied).
struct SweepPoint {
  nlohmann::json overrides;  // flag -> value
  nlohmann::json flags;      // flag -> value
};

// Reads and checks a spec file: a JSON object with "base" (object of scalars), "grid" (object of
// non-empty arrays of scalars), optional "runs" (array of objects of scalars) and optional
// "ranks_per_run" (integer >= 1, default 1); no other keys. Flag names are normalised to kebab-case
// (snake_case accepted; leading dashes dropped). Throws hessgap::Error naming the file and key: unreadable
// or malformed JSON, an unknown top-level key, an empty grid with no runs, a grid value that is not a
// non-empty array, a nested value.
// Also refused: JSON nested deeper than 128 levels, a path that is not a regular file (a FIFO blocked),
// and a spec of more than kMaxSweepRuns runs (the grid's cartesian product, computed with overflow checks
// before anything is expanded, plus the explicit runs).
SweepSpec read_spec(const std::string& path);
SweepSpec parse_spec(const nlohmann::json& j, const std::string& origin);

// The runs: the grid's cartesian product in key order (a group's names in sorted order), the last key
// varying fastest, then each explicit run applied to the base. Deterministic.
std::vector<SweepPoint> expand(const SweepSpec& spec);

// Whether a grid entry is a named group of flags (an object) rather than a list of values.
bool is_group(const nlohmann::json& grid_value);

// A flag name as `hessgap train` spells it: "--" dropped, '_' -> '-'.
std::string flag_name(std::string key);

// The "--flag value" arguments of a flag set, as train's parser takes them: true booleans as "--flag",
// false ones dropped, numbers in JSON's shortest exact form, strings as they are.
std::vector<std::string> to_arguments(const nlohmann::json& flags);

}  // namespace hessgap::sweep
