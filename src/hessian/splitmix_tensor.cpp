#include "hessian/splitmix_tensor.h"

#include <torch/torch.h>

namespace hessgap::hessian {

namespace {

constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ULL;  // rng's increment

// x >> s on the unsigned bits: int64 tensors shift arithmetically, so the copies of the sign bit are
// masked off.
torch::Tensor shift_right_logical(const torch::Tensor& x, int s) {
  return torch::bitwise_and(torch::bitwise_right_shift(x, s), (std::int64_t{1} << (64 - s)) - 1);
}

}  // namespace

torch::Tensor mix64_elementwise(torch::Tensor x) {
  x = x + as_i64(kGolden);
  x = torch::bitwise_xor(x, shift_right_logical(x, 30)) * as_i64(0xBF58476D1CE4E5B9ULL);
  x = torch::bitwise_xor(x, shift_right_logical(x, 27)) * as_i64(0x94D049BB133111EBULL);
  return torch::bitwise_xor(x, shift_right_logical(x, 31));
}

torch::Tensor word_salts(const torch::Tensor& index) { return mix64_elementwise(index + as_i64(kGolden)); }

}  // namespace hessgap::hessian
