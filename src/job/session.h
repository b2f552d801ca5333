// What every job starts from: its model and data options (CLI-free: app/ binds flags to them), the
// model and dataset they open on a rank, checkpoint loading as the source library would, and the
// communicator a device computes over.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "data/registry.h"
#include "io/checkpoint.h"
#include "measures/measure_context.h"

namespace hessgap::data {
class Dataset;
}
namespace hessgap::models {
class Classifier;
}

namespace hessgap::job {

struct CommonOptions {
  std::string checkpoint;          // --checkpoint
  // "": hf:<checkpoint> when --checkpoint is a folder with a config.json, else cifar-resnet20.
  std::string arch;
  std::int64_t num_classes = 0;    // 0: the dataset's
  bool new_head = false;           // --new-head: a missing / differently sized head keeps a fresh draw
  bool allow_nonfinite = false;    // --allow-nonfinite: load weights holding NaN or Inf (refused otherwise)
  // --data, --data-format, --split, --resize, ... bind straight to the dataset description
  // (split_seed follows --seed).
  data::DatasetSpec data;
  std::int64_t batch_size = 4;
  std::int64_t sample_size = 100;
  std::string sample_rule = "reference";
  // --sample-order: "random" (a permutation keyed by --seed, as the reference's seeded sampler, SPEC
  // §3.2; the default of traces, measures, stability and run) or "natural" (the dataset's order; eval's
  // default). --shuffle is the old spelling of "random" and excludes --sample-order.
  std::string sample_order = "random";
  bool shuffle = false;
  std::uint64_t seed = 0;
  std::string dtype = "float32";
  std::string device = "cpu";      // cpu | cuda | cuda:N
  // --allow-tf32: let cuBLAS and cuDNN use TF32 on a CUDA device (off: it moves HVPs at the 1e-3
  // level); no effect on the CPU.
  bool allow_tf32 = false;
  std::string out;                 // --out FILE.h5 (empty: no file)
  int threads = 1;                 // intra-op threads per rank
  int verbosity = 1;
};

// Everything a measure needs, loaded on this rank (not collective: every rank loads its own copy).
struct Session {
  std::shared_ptr<models::Classifier> model;
  std::unique_ptr<data::Dataset> dataset;
  std::string checkpoint_path;  // resolved
  std::vector<std::string> load_notes;  // what loading changed: adaptations, a new head (recorded in /model)
  measures::MeasureContext context(comm::Communicator& world) const;
  measures::PlanOptions plan;
  torch::Dtype dtype = torch::kFloat32;
  torch::Device device = torch::kCPU;
};

// The communicator the measures use: `world` itself on the CPU; on a CUDA device of a build with
// NCCL, an NCCL communicator over the same ranks (tensor reductions on the GPU). Collective.
std::unique_ptr<comm::Communicator> device_world(comm::Communicator& world, const Session& s);

// Validates the flags (throws hessgap::Error naming the flag), checks that --out is writable,
// opens the dataset and builds the model from --arch and the checkpoint's weights (strict), on
// rank_device(o.device, world). Collective over `world` when --device is "cuda" (see rank_device).
Session open_session(const CommonOptions& o, comm::Communicator& world);

// The device this rank computes on, as a --device value. "cuda" without an index means this rank's
// GPU: the node-local rank (world.split_node(), the ranks sharing this host's memory, whatever the
// launcher: mpirun, srun or another) modulo the GPUs visible to the process, so that with
// CUDA_VISIBLE_DEVICES narrowed to one GPU per rank (srun --gpus-per-task=1) it is cuda:0, and with all
// of a node's GPUs visible (mpirun, srun --gpus-per-node) rank k of a node takes GPU k. "cpu" and
// "cuda:N" are returned as given. Collective over `world` for "cuda" (every rank passes the same flag);
// without a CUDA device "cuda" is returned unchanged (open_session then says there is none).
std::string rank_device(const std::string& device, comm::Communicator& world);

// This rank's peak memory so far, in bytes, and what was measured. On a CUDA device (builds with NCCL,
// i.e. a CUDA LibTorch): the caching allocator's peak of allocated bytes on it (the tensors; its cache
// and the CUDA context are not counted). On the CPU: the process's peak resident set size
// (getrusage), LibTorch's own footprint included. Not collective.
struct PeakMemory {
  std::int64_t bytes = 0;
  std::string source;  // recorded beside the figure in results files
};
PeakMemory peak_memory(const torch::Device& device);

// peak_memory(device) of the rank with the largest, on every rank (collective over `world`).
PeakMemory peak_memory_over(comm::Communicator& world, const torch::Device& device);

// The GPU index of node-local rank `local_rank` among `device_count` (> 0) visible GPUs: local_rank
// modulo device_count (ranks beyond the count share GPUs, which rank_device warns about).
int gpu_for_local_rank(int local_rank, int device_count);

// What load_weights did: the checkpoint's resolved path (a folder's weights file), one note per
// change (adaptations, for the log and /model/load_notes), and the head tensors that kept the
// model's own values (allow_new_head only).
struct WeightsLoad {
  std::string resolved_path;
  std::vector<std::string> notes;
  std::vector<std::string> new_head;
};

// Loads the checkpoint at `path` (any format io::read_checkpoint reads) into `model` as the source
// library's loader would: models::adapt_checkpoint (prefixes such as the reference's
// feature_extractor. / pred_head., dropped pretraining heads, config.json checks, ViT position
// embeddings), then io::load_state_dict, strict. With allow_new_head the head (model.head_prefix())
// may be missing or of another size and keeps the model's values; at least one tensor must load.
// `flag` (with its dashes: "--checkpoint", "--init-checkpoint") names the flag in messages and logs. Not
// collective. Throws hessgap::Error naming the file and the tensors at fault.
// `preread`: the checkpoint's tensors when the caller has read them already (moved from), else nullptr.
WeightsLoad load_weights(models::Classifier& model, const std::string& path, const std::string& flag,
                         bool allow_new_head, io::StateDict* preread = nullptr);

// Throws hessgap::Error naming `flag`, the file and the first tensor (parameter or buffer) of `model` that
// holds a NaN or an infinity, with how many of its values do ("pass --allow-nonfinite to use it anyway").
// Not collective.
void require_finite(const models::Classifier& model, const std::string& path, const std::string& flag);

}  // namespace hessgap::job
