// hessgap-bench-data: images per second of the image pipelines of SPEC §3.2 — eval (Resize 256,
// CenterCrop 224) and train (RandomResizedCrop 224, flip) with ToTensor + Normalize — through the
// synchronous path (1 thread) and the prefetching loader (N worker threads), next to torchvision's
// DataLoader(num_workers=0) run by bench/data/reference_data.py in the same invocation, as ratios.
// Timings belong here, never in unit tests.
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "data/image_folder.h"
#include "data/loader.h"
#include "data/sampler.h"
#include "data/train_transform.h"

namespace {
using namespace hessgap::data;

struct Options {
  std::string images = std::string(HG_SOURCE_DIR) + "/assets/cifar10-test-100";
  std::string python = "/usr/bin/python3";
  int threads = static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
  std::int64_t batch = 32;
  int reps = 3;
  std::int64_t limit = 0;
  bool skip_python = false;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Timing {
  std::vector<double> seconds;
  std::int64_t images = 0;
  double rate_median() const { return images / median(seconds); }
  double rate_best() const { return images / *std::min_element(seconds.begin(), seconds.end()); }
};

// One epoch through the loader: seconds from construction to the last batch.
double epoch_seconds(std::int64_t num_batches, const BatchFn& fn, LoaderOptions lo, std::int64_t* images) {
  const auto t0 = std::chrono::steady_clock::now();
  PrefetchLoader loader(num_batches, fn, lo);
  std::int64_t n = 0;
  while (std::optional<Batch> b = loader.next()) n += b->size();
  *images = n;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One repetition of the Python reference (both pipelines); its output JSON, or "" when it failed.
std::string run_python(const Options& o) {
  const std::string cmd = o.python + " " + std::string(HG_SOURCE_DIR) + "/bench/data/reference_data.py --images '" +
                          o.images + "' --batch " + std::to_string(o.batch) + " --reps 1 --limit " +
                          std::to_string(o.limit);
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return "";
  std::string out;
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  return pclose(p) == 0 ? out : "";
}

// CONTROL: what `threads` threads give on this host right now. The same fixed work (the eval transform
// of one decoded image, `per_thread` times) on 1 thread and then on `threads` threads at once; the ratio
// of the throughputs is the ceiling for the loader's speed-up (below `threads` on a shared VM).
double control_speedup(const Image& img, const EvalTransform& t, int threads, int per_thread) {
  auto rate = [&](int nt) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int k = 0; k < nt; ++k) {
      pool.emplace_back([&] {
        for (int i = 0; i < per_thread; ++i) apply_eval_transform(img, t);
      });
    }
    for (std::thread& th : pool) th.join();
    return nt * per_thread / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const double one = rate(1);
  return rate(threads) / one;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"hessgap-bench-data: image pipeline throughput, hessgap vs torchvision"};
  app.add_option("--images", o.images, "ImageFolder root (default: assets/cifar10-test-100, 1000 JPEGs)");
  app.add_option("--threads", o.threads, "Loader worker threads of the prefetching runs");
  app.add_option("--batch", o.batch, "Batch size");
  app.add_option("--reps", o.reps, "Epochs timed per configuration");
  app.add_option("--limit", o.limit, "Use the first N images only (0 = all)");
  app.add_option("--python", o.python, "Python with torch and torchvision for the reference");
  app.add_flag("--skip-python", o.skip_python, "Do not run the Python reference");
  CLI11_PARSE(app, argc, argv);

  // One intra-op thread everywhere: parallelism comes from the loader's workers only, and the Python
  // reference runs with torch.set_num_threads(1) too.
  at::set_num_threads(1);
  ImageFolderOptions fo;
  fo.num_threads = 1;
  fo.transform.resize = 256;
  fo.transform.crop = 224;
  const ImageFolderDataset ds(o.images, fo);
  std::vector<std::int64_t> ids;
  const std::int64_t n = o.limit > 0 ? std::min(o.limit, ds.size()) : ds.size();
  for (std::int64_t i = 0; i < n; ++i) ids.push_back(i);
  SamplerOptions eval_order;
  eval_order.batch_size = o.batch;
  eval_order.shuffle = false;
  SamplerOptions train_order = eval_order;
  train_order.shuffle = true;
  const auto eval_batches = ShardedSampler(ids, eval_order).shards(0);
  const auto train_batches = ShardedSampler(ids, train_order).shards(1);
  const TrainTransform tt;

  const BatchFn eval_fn = dataset_batches(ds, eval_batches);
  const BatchFn train_fn = [&](std::int64_t b) {
    return augmented_batch(ds, train_batches[static_cast<std::size_t>(b)], tt, 0, 1);
  };
  const LoaderOptions sync{0, 1};
  const LoaderOptions prefetch{o.threads, 2 * o.threads};
  const std::vector<std::string> names = {"eval 1 thread", "eval " + std::to_string(o.threads) + " threads + prefetch",
                                          "train 1 thread",
                                          "train " + std::to_string(o.threads) + " threads + prefetch"};
  std::vector<Timing> timings(4);
  std::cerr << "hessgap: " << ds.describe() << ", " << n << " images, batch " << o.batch << ", " << o.reps
            << " reps\n";
  std::map<std::string, Timing> py;
  double py_sum = 0.0;
  bool python_ok = !o.skip_python;
  std::vector<double> control;
  const Image control_image = decode_image(ds.file(0));
  for (int r = 0; r < o.reps; ++r) {
    // Alternate the configurations (and the Python reference) within each repetition, so that changes of
    // the host's load hit them alike.
    for (int c = 0; c < 4; ++c) {
      const bool train = c >= 2;
      const std::int64_t nb = static_cast<std::int64_t>(train ? train_batches.size() : eval_batches.size());
      timings[c].seconds.push_back(
          epoch_seconds(nb, train ? train_fn : eval_fn, c % 2 ? prefetch : sync, &timings[c].images));
    }
    control.push_back(control_speedup(control_image, fo.transform, o.threads, 100));
    if (!python_ok) continue;
    const std::string out = run_python(o);
    if (out.empty()) {
      std::cerr << "python reference (" << o.python << " bench/data/reference_data.py) failed or is missing; "
                << "ratios against it are left out\n";
      python_ok = false;
      py.clear();
      continue;
    }
    const nlohmann::json j = nlohmann::json::parse(out);
    for (const char* k : {"eval", "train"}) {
      py[k].seconds.push_back(j[k]["seconds"][0].get<double>());
      py[k].images = j[k]["images"];
    }
    py_sum = j["eval_first_batch_sum"];
  }
  // The loader's overlap on waiting-bound work (a batch function that sleeps 5 ms, as a slow file system
  // would make it wait): independent of free cores, so it shows the pipelining even on a busy host.
  const BatchFn sleepy = [](std::int64_t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return Batch{};
  };
  std::int64_t unused = 0;
  const double sleepy_sync = epoch_seconds(40, sleepy, sync, &unused);
  const double sleepy_prefetch = epoch_seconds(40, sleepy, prefetch, &unused);
  const double hg_sum = ds.get_batch(eval_batches[0]).inputs.to(torch::kFloat64).sum().item<double>();

  std::cout << std::fixed << std::setprecision(1);
  std::cout << "\n| configuration | images/s (median) | images/s (best) |\n|---|---:|---:|\n";
  for (int c = 0; c < 4; ++c) {
    std::cout << "| hessgap " << names[c] << " | " << timings[c].rate_median() << " | " << timings[c].rate_best()
              << " |\n";
  }
  for (const auto& [k, t] : py) {
    std::cout << "| torchvision " << k << ", DataLoader num_workers=0 | " << t.rate_median() << " | " << t.rate_best()
              << " |\n";
  }
  std::cout << std::setprecision(2) << "\n| ratio (medians) | value |\n|---|---:|\n";
  if (!py.empty()) {
    std::cout << "| eval: hessgap 1 thread / torchvision | " << timings[0].rate_median() / py["eval"].rate_median()
              << " |\n";
    std::cout << "| train: hessgap 1 thread / torchvision | " << timings[2].rate_median() / py["train"].rate_median()
              << " |\n";
    std::cout << "| eval: hessgap " << o.threads << " threads / torchvision | "
              << timings[1].rate_median() / py["eval"].rate_median() << " |\n";
    std::cout << "| train: hessgap " << o.threads << " threads / torchvision | "
              << timings[3].rate_median() / py["train"].rate_median() << " |\n";
  }
  std::cout << "| eval: hessgap " << o.threads << " threads / 1 thread | "
            << timings[1].rate_median() / timings[0].rate_median() << " |\n";
  std::cout << "| train: hessgap " << o.threads << " threads / 1 thread | "
            << timings[3].rate_median() / timings[2].rate_median() << " |\n";
  std::cout << "| loader on waiting-bound batches (5 ms sleep each): " << o.threads << " workers / synchronous | "
            << sleepy_sync / sleepy_prefetch << " |\n";
  std::cout << "| CONTROL: the host's speed-up at " << o.threads << " threads (fixed work) | " << median(control)
            << " |\n";
  std::cout << std::setprecision(6) << "\ncross-check, sum of the first eval batch: hessgap " << hg_sum;
  if (!py.empty()) std::cout << ", torchvision " << py_sum;
  std::cout << "\n";
  return 0;
}
