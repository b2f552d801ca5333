#include "app/summary.h"

#include <cmath>
#include <cstdio>

#include "util/log.h"

namespace hessgap::app {

void print_traces(const measures::TracesResult& r) {
  if (log::rank() != 0) return;
  const std::size_t L = r.layers.size(), B = r.num_batches();
  std::int64_t samples = 0;
  for (auto s : r.batch_sizes) samples += s;
  std::printf("\nPer-layer Hessian traces over %zu batches (%lld samples), %lld HVPs, %.1f s\n", B,
              static_cast<long long>(samples), static_cast<long long>(r.hvps), r.seconds);
  std::printf("%-28s %14s %12s %14s %9s\n", "layer", "mean trace", "± std.err", "max (ref.)", "probes");
  double total_mean = 0, total_max = 0;
  for (std::size_t i = 0; i < L; ++i) {
    double probes = 0;
    for (std::size_t b = 0; b < B; ++b) probes += static_cast<double>(r.probes[b * L + i]);
    std::printf("%-28s %14.6g %12.3g %14.6g %9.1f\n", r.layers[i].c_str(), r.layer_mean[i],
                r.layer_mean_std_error[i], r.layer_max[i], probes / static_cast<double>(B));
    total_mean += r.layer_mean[i];
    total_max += r.layer_max[i];
  }
  std::printf("%-28s %14.6g %12s %14.6g\n", "total", total_mean, "", total_max);
  std::fflush(stdout);
}

void print_distance(const measures::DistanceResult& r) {
  if (log::rank() != 0) return;
  std::printf("\nHessian distance measure over %zu batches, %.1f s\n", r.batch_sizes.size(), r.seconds);
  std::printf("%-28s %14s %14s\n", "layer", "H_i (max)", "||v_i||_F");
  for (std::size_t i = 0; i < r.layers.size(); ++i) {
    std::printf("%-28s %14.6g %14.6g\n", r.layers[i].c_str(), r.layer_max[i], r.v_norm[i]);
  }
  std::printf("sum_i sqrt(H_i+)              %.6g  (%lld negative layer(s) clipped)\n", r.sum_sqrt,
              static_cast<long long>(r.negative_layers));
  std::printf("bound   = sum/sqrt(n)         %.6g  (n = %lld)\n", r.bound, static_cast<long long>(r.train_size));
  std::printf("bound_c = sqrt(C)*sum/sqrt(n) %.6g  (C = max batch loss = %.6g)\n", r.bound_c, r.max_loss);
  if (r.block) {
    std::int64_t steps = 0, converged = 0;
    for (auto s : r.psd_steps) steps += s;
    for (auto c : r.psd_converged) converged += c;
    std::printf("PSD part by Lanczos quadrature: %lld block HVPs, %lld of %zu (batch, layer) pairs converged\n",
                static_cast<long long>(steps), static_cast<long long>(converged), r.psd_steps.size());
    std::printf("clipped block measure beside it: sum %.6g, bound %.6g, bound_c %.6g\n", r.block->sum_sqrt,
                r.block->bound, r.block->bound_c);
  }
  std::fflush(stdout);
}

void print_stability(const measures::StabilityResult& r, double eps) {
  if (log::rank() != 0) return;
  std::printf("\nNoise stability (eps %g, %zu repeats, %lld samples): loss %.6f, accuracy %.2f%%\n", eps,
              r.deltas.size(), static_cast<long long>(r.num_samples), r.base_loss, 100.0 * r.base_accuracy);
  std::printf("  loss change: mean %.6g ± %.6g (population std)\n", r.mean, r.std);
  std::fflush(stdout);
}

void print_spectrum(const measures::SpectrumResult& r) {
  if (log::rank() != 0) return;
  if (!r.per_layer.empty()) {
    std::printf("\nHessian spectrum per layer block, mean loss over %lld samples: %lld HVPs, %.1f s\n",
                static_cast<long long>(r.num_samples), static_cast<long long>(r.hvps), r.seconds);
    std::printf("%-28s %10s %6s %16s %16s %12s\n", "layer", "params", "steps", "largest", "K-th", "residual 1");
    for (const auto& l : r.per_layer) {
      std::printf("%-28s %10lld %6d %16.8g %16.8g %12.3g%s\n", l.layer.c_str(), static_cast<long long>(l.num_params),
                  l.steps, l.eigenvalues.front(), l.eigenvalues.back(), l.residuals.front(), l.converged ? "" : " (not converged)");
    }
    std::fflush(stdout);
    return;
  }
  std::printf("\nHessian spectrum of the mean loss over %lld samples (%lld parameters, %zu layer(s)): %d %s%s, "
              "%lld HVPs, %.1f s\n",
              static_cast<long long>(r.num_samples), static_cast<long long>(r.num_params), r.layers.size(), r.steps,
              r.iterations.empty() ? "Lanczos steps" : "power iterations", r.converged ? " (converged)" : "",
              static_cast<long long>(r.hvps), r.seconds);
  std::printf("%4s %16s %14s\n", "k", "eigenvalue", "residual");
  for (std::size_t k = 0; k < r.eigenvalues.size(); ++k) {
    std::printf("%4zu %16.8g %14.3g\n", k + 1, r.eigenvalues[k], r.residuals[k]);
  }
  if (!r.slq_nodes.empty()) std::printf("SLQ: %zu probes (nodes and weights in /spectrum/slq)\n", r.slq_nodes.size());
  if (!r.landscape_t.empty()) {
    std::printf("Loss along the top eigenvector: %zu points for t in [%g, %g] (/spectrum/landscape)\n",
                r.landscape_t.size(), r.landscape_t.front(), r.landscape_t.back());
  }
  std::fflush(stdout);
}

void print_eval(const measures::EvalResult& r) {
  if (log::rank() != 0) return;
  if (!r.labelled) {
    std::printf("\nPredictions on %lld unlabelled samples (labels -1, e.g. a GLUE test split): no loss or accuracy; "
                "predictions and logits in /eval/samples of --out, %.1f s\n",
                static_cast<long long>(r.num_samples), r.seconds);
    std::fflush(stdout);
    return;
  }
  std::printf("\nEvaluation on %lld samples: mean cross-entropy %.6f, accuracy %.2f%% (%lld correct), %.1f s\n",
              static_cast<long long>(r.num_samples), r.loss, 100.0 * r.accuracy,
              static_cast<long long>(r.correct), r.seconds);
  std::fflush(stdout);
}

}  // namespace hessgap::app
