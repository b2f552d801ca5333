#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <iomanip>
#include <numeric>
#include <sstream>

#include "job/train_job.h"
#include "io/h5.h"
#include "train/dual_t.h"
#include "hessian/quadratic_forms.h"
#include "measures/measure_context.h"
#include "job/data_checks.h"
#include "job/session.h"
#include "results/results_file.h"
#include "comm/communicator.h"
#include "comm/gather.h"
#include "data/dataset.h"
#include "data/domainnet.h"
#include "data/label_noise.h"
#include "data/registry.h"
#include "data/image_folder.h"
#include "data/sampler.h"
#include "data/train_transform.h"
#include "data/subset_dataset.h"
#include "io/atomic_output.h"
#include "io/checkpoint.h"
#include "models/classifier.h"
#include "models/cifar_resnet.h"
#include "models/registry.h"
#include "models/resnet.h"
#include "models/transformer_text.h"
#include "models/vit.h"
#include "train/reweight.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/json_bounded.h"
#include "util/log.h"
#include "util/rng.h"

namespace fs = std::filesystem;

namespace hessgap::job {
namespace {

enum class Family { kResNet, kViT, kText, kOther };

// By model type, not name: an hf:FOLDER architecture is named after its folder.
Family family_of(const models::Classifier& m) {
  if (dynamic_cast<const models::TextTransformer*>(&m) != nullptr) return Family::kText;
  if (dynamic_cast<const models::VisionTransformer*>(&m) != nullptr) return Family::kViT;
  if (dynamic_cast<const models::ResNet*>(&m) != nullptr || dynamic_cast<const models::CifarResNet*>(&m) != nullptr) {
    return Family::kResNet;
  }
  return Family::kOther;
}


// The condition number of R's C (largest / smallest singular value): how much the reweighting
// amplifies label noise into gradient noise.
double condition_number(const torch::Tensor& c) {
  const torch::Tensor s = std::get<1>(torch::svd(c));
  return (s.max() / s.min()).item<double>();
}

// What the folder already holds: "" (nothing of ours), or the run id recorded in last.h5 / epoch_0.h5.
std::string existing_run(const std::string& dir) {
  for (const char* name : {"last.h5", "epoch_0.h5"}) {
    const fs::path p = fs::path(dir) / name;
    if (!fs::exists(p)) continue;
    const auto meta = io::read_checkpoint_metadata_h5(p.string());  // the tensors are not needed
    return meta.count("run_id") ? meta.at("run_id") : std::string("(unknown)");
  }
  return fs::exists(fs::path(dir) / "run.h5") ? std::string("(unknown)") : std::string();
}


// The transition matrix of --load-matrix (SPEC §5.3): read from f.matrix_file when it exists; else a first
// pass trains plain cross-entropy without constraints (same optimizer, schedule, epochs and data) into
// <out-dir>/dual_t, its best weights predict the training ids (eval transform, eval mode), and the Dual-T
// estimator turns the probabilities and the noisy labels into C, written to f.matrix_file. Unlike the
// reference, the main run then starts again from the pretrained weights with a fresh optimizer and
// schedule (recorded in the log and /train). Collective.
torch::Tensor dual_t_matrix(comm::Communicator& world, const TrainConfig& f, const std::string& command_line,
                            const train::TrainData& td, std::int64_t K, const TrainHooks& hooks) {
  const std::string path = f.matrix_file.empty() ? (fs::path(f.out_dir) / "transition_matrix.h5").string() : f.matrix_file;
  if (!fs::exists(path)) {
    TrainConfig first = f;
    first.load_matrix = false;
    first.constraint_reweight = false;
    first.reg_method = "none";
    first.measure_samples = 0;
    first.out_dir = (fs::path(f.out_dir) / "dual_t").string();
    log::info("--load-matrix: no " + path + "; estimating it (Dual-T) after a plain first pass in " + first.out_dir);
    TrainOutcome pass = run_train(world, first, command_line, hooks);
    // Each rank predicts its shard of the training ids; the rows are gathered and put back in id order
    // (the estimator's anchors take the first maximum, so the order must not depend on the rank count).
    models::Classifier& m = *pass.session.model;
    m.eval();
    torch::NoGradGuard ng;
    data::SamplerOptions so;
    so.batch_size = 256;
    so.shuffle = false;
    const data::ShardedSampler sampler(td.train_ids, so, world.rank(), world.size());
    std::vector<std::int64_t> my_ids;
    std::vector<double> my_rows;
    for (const auto& shard : sampler.shards(0)) {
      if (shard.empty()) continue;
      const data::Batch b = td.train->get_batch(shard).to(pass.session.device, pass.session.dtype);
      const torch::Tensor p = torch::softmax(m.forward(b).to(torch::kFloat64), 1).cpu().contiguous();
      my_ids.insert(my_ids.end(), shard.begin(), shard.end());
      my_rows.insert(my_rows.end(), p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
    }
    const auto ids = comm::all_gather_values(world, my_ids);
    const auto rows = comm::all_gather_values(world, my_rows);
    std::map<std::int64_t, std::size_t> position;
    for (std::size_t i = 0; i < td.train_ids.size(); ++i) position[td.train_ids[i]] = i;
    torch::Tensor probs = torch::empty({static_cast<std::int64_t>(td.train_ids.size()), K}, torch::kFloat64);
    std::vector<std::int64_t> noisy(td.train_ids.size());
    for (std::size_t r = 0; r < ids.size(); ++r) {
      for (std::size_t i = 0; i < ids[r].size(); ++i) {
        const std::size_t at = position.at(ids[r][i]);
        std::copy_n(rows[r].data() + i * static_cast<std::size_t>(K), K, probs.data_ptr<double>() + at * static_cast<std::size_t>(K));
        noisy[at] = td.train_labels[static_cast<std::size_t>(ids[r][i])];
      }
    }
    const train::DualT est = train::estimate_dual_t(probs, noisy);
    if (world.rank() == 0) {
      io::AtomicOutput out(path);
      {
        io::H5File h = io::H5File::create(out.temp_path());
        const torch::Tensor c = est.c.contiguous();
        h.write("/transition_matrix", c.data_ptr<double>(), {K, K},
                "Dual-T estimate of C[y_true][y_noisy] = T_club . T_spade (SPEC 5.3)");
        const torch::Tensor ts = est.t_spade.contiguous(), tc = est.t_club.contiguous();
        h.write("/t_spade", ts.data_ptr<double>(), {K, K}, "T_spade: rows of P(noisy | predicted)");
        h.write("/t_club", tc.data_ptr<double>(), {K, K}, "T_club: anchor rows (with the reference's in-place zeroing)");
        h.set_attr("/", "source_run", pass.run_id);
        h.close();
      }
      out.commit();
      log::info("--load-matrix: Dual-T estimate written to " + path);
    }
    world.barrier();
  }
  io::H5File h = io::H5File::open_read(path);
  HG_CHECK(h.is_dataset("/transition_matrix"), "--load-matrix: '" << path << "' has no /transition_matrix");
  const io::DatasetInfo info = h.info("/transition_matrix");
  HG_CHECK(info.shape.size() == 2 && info.shape[0] == K && info.shape[1] == K,
           "--load-matrix: the transition matrix in '" << path << "' is " << info.shape.size() << "-D "
                                                       << (info.shape.empty() ? 0 : info.shape[0]) << " x "
                                                       << (info.shape.size() > 1 ? info.shape[1] : 0) << ", the model has "
                                                       << K << " classes");
  torch::Tensor c = torch::empty({K, K}, torch::kFloat64);
  h.read_into("/transition_matrix", c.data_ptr<double>(), c.numel());
  return c;
}

}  // namespace

TrainOutcome run_train(comm::Communicator& world, const TrainConfig& f, const std::string& command_line,
                       const TrainHooks& hooks) {
  const std::string config_json = json_text(to_json(f));
    CommonOptions common = f.common;
  data::DatasetSpec spec = common.data;
  validate(f);
    const std::string run_id = run_id_of(f);
  log::set_run(run_id.substr(0, 8));

  // An out-dir of another run is refused before anything is written (every rank checks the same files).
  bool resume = false;
  if (fs::exists(f.out_dir)) {
    HG_CHECK(fs::is_directory(f.out_dir), "--out-dir '" << f.out_dir << "' exists and is not a folder");
    const std::string other = existing_run(f.out_dir);
    if (!other.empty()) {
      HG_CHECK(other == run_id || f.resume, "--out-dir '" << f.out_dir << "' holds the files of run " << other
                                                          << ", this configuration is run " << run_id
                                                          << ": choose another --out-dir, or pass --resume to continue that run "
                                                             "under this configuration");
      resume = fs::exists(fs::path(f.out_dir) / "last.h5");
    }
  }
  if (world.rank() == 0) {
    fs::create_directories(f.out_dir);
    io::check_writable_output((fs::path(f.out_dir) / "run.h5").string());
  }
  world.barrier();  // the folder exists before any rank goes on (an error above ends every rank)

  // The training split, clean: noise goes on the training ids only, after the validation split.
  data::DatasetSpec train_spec = spec;
  train_spec.split = "train";
  train_spec.noise_rate = 0;
  common.data = train_spec;
  if (common.batch_size == 0) common.batch_size = 32;  // replaced below for text
  Session s = open_session(common, world);
  require_samples(*s.dataset, train_spec, "training");
  require_positions(*s.model, train_spec);
  models::Classifier& model = *s.model;
  const Family family = family_of(model);
  const bool text = family == Family::kText;
  if (f.common.batch_size == 0 && text) common.batch_size = 8;
  if (f.reset_head) {
    torch::manual_seed(common.seed);
    models::reset_head(model);
    s.load_notes.push_back("head re-initialised (--reset-head, seed " + std::to_string(common.seed) + ")");
  }
  model.to(s.device, s.dtype);

  data::DatasetSpec test_spec = spec;
  test_spec.noise_rate = 0;
  test_spec.split = f.test_split != "auto" ? f.test_split : (spec.kind == "glue" ? "dev" : "test");
  if (spec.kind == "glue" && test_spec.tokenizer.empty() && fs::is_directory(common.checkpoint)) {
    test_spec.tokenizer = common.checkpoint;  // as open_session does for the training split
  }
  std::unique_ptr<data::Dataset> test = data::open_dataset(test_spec);
  require_samples(*test, test_spec, "testing (--test-split " + test_spec.split + ")");
  HG_CHECK(test->num_classes() <= model.num_classes(), "the test split has " << test->num_classes()
                                                                             << " classes, the model " << model.num_classes());

  // Ids: the first --train-subset of the split, then the keyed validation split of those; or, for the
  // datasets with a validation split of their own (data::has_own_valid_split), all of them, and that
  // split validates (--valid-split 0: none).
  const std::int64_t n_train = f.train_subset > 0 ? std::min(f.train_subset, s.dataset->size()) : s.dataset->size();
  const bool own_valid = data::has_own_valid_split(spec.kind);
  const data::TrainValidSplit split = data::split_train_valid(n_train, own_valid ? 0.0 : spec.valid_split, common.seed);
  train::TrainData td;
  td.train = s.dataset.get();
  td.train_ids = split.train;
  td.valid_ids = split.valid;
  td.test = test.get();
  std::unique_ptr<data::Dataset> valid;
  if (own_valid && spec.valid_split > 0) {
    data::DatasetSpec valid_spec = spec;
    valid_spec.split = "val";
    valid_spec.noise_rate = 0;
    valid_spec.label_source = "";  // the split's default: DomainNet's true labels
    valid = data::open_dataset(valid_spec);
    td.valid = valid.get();
    td.valid_ids.resize(static_cast<std::size_t>(valid->size()));
    std::iota(td.valid_ids.begin(), td.valid_ids.end(), std::int64_t{0});
    log::info("validation: the dataset's own val split (" + std::to_string(valid->size()) + " samples)");
  }
  const std::int64_t n_test = f.test_subset > 0 ? std::min(f.test_subset, test->size()) : test->size();
  // The test split is its first n_test samples from here on (evaluation and measurement alike).
  if (n_test < test->size()) test = std::make_unique<data::SubsetDataset>(std::move(test), n_test);
  td.test_ids.resize(static_cast<std::size_t>(n_test));
  std::iota(td.test_ids.begin(), td.test_ids.end(), std::int64_t{0});
  // Every split training uses needs labels: an unlabelled one (GLUE's test.tsv layout, labels -1) ended
  // in LibTorch's "Target -1 is out of bounds", or a "test accuracy nan" with exit 0. Labels are read
  // without decoding.
  auto require_labelled = [](const data::Dataset& d, const std::vector<std::int64_t>& ids, const std::string& role,
                             const std::string& split) {
    std::int64_t missing = 0;
    for (std::int64_t id : ids) missing += d.label(id) < 0 ? 1 : 0;
    HG_CHECK(missing == 0, role << " needs labelled data, but " << missing << " of the " << ids.size()
                                << " samples of the '" << split << "' split (" << d.describe()
                                << ") have none (label -1: a test split whose labels are hidden, as GLUE's test.tsv)");
  };
  require_labelled(*s.dataset, td.train_ids, "training", train_spec.split);
  require_labelled(td.valid != nullptr ? *td.valid : *s.dataset, td.valid_ids, "validation",
                   td.valid != nullptr ? std::string("val") : train_spec.split);
  require_labelled(*test, td.test_ids, "testing (--test-split)", test_spec.split);
  // Augmentation: torchvision's RandomResizedCrop + flip with draws keyed by (seed, epoch, sample id), so
  // a sample's crop is the same at any rank count and on a resumed run.
  const auto* folder = dynamic_cast<const data::ImageFolderDataset*>(s.dataset.get());
  HG_CHECK(f.augment != "on" || folder != nullptr,
           "--augment on: training augmentation needs an image folder (--data-format imagefolder), not "
               << spec.kind);
  if (folder != nullptr && f.augment != "off") {
    data::TrainTransform tt;
    const auto& eval = folder->options().transform;
    tt.size = f.augment_size > 0 ? f.augment_size : eval.crop > 0 ? eval.crop : eval.resize > 0 ? eval.resize : 224;
    tt.mean = eval.mean;
    tt.stddev = eval.stddev;
    tt.validate();
    const std::uint64_t seed = common.seed;
    td.train_batch = [folder, tt, seed](const std::vector<std::int64_t>& ids, std::int64_t epoch) {
      return data::augmented_batch(*folder, ids, tt, seed, epoch);
    };
    log::info("augmentation: RandomResizedCrop(" + std::to_string(tt.size) + ") + horizontal flip, keyed by (seed, epoch, sample)");
  }
  std::vector<std::int64_t> clean(static_cast<std::size_t>(s.dataset->size()));
  for (std::size_t i = 0; i < clean.size(); ++i) clean[i] = s.dataset->label(static_cast<std::int64_t>(i));
  td.train_labels = clean;
  data::LabelAudit audit;
  audit.description = s.dataset->describe();
  // DomainNet's weak (majority-vote) labels are the labels trained on, the true ones the clean ones.
  const auto* domainnet = dynamic_cast<const data::DomainNetDataset*>(&data::source_dataset(*s.dataset));
  if (domainnet != nullptr && domainnet->label_source() == "weak") {
    HG_CHECK(spec.noise_rate == 0, "--label-noise " << spec.noise_rate << " with DomainNet's weak labels: the training "
                                                    << "labels are already noisy; pass --label-source true for synthetic "
                                                       "noise on the true labels");
    audit = data::audit_labels(*s.dataset);
    td.clean_labels = audit.clean;
    log::info("weak labels: " + std::to_string(audit.num_noisy) + " of " + std::to_string(audit.used.size()) +
              " differ from the true labels (realised rate " + std::to_string(audit.realised_rate) + ")");
  }
  if (spec.noise_rate > 0) {
    const data::LabelNoiseOptions lo = data::label_noise_options(spec);
    const data::LabelNoise noise(td.train_ids, s.dataset->num_classes(), lo);
    std::vector<std::int64_t> clean_train(td.train_ids.size());
    for (std::size_t i = 0; i < clean_train.size(); ++i) clean_train[i] = clean[static_cast<std::size_t>(td.train_ids[i])];
    const data::NoisyLabels noisy = data::apply_label_noise(noise, td.train_ids, clean_train);
    audit.relabelled.assign(clean.size(), 0);
    for (std::size_t i = 0; i < td.train_ids.size(); ++i) {
      td.train_labels[static_cast<std::size_t>(td.train_ids[i])] = noisy.labels[i];
      audit.relabelled[static_cast<std::size_t>(td.train_ids[i])] = noisy.relabelled[i];
    }
    audit.source = "synthetic";
    audit.noise = lo;
    audit.clean = clean;
    audit.used = td.train_labels;
    for (std::size_t i = 0; i < clean.size(); ++i) audit.num_noisy += clean[i] != audit.used[i];
    audit.realised_rate = td.train_ids.empty() ? 0.0 : static_cast<double>(audit.num_noisy) / static_cast<double>(td.train_ids.size());
    log::info("label noise: " + std::to_string(audit.num_noisy) + " of " + std::to_string(td.train_ids.size()) +
              " training labels changed (realised rate " + std::to_string(audit.realised_rate) + ")");
  }

  train::TrainerOptions o;
  o.epochs = f.epochs >= 0 ? f.epochs : (text ? 5 : 30);
  o.batch_size = common.batch_size;
  o.eval_batch_size = f.eval_batch_size;
  o.optimizer.name = f.optimizer != "auto" ? f.optimizer : (text ? "adamw" : "adam");
  o.optimizer.lr = f.lr != -1 ? f.lr : (text ? 2e-5 : 1e-4);
  o.optimizer.eps = o.optimizer.name == "adamw" ? 1e-6 : 1e-8;
  o.optimizer.weight_decay = f.weight_decay;
  o.schedule = f.schedule != "auto" ? f.schedule : (text ? "linear" : "step");
  o.step_size = f.step_size;
  o.gamma = f.gamma;
  o.warmup_epochs = f.warm_up;
  o.monitor = f.monitor != "auto" ? f.monitor : (text ? "min" : "max");
  o.patience = f.early_stop;
  o.reg_method = f.reg_method;
  o.norm = train::parse_norm(f.reg_norm);
  const std::string head = model.head_prefix();
  if (f.reg_method == "penalty" && text) {
    o.groups = train::text_penalty_groups(f.reg_extractor, f.reg_predictor);
  } else if (text) {
    HG_CHECK(o.norm == train::Norm::kFrobenius || f.reg_method == "none",
             "--reg-norm inf-op is not supported for text models (the reference adds no constraint then); use frob");
    o.groups = train::text_groups(f.reg_attention, f.reg_linear, f.reg_predictor);
  } else if (family == Family::kViT) {
    o.groups = train::vit_groups(f.reg_extractor, f.reg_predictor, head);
  } else {
    o.groups = train::resnet_groups(f.reg_extractor, f.reg_predictor, f.scale_factor, head);
  }
  const std::int64_t K = model.num_classes();
  HG_CHECK(!f.load_matrix || f.constraint_reweight, "--load-matrix needs --constraint-reweight (it replaces the "
                                                   "synthetic transition matrix by the Dual-T estimate)");
  if (f.constraint_reweight) {
    torch::Tensor c;
    std::string source;
    if (f.load_matrix) {
      c = dual_t_matrix(world, f, command_line, td, K, hooks);
      source = "Dual-T estimate";
    } else {
      HG_CHECK(!train::degenerate_reweight_rate(K, f.reweight_noise_rate),
               "--reweight-noise-rate " << f.reweight_noise_rate << " is degenerate for " << K
                                        << " classes: the transition matrix is singular or inverts the labels at rho >= (K-1)/K = "
                                        << static_cast<double>(K - 1) / static_cast<double>(K) << "; pass a smaller rate");
      c = train::synthetic_transition_matrix(K, f.reweight_noise_rate);
      source = "synthetic, rho " + std::to_string(f.reweight_noise_rate);
    }
    o.reweight = train::reweight_matrix(c);
    std::ostringstream m;
    m << "reweighting (" << source << "): condition number of C " << condition_number(c) << ", R[0] =";
    for (std::int64_t k = 0; k < std::min<std::int64_t>(K, 10); ++k) m << " " << o.reweight[0][k].item<double>();
    if (K > 10) m << " ...";
    log::info(m.str());
  }
  o.reweight_epoch = f.reweight_epoch;
  o.sync_bn = f.sync_bn;
  o.seed = common.seed;
  o.out_dir = f.out_dir;
  o.resume = resume;
  o.stop_after_epochs = f.stop_after_epochs;
  o.stop_requested = hooks.stop_requested;
  o.run_id = run_id;
  o.checkpoint_metadata = {{"arch", model.arch()}, {"source_checkpoint", s.checkpoint_path}, {"config", config_json}};
  o.validate(K);

  log::info("train: " + model.arch() + " on " + s.dataset->describe() + ", " + std::to_string(td.train_ids.size()) +
            " training / " + std::to_string(td.valid_ids.size()) + " validation / " + std::to_string(td.test_ids.size()) +
            " test samples, " + std::to_string(o.epochs) + " epochs of global batch " + std::to_string(o.batch_size) +
            " over " + std::to_string(world.size()) + " rank(s); run " + run_id);
  TrainOutcome outcome;
  {
    // W(s) of the Hessian layers: the weights fine-tuning starts from (what epoch_0.h5 holds).
    const auto names = model.hessian_layers();
    const auto params = models::parameters_by_name(model, names);
    for (std::size_t i = 0; i < names.size(); ++i) outcome.init[names[i]] = params[i].detach().clone();
  }
  // On a CUDA device of a build with NCCL, gradients and SyncBN statistics travel over NCCL (device
  // tensors); host scalars over MPI. Collective.
  const std::unique_ptr<comm::Communicator> train_world = device_world(world, s);
  outcome.result = train::fine_tune(model, td, o, *train_world, s.device);
  const train::TrainResult& r = outcome.result;

  // The fine-tuned network measured against its own W(s): both modes of the distance measure on a seeded
  // random subset of the test split (the image reference measures test batches of 4), n = training ids.
  std::vector<measures::DistanceOptions> measure_opts;
  if (f.measure_samples > 0 && r.finished) {
    measures::MeasureContext ctx;
    ctx.model = &model;
    ctx.dataset = test.get();
    ctx.world = &world;
    ctx.dtype = s.dtype;
    ctx.device = s.device;
    ctx.plan.batch_size = f.measure_batch_size;
    ctx.plan.sample_size = std::min(f.measure_samples, n_test);
    ctx.plan.rule = measures::SampleRule::kReference;
    ctx.plan.shuffle = true;
    ctx.plan.seed = common.seed;
    ctx.plan.validate();
    for (const auto mode : {hessian::MeasureMode::kJoint, hessian::MeasureMode::kBlock}) {
      measures::DistanceOptions d;
      d.mode = mode;
      d.head_reference = measures::default_head_reference(model);
      d.train_size = static_cast<std::int64_t>(td.train_ids.size());
      outcome.distance.push_back(measures::compute_distance(ctx, d, outcome.init));
      measure_opts.push_back(d);
      std::ostringstream m;
      m << "distance measure (" << hessian::to_string(mode) << "): sum_i sqrt(H_i+) " << outcome.distance.back().sum_sqrt
        << ", bound " << outcome.distance.back().bound << " (n = " << d.train_size << ")";
      log::info(m.str());
    }
    if (f.measure_trace_probes > 0) {
      measures::TracesOptions t;
      t.trace.max_probes = f.measure_trace_probes;
      t.trace.seed = common.seed;
      t.validate(world.size());
      outcome.traces = measures::compute_traces(ctx, t);
    }
    if (f.measure_stability_repeats > 0) {
      measures::StabilityOptions st;
      st.repeats = f.measure_stability_repeats;
      st.seed = common.seed;
      st.validate();
      outcome.stability = measures::compute_stability(ctx, st);
    }
  }

  results::RunInfo info;
  info.subcommand = f.subcommand;
  info.command_line = command_line;
  info.config_json = config_json;
  info.world_size = world.size();
  info.backend = world.backend();
  info.arch = model.arch();
  info.checkpoint = s.checkpoint_path;
  info.load_notes = s.load_notes;
  info.data_description = s.dataset->describe();
  info.layers = model.hessian_layers();
  info.run_id = run_id;
  info.complete = r.finished;
  const PeakMemory peak = peak_memory_over(world, s.device);
  info.peak_memory_bytes = peak.bytes;
  info.peak_memory_source = peak.source;
  if (world.rank() == 0) {
    const std::string path = (fs::path(f.out_dir) / "run.h5").string();
    results::ResultsFile out(path, info);
    results::TrainRecordInfo ti;
    ti.options = &o;
    ti.num_train = static_cast<std::int64_t>(td.train_ids.size());
    ti.num_valid = static_cast<std::int64_t>(td.valid_ids.size());
    ti.num_test = static_cast<std::int64_t>(td.test_ids.size());
    ti.out_dir = f.out_dir;
    out.write_train(r, ti);
    if (audit.source != "clean") out.write_labels(audit, K, s.dataset->class_names());
    const std::string epoch0 = (fs::path(f.out_dir) / "epoch_0.h5").string();
    for (std::size_t i = 0; i < outcome.distance.size(); ++i) {
      out.write_distance(outcome.distance[i], measure_opts[i], epoch0, i == 0 ? "/measures" : "/measures_block");
    }
    if (outcome.traces) {
      measures::TracesOptions t;
      t.trace.max_probes = f.measure_trace_probes;
      t.trace.seed = common.seed;
      out.write_traces(*outcome.traces, t);
    }
    if (outcome.stability) {
      measures::StabilityOptions st;
      st.repeats = f.measure_stability_repeats;
      st.seed = common.seed;
      out.write_stability(*outcome.stability, st);
    }
    out.commit();
    log::info("results written to " + path);
    std::ostringstream t;
    t << std::fixed << std::setprecision(4) << "best epoch " << r.best_epoch + 1 << ": test accuracy "
      << r.test.accuracy << ", test loss " << r.test.loss << ", train loss " << r.train_clean.loss << " (clean) / "
      << r.train_noisy.loss << " (training labels), generalization gap (test - train loss, clean) "
      << r.test.loss - r.train_clean.loss;
    std::printf("%s\n", t.str().c_str());
  }
  outcome.num_train = static_cast<std::int64_t>(td.train_ids.size());
  outcome.run_id = run_id;
  outcome.test = std::move(test);
  outcome.session = std::move(s);
  return outcome;
}

}  // namespace hessgap::job
