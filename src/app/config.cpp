#include "app/config.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>

#include "util/error.h"
#include "util/input_file.h"
#include "util/json_bounded.h"

namespace hessgap::app {
namespace {

std::string flag_name(std::string key) {
  std::replace(key.begin(), key.end(), '_', '-');
  while (!key.empty() && key[0] == '-') key.erase(0, 1);
  return "--" + key;
}

std::string scalar_text(const nlohmann::json& v, const std::string& key, const std::string& file) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<long long>());
  if (v.is_number()) {
    std::ostringstream os;
    os.precision(17);
    os << v.get<double>();
    return os.str();
  }
  HG_FAIL("config '" << file << "': value of '" << key << "' must be a string, number, boolean or list of those");
}

void append_json_entry(std::vector<std::string>& out, const std::string& key, const nlohmann::json& v,
                       const std::string& file) {
  const std::string flag = flag_name(key);
  if (v.is_boolean()) {
    if (v.get<bool>()) out.push_back(flag);
  } else if (v.is_array()) {
    out.push_back(flag);
    for (const auto& e : v) out.push_back(scalar_text(e, key, file));
  } else if (v.is_null()) {
    // null means "use the default"
  } else {
    out.push_back(flag);
    out.push_back(scalar_text(v, key, file));
  }
}

std::vector<std::string> read_config_file(const std::string& path) {
  require_regular_file(path, "config file");  // a FIFO blocked here forever, a device streamed without end
  std::ifstream in(path);
  HG_CHECK(in.good(), "cannot read config file '" << path << "'");
  nlohmann::json j;
  try {
    j = parse_json_bounded(in, "config file '" + path + "'");
  } catch (const hessgap::Error&) {
    throw;
  } catch (const std::exception& e) {
    HG_FAIL("config file '" << path << "' is not valid JSON: " << e.what());
  }
  HG_CHECK(j.is_object(), "config file '" << path << "' must hold a JSON object of flag names and values");
  std::vector<std::string> out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    HG_CHECK(!it.value().is_object(), "config file '" << path << "': '" << it.key() << "' is a nested object; use flat flag names");
    append_json_entry(out, it.key(), it.value(), path);
  }
  return out;
}

}  // namespace

std::vector<std::string> expand_config_args(const std::vector<std::string>& argv) {
  std::vector<std::string> out, from_config, rest, sets;
  if (argv.empty()) return out;
  out.push_back(argv[0]);
  std::size_t start = 1;
  if (argv.size() > 1 && !argv[1].empty() && argv[1][0] != '-') {
    out.push_back(argv[1]);
    start = 2;
  }
  for (std::size_t i = start; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    std::string value;
    bool is_config = false, is_set = false;
    if (a == "--config" || a == "--set") {
      HG_CHECK(i + 1 < argv.size(), a << " needs a value");
      value = argv[++i];
      (a == "--config" ? is_config : is_set) = true;
    } else if (a.rfind("--config=", 0) == 0) {
      value = a.substr(9);
      is_config = true;
    } else if (a.rfind("--set=", 0) == 0) {
      value = a.substr(6);
      is_set = true;
    }
    if (is_config) {
      auto entries = read_config_file(value);
      from_config.insert(from_config.end(), entries.begin(), entries.end());
    } else if (is_set) {
      const auto eq = value.find('=');
      HG_CHECK(eq != std::string::npos && eq > 0, "--set expects key=value (got '" << value << "')");
      const std::string key = value.substr(0, eq), val = value.substr(eq + 1);
      if (val == "true") {
        sets.push_back(flag_name(key));
      } else if (val != "false") {
        sets.push_back(flag_name(key));
        sets.push_back(val);
      }
    } else {
      rest.push_back(a);
    }
  }
  out.insert(out.end(), from_config.begin(), from_config.end());
  out.insert(out.end(), rest.begin(), rest.end());
  out.insert(out.end(), sets.begin(), sets.end());
  return out;
}

}  // namespace hessgap::app
