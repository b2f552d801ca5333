#include "train/trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "comm/communicator.h"
#include "data/dataset.h"
#include "data/sampler.h"
#include "io/checkpoint.h"
#include "measures/eval.h"
#include "models/batch_norm.h"
#include "models/dropout.h"
#include "models/classifier.h"
#include "train/checkpoint_state.h"
#include "train/reweight.h"
#include "util/error.h"
#include "util/log.h"
#include "util/rng.h"
#include "util/signals.h"

namespace fs = std::filesystem;

namespace hessgap::train {

void TrainerOptions::validate(std::int64_t num_classes) const {
  HG_CHECK(epochs >= 1, "--epochs must be >= 1 (got " << epochs << ")");
  HG_CHECK(batch_size >= 1, "--batch-size must be >= 1 (got " << batch_size << ")");
  HG_CHECK(eval_batch_size >= 1, "--eval-batch-size must be >= 1 (got " << eval_batch_size << ")");
  HG_CHECK(optimizer.lr > 0 && std::isfinite(optimizer.lr), "--lr must be > 0 (got " << optimizer.lr << ")");
  HG_CHECK(schedule == "step" || schedule == "linear", "--schedule must be step or linear (got '" << schedule << "')");
  HG_CHECK(step_size >= 1, "--step-size must be >= 1 (got " << step_size << ")");
  HG_CHECK(gamma > 0, "--gamma must be > 0 (got " << gamma << ")");
  HG_CHECK(warmup_epochs >= 0, "--warm-up must be >= 0 (got " << warmup_epochs << ")");
  HG_CHECK(reg_method == "constraint" || reg_method == "penalty" || reg_method == "none",
           "--reg-method must be constraint, penalty or none (got '" << reg_method << "')");
  if (reg_method != "none") {
    for (const auto& g : groups) {
      HG_CHECK(g.radius > 0 && std::isfinite(g.radius),
               "the " << (reg_method == "constraint" ? "radius" : "coefficient") << " of constraint group '" << g.name
                      << "' must be > 0 (got " << g.radius << "; see --reg-extractor, --reg-predictor, --scale-factor)");
    }
  }
  if (reweight.defined()) {
    HG_CHECK(reweight.dim() == 2 && reweight.size(0) == num_classes && reweight.size(1) == num_classes,
             "the reweighting matrix is " << reweight.sizes() << ", the model has " << num_classes << " classes");
  }
  HG_CHECK(reweight_epoch >= 1, "--reweight-epoch must be >= 1 (got " << reweight_epoch << ")");
  HG_CHECK(monitor == "max" || monitor == "min", "monitor must be max or min (got '" << monitor << "')");
  HG_CHECK(patience >= 0, "--early-stop must be >= 0 (got " << patience << ")");
  HG_CHECK(stop_after_epochs >= 0, "--stop-after-epochs must be >= 0 (got " << stop_after_epochs << ")");
}

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The trainable parameters in named order: the order of the flat gradient buffer on every rank.
std::vector<torch::Tensor> trainable(models::Classifier& model) {
  std::vector<torch::Tensor> out;
  for (auto& p : model.named_parameters(true)) {
    if (p.value().requires_grad()) out.push_back(p.value());
  }
  return out;
}

// One collective per step for the gradients: concatenated, summed over ranks, written back.
void all_reduce_gradients(const std::vector<torch::Tensor>& params, comm::Communicator& world) {
  if (world.size() == 1) return;
  std::vector<torch::Tensor> flat;
  flat.reserve(params.size());
  for (const auto& p : params) {
    flat.push_back(p.grad().defined() ? p.grad().reshape({-1}) : torch::zeros({p.numel()}, p.options()));
  }
  torch::Tensor buffer = torch::cat(flat).contiguous();
  world.all_reduce_sum(buffer);
  std::int64_t offset = 0;
  for (const auto& p : params) {
    torch::Tensor g = buffer.narrow(0, offset, p.numel()).view(p.sizes());
    if (p.grad().defined()) {
      p.mutable_grad().copy_(g);
    } else {
      p.mutable_grad() = g.clone();
    }
    offset += p.numel();
  }
}

// Rank 0's floating buffers (BatchNorm running statistics) replace every other rank's. Collective.
void broadcast_buffers(models::Classifier& model, comm::Communicator& world) {
  if (world.size() == 1) return;
  std::vector<torch::Tensor> bufs;
  for (auto& b : model.named_buffers(true)) {
    if (b.value().is_floating_point()) bufs.push_back(b.value());
  }
  if (bufs.empty()) return;
  std::string bytes;
  if (world.rank() == 0) {
    std::vector<torch::Tensor> flat;
    for (const auto& b : bufs) flat.push_back(b.detach().reshape({-1}).to(torch::kCPU, torch::kFloat64));
    torch::Tensor all = torch::cat(flat).contiguous();
    bytes.assign(reinterpret_cast<const char*>(all.data_ptr<double>()), static_cast<std::size_t>(all.numel()) * 8);
  }
  world.broadcast(bytes, 0);
  std::int64_t total = 0;
  for (const auto& b : bufs) total += b.numel();
  HG_ASSERT(static_cast<std::int64_t>(bytes.size()) == total * 8, "buffer broadcast of the wrong size");
  torch::Tensor all = torch::empty({total}, torch::kFloat64);
  std::memcpy(all.data_ptr<double>(), bytes.data(), bytes.size());
  torch::NoGradGuard ng;
  std::int64_t offset = 0;
  for (auto& b : bufs) {
    b.copy_(all.narrow(0, offset, b.numel()).view(b.sizes()));
    offset += b.numel();
  }
}

// `b` (samples `ids`) with the labels `labels` gives them (indexed by id; empty: b's own), on the
// model's device and in its dtype.
data::Batch relabel(data::Batch b, const std::vector<std::int64_t>& ids, const std::vector<std::int64_t>& labels,
                    const models::Classifier& model, torch::Device device) {
  HG_CHECK(b.size() == static_cast<std::int64_t>(ids.size()),
           "training batch of " << b.size() << " samples for " << ids.size() << " ids (unreadable images are "
                                << "not supported in training)");
  if (!labels.empty()) {
    std::vector<std::int64_t> y(ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i) y[i] = labels[static_cast<std::size_t>(ids[i])];
    b.labels = torch::tensor(y, torch::kInt64);
  }
  return b.to(device, model.dtype());
}

data::Batch load(const data::Dataset& d, const std::vector<std::int64_t>& ids, const std::vector<std::int64_t>& labels,
                 const models::Classifier& model, torch::Device device) {
  return relabel(d.get_batch(ids), ids, labels, model, device);
}

// A batch of the same layout with no samples (what a rank with an empty shard feeds SyncBN's collectives).
data::Batch zero_samples(data::Batch b) {
  for (torch::Tensor* t : {&b.inputs, &b.labels, &b.attention_mask, &b.token_type_ids}) {
    if (t->defined()) *t = t->narrow(0, 0, 0);
  }
  b.sample_ids.clear();
  return b;
}

std::string checkpoint_path(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / (name + ".h5")).string();
}

// The trainer's own state in /state/trainer of last.h5: counters, early stopping and the history so far.
NamedTensors trainer_state(std::int64_t next_epoch, std::int64_t step, const EarlyStopping& es,
                           const TrainResult& r) {
  NamedTensors out;
  out.emplace_back("next_epoch", torch::tensor(next_epoch, torch::kInt64));
  out.emplace_back("global_step", torch::tensor(step, torch::kInt64));
  out.emplace_back("early_stopping", torch::tensor({es.best(), static_cast<double>(es.best_epoch()),
                                                    static_cast<double>(es.epochs_seen()),
                                                    static_cast<double>(es.epochs_since_best())},
                                                   torch::kFloat64));
  torch::Tensor steps = torch::zeros({static_cast<std::int64_t>(r.steps.size()), 5}, torch::kFloat64);
  auto sa = steps.accessor<double, 2>();
  for (std::size_t i = 0; i < r.steps.size(); ++i) {
    const auto& s = r.steps[i];
    const double row[5] = {static_cast<double>(s.step), static_cast<double>(s.epoch), s.loss, s.accuracy, s.lr};
    for (int c = 0; c < 5; ++c) sa[static_cast<std::int64_t>(i)][c] = row[c];
  }
  out.emplace_back("steps", steps);
  torch::Tensor epochs = torch::zeros({static_cast<std::int64_t>(r.epochs.size()), 9}, torch::kFloat64);
  auto ea = epochs.accessor<double, 2>();
  for (std::size_t i = 0; i < r.epochs.size(); ++i) {
    const auto& e = r.epochs[i];
    const double row[9] = {static_cast<double>(e.epoch), e.lr, e.train_loss, e.train_accuracy,
                           e.train_accuracy_batch_mean, e.val_loss, e.val_accuracy, e.seconds,
                           static_cast<double>(e.projected)};
    for (int c = 0; c < 9; ++c) ea[static_cast<std::int64_t>(i)][c] = row[c];
  }
  out.emplace_back("epochs", epochs);
  return out;
}

// What a resume takes from /state/trainer of last.h5, checked against what trainer_state writes: a file
// damaged or edited by hand must be refused naming the entry, not resume into LibTorch errors, a NaN
// early-stopping best or a history that does not add up (issue #12).
struct ResumeState {
  std::int64_t next_epoch = 0, step = 0;
  double es_best = 0;
  std::int64_t es_best_epoch = -1, es_seen = 0, es_since_best = 0;
  std::vector<StepRecord> steps;
  std::vector<EpochRecord> epochs;
};

ResumeState read_resume_state(const NamedTensors& state, const std::string& path, std::int64_t epochs) {
  auto bad = [&](const std::string& name, const std::string& why) {
    HG_FAIL("--resume: checkpoint '" << path << "': trainer state '" << name << "' " << why
                                     << " (damaged or not written by hessgap train; remove the --out-dir to start over)");
  };
  // The entry as a float64 CPU tensor of `rank` dimensions (`cols` columns for rank 2).
  auto get = [&](const std::string& name, std::int64_t rank, std::int64_t cols = 0) -> torch::Tensor {
    const torch::Tensor* found = nullptr;
    for (const auto& [n, t] : state) {
      if (n == name) found = &t;
    }
    if (found == nullptr || !found->defined()) bad(name, "is missing");
    const torch::Tensor& t = *found;
    if (t.is_complex() || t.scalar_type() == torch::kBool) bad(name, "is not a real number array");
    std::ostringstream shape;
    shape << t.sizes();
    if (t.dim() != rank || (rank == 2 && t.size(1) != cols)) {
      bad(name, "has shape " + shape.str() + ", expected " +
                    (rank == 0 ? std::string("a scalar") : rank == 1 ? std::string("a vector")
                                                                     : "[n, " + std::to_string(cols) + "]"));
    }
    return t.to(torch::kCPU, torch::kFloat64).contiguous();
  };
  // A count: finite, integer-valued, within [lo, hi].
  auto count = [&](const std::string& name, double v, double lo, double hi) -> std::int64_t {
    if (!std::isfinite(v) || v != std::floor(v) || v < lo || v > hi) {
      std::ostringstream os;
      os << "holds " << v << ", expected an integer in [" << lo << ", " << hi << "]";
      bad(name, os.str());
    }
    return static_cast<std::int64_t>(v);
  };
  constexpr double kMaxCount = 9.0e15;  // exact in a double
  ResumeState r;
  r.next_epoch = count("next_epoch", get("next_epoch", 0).item<double>(), 1, static_cast<double>(epochs));
  r.step = count("global_step", get("global_step", 0).item<double>(), 0, kMaxCount);

  const torch::Tensor es = get("early_stopping", 1);
  if (es.size(0) != 4) bad("early_stopping", "holds " + std::to_string(es.size(0)) + " values, expected 4");
  const auto e = es.accessor<double, 1>();
  if (std::isnan(e[0])) bad("early_stopping", "holds a NaN best value");
  r.es_best = e[0];
  r.es_seen = count("early_stopping[2] (epochs seen)", e[2], 0, static_cast<double>(r.next_epoch));
  r.es_best_epoch = count("early_stopping[1] (best epoch)", e[1], -1, static_cast<double>(r.es_seen - 1));
  r.es_since_best = count("early_stopping[3] (epochs since the best)", e[3], 0, static_cast<double>(r.es_seen));

  const torch::Tensor steps = get("steps", 2, 5);
  if (steps.size(0) != r.step) {
    bad("steps", "has " + std::to_string(steps.size(0)) + " rows for global_step " + std::to_string(r.step));
  }
  const auto sa = steps.accessor<double, 2>();
  for (std::int64_t i = 0; i < steps.size(0); ++i) {
    const std::string row = "steps[" + std::to_string(i) + "]";
    StepRecord rec;
    rec.step = count(row + " (step)", sa[i][0], static_cast<double>(i), static_cast<double>(i));
    rec.epoch = count(row + " (epoch)", sa[i][1], 0, static_cast<double>(r.next_epoch - 1));
    rec.loss = sa[i][2];
    rec.accuracy = sa[i][3];
    rec.lr = sa[i][4];
    if (!std::isfinite(rec.lr)) bad(row, "holds a non-finite learning rate");
    r.steps.push_back(rec);
  }
  const torch::Tensor hist = get("epochs", 2, 9);
  if (hist.size(0) != r.next_epoch) {
    bad("epochs", "has " + std::to_string(hist.size(0)) + " rows for next_epoch " + std::to_string(r.next_epoch));
  }
  const auto ea = hist.accessor<double, 2>();
  for (std::int64_t i = 0; i < hist.size(0); ++i) {
    const std::string row = "epochs[" + std::to_string(i) + "]";
    EpochRecord rec;
    rec.epoch = count(row + " (epoch)", ea[i][0], static_cast<double>(i), static_cast<double>(i));
    rec.lr = ea[i][1];
    rec.train_loss = ea[i][2];
    rec.train_accuracy = ea[i][3];
    rec.train_accuracy_batch_mean = ea[i][4];
    rec.val_loss = ea[i][5];
    rec.val_accuracy = ea[i][6];
    rec.seconds = ea[i][7];
    rec.projected = count(row + " (projected)", ea[i][8], 0, kMaxCount);
    r.epochs.push_back(rec);
  }
  return r;
}

}  // namespace

Metrics evaluate_ids(models::Classifier& model, const data::Dataset& dataset, const std::vector<std::int64_t>& ids,
                     const std::vector<std::int64_t>& labels, std::int64_t batch_size, comm::Communicator& world,
                     torch::Device device) {
  measures::MeasureContext ctx;
  ctx.model = &model;
  ctx.dataset = &dataset;
  ctx.world = &world;
  ctx.device = device;
  ctx.dtype = model.dtype();
  if (!labels.empty()) ctx.labels = &labels;
  const bool was_training = model.is_training();
  measures::EvalOptions quiet;
  quiet.progress = "";
  const measures::EvalResult r = measures::evaluate(ctx, measures::plan_ids(ids, batch_size), quiet);
  model.train(was_training);
  Metrics m;
  m.samples = r.num_samples;
  if (m.samples > 0) {
    m.loss = r.loss;
    m.accuracy = r.accuracy;
    m.f1 = r.f1;
  }
  return m;
}

namespace {

// Validation on clean labels: the separate split's own, or the held-out ids' clean labels.
Metrics validate(models::Classifier& model, const TrainData& data, std::int64_t batch_size, comm::Communicator& world,
                 torch::Device device) {
  if (data.valid != nullptr) return evaluate_ids(model, *data.valid, data.valid_ids, {}, batch_size, world, device);
  return evaluate_ids(model, *data.train, data.valid_ids, data.clean_labels, batch_size, world, device);
}

}  // namespace

TrainResult fine_tune(models::Classifier& model, const TrainData& data, const TrainerOptions& opts,
                      comm::Communicator& world, torch::Device device) {
  const auto t_start = Clock::now();
  opts.validate(model.num_classes());
  HG_CHECK(data.train != nullptr && !data.train_ids.empty(), "training: no training samples");
  HG_CHECK(static_cast<std::int64_t>(data.train_labels.size()) == data.train->size(),
           "training: " << data.train_labels.size() << " training labels for " << data.train->size() << " samples");
  const bool write = world.rank() == 0 && !opts.out_dir.empty();
  const std::string last_path = opts.out_dir.empty() ? "" : checkpoint_path(opts.out_dir, "last");

  // W(s): the weights the constraints and the measures refer to (after any new head).
  Reference reference = capture_reference(model);
  std::map<std::string, std::string> meta = opts.checkpoint_metadata;
  meta["run_id"] = opts.run_id;
  auto save = [&](const std::string& name, std::int64_t epoch, const std::map<std::string, NamedTensors>& sections) {
    if (!write) return;
    auto m = meta;
    m["epoch"] = std::to_string(epoch);
    m["checkpoint"] = name;
    io::write_checkpoint_h5(checkpoint_path(opts.out_dir, name), io::state_dict_of(model), m, sections);
  };

  auto optimizer = make_optimizer(model, opts.optimizer);
  const auto params = trainable(model);
  EarlyStopping stopping(opts.monitor, opts.patience);
  TrainResult result;
  std::int64_t start_epoch = 0, step = 0;

  if (opts.resume) {
    HG_CHECK(!last_path.empty() && fs::exists(last_path),
             "--resume: no checkpoint to resume from ('" << last_path << "' does not exist)");
    std::map<std::string, std::string> last_meta;
    const io::StateDict weights = io::read_checkpoint(last_path, &last_meta);
    HG_CHECK(last_meta["run_id"] == opts.run_id, "--resume: '" << last_path << "' belongs to run " << last_meta["run_id"]
                                                               << ", this configuration is run " << opts.run_id);
    // The reference point is epoch_0's weights, not the resumed ones.
    const io::StateDict initial = io::read_checkpoint(checkpoint_path(opts.out_dir, "epoch_0"));
    io::load_state_dict(model, initial);
    reference = capture_reference(model);
    io::LoadOptions lo;
    lo.source = last_path;
    io::load_state_dict(model, weights, lo);
    try {
      load_optimizer_state(*optimizer, model, io::read_checkpoint_section(last_path, "optimizer"));
    } catch (const Error& e) {
      HG_FAIL("--resume: checkpoint '" << last_path << "': " << e.what());
    }
    const ResumeState rs = read_resume_state(io::read_checkpoint_section(last_path, "trainer"), last_path, opts.epochs);
    start_epoch = rs.next_epoch;
    step = rs.step;
    stopping.restore(rs.es_best, rs.es_best_epoch, rs.es_seen, rs.es_since_best);
    result.steps = rs.steps;
    result.epochs = rs.epochs;
    result.resumed_at_epoch = start_epoch;
    log::info("resuming at epoch " + std::to_string(start_epoch + 1) + " from " + last_path);
  } else {
    save("epoch_0", 0, {});
  }

  data::SamplerOptions so;
  so.batch_size = opts.batch_size;
  so.shuffle = true;
  so.seed = opts.seed;
  data::ShardedSampler sampler(data.train_ids, so, world.rank(), world.size());
  const std::int64_t steps_per_epoch = sampler.num_batches();
  const std::int64_t total_steps = steps_per_epoch * opts.epochs;
  const auto warmup_steps = static_cast<std::int64_t>(std::llround(opts.warmup_epochs * static_cast<double>(steps_per_epoch)));
  const torch::Tensor reweight = opts.reweight.defined() ? opts.reweight.to(device, torch::kFloat64) : torch::Tensor();

  // The best weights so far (identical on every rank), for the final evaluation.
  io::StateDict best;
  if (opts.resume && fs::exists(checkpoint_path(opts.out_dir, "best"))) {
    best = io::read_checkpoint(checkpoint_path(opts.out_dir, "best"));
  }
  const std::int64_t end_epoch =
      opts.stop_after_epochs > 0 ? std::min(opts.epochs, start_epoch + opts.stop_after_epochs) : opts.epochs;
  for (std::int64_t epoch = start_epoch; epoch < end_epoch && !stopping.should_stop(); ++epoch) {
    const auto t_epoch = Clock::now();
    double lr = opts.schedule == "step" ? step_lr(opts.optimizer.lr, epoch, opts.step_size, opts.gamma) : 0.0;
    if (opts.schedule == "step") set_learning_rate(*optimizer, lr);
    const bool reweighted = reweight.defined() && epoch + 1 >= opts.reweight_epoch;
    model.train();
    const auto global = sampler.global_batches(epoch);
    const auto shards = sampler.shards(epoch);
    EpochRecord rec;
    rec.epoch = epoch;
    double epoch_loss = 0, epoch_correct = 0, epoch_n = 0, batch_acc_sum = 0;
    log::Progress progress("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(opts.epochs),
                           static_cast<long>(global.size()));
    for (std::size_t b = 0; b < global.size(); ++b, ++step) {
      if (opts.stop_requested && opts.stop_requested()) {
        log::info("stop requested at epoch " + std::to_string(epoch + 1) + ", step " + std::to_string(step) +
                  ": last.h5 keeps the state after epoch " + std::to_string(epoch));
        throw signals::Interrupted{signals::stop_signal()};
      }
      if (opts.schedule == "linear") {
        lr = linear_warmup_lr(opts.optimizer.lr, step, warmup_steps, total_steps);
        set_learning_rate(*optimizer, lr);
      }
      optimizer->zero_grad();
      std::unique_ptr<models::BatchNormSync> sync;
      if (opts.sync_bn) {
        sync = std::make_unique<models::BatchNormSync>([&world](torch::Tensor& t) { world.all_reduce_sum(t); });
      }
      const auto& ids = shards[b];
      const auto n_global = static_cast<double>(global[b].size());
      double sums[2] = {0, 0};  // loss, correct over this rank's shard
      torch::Tensor objective;
      // With SyncBN every rank runs every forward and backward pass: an empty shard as zero samples.
      const bool run = !ids.empty() || opts.sync_bn;
      if (run) {
        const std::vector<std::int64_t> read = ids.empty() ? std::vector<std::int64_t>{data.train_ids[0]} : ids;
        data::Batch batch = data.train_batch ? relabel(data.train_batch(read, epoch), read, data.train_labels, model, device)
                                             : load(*data.train, read, data.train_labels, model, device);
        if (ids.empty()) batch = zero_samples(batch);
        // Dropout masks of the whole global batch keyed by the step, this shard's rows kept: the same
        // training at any rank count.
        models::DropoutPlan plan;
        plan.key = rng::make_key(opts.seed, rng::Stream::kDropout, static_cast<std::uint64_t>(step));
        plan.global_batch = static_cast<std::int64_t>(global[b].size());
        plan.row_offset = data::shard_range(plan.global_batch, world.rank(), world.size()).first;
        const models::DropoutScope dropout_scope(plan);
        const torch::Tensor logits = model.forward(batch);
        // Sums over the shard, divided by the GLOBAL batch size: the ranks' gradients then add up to
        // the gradient of the batch mean.
        const torch::Tensor local_sum = reweighted ? reweighted_cross_entropy_sum(logits, batch.labels, reweight)
                                                   : torch::nn::functional::cross_entropy(
                                                         logits, batch.labels,
                                                         torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
        objective = local_sum / n_global;
        sums[0] = local_sum.item<double>();
        sums[1] = static_cast<double>(logits.argmax(1).eq(batch.labels).sum().item<std::int64_t>());
      }
      // The penalty is a function of the (identical) weights: added once, on rank 0, so the summed
      // gradient carries it once.
      if (opts.reg_method == "penalty" && world.rank() == 0) {
        const torch::Tensor pen = penalty(model, opts.norm, opts.groups, reference);
        objective = objective.defined() ? objective + pen : pen;
      }
      if (objective.defined()) objective.backward();
      sync.reset();  // the backward pass has run: BatchNorm's collectives are done for this step
      all_reduce_gradients(params, world);
      world.all_reduce_sum(sums, 2);
      const double loss = sums[0] / n_global;
      HG_CHECK(std::isfinite(loss), "the training loss is " << (std::isnan(loss) ? "NaN" : "infinite") << " at epoch "
                                                           << epoch + 1 << ", step " << b + 1 << " of " << global.size()
                                                           << " (global step " << step + 1 << ", lr " << lr << "): stopping; "
                                                           << (opts.out_dir.empty() ? std::string("no checkpoint written")
                                                                                    : "'" + last_path + "' holds the last good epoch"));
      optimizer->step();
      if (!opts.sync_bn) broadcast_buffers(model, world);
      if (opts.reg_method == "constraint") {
        rec.projected += project(model, opts.norm, opts.groups, reference).projected;
      }
      result.steps.push_back({step, epoch, loss, sums[1] / n_global, lr});
      if (opts.on_step) opts.on_step(result.steps.back());
      epoch_loss += sums[0];
      epoch_correct += sums[1];
      epoch_n += n_global;
      batch_acc_sum += sums[1] / n_global;
      progress.update(static_cast<long>(b + 1), "loss " + std::to_string(loss));
    }
    rec.lr = lr;
    rec.train_loss = epoch_loss / epoch_n;
    rec.train_accuracy = epoch_correct / epoch_n;
    rec.train_accuracy_batch_mean = batch_acc_sum / static_cast<double>(global.size());
    bool improved = true;  // without validation the last epoch is the best
    if (!data.valid_ids.empty()) {
      const Metrics v = validate(model, data, opts.eval_batch_size, world, device);
      rec.val_loss = v.loss;
      rec.val_accuracy = v.accuracy;
      improved = stopping.update(opts.monitor == "max" ? v.accuracy : v.loss);
    }
    rec.seconds = since(t_epoch);
    result.epochs.push_back(rec);
    if (improved) {
      best.clear();
      for (const auto& [n, t] : io::state_dict_of(model)) best.emplace_back(n, t.clone());
      save("best", epoch + 1, {});
    }
    save("last", epoch + 1,
         {{"optimizer", optimizer_state(*optimizer, model)}, {"trainer", trainer_state(epoch + 1, step, stopping, result)}});
    std::ostringstream line;
    line << "epoch " << epoch + 1 << "/" << opts.epochs << ": lr " << lr << ", train loss " << rec.train_loss
         << ", train acc " << rec.train_accuracy;
    if (!data.valid_ids.empty()) line << ", val loss " << rec.val_loss << ", val acc " << rec.val_accuracy;
    if (opts.reg_method == "constraint") line << ", projected " << rec.projected;
    line << " (" << rec.seconds << " s)" << (improved ? " *" : "");
    progress.finish();
    log::info(line.str());
  }
  result.stopped_early = stopping.should_stop();
  result.finished = result.stopped_early || (!result.epochs.empty() && result.epochs.back().epoch + 1 >= opts.epochs);
  if (!best.empty()) {
    io::load_state_dict(model, best);
  }
  // EarlyStopping counts its update calls (one per epoch, carried over a resume): its best is the epoch.
  result.best_epoch = data.valid_ids.empty() ? result.epochs.back().epoch : stopping.best_epoch();

  // The reference tests model_best; the generalization gap compares it on train and test.
  const std::vector<std::int64_t> none;  // the dataset's own (clean) labels
  result.train_noisy = evaluate_ids(model, *data.train, data.train_ids, data.train_labels, opts.eval_batch_size, world, device);
  result.train_clean = evaluate_ids(model, *data.train, data.train_ids, data.clean_labels, opts.eval_batch_size, world, device);
  if (!data.valid_ids.empty()) {
    result.valid = validate(model, data, opts.eval_batch_size, world, device);
  }
  if (data.test != nullptr) {
    std::vector<std::int64_t> all = data.test_ids;
    if (all.empty()) {
      all.resize(static_cast<std::size_t>(data.test->size()));
      for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::int64_t>(i);
    }
    result.test = evaluate_ids(model, *data.test, all, none, opts.eval_batch_size, world, device);
  }
  world.barrier();  // rank 0's checkpoints are complete before anyone reads them
  result.seconds = since(t_start);
  return result;
}

}  // namespace hessgap::train
