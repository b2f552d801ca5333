#include "hessian/joint_probes.h"

#include <torch/torch.h>

#include "hessian/splitmix_tensor.h"
#include "util/error.h"
#include "util/rng.h"

namespace hessgap::hessian {

namespace {

const torch::Tensor& first_layer(const std::vector<torch::Tensor>& like) {
  HG_ASSERT(!like.empty(), "JointRademacher: no layers");
  HG_ASSERT(torch::isFloatingType(like[0].scalar_type()), "JointRademacher: probe for a non-floating tensor");
  return like[0];
}

}  // namespace

JointRademacher::JointRademacher(const std::vector<torch::Tensor>& like)
    : dtype_(first_layer(like).scalar_type()), device_(first_layer(like).device()) {
  std::vector<std::int64_t> words_per_layer;
  std::int64_t words = 0;
  for (const auto& t : like) {
    HG_ASSERT(t.scalar_type() == dtype_ && t.device() == device_, "JointRademacher: layers of mixed dtype or device");
    shapes_.push_back(t.sizes().vec());
    numel_.push_back(t.numel());
    word_offset_.push_back(words);
    words_per_layer.push_back((t.numel() + 63) / 64);
    words += words_per_layer.back();
  }
  // Made where the layers live (no host loop over the words, no upload): word w belongs to layer
  // word_layer_[w] and is that layer's word w − word_offset_[layer].
  const auto on = torch::TensorOptions().dtype(torch::kInt64).device(device_);
  // (With its output size given, repeat_interleave does not read the total back from the device.)
  word_layer_ = torch::repeat_interleave(torch::tensor(words_per_layer, torch::kInt64).to(device_),
                                         /*output_size=*/c10::optional<std::int64_t>(words));
  const torch::Tensor offsets = torch::tensor(word_offset_, torch::kInt64).to(device_);
  word_salt_ = word_salts(torch::arange(words, on) - offsets.index_select(0, word_layer_));
  // Row b of the table: the 8 signs of byte value b, bit s → column s.
  torch::Tensor table = torch::empty({256, 8}, torch::kFloat64);
  auto* tp = table.data_ptr<double>();
  for (int b = 0; b < 256; ++b) {
    for (int s = 0; s < 8; ++s) tp[b * 8 + s] = ((b >> s) & 1) != 0 ? 1.0 : -1.0;
  }
  byte_signs_ = table.to(device_, dtype_);
}

torch::Tensor JointRademacher::keys(std::uint64_t seed, std::int64_t batch, std::int64_t first,
                                   std::int64_t count) const {
  HG_ASSERT(count >= 1, "JointRademacher: count " << count);
  const auto L = static_cast<std::int64_t>(shapes_.size());
  torch::Tensor keys = torch::empty({count, L}, torch::kInt64);
  auto* kp = keys.data_ptr<std::int64_t>();
  for (std::int64_t j = 0; j < count; ++j) {
    for (std::int64_t i = 0; i < L; ++i) {
      kp[j * L + i] = as_i64(rng::make_key(seed, rng::Stream::kProbe, static_cast<std::uint64_t>(batch),
                                           static_cast<std::uint64_t>(first + j), static_cast<std::uint64_t>(i)));
    }
  }
  return keys;
}

torch::Tensor JointRademacher::signs_from_keys(const torch::Tensor& device_keys) const {
  HG_ASSERT(device_keys.dim() == 2 && device_keys.size(1) == static_cast<std::int64_t>(shapes_.size()) &&
                device_keys.scalar_type() == torch::kInt64,
            "JointRademacher: keys must be [count, layers] int64");
  const std::int64_t count = device_keys.size(0);
  // [count, W] words, then their bytes (little-endian: byte b of a word holds its bits 8b … 8b+7), then
  // each byte's 8 signs looked up: element 64w + 8b + s is bit 8b + s of word w, as
  // rng::fill_rademacher reads it. The look-up writes each sign once, in the blocks' dtype.
  const torch::Tensor words = mix64_elementwise(torch::bitwise_xor(device_keys.index_select(1, word_layer_), word_salt_));
  const torch::Tensor bytes = words.view(torch::kUInt8).reshape({-1}).to(torch::kInt32);
  return byte_signs_.index_select(0, bytes).reshape({count, -1});
}

torch::Tensor JointRademacher::upload_keys(const torch::Tensor& host_keys, torch::Tensor into) const {
  const bool cuda = device_.is_cuda();
  // From pinned memory the copy is queued behind the previous HVP instead of waiting for it; the
  // caching host allocator keeps the buffer until the copy has run.
  const torch::Tensor source = cuda ? host_keys.pin_memory() : host_keys;
  if (!into.defined()) return source.to(device_, /*non_blocking=*/cuda);
  into.copy_(source, /*non_blocking=*/cuda);
  return into;
}

torch::Tensor JointRademacher::signs(std::uint64_t seed, std::int64_t batch, std::int64_t first,
                                     std::int64_t count) const {
  return signs_from_keys(upload_keys(keys(seed, batch, first, count)));
}

std::vector<torch::Tensor> JointRademacher::draw(std::uint64_t seed, std::int64_t batch, std::int64_t first,
                                                 std::int64_t count) const {
  const torch::Tensor all = signs(seed, batch, first, count);
  std::vector<torch::Tensor> out;
  out.reserve(shapes_.size());
  for (std::size_t i = 0; i < shapes_.size(); ++i) {
    std::vector<std::int64_t> shape = shapes_[i];
    shape.insert(shape.begin(), count);
    out.push_back(all.narrow(1, 64 * word_offset_[i], numel_[i]).reshape(shape));
  }
  return out;
}

std::vector<torch::Tensor> JointRademacher::draw_one(std::uint64_t seed, std::int64_t batch,
                                                     std::int64_t probe) const {
  return blocks_of_row(signs(seed, batch, probe, 1)[0]);
}

std::vector<torch::Tensor> JointRademacher::blocks_of_row(const torch::Tensor& row) const {
  std::vector<torch::Tensor> out;
  out.reserve(shapes_.size());
  for (std::size_t i = 0; i < shapes_.size(); ++i) {
    out.push_back(row.narrow(0, 64 * word_offset_[i], numel_[i]).view(shapes_[i]));
  }
  return out;
}

}  // namespace hessgap::hessian
