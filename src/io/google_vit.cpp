#include "io/google_vit.h"

#include <charconv>
#include <map>
#include <system_error>
#include <regex>
#include <set>
#include <sstream>

#include "util/error.h"

namespace hessgap::io {

namespace {

std::string shape_str(torch::IntArrayRef s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

class Arrays {
 public:
  Arrays(const NamedTensors& arrays, std::string source) : source_(std::move(source)) {
    for (const auto& [name, t] : arrays) {
      HG_CHECK(by_name_.emplace(name, t).second, "Google ViT checkpoint '" << source_ << "' holds array '" << name
                                                                            << "' twice");
    }
  }
  // The array `name` with the given shape (-1: any size, recorded by the caller).
  torch::Tensor get(const std::string& name, const std::vector<std::int64_t>& shape) {
    auto it = by_name_.find(name);
    HG_CHECK(it != by_name_.end(), "Google ViT checkpoint '" << source_ << "' lacks array '" << name << "'");
    const torch::Tensor& t = it->second;
    bool ok = t.dim() == static_cast<std::int64_t>(shape.size());
    for (std::size_t k = 0; ok && k < shape.size(); ++k) ok = shape[k] < 0 || t.size(k) == shape[k];
    HG_CHECK(ok, "Google ViT checkpoint '" << source_ << "': array '" << name << "' has shape " << shape_str(t.sizes())
                                           << ", expected " << shape_str(shape) << " (-1: any)");
    return t;
  }
 private:
  std::string source_;
  std::map<std::string, torch::Tensor> by_name_;
};

}  // namespace

bool is_google_vit(const NamedTensors& arrays) {
  for (const auto& [name, t] : arrays) {
    if (name == "Transformer/encoder_norm/scale") return true;
  }
  return false;
}

NamedTensors google_vit_to_hf(const NamedTensors& arrays, const std::string& source, std::vector<std::string>* dropped) {
  constexpr std::size_t kMaxNameLength = 1024;
  static const std::regex kBlock(R"(^Transformer/encoderblock_(\d+)/(.+)$)");
  static const std::set<std::string> kBlockLeaves = {
      "LayerNorm_0/scale", "LayerNorm_0/bias", "LayerNorm_2/scale", "LayerNorm_2/bias",
      "MultiHeadDotProductAttention_1/query/kernel", "MultiHeadDotProductAttention_1/query/bias",
      "MultiHeadDotProductAttention_1/key/kernel", "MultiHeadDotProductAttention_1/key/bias",
      "MultiHeadDotProductAttention_1/value/kernel", "MultiHeadDotProductAttention_1/value/bias",
      "MultiHeadDotProductAttention_1/out/kernel", "MultiHeadDotProductAttention_1/out/bias",
      "MlpBlock_3/Dense_0/kernel", "MlpBlock_3/Dense_0/bias", "MlpBlock_3/Dense_1/kernel", "MlpBlock_3/Dense_1/bias"};
  static const std::set<std::string> kTopLevel = {
      "cls", "embedding/kernel", "embedding/bias", "Transformer/posembed_input/pos_embedding",
      "Transformer/encoder_norm/scale", "Transformer/encoder_norm/bias", "head/kernel", "head/bias"};

  // Every name must be known: an unknown array would otherwise vanish silently.
  std::set<std::int64_t> blocks;
  std::vector<std::string> drop;
  for (const auto& [name, t] : arrays) {
    std::smatch m;
    if (kTopLevel.count(name)) continue;
    if (name == "pre_logits/kernel" || name == "pre_logits/bias") {
      drop.push_back(name);
      continue;
    }
    // std::regex_match recurses once per character: a 60,000-character name overflowed the stack.
    // Every known name is under 100 characters.
    HG_CHECK(name.size() <= kMaxNameLength, "Google ViT checkpoint '" << source << "': unknown array named by "
                                                                       << name.size() << " characters (more than "
                                                                       << kMaxNameLength << "), starting '"
                                                                       << name.substr(0, 64) << "'");
    HG_CHECK(std::regex_match(name, m, kBlock) && kBlockLeaves.count(m[2].str()),
             "Google ViT checkpoint '" << source << "': unknown array '" << name << "'");
    const std::string digits = m[1].str();
    std::int64_t index = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
    HG_CHECK(ec == std::errc() && end == digits.data() + digits.size(),
             "Google ViT checkpoint '" << source << "': array '" << name << "' has an out-of-range block index "
                                       << digits);
    blocks.insert(index);
  }
  const auto L = static_cast<std::int64_t>(blocks.size());
  HG_CHECK(L > 0 && *blocks.begin() == 0 && *blocks.rbegin() == L - 1,
           "Google ViT checkpoint '" << source << "': encoder blocks must be numbered 0.." << L - 1);

  Arrays a(arrays, source);
  const torch::Tensor cls = a.get("cls", {1, 1, -1});
  const std::int64_t D = cls.size(2);
  const torch::Tensor patch = a.get("embedding/kernel", {-1, -1, -1, D});
  const std::int64_t p = patch.size(0);
  HG_CHECK(patch.size(1) == p, "Google ViT checkpoint '" << source << "': embedding/kernel " << patch.sizes()
                                                        << " is not a square patch [p,p,C,D]");
  const std::string b0 = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel";
  const torch::Tensor q0 = a.get(b0, {D, -1, -1});
  const std::int64_t H = q0.size(1), d = q0.size(2);
  HG_CHECK(H * d == D, "Google ViT checkpoint '" << source << "': '" << b0 << "' " << q0.sizes()
                                                << " splits hidden size " << D << " into " << H << " x " << d);
  const std::int64_t F = a.get("Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel", {D, -1}).size(1);

  NamedTensors out;
  auto put = [&](const std::string& name, const torch::Tensor& t) {
    out.emplace_back(name, t.contiguous().clone());
  };
  put("vit.embeddings.cls_token", cls);
  put("vit.embeddings.position_embeddings", a.get("Transformer/posembed_input/pos_embedding", {1, -1, D}));
  put("vit.embeddings.patch_embeddings.projection.weight", patch.permute({3, 2, 0, 1}));
  put("vit.embeddings.patch_embeddings.projection.bias", a.get("embedding/bias", {D}));
  for (std::int64_t i = 0; i < L; ++i) {
    const std::string g = "Transformer/encoderblock_" + std::to_string(i) + "/";
    const std::string h = "vit.encoder.layer." + std::to_string(i) + ".";
    const std::string att = g + "MultiHeadDotProductAttention_1/";
    for (const char* qkv : {"query", "key", "value"}) {
      put(h + "attention.attention." + qkv + ".weight", a.get(att + qkv + "/kernel", {D, H, d}).reshape({D, D}).t());
      put(h + "attention.attention." + qkv + ".bias", a.get(att + qkv + "/bias", {H, d}).reshape({D}));
    }
    put(h + "attention.output.dense.weight", a.get(att + "out/kernel", {H, d, D}).reshape({D, D}).t());
    put(h + "attention.output.dense.bias", a.get(att + "out/bias", {D}));
    put(h + "intermediate.dense.weight", a.get(g + "MlpBlock_3/Dense_0/kernel", {D, F}).t());
    put(h + "intermediate.dense.bias", a.get(g + "MlpBlock_3/Dense_0/bias", {F}));
    put(h + "output.dense.weight", a.get(g + "MlpBlock_3/Dense_1/kernel", {F, D}).t());
    put(h + "output.dense.bias", a.get(g + "MlpBlock_3/Dense_1/bias", {D}));
    put(h + "layernorm_before.weight", a.get(g + "LayerNorm_0/scale", {D}));
    put(h + "layernorm_before.bias", a.get(g + "LayerNorm_0/bias", {D}));
    put(h + "layernorm_after.weight", a.get(g + "LayerNorm_2/scale", {D}));
    put(h + "layernorm_after.bias", a.get(g + "LayerNorm_2/bias", {D}));
  }
  put("vit.layernorm.weight", a.get("Transformer/encoder_norm/scale", {D}));
  put("vit.layernorm.bias", a.get("Transformer/encoder_norm/bias", {D}));
  const torch::Tensor head = a.get("head/kernel", {D, -1});
  put("classifier.weight", head.t());
  put("classifier.bias", a.get("head/bias", {head.size(1)}));
  if (dropped) *dropped = drop;
  return out;
}

}  // namespace hessgap::io
