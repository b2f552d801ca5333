#include "hessian/probes.h"

#include <torch/torch.h>

#include "hessian/splitmix_tensor.h"
#include "util/error.h"
#include "util/rng.h"

namespace hessgap::hessian {

ProbeDistribution parse_probe_distribution(const std::string& name) {
  if (name == "rademacher") return ProbeDistribution::kRademacher;
  if (name == "gaussian") return ProbeDistribution::kGaussian;
  HG_FAIL("unknown probe distribution '" << name << "' (expected rademacher or gaussian)");
}

std::string to_string(ProbeDistribution d) {
  return d == ProbeDistribution::kRademacher ? "rademacher" : "gaussian";
}

namespace {
// Fill a CPU tensor of the requested floating dtype from a generator function over raw buffers.
template <typename FillF, typename FillD>
torch::Tensor generate(const torch::Tensor& like, FillF fill_f, FillD fill_d) {
  const auto dtype = like.scalar_type();
  HG_ASSERT(dtype == torch::kFloat32 || dtype == torch::kFloat64 || dtype == torch::kFloat16 ||
                dtype == torch::kBFloat16,
            "probe for a non-floating tensor");
  // Half types are drawn in float32 and cast: ±1 and normals are representable well enough.
  const auto gen_dtype = dtype == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  torch::Tensor out = torch::empty(like.sizes(), torch::TensorOptions().dtype(gen_dtype));
  if (gen_dtype == torch::kFloat64) {
    fill_d(out.data_ptr<double>(), out.numel());
  } else {
    fill_f(out.data_ptr<float>(), out.numel());
  }
  return out.to(like.device(), dtype);
}
}  // namespace

torch::Tensor rademacher_on_device(const torch::Tensor& like, std::uint64_t key) {
  // Element i is bit (i % 64) of word i / 64 (rng::fill_rademacher), the word rng::bits(key, i / 64)
  // computed where `like` lives (splitmix_tensor.h): no host loop, no copy, no wait. An arithmetic right
  // shift of a signed word keeps bit b in position 0 after a shift by b, so `& 1` reads it.
  const std::int64_t n = like.numel();
  const auto on = torch::TensorOptions().dtype(torch::kInt64).device(like.device());
  const torch::Tensor w = mix64_elementwise(torch::bitwise_xor(word_salts(torch::arange((n + 63) / 64, on)), as_i64(key)));
  const torch::Tensor shifts = torch::arange(64, on);
  const torch::Tensor bit = torch::bitwise_and(torch::bitwise_right_shift(w.unsqueeze(1), shifts), 1);
  return (bit.reshape({-1}).narrow(0, 0, n).to(like.scalar_type()) * 2 - 1).reshape(like.sizes());
}

torch::Tensor draw_probe(const torch::Tensor& like, ProbeDistribution dist, std::uint64_t seed,
                         std::int64_t batch, std::int64_t probe, std::int64_t layer) {
  const std::uint64_t key = rng::make_key(seed, rng::Stream::kProbe, static_cast<std::uint64_t>(batch),
                                          static_cast<std::uint64_t>(probe), static_cast<std::uint64_t>(layer));
  if (dist == ProbeDistribution::kRademacher) {
    if (!like.device().is_cpu()) return rademacher_on_device(like, key);
    return generate(
        like, [&](float* p, std::int64_t n) { rng::fill_rademacher(p, n, key); },
        [&](double* p, std::int64_t n) { rng::fill_rademacher(p, n, key); });
  }
  return generate(
      like, [&](float* p, std::int64_t n) { rng::fill_normal(p, n, key); },
      [&](double* p, std::int64_t n) { rng::fill_normal(p, n, key); });
}

torch::Tensor draw_weight_noise(const torch::Tensor& like, double eps, std::uint64_t seed,
                                std::int64_t repeat, std::int64_t layer) {
  const std::uint64_t key = rng::make_key(seed, rng::Stream::kWeightNoise, static_cast<std::uint64_t>(repeat),
                                          static_cast<std::uint64_t>(layer));
  // Drawn in float64 so that the perturbation of a float32 model equals the float64 one rounded.
  torch::Tensor z = torch::empty(like.sizes(), torch::TensorOptions().dtype(torch::kFloat64));
  rng::fill_normal(z.data_ptr<double>(), z.numel(), key);
  return (z * eps).to(like.device(), like.scalar_type());
}

}  // namespace hessgap::hessian
