#include "job/session.h"

#include <torch/torch.h>

#include <sys/resource.h>

#include <filesystem>
#include <thread>

#include "comm/communicator.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/registry.h"
#include "io/atomic_output.h"
#include "io/checkpoint.h"
#include "models/hf_config.h"
#include "models/registry.h"
#include "util/error.h"
#include "util/log.h"
#if HG_WITH_NCCL
#include <c10/cuda/CUDACachingAllocator.h>

#include "comm/nccl/nccl_communicator.h"
#endif

namespace hessgap::job {

namespace fs = std::filesystem;

measures::MeasureContext Session::context(comm::Communicator& world) const {
  measures::MeasureContext ctx;
  ctx.model = model.get();
  ctx.dataset = dataset.get();
  ctx.world = &world;
  ctx.dtype = dtype;
  ctx.device = device;
  ctx.plan = plan;
  return ctx;
}

PeakMemory peak_memory(const torch::Device& device) {
  PeakMemory p;
#if HG_WITH_NCCL
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    p.bytes = stats.allocated_bytes[0].peak;  // [0]: all pools
    p.source = "cuda caching allocator: peak allocated bytes on the rank's device";
    return p;
  }
#endif
  (void)device;
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  p.bytes = static_cast<std::int64_t>(usage.ru_maxrss) * 1024;  // kilobytes on Linux
  p.source = "host: peak resident set size of the rank's process (getrusage)";
  return p;
}

PeakMemory peak_memory_over(comm::Communicator& world, const torch::Device& device) {
  PeakMemory p = peak_memory(device);
  p.bytes = static_cast<std::int64_t>(world.max(static_cast<double>(p.bytes)));  // exact below 2^53 bytes
  return p;
}

int gpu_for_local_rank(int local_rank, int device_count) {
  HG_ASSERT(local_rank >= 0 && device_count > 0, "gpu_for_local_rank: rank " << local_rank << " of " << device_count);
  return local_rank % device_count;
}

std::string rank_device(const std::string& device, comm::Communicator& world) {
  if (device != "cuda") return device;
  const auto node = world.split_node();  // collective: every rank passes the same flag
  const int count = torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
  if (count == 0) return device;
  const int gpu = gpu_for_local_rank(node->rank(), count);
  if (node->size() > count && node->rank() == 0) {
    log::warn(std::to_string(node->size()) + " ranks on this node share its " + std::to_string(count) +
              " visible GPU(s): --device cuda gives each rank the GPU of its node-local rank modulo the count");
  }
  log::debug("device: cuda:" + std::to_string(gpu) + " (node-local rank " + std::to_string(node->rank()) + " of " +
             std::to_string(node->size()) + ", " + std::to_string(count) + " GPU(s) visible)");
  return "cuda:" + std::to_string(gpu);
}

Session open_session(const CommonOptions& o, comm::Communicator& world) {
  HG_CHECK(o.threads >= 1, "--threads must be >= 1 (got " << o.threads << ")");
  const unsigned cores = std::thread::hardware_concurrency();
  HG_CHECK(cores == 0 || static_cast<unsigned>(o.threads) <= cores,
           "--threads " << o.threads << " exceeds the " << cores << " cores of this machine (threads per rank; with "
                        << "several ranks per node, cores / ranks is the most that helps)");
  HG_CHECK(o.dtype == "float32" || o.dtype == "float64", "--dtype must be float32 or float64 (got '" << o.dtype << "')");
  HG_CHECK(o.num_classes >= 0 && o.num_classes <= models::kMaxLabels,
           "--num-classes must be between 0 and " << models::kMaxLabels << " (got " << o.num_classes << ")");
  HG_CHECK(o.data.resize >= 0 && o.data.crop >= 0, "--resize and --crop must be >= 0");
  HG_CHECK(o.data.resize <= data::kMaxImageSide && o.data.crop <= data::kMaxImageSide,
           "--resize and --crop must be at most " << data::kMaxImageSide << " pixels (got " << o.data.resize << " and "
                                                   << o.data.crop << ")");
  // GLUE: tokens per example, bounded as a config.json's max_position_embeddings is; larger values only
  // ended in bad_alloc (1e9: 32 GB of ids) or a saturated "Storage size calculation overflowed".
  HG_CHECK(o.data.max_length <= models::kMaxPositionEmbeddings,
           "--max-length must be at most " << models::kMaxPositionEmbeddings << " tokens (got " << o.data.max_length
                                           << ")");
  Session s;
  s.plan.batch_size = o.batch_size;
  s.plan.sample_size = o.sample_size;
  s.plan.rule = measures::parse_sample_rule(o.sample_rule);
  HG_CHECK(o.sample_order == "random" || o.sample_order == "natural",
           "--sample-order must be random or natural (got '" << o.sample_order << "')");
  s.plan.shuffle = o.shuffle || o.sample_order == "random";
  s.plan.seed = o.seed;
  s.plan.validate();
  if (!o.out.empty()) io::check_writable_output(o.out);
  torch::set_num_threads(o.threads);
  s.dtype = o.dtype == "float64" ? torch::kFloat64 : torch::kFloat32;
  const std::string device = rank_device(o.device, world);
  try {
    s.device = torch::Device(device);
  } catch (const std::exception&) {
    HG_FAIL("--device must be cpu, cuda or cuda:N (got '" << o.device << "')");
  }
  HG_CHECK(s.device.is_cpu() || s.device.is_cuda(), "--device must be cpu, cuda or cuda:N (got '" << o.device << "')");
  if (s.device.is_cuda()) {
    HG_CHECK(torch::cuda::is_available(), "--device " << o.device << ": no CUDA device is available to this build");
    HG_CHECK(s.device.index() < static_cast<int>(torch::cuda::device_count()),
             "--device " << o.device << ": only " << torch::cuda::device_count() << " CUDA device(s)");
    at::globalContext().setAllowTF32CuBLAS(o.allow_tf32);
    at::globalContext().setAllowTF32CuDNN(o.allow_tf32);
    if (o.allow_tf32) log::info("compute: TF32 allowed in matrix products and convolutions (--allow-tf32)");
    at::globalContext().setBenchmarkCuDNN(true);  // convolution double backward picks faster kernels
  }

  data::DatasetSpec spec = o.data;
  spec.split_seed = o.seed;
  const bool hf_folder = !o.checkpoint.empty() && fs::is_directory(o.checkpoint);
  if (spec.kind == "glue" && spec.tokenizer.empty() && hf_folder &&
      (fs::exists(fs::path(o.checkpoint) / "vocab.json") || fs::exists(fs::path(o.checkpoint) / "vocab.txt"))) {
    spec.tokenizer = o.checkpoint;
  }
  s.dataset = data::open_dataset(spec);
  log::info("data: " + s.dataset->describe());

  const std::int64_t classes = o.num_classes > 0 ? o.num_classes : s.dataset->num_classes();
  HG_CHECK(classes >= s.dataset->num_classes(), "--num-classes " << classes << " is smaller than the "
                                                                  << s.dataset->num_classes()
                                                                  << " classes of the data (labels would be out of range)");
  std::string arch = o.arch;
  if (arch.empty()) {
    arch = hf_folder && fs::exists(fs::path(o.checkpoint) / "config.json") ? "hf:" + o.checkpoint : "cifar-resnet20";
  }
  // A transformer is built from its config.json, which a hostile file can size at tens of GB within
  // every bound: its checkpoint is read and compared with the config first, so that a config that does
  // not describe the weights is refused before the model it describes is allocated.
  io::StateDict weights;
  const auto config = o.checkpoint.empty() ? std::nullopt : models::transformer_config_of(arch);
  const bool preread = config.has_value();
  if (preread) {
    weights = io::read_checkpoint(o.checkpoint);
    models::check_checkpoint_fits_config(*config, weights, o.checkpoint);
  }
  torch::manual_seed(o.seed);  // the initial draw (a --new-head head keeps it)
  s.model = models::make_model(arch, classes);
  if (!o.checkpoint.empty()) {
    const WeightsLoad loaded =
        load_weights(*s.model, o.checkpoint, "--checkpoint", o.new_head, preread ? &weights : nullptr);
    s.checkpoint_path = loaded.resolved_path;
    s.load_notes = loaded.notes;
    if (!loaded.new_head.empty()) {
      std::string heads;
      for (const std::string& n : loaded.new_head) heads += (heads.empty() ? "" : ", ") + n;
      s.load_notes.push_back("new head (fresh draw, seed " + std::to_string(o.seed) + "): " + heads);
    }
    if (!o.allow_nonfinite) require_finite(*s.model, o.checkpoint, "--checkpoint");
    log::info("model: " + s.model->arch() + " from " + o.checkpoint);
  }
  s.model->to(s.device, s.dtype);
  s.model->eval();
  return s;
}

void require_finite(const models::Classifier& model, const std::string& path, const std::string& flag) {
  torch::NoGradGuard ng;
  auto check = [&](const std::string& name, const torch::Tensor& t) {
    if (!t.is_floating_point() || t.numel() == 0) return;
    const std::int64_t bad = (~torch::isfinite(t)).sum().item<std::int64_t>();
    HG_CHECK(bad == 0, flag << " '" << path << "': tensor '" << name << "' holds " << bad << " NaN or infinite value(s) of "
                            << t.numel() << "; pass --allow-nonfinite to use it anyway");
  };
  for (const auto& p : model.named_parameters(/*recurse=*/true)) check(p.key(), p.value());
  for (const auto& b : model.named_buffers(/*recurse=*/true)) check(b.key(), b.value());
}

WeightsLoad load_weights(models::Classifier& model, const std::string& path, const std::string& flag,
                         bool allow_new_head, io::StateDict* preread) {
  WeightsLoad out;
  io::detect_checkpoint_format(path, &out.resolved_path);
  // As the source library's loader would: prefixes, dropped pretraining heads, config checks,
  // ViT position embeddings for the model's image size. Then strict loading.
  io::StateDict state = preread != nullptr ? std::move(*preread) : io::read_checkpoint(path);
  models::AdaptOptions ao;
  ao.source = path;
  const models::CheckpointAdaptation adapted = models::adapt_checkpoint(model, state, ao);
  for (const std::string& note : adapted.notes) log::info(flag.substr(2) + ": " + note);
  out.notes = adapted.notes;
  io::LoadOptions lo;
  lo.source = path;
  if (allow_new_head) lo.new_head_prefix = model.head_prefix();
  const io::LoadReport report = io::load_state_dict(model, state, lo);
  if (!report.new_head.empty()) {
    HG_CHECK(!report.loaded.empty(), flag << " " << path << ": no tensor of the checkpoint fits the model "
                                          << model.arch());
    log::info(flag.substr(2) + ": " + io::describe(report));
    out.new_head = report.new_head;
  }
  return out;
}

std::unique_ptr<comm::Communicator> device_world(comm::Communicator& world, const Session& s) {
#if HG_WITH_NCCL
  if (s.device.is_cuda()) {
    return comm::make_nccl_communicator(world.split(0, world.rank()), s.device.has_index() ? s.device.index() : 0);
  }
#endif
  return world.split(0, world.rank());
}

}  // namespace hessgap::job
