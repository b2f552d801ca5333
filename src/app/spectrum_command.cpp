// `hessgap spectrum`: top eigenvalues of the Hessian of the mean loss by Lanczos, and its spectral density
// by stochastic Lanczos quadrature (measures/spectrum.h).
#include <CLI/CLI.hpp>

#include "app/commands.h"
#include "app/options.h"
#include "app/summary.h"
#include "job/measure_job.h"

namespace hessgap::app {

RunFn add_spectrum_command(CLI::App& app) {
  auto c = std::make_shared<job::MeasureConfig>();
  c->kind = "spectrum";
  auto* cmd = app.add_subcommand(
      "spectrum",
      "Eigenvalues of the Hessian of the mean loss over the samples (Lanczos with full reorthogonalisation, "
      "residuals) and its spectral density (stochastic Lanczos quadrature), batches sharded over the ranks");
  add_common_options(cmd, c->common);
  auto& s = c->spectrum;
  cmd->add_option("--top-k", s.top_k, "Eigenpairs to report (K)");
  cmd->add_option("--lanczos-steps", s.lanczos_steps, "Lanczos steps m (HVPs of the eigenvalue run and of each SLQ probe)");
  cmd->add_option("--tol", s.tol,
                  "Stop the eigenvalue run when the K Ritz values have converged: |beta_j s_ji| <= tol * max(|theta_i|, 1) "
                  "(0: run all --lanczos-steps)");
  cmd->add_option("--which", c->which, "largest (algebraic; the default) | smallest (negative curvature)");
  cmd->add_option("--slq-probes", s.slq_probes, "Rademacher starts of stochastic Lanczos quadrature (0: none)");
  cmd->add_option("--layer", s.layer, "Only this Hessian layer's diagonal block (a name as hessgap traces lists them)");
  cmd->add_flag("--save-eigenvectors", s.keep_eigenvectors, "Write the K Ritz vectors to /spectrum/eigenvectors/<layer>");
  cmd->add_flag("--per-layer", s.per_layer,
                "Every Hessian layer's diagonal block on its own (/spectrum/per_layer: eigenvalues [L, K], residuals, SLQ)");
  cmd->add_option("--method", c->spectrum_method,
                  "lanczos (the default) | power: the reference's power iteration with deflation (largest magnitude, "
                  "--max-iter products per eigenpair, --tol its relative-change rule), for comparison");
  cmd->add_option("--max-iter", s.max_iter, "--method power: products per eigenpair at most (the reference: 200 image, 100 text)");
  cmd->add_option("--landscape-points", s.landscape_points,
                  "Loss of the mean over the samples at W + t*y, y the unit top eigenvector, for this many t in "
                  "[-radius, radius] (/spectrum/landscape; 0: none)");
  cmd->add_option("--landscape-radius", s.landscape_radius, "Largest |t| of the landscape, in weight units");
  return measure_command(c, [](const job::MeasureOutcome& o) { print_spectrum(*o.spectrum); });
}

}  // namespace hessgap::app
