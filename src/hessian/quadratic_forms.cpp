#include "hessian/quadratic_forms.h"

#include <torch/torch.h>

#include "hessian/hvp_engine.h"
#include "util/error.h"

namespace hessgap::hessian {

MeasureMode parse_measure_mode(const std::string& name) {
  if (name == "joint") return MeasureMode::kJoint;
  if (name == "block") return MeasureMode::kBlock;
  if (name == "psd") return MeasureMode::kPsd;
  HG_FAIL("unknown measure mode '" << name << "' (expected joint, block or psd)");
}
std::string to_string(MeasureMode m) {
  return m == MeasureMode::kJoint ? "joint" : m == MeasureMode::kBlock ? "block" : "psd";
}

std::vector<double> quadratic_forms(HvpEngine& engine, const std::vector<torch::Tensor>& v, MeasureMode mode) {
  const std::size_t L = engine.num_layers();
  HG_ASSERT(v.size() == L, "quadratic_forms: v has " << v.size() << " blocks, expected " << L);
  HG_ASSERT(mode != MeasureMode::kPsd, "quadratic_forms: the PSD mode is psd_quadratic_forms'");
  std::vector<double> q(L);
  if (mode == MeasureMode::kJoint) {
    q = dots64(v, engine.hvp(v));
  } else {
    for (std::size_t i = 0; i < L; ++i) q[i] = dot64(v[i], engine.block_hvp(i, v[i]));
  }
  return q;
}

}  // namespace hessgap::hessian
