// The measurement jobs behind `hessgap traces`, `measures`, `stability` and `eval`: a typed, CLI-free
// configuration (app/ binds the flags to it), stored in the results file as JSON in sections, and the job
// that opens the session, measures on the communicator it is given and writes the results file.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <optional>
#include <string>

#include "job/session.h"
#include "measures/distance.h"
#include "measures/eval.h"
#include "measures/spectrum.h"
#include "measures/stability.h"
#include "measures/traces.h"

namespace hessgap::job {

// Every flag of the four measuring subcommands; each uses the common options and its own part.
struct MeasureConfig {
  std::string kind = "traces";  // traces | measures | stability | eval | spectrum (the subcommand)
  CommonOptions common;
  // traces: the estimator (hessian::TraceOptions; scope, rule and distribution by name, the seed from
  // common.seed) and the ranks sharing a batch's probes.
  std::string probe_scope = "joint", stop_rule = "reference", distribution = "rademacher";
  std::string estimator = "hutchinson";  // hutchinson | hutch++ | xtrace
  std::string probe_batching = "functorch";  // functorch | legacy (with --probes-in-flight > 1)
  measures::TracesOptions traces;
  // measures: W(s), the mode, where the head is measured from (auto: init for text models, zero for
  // image models, as the references), n of the bound.
  std::string init_checkpoint, mode = "joint", head_reference = "auto";
  hessian::PsdOptions psd;  // mode psd: Lanczos steps and tolerance per layer and batch
  std::int64_t train_size = 0;
  // traces and measures (joint/block): every rank takes a shard of every batch (TracesOptions::shard_batch,
  // DistanceOptions::shard_batch)
  bool shard_batch = false;
  // stability (the seed from common.seed)
  measures::StabilityOptions stability;
  // eval
  bool per_sample = false;
  // spectrum ("smallest" or "largest" by name; the seed from common.seed)
  measures::SpectrumOptions spectrum;
  std::string which = "largest", spectrum_method = "lanczos";

  // The measure's options with names resolved and the seed filled in. Throw hessgap::Error naming the
  // flag for a bad value.
  measures::TracesOptions resolved_traces() const;
  measures::DistanceOptions resolved_distance() const;  // head_reference kZero for "auto" (resolved on the model)
  measures::StabilityOptions resolved_stability() const;
  measures::SpectrumOptions resolved_spectrum() const;
  // Checks the kind and its options (not the common ones: open_session checks those, with the files).
  void validate(int world_size) const;
};

// The configuration as JSON in sections — model (checkpoint, arch, num_classes, new_head), data (the
// dataset description under "dataset"; batch_size, sample_size, sample_rule, sample_order), compute
// (device, dtype, threads, verbosity), measure (kind, seed and the kind's own options), output (out) —
// each value with its type; and back (missing keys keep their defaults; a value of the wrong type is a
// hessgap::Error naming it).
nlohmann::json to_json(const MeasureConfig& c);
MeasureConfig measure_config_from_json(const nlohmann::json& j);

// What a measurement computed: the one result of its kind (the others are empty), the same on every rank.
struct MeasureOutcome {
  std::optional<measures::TracesResult> traces;
  std::optional<measures::DistanceResult> distance;
  std::optional<measures::StabilityResult> stability;
  std::optional<measures::EvalResult> eval;
  std::optional<measures::SpectrumResult> spectrum;
  std::vector<std::string> class_names;  // of the dataset (eval's predictions)
  bool logits_float32 = true;
};

// Collective over `world`. Validates, opens the session (every rank loads its own copy of model and data),
// loads W(s) for `measures`, computes on the device's communicator, and only then has rank 0 write
// common.out (if set) — root attribute config = to_json(c) — so that an error on any rank leaves no file,
// not even a temporary one. Throws hessgap::Error for bad options or inputs (naming the flag or file).
MeasureOutcome run_measure(comm::Communicator& world, const MeasureConfig& c, const std::string& command_line);

}  // namespace hessgap::job
