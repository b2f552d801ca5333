// `hessgap spectrum`: eigenvalues of the Hessian of the mean loss over the chosen samples (not per batch) by
// Lanczos with full reorthogonalisation, and its spectral density by stochastic Lanczos quadrature (SLQ).
// An HVP is the sample-weighted sum of per-batch HVPs: the batches are sharded over the ranks and the
// products all-reduced, so every rank runs the same Lanczos steps on the same vectors.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "measures/measure_context.h"

namespace hessgap::measures {

enum class SpectrumMethod { kLanczos, kPower };
SpectrumMethod parse_spectrum_method(const std::string& name);  // "lanczos" | "power"
std::string to_string(SpectrumMethod m);

struct SpectrumOptions {
  SpectrumMethod method = SpectrumMethod::kLanczos;  // power: the reference's algorithm, for comparison
  int top_k = 1;            // K eigenpairs
  int lanczos_steps = 20;   // m: Lanczos steps (operator applications) of the eigenvalue run and of each SLQ probe
  double tol = 0.0;         // stop the eigenvalue run early when the K Ritz values converge (0: run m steps)
  bool smallest = false;    // the K smallest algebraic eigenvalues (negative curvature) instead of the largest
  int slq_probes = 0;       // P Rademacher starts for SLQ (0: none)
  int max_iter = 200;       // power: products per eigenpair at most (its --tol is the reference's rule; 0: max_iter)
  std::string layer;        // restrict to this Hessian layer's diagonal block ("" = all layers, joint)
  bool per_layer = false;   // every Hessian layer's diagonal block on its own (instead of the joint operator)
  // The loss of the mean over the samples along the top eigenvector y: L(W + t·y) at `landscape_points`
  // values of t evenly spaced in [−radius, radius] (y is a unit vector, so t is in weight units). 0: none.
  int landscape_points = 0;
  double landscape_radius = 1.0;
  bool keep_eigenvectors = false;
  std::uint64_t seed = 0;   // start vectors
  // Throws hessgap::Error naming the flag.
  void validate() const;
};

// One Hessian layer's diagonal block (--per-layer).
struct LayerSpectrum {
  std::string layer;
  std::int64_t num_params = 0;
  std::vector<double> eigenvalues, residuals;  // [K'] descending, K' = min(K, num_params)
  int steps = 0;                               // Lanczos steps, or the power iterations of all pairs
  bool converged = false;
  std::vector<std::vector<double>> slq_nodes, slq_weights;  // [P][m] as SpectrumResult's
};

struct SpectrumResult {
  std::vector<std::string> layers;   // the operator's layers (one with `layer`)
  std::int64_t num_params = 0;       // its dimension
  std::vector<double> eigenvalues;   // [K] descending (the K largest, or the K smallest)
  std::vector<double> residuals;     // [K] ‖H y − λ y‖ for the unit Ritz vector y (one more HVP each)
  std::vector<double> ritz_values;   // [j] every Ritz value of the eigenvalue run, ascending
  std::vector<double> alpha, beta;   // its tridiagonal matrix
  int steps = 0;                     // j: steps run
  bool converged = false;            // stopped by tol, or the Krylov space was exhausted
  // SLQ: per probe, the nodes (Ritz values, ascending) and weights (squared first components of T's
  // eigenvectors) of its m-step quadrature; rows shorter than m (an exhausted space) end in NaN / 0.
  std::vector<std::vector<double>> slq_nodes, slq_weights;
  std::vector<std::vector<torch::Tensor>> eigenvectors;  // [K][layers] (keep_eigenvectors), on the CPU
  std::vector<std::int64_t> iterations;  // power: iterations of each pair, in the order of eigenvalues
  std::vector<LayerSpectrum> per_layer;  // --per-layer: one entry per Hessian layer (the joint fields empty)
  std::vector<double> landscape_t, landscape_loss;  // [N] (landscape_points > 0)
  std::int64_t num_samples = 0;
  std::int64_t hvps = 0;             // Hessian-vector products of the whole mean loss
  double seconds = 0.0;
};

// Collective over ctx.world. Throws hessgap::Error for bad options (K larger than the dimension, a layer
// that is not a Hessian layer), unlabelled data, or a non-finite HVP (naming the run and step).
// The model's weights are restored bit for bit after the landscape.
SpectrumResult compute_spectrum(const MeasureContext& ctx, const SpectrumOptions& opts);

}  // namespace hessgap::measures
