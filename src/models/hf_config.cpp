#include "models/hf_config.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "util/error.h"
#include "util/input_file.h"
#include "util/json_bounded.h"

namespace hessgap::models {
namespace {

using nlohmann::json;

std::int64_t get_int(const json& j, const std::string& key, const std::string& file, bool required,
                     std::int64_t fallback) {
  if (!j.contains(key) || j.at(key).is_null()) {
    HG_CHECK(!required, "config " << file << ": missing field '" << key << "'");
    return fallback;
  }
  const auto& v = j.at(key);
  HG_CHECK(v.is_number_integer(), "config " << file << ": field '" << key
                                             << "' must be an integer, got " << v.dump());
  return v.get<std::int64_t>();
}

}  // namespace

double parameter_estimate(const TransformerConfig& c) {
  const double D = static_cast<double>(c.hidden_size), F = static_cast<double>(c.intermediate_size);
  const double embeddings =
      c.model_type == "vit"
          ? D * static_cast<double>(c.num_channels * c.patch_size * c.patch_size) +
                D * std::pow(static_cast<double>(c.image_size / c.patch_size), 2)
          : D * static_cast<double>(c.vocab_size + c.max_position_embeddings + c.type_vocab_size);
  return embeddings + static_cast<double>(c.num_hidden_layers) * (4 * D * D + 2 * D * F) +
         D * static_cast<double>(c.num_labels);
}

void validate(const TransformerConfig& c) {
  const std::string& f = c.source;
  HG_CHECK(c.model_type == "bert" || c.model_type == "roberta" || c.model_type == "vit",
           "config " << f << ": model_type '" << c.model_type
                     << "' is not supported (bert, roberta, vit)");
  auto positive = [&](std::int64_t v, const char* name) {
    HG_CHECK(v >= 1, "config " << f << ": field '" << name << "' must be >= 1, got " << v);
  };
  positive(c.hidden_size, "hidden_size");
  positive(c.num_hidden_layers, "num_hidden_layers");
  positive(c.num_attention_heads, "num_attention_heads");
  positive(c.intermediate_size, "intermediate_size");
  positive(c.num_labels, "num_labels");
  // Upper bounds before any model is built from these values: a config.json from elsewhere must not
  // make hessgap allocate gigabytes (or overflow a size) for a model no checkpoint could fill.
  auto at_most = [&](std::int64_t v, std::int64_t max, const char* name) {
    HG_CHECK(v <= max, "config " << f << ": field '" << name << "' is " << v << ", more than the limit of " << max);
  };
  at_most(c.hidden_size, kMaxHiddenSize, "hidden_size");
  at_most(c.num_hidden_layers, kMaxHiddenLayers, "num_hidden_layers");
  at_most(c.num_attention_heads, kMaxHiddenSize, "num_attention_heads");
  at_most(c.intermediate_size, kMaxIntermediateSize, "intermediate_size");
  at_most(c.num_labels, kMaxLabels, "num_labels");
  HG_CHECK(c.hidden_size % c.num_attention_heads == 0,
           "config " << f << ": hidden_size " << c.hidden_size
                     << " is not a multiple of num_attention_heads " << c.num_attention_heads);
  HG_CHECK(c.layer_norm_eps > 0, "config " << f << ": field 'layer_norm_eps' must be > 0");
  HG_CHECK(c.initializer_range > 0, "config " << f << ": field 'initializer_range' must be > 0");
  if (c.model_type == "vit") {
    positive(c.image_size, "image_size");
    positive(c.patch_size, "patch_size");
    positive(c.num_channels, "num_channels");
    at_most(c.image_size, kMaxImageSize, "image_size");
    at_most(c.num_channels, kMaxChannels, "num_channels");
    HG_CHECK(c.image_size % c.patch_size == 0, "config " << f << ": image_size " << c.image_size
                                                         << " is not a multiple of patch_size "
                                                         << c.patch_size);
  } else {
    positive(c.vocab_size, "vocab_size");
    positive(c.max_position_embeddings, "max_position_embeddings");
    positive(c.type_vocab_size, "type_vocab_size");
    at_most(c.vocab_size, kMaxVocabSize, "vocab_size");
    at_most(c.max_position_embeddings, kMaxPositionEmbeddings, "max_position_embeddings");
    at_most(c.type_vocab_size, kMaxTypeVocabSize, "type_vocab_size");
    HG_CHECK(c.pad_token_id >= 0 && c.pad_token_id < c.vocab_size,
             "config " << f << ": field 'pad_token_id' " << c.pad_token_id
                       << " is outside the vocabulary [0, " << c.vocab_size << ")");
    if (c.model_type == "roberta") {
      HG_CHECK(c.max_position_embeddings > c.pad_token_id + 1,
               "config " << f << ": max_position_embeddings " << c.max_position_embeddings
                         << " leaves no position after pad_token_id + 1");
    }
  }
  // Each value within its bound can still multiply into an absurd model (vocabulary 10M x hidden
  // 65536): the parameter count they imply is bounded too. Doubles: no overflow, and an estimate
  // is all that is needed.
  const double params = parameter_estimate(c);
  HG_CHECK(params <= kMaxParameters, "config " << f << ": its sizes (hidden_size " << c.hidden_size
                                               << ", num_hidden_layers " << c.num_hidden_layers << ", intermediate_size "
                                               << c.intermediate_size << ", "
                                               << (c.model_type == "vit" ? "image_size " + std::to_string(c.image_size)
                                                                         : "vocab_size " + std::to_string(c.vocab_size))
                                               << ") imply about " << params << " parameters, more than the limit of "
                                               << kMaxParameters);
}

TransformerConfig read_hf_config(const std::string& path) {
  namespace fs = std::filesystem;
  std::string file = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) file = (fs::path(path) / "config.json").string();
  require_regular_file(file, "config");
  std::ifstream in(file);
  HG_CHECK(in.good(), "config " << file << ": cannot open (expected a Hugging Face config.json)");
  json j;
  try {
    j = parse_json_bounded(in, "config " + file);
  } catch (const Error&) {
    throw;  // nested too deep: already names the file
  } catch (const std::exception& e) {
    HG_FAIL("config " << file << ": invalid JSON: " << e.what());
  }
  HG_CHECK(j.is_object(), "config " << file << ": not a JSON object");
  TransformerConfig c;
  c.source = file;
  HG_CHECK(j.contains("model_type") && j.at("model_type").is_string(),
           "config " << file << ": missing field 'model_type' (string)");
  c.model_type = j.at("model_type").get<std::string>();
  const bool vit = c.model_type == "vit";
  c.hidden_size = get_int(j, "hidden_size", file, true, 0);
  c.num_hidden_layers = get_int(j, "num_hidden_layers", file, true, 0);
  c.num_attention_heads = get_int(j, "num_attention_heads", file, true, 0);
  c.intermediate_size = get_int(j, "intermediate_size", file, true, 0);
  if (j.contains("layer_norm_eps") && !j.at("layer_norm_eps").is_null()) {
    HG_CHECK(j.at("layer_norm_eps").is_number(),
             "config " << file << ": field 'layer_norm_eps' must be a number");
    c.layer_norm_eps = j.at("layer_norm_eps").get<double>();
  }
  for (auto [name, field] : {std::pair<const char*, double*>{"hidden_dropout_prob", &c.hidden_dropout_prob},
                             {"attention_probs_dropout_prob", &c.attention_probs_dropout_prob},
                             {"classifier_dropout", &c.classifier_dropout}}) {
    if (!j.contains(name) || j.at(name).is_null()) continue;
    HG_CHECK(j.at(name).is_number(), "config " << file << ": field '" << name << "' must be a number");
    *field = j.at(name).get<double>();
    HG_CHECK(*field >= 0 && *field < 1, "config " << file << ": field '" << name << "' must be in [0, 1) (got "
                                                  << *field << ")");
  }
  if (j.contains("initializer_range") && !j.at("initializer_range").is_null()) {
    HG_CHECK(j.at("initializer_range").is_number(),
             "config " << file << ": field 'initializer_range' must be a number");
    c.initializer_range = j.at("initializer_range").get<double>();
  }
  if (j.contains("hidden_act") && !j.at("hidden_act").is_null()) {
    const auto& act = j.at("hidden_act");
    HG_CHECK(act.is_string() && act.get<std::string>() == "gelu",
             "config " << file << ": field 'hidden_act' " << act.dump()
                       << " is not supported (only \"gelu\", the exact erf form)");
  }
  if (j.contains("id2label") && j.at("id2label").is_object()) {
    c.num_labels = static_cast<std::int64_t>(j.at("id2label").size());
  } else {
    c.num_labels = get_int(j, "num_labels", file, false, 2);
  }
  if (vit) {
    c.image_size = get_int(j, "image_size", file, true, 0);
    c.patch_size = get_int(j, "patch_size", file, true, 0);
    c.num_channels = get_int(j, "num_channels", file, false, 3);
    if (j.contains("qkv_bias") && !j.at("qkv_bias").is_null()) {
      HG_CHECK(j.at("qkv_bias").is_boolean(), "config " << file << ": field 'qkv_bias' must be a boolean");
      c.qkv_bias = j.at("qkv_bias").get<bool>();
    }
  } else {
    c.vocab_size = get_int(j, "vocab_size", file, true, 0);
    c.max_position_embeddings = get_int(j, "max_position_embeddings", file, true, 0);
    c.type_vocab_size = get_int(j, "type_vocab_size", file, false, 2);
    c.pad_token_id = get_int(j, "pad_token_id", file, false, c.model_type == "roberta" ? 1 : 0);
  }
  validate(c);
  return c;
}

void check_config_against_weights(const TransformerConfig& c,
                                  const std::vector<std::pair<std::string, torch::Tensor>>& state,
                                  const std::string& source) {
  const bool vit = c.model_type == "vit";
  const std::string p = c.model_type + ".";
  std::map<std::string, const torch::Tensor*> by_name;
  for (const auto& [name, t] : state) by_name.emplace(name, &t);
  auto find = [&](const std::string& name) -> const torch::Tensor* {
    auto it = by_name.find(name);
    return it == by_name.end() || !it->second->defined() ? nullptr : it->second;
  };
  auto disagree = [&](const char* field, std::int64_t value, const std::string& tensor, std::int64_t implied) {
    std::ostringstream os;
    os << "config " << c.source << ": " << field << " " << value << " disagrees with checkpoint " << source
       << ": tensor '" << tensor << "' has shape " << find(tensor)->sizes() << " (" << field << " " << implied << ")";
    throw Error(os.str());
  };
  // (field, value, tensor, dim, expected rank): the size of dim `dim` of the tensor is the field.
  auto check = [&](const char* field, std::int64_t value, const std::string& tensor, std::int64_t dim,
                   std::int64_t rank) {
    const torch::Tensor* t = find(tensor);
    if (t == nullptr) return;
    if (t->dim() != rank) {
      std::ostringstream os;
      os << "checkpoint " << source << ": tensor '" << tensor << "' has shape " << t->sizes() << ", expected "
         << rank << " dimensions";
      throw Error(os.str());
    }
    if (t->size(dim) != value) disagree(field, value, tensor, t->size(dim));
  };

  if (vit) {
    const std::string proj = "vit.embeddings.patch_embeddings.projection.weight";
    check("hidden_size", c.hidden_size, "vit.embeddings.cls_token", 2, 3);
    check("hidden_size", c.hidden_size, proj, 0, 4);
    check("num_channels", c.num_channels, proj, 1, 4);
    check("patch_size", c.patch_size, proj, 2, 4);
    check("patch_size", c.patch_size, proj, 3, 4);
    check("hidden_size", c.hidden_size, "vit.embeddings.position_embeddings", 2, 3);
  } else {
    const std::string words = p + "embeddings.word_embeddings.weight";
    check("hidden_size", c.hidden_size, words, 1, 2);
    check("vocab_size", c.vocab_size, words, 0, 2);
    check("max_position_embeddings", c.max_position_embeddings, p + "embeddings.position_embeddings.weight", 0, 2);
    check("type_vocab_size", c.type_vocab_size, p + "embeddings.token_type_embeddings.weight", 0, 2);
  }
  const std::string layer0 = p + "encoder.layer.0.";
  check("hidden_size", c.hidden_size, layer0 + (vit ? "attention.attention" : "attention.self") + ".query.weight", 1, 2);
  check("intermediate_size", c.intermediate_size, layer0 + "intermediate.dense.weight", 0, 2);

  // Layers: the indices i of "<p>encoder.layer.<i>." must be exactly 0..num_hidden_layers-1.
  const std::string layer_prefix = p + "encoder.layer.";
  std::map<std::int64_t, std::string> layers;  // index -> one tensor of it
  for (const auto& [name, t] : state) {
    if (name.compare(0, layer_prefix.size(), layer_prefix) != 0) continue;
    std::size_t used = 0;
    long long i = -1;
    try {
      i = std::stoll(name.substr(layer_prefix.size()), &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used > 0 && i >= 0) layers.emplace(i, name);
  }
  if (!layers.empty()) {
    const auto last = layers.rbegin();
    if (last->first + 1 != c.num_hidden_layers || static_cast<std::int64_t>(layers.size()) != c.num_hidden_layers) {
      std::ostringstream os;
      os << "config " << c.source << ": num_hidden_layers " << c.num_hidden_layers << " disagrees with checkpoint "
         << source << ": it holds " << layers.size() << " layers, indices " << layers.begin()->first << ".."
         << last->first << " (e.g. tensor '" << last->second << "')";
      throw Error(os.str());
    }
  }
  if (vit && find(layer0 + "attention.attention.query.weight") != nullptr) {
    const bool has_bias = find(layer0 + "attention.attention.query.bias") != nullptr;
    HG_CHECK(has_bias == c.qkv_bias, "config " << c.source << ": qkv_bias " << (c.qkv_bias ? "true" : "false")
                                               << " disagrees with checkpoint " << source << ": tensor '" << layer0
                                               << "attention.attention.query.bias' is "
                                               << (has_bias ? "present" : "absent"));
  }
}

TransformerConfig bert_base_config() {
  TransformerConfig c;
  c.model_type = "bert";
  c.source = "built-in bert-base";
  return c;
}

TransformerConfig roberta_base_config() {
  TransformerConfig c;
  c.model_type = "roberta";
  c.vocab_size = 50265;
  c.max_position_embeddings = 514;
  c.type_vocab_size = 1;
  c.pad_token_id = 1;
  c.layer_norm_eps = 1e-5;
  c.source = "built-in roberta-base";
  return c;
}

TransformerConfig vit_base_config() {
  TransformerConfig c;
  c.model_type = "vit";
  c.hidden_dropout_prob = 0.0;  // google/vit-base-patch16-224's config.json
  c.attention_probs_dropout_prob = 0.0;
  c.source = "built-in vit-base";
  return c;
}

TransformerConfig vit_config(const std::string& name) {
  TransformerConfig c = vit_base_config();
  c.source = "built-in " + name;
  if (name == "vit-base" || name == "vit-b16") return c;
  if (name == "vit-b32") {
    c.patch_size = 32;
    return c;
  }
  if (name == "vit-l16") {
    c.hidden_size = 1024;
    c.num_hidden_layers = 24;
    c.num_attention_heads = 16;
    c.intermediate_size = 4096;
    return c;
  }
  HG_FAIL("unknown built-in ViT '" << name << "' (expected vit-base, vit-b16, vit-b32 or vit-l16)");
}

}  // namespace hessgap::models
