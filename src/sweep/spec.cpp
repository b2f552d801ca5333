#include "sweep/spec.h"

#include <fstream>
#include <sstream>

#include "util/error.h"
#include "util/input_file.h"
#include "util/json_bounded.h"

namespace hessgap::sweep {

std::string flag_name(std::string key) {
  while (!key.empty() && key[0] == '-') key.erase(0, 1);
  for (char& c : key) {
    if (c == '_') c = '-';
  }
  return key;
}

namespace {

bool scalar(const nlohmann::json& v) { return v.is_string() || v.is_number() || v.is_boolean(); }

// An object of flag -> scalar, keys normalised; `what` names it in messages.
nlohmann::json flag_object(const nlohmann::json& j, const std::string& what) {
  HG_CHECK(j.is_object(), what << " must be a JSON object of flag: value (got " << j.type_name() << ")");
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [key, value] : j.items()) {
    const std::string flag = flag_name(key);
    HG_CHECK(!flag.empty(), what << ": an empty flag name");
    HG_CHECK(scalar(value), what << ": '" << key << "' must be a string, number or boolean (got " << value.type_name() << ")");
    HG_CHECK(!out.contains(flag), what << ": '" << flag << "' is given twice (as '" << key << "' and another spelling)");
    out[flag] = value;
  }
  return out;
}

}  // namespace

nlohmann::json SweepSpec::to_json() const {
  return {{"base", base}, {"grid", grid}, {"runs", runs}, {"ranks_per_run", ranks_per_run}};
}

SweepSpec parse_spec(const nlohmann::json& j, const std::string& origin) {
  HG_CHECK(j.is_object(), "sweep spec " << origin << ": expected a JSON object with base, grid (and optionally runs, "
                                        << "ranks_per_run); got " << j.type_name());
  for (const auto& [key, value] : j.items()) {
    HG_CHECK(key == "base" || key == "grid" || key == "runs" || key == "ranks_per_run",
             "sweep spec " << origin << ": unknown key '" << key << "' (expected base, grid, runs, ranks_per_run)");
  }
  SweepSpec s;
  s.path = origin;
  if (j.contains("base")) s.base = flag_object(j["base"], "sweep spec " + origin + ": base");
  if (j.contains("grid")) {
    const auto& g = j["grid"];
    HG_CHECK(g.is_object(), "sweep spec " << origin << ": grid must be an object of flag: [values]");
    for (const auto& [key, values] : g.items()) {
      const std::string flag = flag_name(key);
      HG_CHECK(!s.grid.contains(flag), "sweep spec " << origin << ": grid '" << flag << "' is given twice");
      if (values.is_object()) {
        // A named group of flags set together (e.g. "method": {"plain": {...}, "constraint": {...}}).
        HG_CHECK(!values.empty(), "sweep spec " << origin << ": grid '" << key << "' is an empty group");
        nlohmann::json groups = nlohmann::json::object();
        for (const auto& [name, flags] : values.items()) {
          groups[name] = flag_object(flags, "sweep spec " + origin + ": grid '" + key + "': '" + name + "'");
        }
        s.grid[flag] = groups;
        continue;
      }
      HG_CHECK(values.is_array() && !values.empty(),
               "sweep spec " << origin << ": grid '" << key << "' must be a non-empty array of values (or an object "
                             << "of named flag groups)");
      for (const auto& v : values) {
        HG_CHECK(scalar(v), "sweep spec " << origin << ": grid '" << key << "' holds a " << v.type_name()
                                          << " (values must be strings, numbers or booleans)");
      }
      s.grid[flag] = values;
    }
  }
  if (j.contains("runs")) {
    HG_CHECK(j["runs"].is_array(), "sweep spec " << origin << ": runs must be an array of objects");
    for (std::size_t k = 0; k < j["runs"].size(); ++k) {
      s.runs.push_back(flag_object(j["runs"][k], "sweep spec " + origin + ": runs[" + std::to_string(k) + "]"));
    }
  }
  // The number of runs, before anything is expanded: 10 flags of 10 values each ended in bad_alloc.
  std::int64_t total = 1;
  for (const auto& [key, values] : s.grid.items()) {
    const auto n = static_cast<std::int64_t>(values.size());
    HG_CHECK(n <= kMaxSweepRuns / total,
             "sweep spec " << origin << ": the grid defines more than " << kMaxSweepRuns
                           << " runs (the product of its value counts; the limit of one sweep): split it into several sweeps");
    total *= n;
  }
  if (s.grid.empty()) total = 0;
  HG_CHECK(static_cast<std::int64_t>(s.runs.size()) <= kMaxSweepRuns - total,
           "sweep spec " << origin << ": " << total << " grid runs and " << s.runs.size() << " explicit runs are more than "
                         << kMaxSweepRuns << " runs (the limit of one sweep): split it into several sweeps");
  HG_CHECK(!s.grid.empty() || !s.runs.empty(),
           "sweep spec " << origin << ": the grid is empty and there are no runs: nothing to sweep");
  if (j.contains("ranks_per_run")) {
    HG_CHECK(j["ranks_per_run"].is_number_integer() && j["ranks_per_run"].get<std::int64_t>() >= 1,
             "sweep spec " << origin << ": ranks_per_run must be an integer >= 1 (got " << json_text(j["ranks_per_run"]) << ")");
    s.ranks_per_run = j["ranks_per_run"].get<std::int64_t>();
  }
  return s;
}

SweepSpec read_spec(const std::string& path) {
  refuse_special_file(path, "sweep spec");  // a FIFO blocked here forever, a device streamed without end
  std::ifstream in(path);
  HG_CHECK(in.good(), "cannot read the sweep spec '" << path << "'");
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j;
  try {
    j = parse_json_bounded(text.str(), "sweep spec '" + path + "'");
  } catch (const nlohmann::json::exception& e) {
    HG_FAIL("sweep spec '" << path << "' is not valid JSON: " << e.what());
  }
  return parse_spec(j, "'" + path + "'");
}

bool is_group(const nlohmann::json& grid_value) { return grid_value.is_object(); }

std::vector<SweepPoint> expand(const SweepSpec& spec) {
  std::vector<SweepPoint> points;
  if (!spec.grid.empty()) {
    std::vector<std::string> keys;
    std::vector<std::vector<std::string>> names;  // a group's names (sorted), else empty
    for (const auto& [key, values] : spec.grid.items()) {
      keys.push_back(key);
      names.emplace_back();
      if (is_group(values)) {
        for (const auto& [name, flags] : values.items()) names.back().push_back(name);
      }
    }
    auto count = [&](std::size_t k) { return is_group(spec.grid[keys[k]]) ? names[k].size() : spec.grid[keys[k]].size(); };
    std::vector<std::size_t> at(keys.size(), 0);  // an odometer over the grid, last key fastest
    while (true) {
      SweepPoint p;
      p.overrides = nlohmann::json::object();
      p.flags = spec.base;
      for (std::size_t k = 0; k < keys.size(); ++k) {
        const auto& values = spec.grid[keys[k]];
        if (is_group(values)) {
          p.overrides[keys[k]] = names[k][at[k]];
          for (const auto& [flag, value] : values[names[k][at[k]]].items()) p.flags[flag] = value;
        } else {
          p.overrides[keys[k]] = values[at[k]];
          p.flags[keys[k]] = values[at[k]];
        }
      }
      points.push_back(p);
      std::size_t k = keys.size();
      while (k > 0 && ++at[k - 1] == count(k - 1)) at[--k] = 0;
      if (k == 0) break;
    }
  }
  for (const auto& run : spec.runs) {
    SweepPoint p{run, spec.base};
    for (const auto& [key, value] : run.items()) p.flags[key] = value;
    points.push_back(p);
  }
  return points;
}

std::vector<std::string> to_arguments(const nlohmann::json& flags) {
  std::vector<std::string> args;
  for (const auto& [key, value] : flags.items()) {
    if (value.is_boolean()) {
      if (value.get<bool>()) args.push_back("--" + key);
    } else {
      args.push_back("--" + key);
      args.push_back(value.is_string() ? value.get<std::string>() : json_text(value));
    }
  }
  return args;
}

}  // namespace hessgap::sweep
