#include "train/checkpoint_state.h"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <cmath>
#include <map>
#include <sstream>
#include <type_traits>

#include "util/error.h"

namespace hessgap::train {
namespace {

// LibTorch keys optimizer state by the parameter's TensorImpl: as a printed address in 1.13 (the CPU
// build) and as the pointer itself in 2.x (the CUDA build). The map's key type tells which.
using StateMap = std::decay_t<decltype(std::declval<torch::optim::Optimizer&>().state())>;
using Key = typename StateMap::key_type;

template <typename K>
K key_of(const torch::Tensor& p) {
  if constexpr (std::is_same_v<K, std::string>) {
    std::ostringstream s;
    s << p.unsafeGetTensorImpl();
    return s.str();
  } else {
    return static_cast<K>(p.unsafeGetTensorImpl());
  }
}

// Adam and AdamW keep the same four fields; copy them through one template.
template <typename State>
void export_state(const State& s, const std::string& name, NamedTensors& out) {
  out.emplace_back(name + ".step", torch::tensor(static_cast<std::int64_t>(s.step()), torch::kInt64));
  out.emplace_back(name + ".exp_avg", s.exp_avg().detach().to(torch::kCPU).clone());
  out.emplace_back(name + ".exp_avg_sq", s.exp_avg_sq().detach().to(torch::kCPU).clone());
  if (s.max_exp_avg_sq().defined()) {
    out.emplace_back(name + ".max_exp_avg_sq", s.max_exp_avg_sq().detach().to(torch::kCPU).clone());
  }
}

bool is_adam(const torch::optim::Optimizer& o) { return dynamic_cast<const torch::optim::Adam*>(&o) != nullptr; }
bool is_adamw(const torch::optim::Optimizer& o) { return dynamic_cast<const torch::optim::AdamW*>(&o) != nullptr; }
bool is_sgd(const torch::optim::Optimizer& o) { return dynamic_cast<const torch::optim::SGD*>(&o) != nullptr; }

}  // namespace

NamedTensors optimizer_state(const torch::optim::Optimizer& optimizer, const torch::nn::Module& module) {
  HG_CHECK(is_adam(optimizer) || is_adamw(optimizer) || is_sgd(optimizer),
           "optimizer state: only Adam, AdamW and SGD can be checkpointed");
  NamedTensors out;
  const auto& state = optimizer.state();
  for (const auto& p : module.named_parameters(true)) {
    auto it = state.find(key_of<Key>(p.value()));
    if (it == state.end()) continue;
    if (is_sgd(optimizer)) {
      const auto& s = static_cast<const torch::optim::SGDParamState&>(*it->second);
      if (s.momentum_buffer().defined()) {
        out.emplace_back(p.key() + ".momentum_buffer", s.momentum_buffer().detach().to(torch::kCPU).clone());
      }
    } else if (is_adam(optimizer)) {
      export_state(static_cast<const torch::optim::AdamParamState&>(*it->second), p.key(), out);
    } else {
      export_state(static_cast<const torch::optim::AdamWParamState&>(*it->second), p.key(), out);
    }
  }
  return out;
}

void load_optimizer_state(torch::optim::Optimizer& optimizer, const torch::nn::Module& module,
                          const NamedTensors& state) {
  HG_CHECK(is_adam(optimizer) || is_adamw(optimizer) || is_sgd(optimizer),
           "optimizer state: only Adam, AdamW and SGD can be restored");
  std::map<std::string, torch::Tensor> by_name(state.begin(), state.end());
  std::size_t used = 0;
  auto& map = optimizer.state();
  for (const auto& p : module.named_parameters(true)) {
    const std::string& n = p.key();
    auto fetch = [&](const std::string& field, bool required) -> torch::Tensor {
      auto it = by_name.find(n + "." + field);
      if (it == by_name.end()) {
        HG_CHECK(!required, "optimizer state: '" << n << "." << field << "' is missing");
        return {};
      }
      HG_CHECK(it->second.sizes() == p.value().sizes(), "optimizer state: '" << n << "." << field << "' has shape "
                                                                              << it->second.sizes() << ", the parameter "
                                                                              << p.value().sizes());
      // A damaged moment would turn every later update into NaN (a negative second moment: its root).
      HG_CHECK(it->second.is_floating_point() && torch::isfinite(it->second).all().item<bool>() &&
                   (field == "exp_avg" || field == "momentum_buffer" || (it->second >= 0).all().item<bool>()),
               "optimizer state: '" << n << "." << field << "' holds "
                                    << (it->second.is_floating_point() ? "non-finite or (a second moment) negative values"
                                                                       : "integers, not floating-point values"));
      ++used;
      return it->second.to(p.value().device(), p.value().scalar_type()).clone();
    };
    if (is_sgd(optimizer)) {
      torch::Tensor buf = fetch("momentum_buffer", false);
      if (buf.defined()) {
        auto s = std::make_unique<torch::optim::SGDParamState>();
        s->momentum_buffer(buf);
        map[key_of<Key>(p.value())] = std::move(s);
      }
      continue;
    }
    auto step = by_name.find(n + ".step");
    if (step == by_name.end()) continue;
    const torch::Tensor& st = step->second;
    HG_CHECK(st.numel() == 1 && st.dim() <= 1 && !st.is_complex() && st.scalar_type() != torch::kBool,
             "optimizer state: '" << n << ".step' has shape " << st.sizes() << ", expected one count");
    const double steps_value = st.to(torch::kFloat64).item<double>();
    HG_CHECK(std::isfinite(steps_value) && steps_value == std::floor(steps_value) && steps_value >= 0 &&
                 steps_value <= 9.0e15,
             "optimizer state: '" << n << ".step' holds " << steps_value << ", expected a count >= 0");
    const auto steps = static_cast<std::int64_t>(steps_value);
    ++used;
    torch::Tensor m = fetch("exp_avg", true), v = fetch("exp_avg_sq", true), vmax = fetch("max_exp_avg_sq", false);
    auto set = [&](auto s) {
      s->step(steps);
      s->exp_avg(m);
      s->exp_avg_sq(v);
      if (vmax.defined()) s->max_exp_avg_sq(vmax);
      map[key_of<Key>(p.value())] = std::move(s);
    };
    if (is_adam(optimizer)) {
      set(std::make_unique<torch::optim::AdamParamState>());
    } else {
      set(std::make_unique<torch::optim::AdamWParamState>());
    }
  }
  HG_CHECK(used == state.size(), "optimizer state: " << state.size() - used
                                                     << " entries name no parameter of the model");
}

}  // namespace hessgap::train
