// The hessgap side of the model benchmark (bench_models.py): the time and peak memory of one
// model computation in this process, through the same code the measures run (models::make_model,
// measures::prepare_hessian_params / batch_loss, hessian::HvpEngine), printed as one JSON line.
// A fresh process per measurement keeps the peak RSS of one computation from leaking into the
// next; the Python reference (reference_models.py) does exactly the same work, so the two lines
// compare directly. With --export the run also writes its weights, batch and probe as safetensors
// with the loss, |g| and vᵀHv it computed, for the reference to reproduce (the cross-check).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "data/batch.h"
#include "hessian/device_graph.h"
#include "hessian/hvp_engine.h"
#include "hessian/probe_unit.h"
#include "hessian/joint_probes.h"
#include "hessian/probes.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "measures/measure_context.h"
#include "models/registry.h"
#include "util/error.h"

namespace {

using namespace hessgap;

struct Options {
  std::string model = "resnet50";  // resnet50 | roberta-base
  std::string mode = "grad";       // grad | hvp
  std::int64_t batch = 0;          // 0: resnet50 32, roberta-base 8
  std::int64_t image_size = 224;
  std::int64_t seq_len = 128;
  std::int64_t classes = 0;  // 0: resnet50 1000, roberta-base 2
  int warmup = 0;
  int iters = 1;
  int hvps = 1;
  int threads = 1;
  std::uint64_t seed = 0;
  std::string export_dir;
  std::string device = "cpu";  // cpu | cuda[:N]: timings then wait for the device (synchronize)
  bool cuda_graphs = false;    // hvp mode: the products as traces --cuda-graphs makes them (ProbeUnit)
};

double rss_mib() {
  std::ifstream in("/proc/self/statm");
  long pages = 0, resident = 0;
  in >> pages >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 20);
}

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // KiB on Linux
}

// Set by run(): a CUDA device must finish its queued kernels before a time is read.
bool g_sync_cuda = false;

double seconds(std::chrono::steady_clock::time_point t0) {
  if (g_sync_cuda) torch::cuda::synchronize();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> xs) {
  if (xs.empty()) return NAN;
  std::sort(xs.begin(), xs.end());
  const auto n = xs.size();
  return n % 2 ? xs[n / 2] : 0.5 * (xs[n / 2 - 1] + xs[n / 2]);
}

// Token ids in [3, vocab) after a leading <s> (0); sample b is padded (id 1, mask 0) from
// T − b·T/(2B) on; token types 0. The same layout as reference_models.text_batch.
data::Batch text_batch(std::int64_t B, std::int64_t T, std::int64_t vocab, std::int64_t pad_id,
                       torch::Generator& gen) {
  data::Batch batch;
  auto ids = torch::randint(3, vocab, {B, T}, gen, torch::kLong);
  ids.select(1, 0).fill_(0);
  auto mask = torch::ones({B, T}, torch::kLong);
  for (std::int64_t b = 0; b < B; ++b) {
    const auto length = T - (b * T) / (2 * B);
    ids[b].slice(0, length).fill_(pad_id);
    mask[b].slice(0, length).zero_();
  }
  batch.inputs = ids;
  batch.attention_mask = mask;
  batch.token_type_ids = torch::zeros_like(ids);
  return batch;
}

io::NamedTensors batch_tensors(const data::Batch& b) {
  io::NamedTensors out{{"inputs", b.inputs}, {"labels", b.labels}};
  if (b.attention_mask.defined()) out.emplace_back("attention_mask", b.attention_mask);
  if (b.token_type_ids.defined()) out.emplace_back("token_type_ids", b.token_type_ids);
  return out;
}

int run(const Options& o) {
  HG_CHECK(o.model == "resnet50" || o.model == "roberta-base",
           "--model must be resnet50 or roberta-base, got '" << o.model << "'");
  HG_CHECK(o.mode == "grad" || o.mode == "hvp" || o.mode == "probes",
           "--mode must be grad, hvp or probes, got '" << o.mode << "'");
  HG_CHECK(o.iters >= 1 && o.warmup >= 0 && o.hvps >= 1 && o.threads >= 1,
           "--iters, --hvps and --threads must be >= 1 and --warmup >= 0");
  HG_CHECK(!o.cuda_graphs || (o.mode == "hvp" && o.device.rfind("cuda", 0) == 0),
           "--cuda-graphs times the hvp mode on a CUDA device");
  const bool image = o.model == "resnet50";
  const std::int64_t B = o.batch > 0 ? o.batch : (image ? 32 : 8);
  const std::int64_t C = o.classes > 0 ? o.classes : (image ? 1000 : 2);
  torch::set_num_threads(o.threads);
  torch::set_num_interop_threads(1);
  const double rss_start = rss_mib();

  torch::manual_seed(o.seed);
  auto model = models::make_model(o.model, C);
  model->eval();
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(o.seed + 1);
  data::Batch batch;
  if (image) {
    batch.inputs = torch::randn({B, 3, o.image_size, o.image_size}, gen, torch::kFloat);
  } else {
    batch = text_batch(B, o.seq_len, 50265, 1, gen);  // roberta-base vocabulary and pad id
  }
  batch.labels = torch::randint(C, {B}, gen, torch::kLong);
  const torch::Device device(o.device);
  if (device.is_cuda()) {
    HG_CHECK(torch::cuda::is_available(), "--device " << o.device << ": no CUDA device available to this build");
    at::globalContext().setAllowTF32CuBLAS(false);
    at::globalContext().setAllowTF32CuDNN(false);
    at::globalContext().setBenchmarkCuDNN(true);
    g_sync_cuda = true;
  }
  model->to(device);
  batch = batch.to(device, torch::kFloat32);
  std::int64_t n_params = 0;
  for (const auto& p : model->parameters()) n_params += p.numel();
  const auto layers = model->hessian_layers();

  std::map<std::string, std::vector<double>> times;
  double loss_value = NAN;
  if (!o.export_dir.empty()) {
    // Cross-check: loss, |g| and vᵀHv with a Rademacher v (float64 sums), inputs written out.
    auto params = measures::prepare_hessian_params(*model);
    std::vector<torch::Tensor> v;
    io::NamedTensors named_v;
    for (std::size_t i = 0; i < params.size(); ++i) {
      v.push_back(hessian::draw_probe(params[i], hessian::ProbeDistribution::kRademacher, o.seed, 0, 0,
                                      static_cast<std::int64_t>(i)));
      named_v.emplace_back(layers[i], v.back());
    }
    hessian::HvpEngine engine(measures::batch_loss(*model, batch), params);
    const auto hv = engine.hvp(v);
    double g2 = 0, vhv = 0;
    for (const auto& g : engine.gradient()) g2 += hessian::dot64(g, g);
    for (std::size_t i = 0; i < v.size(); ++i) vhv += hessian::dot64(v[i], hv[i]);
    std::filesystem::create_directories(o.export_dir);
    io::write_safetensors(o.export_dir + "/weights.safetensors", io::state_dict_of(*model));
    io::write_safetensors(o.export_dir + "/batch.safetensors", batch_tensors(batch));
    io::write_safetensors(o.export_dir + "/v.safetensors", named_v);
    nlohmann::json j{{"side", "hessgap"},     {"model", o.model},       {"loss", engine.loss()},
                     {"grad_norm", std::sqrt(g2)}, {"vhv", vhv}, {"hessian_layers", layers.size()}};
    std::cout << j.dump() << std::endl;
    return 0;
  }

  if (o.mode == "grad") {
    for (auto& p : model->parameters()) p.set_requires_grad(true);
    for (int it = 0; it < o.warmup + o.iters; ++it) {
      for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
      const auto t0 = std::chrono::steady_clock::now();
      auto loss = measures::batch_loss(*model, batch);
      loss.backward();
      const double dt = seconds(t0);
      loss_value = loss.item<double>();
      if (it >= o.warmup) times["grad"].push_back(dt);
    }
  } else if (o.mode == "probes") {
    // One joint Rademacher probe of every Hessian layer, two ways, alternating: JointRademacher (the joint
    // trace path's draw) and draw_probe layer by layer (its draw before; on a GPU, words drawn on the
    // host and copied per layer). Their blocks must be equal.
    auto params = measures::prepare_hessian_params(*model);
    const hessian::JointRademacher drawer(params);
    bool equal = true;
    for (int it = 0; it < o.warmup + o.iters; ++it) {
      const auto t0 = std::chrono::steady_clock::now();
      const auto joint = drawer.draw_one(o.seed, 0, it);
      const double t_joint = seconds(t0);
      const auto t1 = std::chrono::steady_clock::now();
      std::vector<torch::Tensor> layers_drawn;
      for (std::size_t i = 0; i < params.size(); ++i) {
        layers_drawn.push_back(hessian::draw_probe(params[i], hessian::ProbeDistribution::kRademacher, o.seed, 0, it,
                                                   static_cast<std::int64_t>(i)));
      }
      const double t_layers = seconds(t1);
      if (it == 0) {
        for (std::size_t i = 0; i < params.size(); ++i) equal = equal && torch::equal(joint[i], layers_drawn[i]);
      }
      if (it >= o.warmup) {
        times["probe_joint"].push_back(t_joint);
        times["probe_layers"].push_back(t_layers);
      }
    }
    HG_CHECK(equal, "bench_models --mode probes: the joint draw differs from draw_probe");
  } else {
    auto params = measures::prepare_hessian_params(*model);
    std::vector<torch::Tensor> v;
    for (std::size_t i = 0; i < params.size(); ++i) {
      v.push_back(hessian::draw_probe(params[i], hessian::ProbeDistribution::kRademacher, o.seed + 2, 0, 0,
                                      static_cast<std::int64_t>(i)));
    }
    // --cuda-graphs: each first-order graph's products are a ProbeUnit's joint probes (draw, HVP and
    // per-layer dots), captured after its eager probe; "hvp" times the replays only, "capture" the capture
    // and its first replay.
    const hessian::SideStreamScope side(params[0].device(), o.cuda_graphs);
    for (int it = 0; it < o.warmup + o.iters; ++it) {
      const auto t0 = std::chrono::steady_clock::now();
      hessian::HvpEngine engine(measures::batch_loss(*model, batch), params);
      const double graph = seconds(t0);
      if (o.cuda_graphs) {
        const hessian::JointRademacher drawer(params);
        hessian::ProbeUnit unit(engine, drawer, /*graph=*/true);
        for (int k = 0; k < hessian::ProbeUnit::kEagerProbes + 1 + o.hvps; ++k) {
          const auto t1 = std::chrono::steady_clock::now();
          unit.values(o.seed, it, k);
          const double dt = seconds(t1);
          if (it >= o.warmup && k >= hessian::ProbeUnit::kEagerProbes) {
            times[k == hessian::ProbeUnit::kEagerProbes ? "capture" : "hvp"].push_back(dt);
          }
        }
      } else {
        for (int k = 0; k < o.hvps; ++k) {
          const auto t1 = std::chrono::steady_clock::now();
          const auto hv = engine.hvp(v);
          if (it >= o.warmup) times["hvp"].push_back(seconds(t1));
        }
      }
      loss_value = engine.loss();
      if (it >= o.warmup) times["graph"].push_back(graph);
    }
  }

  nlohmann::json med = nlohmann::json::object();
  for (const auto& [k, xs] : times) med[k] = median(xs);
  nlohmann::json j{{"side", "hessgap"},
                   {"model", o.model},
                   {"mode", o.mode},
                   {"batch", B},
                   {"size", image ? o.image_size : o.seq_len},
                   {"classes", C},
                   {"threads", torch::get_num_threads()},
                   {"params", n_params},
                   {"hessian_layers", layers.size()},
                   {"times", times},
                   {"median", med},
                   {"loss", loss_value},
                   {"rss_start_mib", rss_start},
                   {"peak_rss_mib", peak_rss_mib()}};
  std::cout << j.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"hessgap model benchmark: time and peak RSS of forward+backward or of HVPs (one JSON line)"};
  app.add_option("--model", o.model, "resnet50 | roberta-base");
  app.add_option("--device", o.device, "cpu | cuda | cuda:N (TF32 off, cuDNN benchmark mode on)");
  app.add_option("--mode", o.mode,
                 "grad (forward + backward, all parameters) | hvp (graph + products) | probes (one joint "
                 "Rademacher probe: all layers at once vs layer by layer)");
  app.add_option("--batch", o.batch, "Batch size (default: resnet50 32, roberta-base 8)");
  app.add_option("--image-size", o.image_size, "resnet50: image height = width");
  app.add_option("--seq-len", o.seq_len, "roberta-base: tokens per sample");
  app.add_option("--classes", o.classes, "Classes (default: resnet50 1000, roberta-base 2)");
  app.add_option("--warmup", o.warmup, "Untimed iterations first");
  app.add_option("--iters", o.iters, "Timed iterations");
  app.add_option("--hvps", o.hvps, "hvp mode: products per first-order graph");
  app.add_flag("--cuda-graphs", o.cuda_graphs,
               "hvp mode, CUDA: the products as `traces --cuda-graphs` makes them (a joint probe's draw, HVP and "
               "per-layer dots captured once per first-order graph and replayed); 'hvp' times the replays");
  app.add_option("--threads", o.threads, "torch intra-op threads (interop: 1)");
  app.add_option("--seed", o.seed, "Seed of the weights, batch and probe");
  app.add_option("--export", o.export_dir,
                 "Cross-check instead of timing: write weights, batch and v as safetensors to this folder "
                 "and print loss, |g| and vᵀHv");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const hessgap::Error& e) {
    std::cerr << "bench_models: " << e.what() << "\n";
    return 2;
  }
}
