// The model registry: a small spec grammar "name[:key=value,...]" so that test models can be
// sized from a config string without a new flag per option.
#include "models/registry.h"

#include <torch/torch.h>

#include <map>
#include <sstream>

#include "models/cifar_resnet.h"
#include "models/hf_config.h"
#include "models/mlp.h"
#include "models/resnet.h"
#include "models/small_cnn.h"
#include "models/transformer_text.h"
#include "models/vit.h"
#include "util/error.h"

namespace hessgap::models {
namespace {

const std::vector<std::int64_t> kResNetDepths = {20, 32, 44, 56, 110};
const std::vector<std::int64_t> kImageNetResNetDepths = {18, 34, 50, 101};

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream is(s);
  while (std::getline(is, part, sep)) parts.push_back(part);
  if (!s.empty() && s.back() == sep) parts.emplace_back();
  return parts;
}

// "key=value,key=value" -> map, rejecting keys outside `allowed`.
std::map<std::string, std::string> parse_options(const std::string& arch, const std::string& text,
                                                 const std::vector<std::string>& allowed) {
  std::map<std::string, std::string> options;
  if (text.empty()) return options;
  for (const auto& item : split(text, ',')) {
    const auto eq = item.find('=');
    HG_CHECK(eq != std::string::npos && eq > 0,
             "model '" << arch << "': option '" << item << "' is not key=value");
    const std::string key = item.substr(0, eq);
    bool ok = false;
    for (const auto& a : allowed) ok = ok || a == key;
    HG_CHECK(ok, "model '" << arch << "': unknown option '" << key << "' (known: "
                           << join(allowed, ", ") << ")");
    HG_CHECK(options.count(key) == 0, "model '" << arch << "': option '" << key << "' repeated");
    options[key] = item.substr(eq + 1);
  }
  return options;
}

std::int64_t parse_positive(const std::string& arch, const std::string& key,
                            const std::string& text) {
  std::size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  HG_CHECK(used == text.size() && !text.empty() && value >= 1,
           "model '" << arch << "': option " << key << "=" << text
                     << " is not a positive integer");
  return value;
}

}  // namespace

std::vector<std::string> known_architectures() {
  std::vector<std::string> names;
  for (auto d : kResNetDepths) names.push_back("cifar-resnet" + std::to_string(d));
  for (auto d : kImageNetResNetDepths) names.push_back("resnet" + std::to_string(d));
  names.push_back("mlp");
  names.push_back("small-cnn");
  return names;
}

std::vector<std::string> hf_architectures() { return {"bert-base", "roberta-base", "vit-base"}; }

namespace {

std::shared_ptr<Classifier> build_transformer(const TransformerConfig& config,
                                              std::int64_t num_classes, const std::string& arch) {
  if (config.model_type == "vit") {
    return std::make_shared<VisionTransformer>(config, num_classes, arch);
  }
  return std::make_shared<TextTransformer>(config, num_classes, arch);
}

}  // namespace

std::shared_ptr<Classifier> make_hf_model(const std::string& path, std::int64_t num_classes) {
  const auto config = read_hf_config(path);
  return build_transformer(config, num_classes > 0 ? num_classes : config.num_labels, "hf:" + path);
}

std::shared_ptr<Classifier> make_model(const std::string& arch, std::int64_t num_classes) {
  HG_CHECK(num_classes >= 1, "model '" << arch << "': num_classes must be >= 1, got "
                                       << num_classes);
  const auto colon = arch.find(':');
  const std::string base = arch.substr(0, colon);
  const std::string rest = colon == std::string::npos ? "" : arch.substr(colon + 1);

  for (auto d : kResNetDepths) {
    if (base == "cifar-resnet" + std::to_string(d)) {
      HG_CHECK(colon == std::string::npos, "model '" << arch << "' takes no options");
      return std::make_shared<CifarResNet>(d, num_classes);
    }
  }
  for (auto d : kImageNetResNetDepths) {
    if (base == "resnet" + std::to_string(d)) {
      HG_CHECK(colon == std::string::npos, "model '" << arch << "' takes no options");
      return std::make_shared<ResNet>(d, num_classes);
    }
  }
  if (base == "bert-base" || base == "roberta-base" || base == "vit-base") {
    HG_CHECK(colon == std::string::npos, "model '" << arch << "' takes no options");
    const auto config = base == "bert-base"      ? bert_base_config()
                        : base == "roberta-base" ? roberta_base_config()
                                                 : vit_base_config();
    return build_transformer(config, num_classes, arch);
  }
  if (base == "hf" || base == "bert" || base == "roberta" || base == "vit") {
    HG_CHECK(!rest.empty(), "model '" << arch << "': expected " << base
                                      << ":<config.json or Hugging Face folder>");
    const auto config = read_hf_config(rest);
    HG_CHECK(base == "hf" || config.model_type == base,
             "model '" << arch << "': " << config.source << " has model_type '"
                       << config.model_type << "', not '" << base << "'");
    return build_transformer(config, num_classes, arch);
  }
  if (base == "mlp") {
    auto opts = parse_options(arch, rest, {"in", "hidden", "act"});
    MlpOptions o;
    if (opts.count("in")) o.in_features = parse_positive(arch, "in", opts["in"]);
    if (opts.count("hidden")) {
      o.hidden.clear();
      if (!opts["hidden"].empty()) {
        for (const auto& h : split(opts["hidden"], '-')) {
          o.hidden.push_back(parse_positive(arch, "hidden", h));
        }
      }
    }
    if (opts.count("act")) o.activation = parse_activation(opts["act"]);
    return std::make_shared<Mlp>(o, num_classes);
  }
  if (base == "small-cnn") {
    auto opts = parse_options(arch, rest, {"in", "c1", "c2"});
    SmallCnnOptions o;
    if (opts.count("in")) o.in_channels = parse_positive(arch, "in", opts["in"]);
    if (opts.count("c1")) o.channels1 = parse_positive(arch, "c1", opts["c1"]);
    if (opts.count("c2")) o.channels2 = parse_positive(arch, "c2", opts["c2"]);
    return std::make_shared<SmallCnn>(o, num_classes);
  }
  HG_FAIL("unknown model architecture '" << arch << "' (known: "
                                         << join(known_architectures(), ", ") << ", "
                                         << join(hf_architectures(), ", ")
                                         << ", hf:<path>, bert:<path>, roberta:<path>, vit:<path>)");
}

std::vector<torch::Tensor> parameters_by_name(const Classifier& model,
                                              const std::vector<std::string>& names) {
  const auto params = model.named_parameters(/*recurse=*/true);
  std::vector<torch::Tensor> out;
  out.reserve(names.size());
  for (const auto& name : names) {
    const torch::Tensor* found = params.find(name);
    HG_CHECK(found != nullptr,
             "model " << model.arch() << " has no parameter '" << name << "'");
    out.push_back(*found);
  }
  return out;
}

std::vector<torch::Tensor> hessian_parameters(const Classifier& model) {
  return parameters_by_name(model, model.hessian_layers());
}

}  // namespace hessgap::models
