// TrainConfig <-> JSON in sections (model, data, compute, train, measure, output), values with their
// types; the run id is a hash of the sections that decide the results.
#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>

#include "data/image.h"
#include "job/config_fields.h"
#include "job/train_job.h"
#include "util/error.h"
#include "util/json_bounded.h"


namespace hessgap::job {
namespace {

// One field in and out of a section, under the field's own name.
#define HG_FIELDS(X)                                                                                          \
  X(model, common.checkpoint, "checkpoint") X(model, common.arch, "arch") X(model, common.num_classes, "num_classes") \
  X(model, common.new_head, "new_head") X(model, common.allow_nonfinite, "allow_nonfinite")                       \
  X(model, reset_head, "reset_head")                                          \
  X(data, train_subset, "train_subset") X(data, test_subset, "test_subset") X(data, test_split, "test_split")       \
  X(data, augment, "augment") X(data, augment_size, "augment_size")                                                  \
  X(compute, common.device, "device") X(compute, common.dtype, "dtype") X(compute, common.threads, "threads")      \
  X(compute, sync_bn, "sync_bn") X(compute, common.verbosity, "verbosity")                                          \
  X(compute, common.allow_tf32, "allow_tf32")                                                                        \
  X(train, common.seed, "seed") X(train, common.batch_size, "batch_size") X(train, epochs, "epochs")               \
  X(train, lr, "lr") X(train, weight_decay, "weight_decay") X(train, optimizer, "optimizer")                        \
  X(train, schedule, "schedule") X(train, monitor, "monitor") X(train, step_size, "step_size")                      \
  X(train, gamma, "gamma") X(train, warm_up, "warm_up") X(train, early_stop, "early_stop")                          \
  X(train, reg_method, "reg_method") X(train, reg_norm, "reg_norm") X(train, reg_extractor, "reg_extractor")       \
  X(train, reg_predictor, "reg_predictor") X(train, scale_factor, "scale_factor")                                   \
  X(train, reg_attention, "reg_attention") X(train, reg_linear, "reg_linear")                                       \
  X(train, constraint_reweight, "constraint_reweight") X(train, reweight_noise_rate, "reweight_noise_rate")       \
  X(train, reweight_epoch, "reweight_epoch") X(train, load_matrix, "load_matrix")                                   \
  X(train, matrix_file, "matrix_file") X(train, eval_batch_size, "eval_batch_size")                                 \
  X(measure, measure_samples, "samples") X(measure, measure_batch_size, "batch_size")                               \
  X(measure, measure_trace_probes, "trace_probes") X(measure, measure_stability_repeats, "stability_repeats")       \
  X(output, out_dir, "out_dir") X(output, resume, "resume") X(output, stop_after_epochs, "stop_after_epochs")      \
  X(output, subcommand, "subcommand")

}  // namespace

nlohmann::json to_json(const TrainConfig& c) {
  nlohmann::json j;
  HG_FIELDS(HG_JSON_OUT)
  j["data"]["dataset"] = c.common.data;
  return j;
}

TrainConfig train_config_from_json(const nlohmann::json& j) {
  HG_CHECK(j.is_object(), "train configuration: expected a JSON object of sections, got " << j.type_name());
  TrainConfig c;
  for (const auto& [section, values] : j.items()) {
    HG_CHECK(values.is_object(), "train configuration: section '" << section << "' is not an object");
  }
  try {
    HG_FIELDS(HG_JSON_IN)
    if (j.contains("data") && j["data"].contains("dataset")) j["data"]["dataset"].get_to(c.common.data);
  } catch (const nlohmann::json::exception& e) {
    HG_FAIL("train configuration: " << e.what());
  }
  return c;
}

std::string run_id_of(const TrainConfig& c) {
  nlohmann::json j = to_json(c);
  // Where the run is written, how loudly, on how many threads and whether this call resumes or stops
  // early do not change its results.
  j.erase("output");
  j["compute"].erase("verbosity");
  j["compute"].erase("threads");
  // TF32 changes results, so an allowed one names another run; the default is left out of the hash so
  // that runs named before the flag existed keep their ids (a sweep skips them as done).
  if (!c.common.allow_tf32) j["compute"].erase("allow_tf32");
  return fnv1a_hex(json_text(j));  // nlohmann objects keep their keys sorted: canonical
}

void validate(const TrainConfig& f) {
  const data::DatasetSpec& d = f.common.data;
  HG_CHECK(d.noise_rate >= 0 && d.noise_rate < 1, "--label-noise must be in [0, 1) (got " << d.noise_rate << ")");
  HG_CHECK(d.valid_split >= 0 && d.valid_split < 1, "--valid-split must be in [0, 1) (got " << d.valid_split << ")");
  HG_CHECK(f.train_subset >= 0 && f.test_subset >= 0, "--train-subset and --test-subset must be >= 0");
  HG_CHECK(f.reweight_noise_rate >= 0 && f.reweight_noise_rate < 1,
           "--reweight-noise-rate must be in [0, 1) (got " << f.reweight_noise_rate << ")");
  HG_CHECK(f.epochs == -1 || f.epochs >= 1, "--epochs must be >= 1 (got " << f.epochs << ")");
  // Learning rate, weight decay and radii become floats in LibTorch's optimizers and projections: beyond
  // FLT_MAX they ended in "value cannot be converted to type float without overflow".
  constexpr double kMaxFloat = std::numeric_limits<float>::max();
  HG_CHECK(f.lr == -1 || (f.lr > 0 && std::isfinite(f.lr) && f.lr <= kMaxFloat),
           "--lr must be > 0 and at most " << kMaxFloat << " (got " << f.lr << ")");
  HG_CHECK(std::isfinite(f.weight_decay) && f.weight_decay >= 0 && f.weight_decay <= kMaxFloat,
           "--weight-decay must be >= 0 and at most " << kMaxFloat << " (got " << f.weight_decay << ")");
  // Epochs, made optimizer steps by round(warm-up x steps per epoch), an int64: 1e308 (or inf) became INT64_MIN
  // steps and an error of the schedule that named no flag. A million epochs is far beyond any run.
  constexpr double kMaxWarmUpEpochs = 1e6;
  HG_CHECK(std::isfinite(f.warm_up) && f.warm_up >= 0 && f.warm_up <= kMaxWarmUpEpochs,
           "--warm-up must be >= 0 and at most " << kMaxWarmUpEpochs << " epochs (got " << f.warm_up << ")");
  HG_CHECK(!f.out_dir.empty(), "--out-dir must not be empty");
  // 0: --crop, else --resize, else 224; bounded like --resize and --crop (larger ended in bad_alloc).
  HG_CHECK(f.augment_size >= 0 && f.augment_size <= data::kMaxImageSide,
           "--augment-size must be between 1 and " << data::kMaxImageSide << " pixels, or 0 for the default (got "
                                                   << f.augment_size << ")");
  HG_CHECK(f.common.batch_size >= 0, "--batch-size must be >= 1 (got " << f.common.batch_size << ")");
  HG_CHECK(f.reg_method == "none" || f.reg_method == "constraint" || f.reg_method == "penalty",
           "--reg-method must be constraint, penalty or none (got '" << f.reg_method << "')");
  HG_CHECK(f.reg_norm == "frob" || f.reg_norm == "inf-op", "--reg-norm must be frob or inf-op (got '" << f.reg_norm << "')");
  if (f.reg_method != "none") {
    for (const auto& [flag, value] : {std::pair<const char*, double>{"--reg-extractor", f.reg_extractor},
                                      {"--reg-predictor", f.reg_predictor}, {"--scale-factor", f.scale_factor},
                                      {"--reg-attention", f.reg_attention}, {"--reg-linear", f.reg_linear}}) {
      HG_CHECK(value > 0 && std::isfinite(value) && value <= kMaxFloat,
               flag << " must be > 0 and at most " << kMaxFloat << " (got " << value << ")");
    }
  }
  HG_CHECK(f.augment == "auto" || f.augment == "on" || f.augment == "off",
           "--augment must be auto, on or off (got '" << f.augment << "')");
  HG_CHECK(f.measure_samples >= 0 && f.measure_batch_size >= 1 && f.measure_trace_probes >= 0 &&
               f.measure_stability_repeats >= 0,
           "--measure-samples, --measure-trace-probes and --measure-stability-repeats must be >= 0, "
           "--measure-batch-size >= 1");
  HG_CHECK(f.common.dtype == "float32" || f.common.dtype == "float64",
           "--dtype must be float32 or float64 (got '" << f.common.dtype << "')");
}

#undef HG_FIELDS

}  // namespace hessgap::job
