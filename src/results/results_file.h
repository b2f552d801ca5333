// The results layout (docs/output-format.md): one HDF5 file per invocation, written by rank 0 under
// a temporary name and renamed when complete. This file and docs/output-format.md are the only
// places that know the layout; analysis/hessgap_results.py reads it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/label_noise.h"
#include "measures/distance.h"
#include "measures/eval.h"
#include "measures/spectrum.h"
#include "measures/stability.h"
#include "measures/traces.h"
#include "train/trainer.h"

namespace hessgap::io {
class AtomicOutput;
class H5File;
}  // namespace hessgap::io

namespace hessgap::results {

// Identity of the run, stored as root attributes.
struct RunInfo {
  std::string subcommand;
  std::string command_line;
  std::string config_json;
  int world_size = 1;
  std::string backend;
  std::string arch, checkpoint, data_description;
  // How the measured samples were chosen: "random" (a permutation keyed by sample_seed) or "natural";
  // /data attributes sample_order and sample_seed when non-empty.
  std::string sample_order;
  std::uint64_t sample_seed = 0;
  std::vector<std::string> load_notes;  // /model/load_notes when non-empty
  std::vector<std::string> layers;
  std::string run_id;  // root attributes run_id, status and complete when set (train runs)
  bool complete = true;  // false: status "partial" (a train run cut short by --stop-after-epochs)
  // Root attributes peak_memory_bytes and peak_memory_source when bytes >= 0 (job::peak_memory_over).
  std::int64_t peak_memory_bytes = -1;
  std::string peak_memory_source;
};

// What /train records besides the trainer's result.
struct TrainRecordInfo {
  const train::TrainerOptions* options = nullptr;
  std::int64_t num_train = 0, num_valid = 0, num_test = 0;
  std::string out_dir;
};

class ResultsFile {
 public:
  // path empty → a no-op writer (every method does nothing). Not collective: rank 0 only.
  ResultsFile(const std::string& path, const RunInfo& info);
  ~ResultsFile();
  void write_traces(const measures::TracesResult& r, const measures::TracesOptions& opts);
  // `group`: "/measures" (the measures subcommand; train's joint mode) or "/measures_block" (train's
  // block mode beside it).
  void write_distance(const measures::DistanceResult& r, const measures::DistanceOptions& opts,
                      const std::string& init_checkpoint, const std::string& group = "/measures");
  void write_stability(const measures::StabilityResult& r, const measures::StabilityOptions& opts);
  // /spectrum: eigenvalues, residuals, the Lanczos tridiagonal, SLQ nodes and weights, eigenvectors.
  void write_spectrum(const measures::SpectrumResult& r, const measures::SpectrumOptions& opts);
  // With per-sample rows, also /eval/samples/*; logits are stored as float32 when `logits_float32`
  // (the compute dtype was float32, so nothing is lost), else float64. Unlabelled data (r.labelled
  // false): no loss, accuracy or correct count (the /eval attribute labelled = 0 and a note say so).
  void write_eval(const measures::EvalResult& r, const std::vector<std::string>& class_names = {},
                  bool logits_float32 = true);
  // /labels: clean and used labels, the relabelled mask, the realised noise rate, the clean -> used
  // count matrix and the noise settings.
  void write_labels(const data::LabelAudit& a, std::int64_t num_classes, const std::vector<std::string>& class_names);
  // /train: history per step and per epoch, the final metrics of the best weights and the generalization
  // gap, the optimisation settings (train_results.cpp).
  void write_train(const train::TrainResult& r, const TrainRecordInfo& info);
  // /data/skipped_ids and the /data attribute num_skipped (--skip-unreadable).
  void write_skipped(const std::vector<std::int64_t>& ids);
  // Closes the file and renames it into place. Without commit the temporary file is removed.
  void commit();
  bool enabled() const { return file_ != nullptr; }

 private:
  std::unique_ptr<io::AtomicOutput> out_;
  std::unique_ptr<io::H5File> file_;
};

}  // namespace hessgap::results
