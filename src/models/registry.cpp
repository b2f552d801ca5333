// The model registry: a small spec grammar "name[:key=value,...]" so that test models can be
// sized from a config string without a new flag per option.
#include "models/registry.h"

#include <torch/torch.h>

#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "models/cifar_resnet.h"
#include "models/hf_config.h"
#include "models/mlp.h"
#include "models/resnet.h"
#include "models/small_cnn.h"
#include "models/transformer_text.h"
#include "models/vit.h"
#include "util/error.h"
#include "util/limits.h"

namespace hessgap::models {
namespace {

// The largest size of one dimension in an --arch spec (in, hidden, c1, ...).
constexpr std::int64_t kMaxArchDimension = 1'000'000;

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
  HG_CHECK(value <= kMaxArchDimension, "model '" << arch << "' (--arch): option " << key << "=" << text
                                                 << " is more than the limit of " << kMaxArchDimension);
  return value;
}

// The parameter count of a spec model, summed from products of layer sizes (each checked, though
// with every size <= kMaxArchDimension they fit), refused above kMaxParameters (hf_config.h) before
// anything is allocated: mlp:hidden=1000000000 tried to allocate 12 TB (issue #12).
class ParameterCount {
 public:
  explicit ParameterCount(const std::string& arch) : arch_(arch) {}
  // Adds a * b * c parameters.
  void add(std::int64_t a, std::int64_t b, std::int64_t c = 1) {
    const auto ab = checked_mul(static_cast<std::uint64_t>(a), static_cast<std::uint64_t>(b));
    const auto abc = ab ? checked_mul(*ab, static_cast<std::uint64_t>(c)) : std::nullopt;
    overflow_ = overflow_ || !abc || *abc > kMaxCount || total_ + *abc > kMaxCount;
    if (!overflow_) total_ += *abc;
  }
  void check() const {
    HG_CHECK(!overflow_ && static_cast<double>(total_) <= kMaxParameters,
             "model '" << arch_ << "' (--arch): its sizes imply "
                       << (overflow_ ? std::string("too many") : "about " + std::to_string(total_))
                       << " parameters, more than the limit of " << kMaxParameters);
  }
  double total() const { return static_cast<double>(total_); }

 private:
  static constexpr std::uint64_t kMaxCount = std::uint64_t{1} << 62;
  std::string arch_;
  std::uint64_t total_ = 0;
  bool overflow_ = false;
};

}  // namespace

std::vector<std::string> known_architectures() {
  std::vector<std::string> names;
  for (auto d : kResNetDepths) names.push_back("cifar-resnet" + std::to_string(d));
  for (auto d : kImageNetResNetDepths) names.push_back("resnet" + std::to_string(d));
  names.push_back("mlp");
  names.push_back("small-cnn");
  return names;
}

std::vector<std::string> hf_architectures() {
  return {"bert-base", "roberta-base", "vit-base", "vit-b16", "vit-b32", "vit-l16"};
}

namespace {

std::shared_ptr<Classifier> build_transformer(const TransformerConfig& config,
                                              std::int64_t num_classes, const std::string& arch) {
  if (config.model_type == "vit") {
    return std::make_shared<VisionTransformer>(config, num_classes, arch);
  }
  return std::make_shared<TextTransformer>(config, num_classes, arch);
}

// make_model's memory check: float32 parameters beyond this machine's physical memory would end in
// bad_alloc or the OOM killer part way through initialisation.
void require_fits_memory(double parameters, const std::string& what) {
  const double bytes = parameters * 4.0;
  const std::uint64_t memory = physical_memory_bytes();
  HG_CHECK(memory == 0 || bytes <= static_cast<double>(memory),
           what << " implies about " << parameters << " parameters (" << bytes / 1e9 << " GB as float32), more than this "
                << "machine's " << static_cast<double>(memory) / 1e9 << " GB of memory");
}

std::shared_ptr<Classifier> build_checked_transformer(const TransformerConfig& config, std::int64_t num_classes,
                                                      const std::string& arch) {
  TransformerConfig sized = config;
  sized.num_labels = num_classes;
  require_fits_memory(parameter_estimate(sized), "model '" + arch + "' (config " + config.source + ")");
  return build_transformer(config, num_classes, arch);
}

}  // namespace

std::shared_ptr<Classifier> make_hf_model(const std::string& path, std::int64_t num_classes) {
  const auto config = read_hf_config(path);
  return build_checked_transformer(config, num_classes > 0 ? num_classes : config.num_labels, "hf:" + path);
}

std::optional<TransformerConfig> transformer_config_of(const std::string& arch) {
  const auto colon = arch.find(':');
  const std::string base = arch.substr(0, colon);
  const std::string rest = colon == std::string::npos ? "" : arch.substr(colon + 1);
  if (base == "bert-base" || base == "roberta-base" || base.rfind("vit-", 0) == 0) {
    HG_CHECK(colon == std::string::npos, "model '" << arch << "' takes no options");
    return base == "bert-base" ? bert_base_config() : base == "roberta-base" ? roberta_base_config() : vit_config(base);
  }
  if (base == "hf" || base == "bert" || base == "roberta" || base == "vit") {
    HG_CHECK(!rest.empty(), "model '" << arch << "': expected " << base << ":<config.json or Hugging Face folder>");
    auto config = read_hf_config(rest);
    HG_CHECK(base == "hf" || config.model_type == base,
             "model '" << arch << "': " << config.source << " has model_type '" << config.model_type << "', not '"
                       << base << "'");
    return config;
  }
  return std::nullopt;
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
  if (auto config = transformer_config_of(arch)) return build_checked_transformer(*config, num_classes, arch);
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
    ParameterCount params(arch);
    std::int64_t width = o.in_features;
    for (const std::int64_t h : o.hidden) {
      params.add(width, h);
      params.add(h, 1);
      width = h;
    }
    params.add(width, num_classes);
    params.add(num_classes, 1);
    params.check();
    require_fits_memory(params.total(), "model '" + arch + "' (--arch)");
    return std::make_shared<Mlp>(o, num_classes);
  }
  if (base == "small-cnn") {
    auto opts = parse_options(arch, rest, {"in", "c1", "c2"});
    SmallCnnOptions o;
    if (opts.count("in")) o.in_channels = parse_positive(arch, "in", opts["in"]);
    if (opts.count("c1")) o.channels1 = parse_positive(arch, "c1", opts["c1"]);
    if (opts.count("c2")) o.channels2 = parse_positive(arch, "c2", opts["c2"]);
    ParameterCount params(arch);
    params.add(o.channels1, o.in_channels, 9);  // conv1 3x3
    params.add(o.channels1, 2);                 // bn1
    params.add(o.channels2, o.channels1, 9);    // conv2 3x3
    params.add(o.channels2, 2);                 // bn2
    params.add(o.channels2, num_classes);       // fc
    params.add(num_classes, 1);
    params.check();
    require_fits_memory(params.total(), "model '" + arch + "' (--arch)");
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

namespace {

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

std::string shape_str(torch::IntArrayRef shape) {
  std::ostringstream os;
  os << shape;
  return os.str();
}

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

bool all_start_with(const NamedTensors& state, const std::string& prefix) {
  if (state.empty()) return false;
  for (const auto& [name, t] : state) {
    if (!starts_with(name, prefix)) return false;
  }
  return true;
}

// As from_pretrained loads a base-model checkpoint (BertModel, ViTModel, ...: no name starts with
// "<model_type>.", some with "embeddings." or "encoder.") into a *ForSequenceClassification: the prefix
// goes on every name outside the head. Returns how many names changed.
std::size_t add_base_model_prefix(const TransformerConfig& config, const std::string& head_prefix,
                                  NamedTensors& state) {
  const std::string p = config.model_type + ".";
  bool has_prefix = false, base_model = false;
  for (const auto& [name, t] : state) {
    has_prefix = has_prefix || starts_with(name, p);
    base_model = base_model || starts_with(name, "embeddings.") || starts_with(name, "encoder.");
  }
  std::size_t n = 0;
  if (has_prefix || !base_model) return n;
  for (auto& [name, t] : state) {
    if (!starts_with(name, head_prefix)) {
      name = p + name;
      ++n;
    }
  }
  return n;
}

}  // namespace

void check_checkpoint_fits_config(const TransformerConfig& config, const NamedTensors& state,
                                  const std::string& source) {
  NamedTensors named = state;  // the names change; the tensors are shared, not copied
  if (all_start_with(named, "module.")) {
    for (auto& item : named) item.first.erase(0, 7);
  }
  // The head prefix only keeps head tensors out of the renaming; the checks look at no head tensor.
  add_base_model_prefix(config, "classifier.", named);
  check_config_against_weights(config, named, source);
}

CheckpointAdaptation adapt_checkpoint(const Classifier& model,
                                      std::vector<std::pair<std::string, torch::Tensor>>& state,
                                      const AdaptOptions& opts) {
  CheckpointAdaptation out;
  const std::string source = opts.source.empty() ? std::string("(state dict)") : opts.source;
  std::set<std::string> known;
  for (const auto& item : model.named_parameters(true)) known.insert(item.key());
  for (const auto& item : model.named_buffers(true)) known.insert(item.key());

  auto rename_prefix = [&](const std::string& from, const std::string& to, const std::string& why) {
    std::size_t n = 0;
    for (auto& [name, t] : state) {
      if (starts_with(name, from)) {
        name = to + name.substr(from.size());
        ++n;
      }
    }
    if (n > 0) out.notes.push_back("renamed '" + from + "*' to '" + to + "*' (" + std::to_string(n) + " tensors; " + why + ")");
  };
  if (all_start_with(state, "module.")) rename_prefix("module.", "", "a DataParallel checkpoint");

  const TransformerConfig* config = nullptr;
  if (const auto* vit = dynamic_cast<const VisionTransformer*>(&model)) config = &vit->config();
  if (const auto* text = dynamic_cast<const TextTransformer*>(&model)) config = &text->config();

  if (dynamic_cast<const ResNet*>(&model) != nullptr) {
    rename_prefix("feature_extractor.", "", "the reference's ResNet wrapper");
    rename_prefix("pred_head.", "fc.", "the reference's ResNet head");
  }

  if (config != nullptr) {
    const std::string p = config->model_type + ".";
    if (const std::size_t n = add_base_model_prefix(*config, model.head_prefix(), state); n > 0) {
      out.notes.push_back("added the prefix '" + p + "' to " + std::to_string(n) +
                          " tensors (a base-model checkpoint, as Hugging Face's from_pretrained does)");
    }
    std::vector<std::pair<std::string, torch::Tensor>> kept;
    for (auto& item : state) {
      const std::string& name = item.first;
      const bool drop = !known.count(name) && (starts_with(name, "cls.") || starts_with(name, "lm_head.") ||
                                               starts_with(name, p + "pooler.") ||
                                               name == p + "embeddings.position_ids");
      if (drop) {
        out.dropped.push_back(name);
      } else {
        kept.push_back(std::move(item));
      }
    }
    state = std::move(kept);
    if (!out.dropped.empty()) {
      std::string list;
      for (const auto& d : out.dropped) list += (list.empty() ? "" : ", ") + d;
      out.notes.push_back("dropped " + std::to_string(out.dropped.size()) +
                          " tensors that this model class does not have (pretraining heads, pooler, position_ids): " +
                          list);
    }
    check_config_against_weights(*config, state, source);
  }

  if (const auto* vit = dynamic_cast<const VisionTransformer*>(&model)) {
    const std::string name = "vit.embeddings.position_embeddings";
    const auto& c = vit->config();
    const std::int64_t grid = c.image_size / c.patch_size;
    for (auto& [n, t] : state) {
      if (n != name || !t.defined() || t.dim() != 3 || t.size(1) == grid * grid + 1) continue;
      const auto old_tokens = t.size(1) - 1;
      const auto old_grid = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(old_tokens))));
      HG_CHECK(opts.resize_position_embeddings,
               "config " << c.source << ": image_size " << c.image_size << " (a " << grid << "x" << grid
                         << " grid of patch_size " << c.patch_size << ") disagrees with checkpoint " << source
                         << ": tensor '" << name << "' has shape " << shape_str(t.sizes()) << " (a " << old_grid
                         << "x" << old_grid << " grid, image_size " << old_grid * c.patch_size
                         << "), and resizing position embeddings is off");
      const std::string before = shape_str(t.sizes());
      try {
        t = resize_position_embeddings(t, grid, grid, opts.interpolation);
      } catch (const Error& e) {
        HG_FAIL("checkpoint " << source << ": tensor '" << name << "': " << e.what());
      }
      out.resized.push_back(name);
      out.notes.push_back("resized '" + name + "' from " + before + " to " + shape_str(t.sizes()) + " (" +
                          (opts.interpolation == PositionInterpolation::Bicubic ? "bicubic" : "bilinear-align-corners") +
                          ", for image_size " + std::to_string(c.image_size) + ")");
    }
  }
  return out;
}

void reset_head(Classifier& model, HeadInit init) {
  const std::string prefix = model.head_prefix();
  double hf_std = 0;
  bool akamaster = false;
  if (init == HeadInit::Library) {
    if (const auto* vit = dynamic_cast<const VisionTransformer*>(&model)) hf_std = vit->config().initializer_range;
    if (const auto* text = dynamic_cast<const TextTransformer*>(&model)) hf_std = text->config().initializer_range;
    akamaster = dynamic_cast<const CifarResNet*>(&model) != nullptr;
  }
  torch::NoGradGuard no_grad;
  int reset = 0;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    auto* linear = item.value()->as<torch::nn::Linear>();
    if (linear == nullptr || !starts_with(item.key() + ".", prefix)) continue;
    if (hf_std > 0) {
      linear->weight.normal_(0.0, hf_std);
      if (linear->bias.defined()) linear->bias.zero_();
    } else {
      linear->reset_parameters();
      if (akamaster) torch::nn::init::kaiming_normal_(linear->weight, 0.0, torch::kFanIn, torch::kLeakyReLU);
    }
    ++reset;
  }
  HG_CHECK(reset > 0, "model " << model.arch() << " has no Linear layer under its head prefix '" << prefix << "'");
}

}  // namespace hessgap::models
