#include "io/checkpoint.h"

#include <torch/nn/module.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <nlohmann/json.hpp>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include "io/atomic_output.h"
#include "io/google_vit.h"
#include "io/h5.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "io/torch_zip.h"
#include "io/zip_reader.h"
#include "util/error.h"
#include "util/input_file.h"
#include "util/json_bounded.h"

namespace hessgap::io {

namespace {

namespace fs = std::filesystem;

constexpr const char* kFormat = "hessgap-checkpoint";
constexpr int64_t kFormatVersion = 1;

const std::map<std::string, torch::Dtype>& dtype_names() {
  static const std::map<std::string, torch::Dtype> kNames = {
      {"float64", torch::kDouble}, {"float32", torch::kFloat}, {"float16", torch::kHalf},
      {"bfloat16", torch::kBFloat16}, {"int64", torch::kLong},  {"int32", torch::kInt},
      {"int16", torch::kShort},     {"int8", torch::kChar},     {"uint8", torch::kByte},
      {"bool", torch::kBool}};
  return kNames;
}

std::string dtype_name(torch::Dtype dtype, const std::string& what) {
  for (const auto& [name, d] : dtype_names()) {
    if (d == dtype) return name;
  }
  HG_FAIL(what << ": dtype " << c10::toString(dtype) << " cannot be stored in a checkpoint");
}

std::string shape_str(torch::IntArrayRef shape) {
  std::ostringstream os;
  os << "[";
  for (std::size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

std::string join(const std::vector<std::string>& names) {
  std::string s;
  for (std::size_t i = 0; i < names.size(); ++i) s += (i ? ", " : "") + names[i];
  return s;
}

// The tensors of one group of a hessgap checkpoint (/tensors, or a /state/<section>).
// The string attributes of /metadata (empty without the group).
std::map<std::string, std::string> read_metadata_group(const H5File& f) {
  std::map<std::string, std::string> out;
  if (f.is_group("/metadata")) {
    for (const std::string& key : f.attr_names("/metadata")) out[key] = f.attr_string("/metadata", key);
  }
  return out;
}

StateDict read_tensor_group(const H5File& f, const std::string& group, const std::string& path) {
  StateDict out;
  for (const std::string& name : f.list(group)) {
    const std::string ds = group + "/" + name;
    DatasetInfo info = f.info(ds);
    const std::string what = "tensor '" + name + "' in checkpoint '" + path + "'";
    torch::Tensor t;
    if (info.kind == DatasetInfo::Kind::Float && info.element_size == 8) {
      t = torch::empty(info.shape, torch::kDouble);
      f.read_into(ds, t.data_ptr<double>(), t.numel());
    } else if (info.kind == DatasetInfo::Kind::Float) {
      t = torch::empty(info.shape, torch::kFloat);
      f.read_into(ds, t.data_ptr<float>(), t.numel());
    } else if (info.kind == DatasetInfo::Kind::Integer) {
      t = torch::empty(info.shape, torch::kLong);
      f.read_into(ds, t.data_ptr<int64_t>(), t.numel());
    } else {
      HG_FAIL(what << ": dataset holds neither floats nor integers");
    }
    if (f.has_attr(ds, "dtype")) {
      const std::string dt = f.attr_string(ds, "dtype");
      auto it = dtype_names().find(dt);
      HG_CHECK(it != dtype_names().end(), what << ": unknown dtype attribute '" << dt << "'");
      // hessgap writes integer tensors as integer datasets and floating ones as floating datasets; an
      // attribute that crosses between the two would convert weights (uint64 values became 1.8e19).
      const bool stored_float = info.kind == DatasetInfo::Kind::Float;
      HG_CHECK(c10::isFloatingType(it->second) == stored_float,
               what << ": dtype attribute '" << dt << "' does not match its " << (stored_float ? "floating point" : "integer")
                    << " data (integer weights are not converted)");
      if (it->second != t.scalar_type()) t = t.to(it->second);
    }
    out.emplace_back(name, std::move(t));
  }
  return out;
}

StateDict read_checkpoint_h5(const std::string& path, std::map<std::string, std::string>* metadata) {
  H5File f = H5File::open_read(path);
  HG_CHECK(f.has_attr("/", "format") && f.attr_string("/", "format") == kFormat,
           "HDF5 file '" << path << "' is not a hessgap checkpoint (root attribute format != \"" << kFormat << "\")");
  const int64_t version = f.attr_int64("/", "format_version");
  HG_CHECK(version >= 1 && version <= kFormatVersion, "checkpoint '" << path << "' has format_version " << version
                                                                     << "; this build reads up to "
                                                                     << kFormatVersion);
  StateDict out = read_tensor_group(f, "/tensors", path);
  if (metadata) *metadata = read_metadata_group(f);
  return out;
}

// The format of one file (not a directory).
CheckpointFormat detect_file_format(const std::string& file) {
  require_regular_file(file, "checkpoint");
  std::ifstream in(file, std::ios::binary);
  HG_CHECK(in, "cannot open checkpoint '" << file << "' for reading");
  unsigned char head[9] = {0};
  in.read(reinterpret_cast<char*>(head), 9);
  const std::streamsize n = in.gcount();

  static const unsigned char kHdf5[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  if (n >= 8 && std::equal(kHdf5, kHdf5 + 8, head)) return CheckpointFormat::Hdf5;
  if (n >= 9 && head[8] == '{') {
    uint64_t len = 0;
    for (int i = 7; i >= 0; --i) len = (len << 8) | head[i];
    // A JSON file's first 8 bytes read as a length are astronomically large (ASCII bytes), so the
    // bound keeps index.json files out while a truncated safetensors file is still recognised.
    if (len > 0 && len <= 100'000'000) return CheckpointFormat::Safetensors;
  }
  if (n >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4) {
    ZipReader zip(file);
    bool npy = !zip.entries().empty();
    for (const auto& e : zip.entries()) {
      const auto slash = e.name.find('/');
      if (slash != std::string::npos && e.name.find('/', slash + 1) == std::string::npos &&
          e.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
        return CheckpointFormat::TorchZip;
      }
      npy = npy && e.name.size() > 4 && e.name.compare(e.name.size() - 4, 4, ".npy") == 0;
    }
    if (npy) return CheckpointFormat::Npz;
    HG_FAIL("checkpoint '" << file << "' is a zip archive that is neither a torch.save file (<name>/data.pkl) nor "
                              "an np.savez archive (*.npy)");
  }
  HG_CHECK(!(n >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5),
           "checkpoint '" << file << "' is a Python pickle (a legacy torch.save file of PyTorch < 1.6 or "
                          << "_use_new_zipfile_serialization=False?): load it in Python and re-save it with torch.save "
                          << "(zip format, the default since PyTorch 1.6) or as safetensors");
  for (std::streamsize i = 0; i < n; ++i) {
    if (head[i] == '{') return CheckpointFormat::ShardedIndex;
    if (!std::isspace(head[i])) break;
  }
  HG_FAIL("checkpoint '" << file << "' has an unknown format (expected safetensors, a torch.save zip file, an npz "
                            "archive, a Hugging Face index.json or a hessgap HDF5 checkpoint)");
}

StateDict read_file(const std::string& file, CheckpointFormat format, std::map<std::string, std::string>* metadata);

// A Hugging Face sharded checkpoint: {"metadata": {...}, "weight_map": {tensor: shard file}}.
StateDict read_sharded(const std::string& index, std::map<std::string, std::string>* metadata) {
  std::ifstream in(index);
  HG_CHECK(in, "cannot open sharded checkpoint index '" << index << "'");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // JSON parsers keep the last of repeated keys; a tensor listed twice in weight_map must not
  // silently pick one shard, so the parse watches the keys as they go by.
  std::string top_key, duplicate;
  std::set<std::string> listed;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text, [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
      HG_CHECK(depth < kMaxJsonDepth, "sharded checkpoint index '" << index << "': JSON nested more than "
                                                                    << kMaxJsonDepth << " levels deep");
      if (event == nlohmann::json::parse_event_t::key && parsed.is_string()) {
        if (depth == 1) top_key = parsed.get<std::string>();
        if (depth == 2 && top_key == "weight_map" && !listed.insert(parsed.get<std::string>()).second &&
            duplicate.empty()) {
          duplicate = parsed.get<std::string>();
        }
      }
      return true;
    });
  } catch (const nlohmann::json::exception& e) {
    HG_FAIL("sharded checkpoint index '" << index << "' is not valid JSON (truncated?): " << e.what());
  }
  HG_CHECK(duplicate.empty(), "sharded checkpoint index '" << index << "' lists tensor '" << duplicate << "' twice");
  HG_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
           "sharded checkpoint index '" << index << "' has no \"weight_map\" object");
  std::map<std::string, std::set<std::string>> shards;  // shard file -> tensors the index puts there
  std::map<std::string, std::string> shard_of;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    HG_CHECK(it.value().is_string(), "sharded checkpoint index '" << index << "': weight_map entry '" << it.key()
                                                                  << "' is not a file name");
    const std::string shard = it.value().get<std::string>();
    HG_CHECK(!shard.empty() && shard.find('/') == std::string::npos && shard != "..",
             "sharded checkpoint index '" << index << "': shard '" << shard << "' of tensor '" << it.key()
                                          << "' must be a file name in the index's folder");
    shards[shard].insert(it.key());
    shard_of[it.key()] = shard;
  }
  HG_CHECK(!shards.empty(), "sharded checkpoint index '" << index << "' lists no tensors");

  const fs::path dir = fs::path(index).parent_path();
  StateDict out;
  std::map<std::string, std::string> meta;
  if (j.contains("metadata") && j["metadata"].is_object()) {
    for (auto it = j["metadata"].begin(); it != j["metadata"].end(); ++it) {
      meta[it.key()] = it.value().is_string() ? it.value().get<std::string>() : it.value().dump();
    }
  }
  std::set<std::string> seen;
  for (const auto& [shard, names] : shards) {
    const std::string file = (dir / shard).string();
    std::error_code ec;
    HG_CHECK(fs::is_regular_file(file, ec), "sharded checkpoint '" << index << "': shard '" << file << "' (holding "
                                                                  << names.size() << " tensors, e.g. '"
                                                                  << *names.begin() << "') not found");
    const CheckpointFormat format = detect_file_format(file);
    HG_CHECK(format == CheckpointFormat::Safetensors || format == CheckpointFormat::TorchZip,
             "sharded checkpoint '" << index << "': shard '" << file << "' is not a safetensors or torch.save file");
    std::map<std::string, std::string> shard_meta;
    std::set<std::string> found;
    for (auto& [name, t] : read_file(file, format, &shard_meta)) {
      HG_CHECK(seen.insert(name).second, "sharded checkpoint '" << index << "': tensor '" << name
                                                                << "' appears in more than one shard (again in '"
                                                                << file << "')");
      auto it = shard_of.find(name);
      HG_CHECK(it != shard_of.end(), "sharded checkpoint '" << index << "': shard '" << file << "' holds tensor '"
                                                            << name << "', which the index does not list");
      HG_CHECK(it->second == shard, "sharded checkpoint '" << index << "': shard '" << file << "' holds tensor '"
                                                           << name << "', which the index puts in '" << it->second
                                                           << "'");
      found.insert(name);
      out.emplace_back(name, std::move(t));
    }
    for (const std::string& name : names) {
      HG_CHECK(found.count(name), "sharded checkpoint '" << index << "': the index lists tensor '" << name
                                                         << "' in shard '" << file << "', which lacks it");
    }
    for (auto& [k, v] : shard_meta) meta.emplace(k, v);
  }
  if (metadata) *metadata = std::move(meta);
  return out;
}

StateDict read_file(const std::string& file, CheckpointFormat format, std::map<std::string, std::string>* metadata) {
  std::map<std::string, std::string> meta;
  StateDict out;
  switch (format) {
    case CheckpointFormat::Hdf5: return read_checkpoint_h5(file, metadata);
    case CheckpointFormat::ShardedIndex: return read_sharded(file, metadata);
    case CheckpointFormat::TorchZip: return read_torch_zip(file, metadata);
    case CheckpointFormat::Safetensors: {
      TensorFile tf = read_safetensors(file);
      meta = std::move(tf.metadata);
      out = std::move(tf.tensors);
      break;
    }
    case CheckpointFormat::Npz: {
      out = read_npz(file);
      if (is_google_vit(out)) {
        std::vector<std::string> dropped;
        out = google_vit_to_hf(out, file, &dropped);
        std::string list;
        for (const auto& d : dropped) list += (list.empty() ? "" : ",") + d;
        if (!list.empty()) meta["google_vit.dropped"] = list;
      }
      break;
    }
  }
  if (metadata) *metadata = std::move(meta);
  return out;
}

}  // namespace

CheckpointFormat detect_checkpoint_format(const std::string& path, std::string* resolved) {
  std::error_code ec;
  HG_CHECK(!path.empty() && fs::exists(path, ec), "checkpoint '" << path << "' not found");
  std::string file = path;
  if (fs::is_directory(path, ec)) {
    file.clear();
    for (const char* leaf : {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                             "pytorch_model.bin.index.json"}) {
      const std::string candidate = (fs::path(path) / leaf).string();
      if (file.empty() && fs::is_regular_file(candidate, ec)) file = candidate;
    }
    HG_CHECK(!file.empty(), "checkpoint directory '" << path << "' has no model.safetensors, "
                                                        "model.safetensors.index.json, pytorch_model.bin or "
                                                        "pytorch_model.bin.index.json");
  }
  if (resolved) *resolved = file;
  return detect_file_format(file);
}

// A hessgap HDF5 checkpoint opened for reading; hessgap::Error naming the file when it is not one.
static H5File open_checkpoint_h5(const std::string& path) {
  H5File f = H5File::open_read(path);
  HG_CHECK(f.has_attr("/", "format") && f.attr_string("/", "format") == kFormat,
           "HDF5 file '" << path << "' is not a hessgap checkpoint (root attribute format != \"" << kFormat << "\")");
  return f;
}

std::map<std::string, std::string> read_checkpoint_metadata_h5(const std::string& path) {
  return read_metadata_group(open_checkpoint_h5(path));
}

StateDict read_checkpoint_section(const std::string& path, const std::string& section) {
  H5File f = open_checkpoint_h5(path);
  const std::string group = "/state/" + section;
  HG_CHECK(f.is_group(group), "checkpoint '" << path << "' has no " << section << " state (" << group << ")");
  return read_tensor_group(f, group, path);
}

StateDict read_checkpoint(const std::string& path, std::map<std::string, std::string>* metadata) {
  std::string file;
  const CheckpointFormat format = detect_checkpoint_format(path, &file);
  return read_file(file, format, metadata);
}

// Writes `state` into `group` of an open checkpoint file (names validated by the caller).
static void write_tensor_group(H5File& f, const std::string& group, const StateDict& state, const std::string& what) {
  f.create_group(group);
  for (const auto& [name, tensor] : state) {
    const std::string ds = group + "/" + name;
    const std::string desc = what + " " + name;
    torch::Tensor t = tensor.detach().to(torch::kCPU);
    const torch::Dtype dtype = t.scalar_type();
    const std::vector<int64_t> shape = t.sizes().vec();
    if (dtype == torch::kDouble) {
      t = t.contiguous();
      f.write(ds, t.data_ptr<double>(), shape, desc);
    } else if (c10::isFloatingType(dtype)) {
      t = t.to(torch::kFloat).contiguous();
      f.write(ds, t.data_ptr<float>(), shape, desc);
    } else {
      t = t.to(torch::kLong).contiguous();
      f.write(ds, t.data_ptr<int64_t>(), shape, desc);
    }
    f.set_attr(ds, "dtype", dtype_name(dtype, ds));
  }
}

void write_checkpoint_h5(const std::string& path, const StateDict& state,
                         const std::map<std::string, std::string>& metadata,
                         const std::map<std::string, StateDict>& sections) {
  // Validate everything before creating the file.
  auto validate = [&](const StateDict& tensors, const std::string& where) {
    std::set<std::string> seen;
    for (const auto& [name, t] : tensors) {
      const std::string what = where + "tensor '" + name + "' for checkpoint '" + path + "'";
      HG_CHECK(!name.empty() && name.find('/') == std::string::npos, what << ": names must be non-empty without '/'");
      HG_CHECK(seen.insert(name).second, what << ": the name appears twice");
      HG_CHECK(t.defined(), what << ": the tensor is undefined");
      dtype_name(t.scalar_type(), what);
    }
  };
  validate(state, "");
  for (const auto& [section, tensors] : sections) {
    HG_CHECK(!section.empty() && section.find('/') == std::string::npos,
             "checkpoint '" << path << "': section names must be non-empty without '/' (got '" << section << "')");
    validate(tensors, section + " ");
  }

  AtomicOutput out(path);
  {
    H5File f = H5File::create(out.temp_path());
    f.set_attr("/", "format", kFormat);
    f.set_attr("/", "format_version", kFormatVersion);
    f.create_group("/metadata");
    write_tensor_group(f, "/tensors", state, "model tensor");
    for (const auto& [section, tensors] : sections) {
      write_tensor_group(f, "/state/" + section, tensors, section + " state");
    }
    for (const auto& [key, value] : metadata) f.set_attr("/metadata", key, value);
    f.close();
  }
  out.commit();
}

LoadReport load_state_dict(torch::nn::Module& module, const StateDict& state, const LoadOptions& opts) {
  const std::string source = opts.source.empty() ? std::string("the state dict") : "checkpoint '" + opts.source + "'";
  auto new_head = [&](const std::string& name) {
    return !opts.new_head_prefix.empty() && name.compare(0, opts.new_head_prefix.size(), opts.new_head_prefix) == 0;
  };
  std::map<std::string, const torch::Tensor*> given;
  for (const auto& [name, t] : state) {
    HG_CHECK(given.emplace(name, &t).second, source << " has tensor '" << name << "' twice");
  }

  StateDict targets = state_dict_of(module);
  LoadReport report;
  std::vector<std::string> mismatch_lines;
  std::vector<std::pair<torch::Tensor, const torch::Tensor*>> copies;
  std::set<std::string> target_names;
  for (const auto& [name, target] : targets) {
    target_names.insert(name);
    auto it = given.find(name);
    if (it == given.end() && new_head(name)) {
      report.new_head.push_back(name);
      continue;
    }
    if (it == given.end()) {
      bool optional = false;
      for (const std::string& suffix : opts.optional_suffixes) {
        optional = optional || (name.size() >= suffix.size() &&
                                name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0);
      }
      (optional ? report.optional_missing : report.missing).push_back(name);
      continue;
    }
    const torch::Tensor& src = *it->second;
    HG_CHECK(src.defined(), "tensor '" << name << "' in " << source << " is undefined");
    if (src.sizes() != target.sizes() && new_head(name)) {
      report.new_head.push_back(name);
      continue;
    }
    if (src.sizes() != target.sizes()) {
      report.mismatched.push_back(name);
      mismatch_lines.push_back(name + " (checkpoint " + shape_str(src.sizes()) + ", model " +
                               shape_str(target.sizes()) + ")");
      continue;
    }
    // A floating weight from an integer or boolean tensor would be silently cast: not a checkpoint of
    // this model (or a corrupted one).
    HG_CHECK(!target.is_floating_point() || src.is_floating_point(),
             "tensor '" << name << "' in " << source << " holds " << src.scalar_type() << " values, but the model's "
                        << name << " is " << target.scalar_type() << " (integer weights are not converted)");
    copies.emplace_back(target, &src);
    report.loaded.push_back(name);
  }
  for (const auto& [name, t] : state) {
    if (!target_names.count(name)) report.unexpected.push_back(name);
  }

  if (opts.strict && (!report.missing.empty() || !report.unexpected.empty() || !report.mismatched.empty())) {
    std::ostringstream os;
    os << "cannot load " << source << " into the model:";
    if (!report.missing.empty()) os << "\n  missing (" << report.missing.size() << "): " << join(report.missing);
    if (!report.unexpected.empty()) {
      os << "\n  unexpected (" << report.unexpected.size() << "): " << join(report.unexpected);
    }
    if (!mismatch_lines.empty()) os << "\n  shape mismatch (" << mismatch_lines.size() << "): " << join(mismatch_lines);
    throw Error(os.str());
  }

  torch::NoGradGuard no_grad;
  for (auto& [target, src] : copies) target.copy_(*src);
  return report;
}

std::string describe(const LoadReport& r) {
  std::ostringstream os;
  os << "loaded " << r.loaded.size() << " tensors";
  auto list = [&](const char* what, const std::vector<std::string>& names) {
    if (!names.empty()) os << "; " << what << " (" << names.size() << "): " << join(names);
  };
  list("new head", r.new_head);
  list("missing", r.missing);
  list("optional missing", r.optional_missing);
  list("unexpected", r.unexpected);
  list("shape mismatch", r.mismatched);
  return os.str();
}

StateDict state_dict_of(const torch::nn::Module& module) {
  StateDict out;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    if (item.value().defined()) out.emplace_back(item.key(), item.value().detach());
  }
  for (const auto& item : module.named_buffers(/*recurse=*/true)) {
    if (item.value().defined()) out.emplace_back(item.key(), item.value().detach());
  }
  return out;
}

}  // namespace hessgap::io
