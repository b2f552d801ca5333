#!/usr/bin/python3
"""Trace estimators at a fixed HVP budget: hessgap traces --estimator hutchinson | hutch++ | xtrace on ResNet-20.

Issue #11 asks for the gain of the variance-reduced estimators over Hutchinson's on ResNet-20 at the same
number of Hessian-vector products. Every run estimates tr(H_ll) of every layer block l of the Hessian of one
batch's mean loss, with exactly M block HVPs per layer (`--probe-scope layer`):
  hutchinson  --stop-rule stderr --rel-se 1e-12 --min-probes M --max-probes M (the rule never fires: M probes)
  hutch++     --max-probes M (a fixed budget by construction)
  xtrace      --max-probes M
each with S seeds (0 .. S-1: independent probes), one rank, --threads 1, float64.

The reference trace per layer is one high-budget run: default XTrace with 80 block HVPs per layer (seed
1000003, not one of the S seeds). It is exact to rounding here, and its reported standard error says so
(~1e-16 relative): with ReLU and eval-mode BatchNorm the network is linear in one layer's weights, so a
layer's diagonal block is its Gauss-Newton block, of rank <= images x (classes - 1) = 4 x 9 = 36, and XTrace's
40-column sketch spans it. (The same holds for the compared runs: the gains below are those of a batch of 4,
the reference's and hessgap's default, and shrink as the batch, hence the rank, grows.) With --ref-probes 0
the reference is the plain mean of all runs instead (all three estimators are unbiased, but that reference is
correlated with what it judges and carries Hutchinson's noise / sqrt(3S): the weaker choice).

Printed: per estimator the RMS error over the seeds (per layer, summed and relative-averaged over layers,
and of the total trace), the gain = Hutchinson's RMS / the estimator's RMS at the same HVP budget, the
reported standard errors against the realised RMS (honesty), the reference's own reported error (the floor
of what can be resolved) and the wall time per run. Run from anywhere; see bench/README.md.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ESTIMATORS = ("hutchinson", "hutch++", "xtrace")
SHOW = ("conv1.weight", "layer1.1.conv1.weight", "layer2.1.conv1.weight", "layer3.1.conv1.weight", "linear.weight")


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hessgap", default=os.environ.get("HESSGAP", os.path.join(ROOT, "build/bin/hessgap")))
    ap.add_argument("--checkpoint", default=os.path.join(ROOT, "assets/models/cifar10-resnet20/resnet20.safetensors"))
    ap.add_argument("--data", default=os.path.join(ROOT, "assets/cifar10-test-100"))
    ap.add_argument("--max-per-class", type=int, default=1,
                    help="first N images of each class (natural order: 1 gives 4 images of 4 classes)")
    ap.add_argument("--images", type=int, default=4, help="one batch of this many images")
    ap.add_argument("--probes", "-M", type=int, default=12, help="block HVPs per layer of every compared run (M)")
    ap.add_argument("--seeds", "-S", type=int, default=6, help="seeds per estimator (S)")
    ap.add_argument("--estimators", default=",".join(ESTIMATORS))
    ap.add_argument("--ref-estimator", default="xtrace", choices=("hutch++", "xtrace", "hutchinson"))
    ap.add_argument("--ref-probes", type=int, default=80,
                    help="block HVPs per layer of the reference run; 0: the reference is the mean of all runs")
    ap.add_argument("--ref-seed", type=int, default=1000003)
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--work", default="/tmp/hessgap-bench-estimators", help="run files go here")
    ap.add_argument("--reuse", action="store_true", help="reuse run files already in --work (print again; no wall times then)")
    ap.add_argument("--all-layers", action="store_true", help="per-layer table of every layer, not a few")
    ap.add_argument("--json", help="write every number here")
    return ap.parse_args(argv)


def env1():
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return e


def command(a, estimator, probes, seed, out):
    cmd = [a.hessgap, "traces", "--arch", "cifar-resnet20", "--checkpoint", a.checkpoint, "--data", a.data,
           "--max-per-class", str(a.max_per_class), "--batch-size", str(a.images), "--sample-size", str(a.images),
           "--sample-rule", "exact", "--sample-order", "natural", "--dtype", a.dtype, "--threads", "1",
           "--verbosity", "0", "--probe-scope", "layer", "--estimator", estimator, "--max-probes", str(probes),
           "--seed", str(seed), "--out", out]
    if estimator == "hutchinson":  # a relative standard error of 1e-12 is never reached: exactly M probes
        cmd += ["--stop-rule", "stderr", "--rel-se", "1e-12", "--min-probes", str(probes)]
    return cmd


def run(a, estimator, probes, seed):
    """One hessgap process; returns its numbers (read back from the file)."""
    out = os.path.join(a.work, f"{estimator}-M{probes}-s{seed}.h5")
    wall = None
    if not (a.reuse and os.path.exists(out)):
        if os.path.exists(out):
            os.remove(out)
        cmd = command(a, estimator, probes, seed, out)
        t0 = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env1())
        wall = time.monotonic() - t0
        if p.returncode != 0:
            sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    with h5py.File(out, "r") as f:
        t = f["traces"]
        r = dict(estimator=t.attrs.get("estimator", "hutchinson"), seed=seed, probes=probes,
                 layers=list(f["layers/names"].asstr()[()]), mean=t["batch_mean"][0].astype(float),
                 se=t["batch_std_error"][0].astype(float), used=t["batch_probes"][0].astype(int),
                 hvps=int(t["hvps"][()]), seconds=float(t["seconds"][()]), wall=wall,
                 batches=int(t["batch_mean"].shape[0]), samples=int(np.sum(t["batch_sizes"][()])))
    if r["estimator"] != estimator or r["batches"] != 1 or r["samples"] != a.images:
        sys.exit(f"{out}: expected {estimator} on 1 batch of {a.images}, got {r['estimator']}, {r['batches']} "
                 f"batches, {r['samples']} samples")
    if not np.all(r["used"] == probes):  # the budget is what is compared: it must be exactly M everywhere
        sys.exit(f"{out}: block HVPs per layer {sorted(set(r['used'].tolist()))}, expected exactly {probes}")
    return r


def rms(x, axis=0):
    return np.sqrt(np.mean(np.square(x), axis=axis))


def main(argv=None):
    a = parse(argv)
    os.makedirs(a.work, exist_ok=True)
    estimators = [e for e in a.estimators.split(",") if e]
    if "hutchinson" not in estimators:
        sys.exit("--estimators must include hutchinson (the gains are relative to it)")
    t_start = time.monotonic()
    ref_run = None
    if a.ref_probes > 0:
        print(f"reference: {a.ref_estimator}, {a.ref_probes} block HVPs per layer, seed {a.ref_seed} ...", flush=True)
        ref_run = run(a, a.ref_estimator, a.ref_probes, a.ref_seed)
    runs = {e: [] for e in estimators}
    for s in range(a.seeds):  # seed-major: a change of the host's load touches every estimator alike
        for e in estimators:
            runs[e].append(run(a, e, a.probes, s))
            r = runs[e][-1]
            print(f"  {e:<10} seed {s}: total trace {r['mean'].sum():.6g}, {r['hvps']} HVPs, "
                  f"{r['seconds']:.1f} s compute" + (f", {r['wall']:.1f} s wall" if r["wall"] else ""), flush=True)
    layers = runs["hutchinson"][0]["layers"]
    L = len(layers)
    X = {e: np.array([r["mean"] for r in runs[e]]) for e in estimators}   # [S, L]
    SE = {e: np.array([r["se"] for r in runs[e]]) for e in estimators}   # [S, L]
    if ref_run is not None:
        ref, ref_se = ref_run["mean"], ref_run["se"]
        ref_name = f"{a.ref_estimator} with {a.ref_probes} block HVPs per layer (seed {a.ref_seed})"
    else:
        allx = np.concatenate([X[e] for e in estimators])
        ref, ref_se = allx.mean(axis=0), allx.std(axis=0, ddof=1) / np.sqrt(len(allx))
        ref_name = f"mean of all {len(allx)} runs (correlated with the runs it judges)"

    out = {"flags": vars(a), "layers": layers, "reference": {"name": ref_name, "trace": ref.tolist(),
                                                             "std_error": ref_se.tolist()},
           "host": platform.node(), "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "estimators": {}}
    print(f"\nResNet-20 (embedded CIFAR-10 weights), 1 batch of {a.images} images, {a.dtype}, {L} layer blocks; "
          f"M = {a.probes} block HVPs per layer ({a.probes * L} HVPs per run), S = {a.seeds} seeds")
    print(f"reference: {ref_name}; its own reported standard error, relative, averaged over layers: "
          f"{np.mean(ref_se / np.abs(ref)):.2e} (max {np.max(ref_se / np.abs(ref)):.2e})")

    stats = {}
    for e in estimators:
        err = X[e] - ref                                        # [S, L]
        rms_l = rms(err)                                        # [L]
        rep_l = rms(SE[e])                                      # [L] RMS of the reported standard errors
        z = err / np.sqrt(SE[e] ** 2 + ref_se ** 2)             # reference error included
        tot_err = X[e].sum(axis=1) - ref.sum()
        stats[e] = dict(rms=rms_l, rel=rms_l / np.abs(ref), reported=rep_l, sum_rms=float(rms_l.sum()),
                        mean_rel=float(np.mean(rms_l / np.abs(ref))), total_rms=float(rms(tot_err)),
                        total_rel=float(rms(tot_err) / abs(ref.sum())), honesty=float(rms_l.sum() / rep_l.sum()),
                        z_rms=float(np.sqrt(np.mean(z ** 2))), z_over2=float(np.mean(np.abs(z) > 2)),
                        bias_z=float(np.max(np.abs(err.mean(axis=0)) / (rms_l / np.sqrt(a.seeds) + 1e-300))),
                        wall=[r["wall"] for r in runs[e] if r["wall"] is not None],
                        seconds=[r["seconds"] for r in runs[e]], hvps=runs[e][0]["hvps"])
    h = stats["hutchinson"]
    print(f"\n{'estimator':<11} {'Σ_l RMS_l':>11} {'mean rel':>9} {'total RMS':>10} {'total rel':>9} "
          f"{'gain Σ':>8} {'gain med':>8} {'gain min':>8} {'RMS/rep':>8} {'rms z':>6} {'|z|>2':>6} "
          f"{'s/run':>6} {'ms/HVP':>7}")
    for e in estimators:
        st = stats[e]
        gain_l = h["rms"] / st["rms"]
        st["gain_sum"], st["gain_median"], st["gain_min"], st["gain_max"] = (
            float(h["sum_rms"] / st["sum_rms"]), float(np.median(gain_l)), float(gain_l.min()), float(gain_l.max()))
        st["gain_total"] = float(h["total_rms"] / st["total_rms"])
        wall = np.median(st["wall"]) if st["wall"] else float("nan")
        comp = np.median(st["seconds"])
        print(f"{e:<11} {st['sum_rms']:>11.4g} {st['mean_rel']:>9.2e} {st['total_rms']:>10.4g} "
              f"{st['total_rel']:>9.2e} {st['gain_sum']:>8.1f} {st['gain_median']:>8.1f} {st['gain_min']:>8.1f} "
              f"{st['honesty']:>8.2f} {st['z_rms']:>6.2f} {st['z_over2']:>6.2f} {wall:>6.1f} "
              f"{1e3 * comp / st['hvps']:>7.1f}")
    print("  Σ_l RMS_l: RMS error over the seeds per layer, summed over layers [loss/weight²]; mean rel: RMS_l/|ref_l|"
          " averaged over layers;\n  total: the RMS error of the summed trace; gain Σ / med / min: Hutchinson's RMS /"
          " this estimator's (summed over layers; median and minimum over layers);\n  RMS/rep: Σ_l realised RMS_l / "
          "Σ_l RMS of the reported std errors (1 = honest, > 1 = over-confident); rms z: RMS of error / sqrt(se² + "
          "se_ref²)\n  over seeds and layers (1 = honest); s/run: median wall time of a process; ms/HVP: in-process "
          "compute (/traces/seconds) per block HVP.")

    shown = [l for l in (layers if a.all_layers else SHOW) if l in layers]
    print(f"\nper layer: reference trace ± its reported error; per estimator RMS error over {a.seeds} seeds "
          f"(RMS of its reported std errors), and the gain over Hutchinson")
    head = f"{'layer':<24} {'reference':>18}"
    for e in estimators:
        head += f" {e + ' RMS (rep.)':>22}" + (f" {'gain':>6}" if e != "hutchinson" else "")
    print(head)
    for l in shown:
        i = layers.index(l)
        row = f"{l:<24} {ref[i]:>10.5g} ± {ref_se[i]:<6.2g}"
        for e in estimators:
            row += f" {stats[e]['rms'][i]:>11.3g} ({stats[e]['reported'][i]:>8.3g})"
            if e != "hutchinson":
                row += f" {h['rms'][i] / stats[e]['rms'][i]:>6.1f}"
        print(row)

    floor = np.sqrt(np.mean(ref_se ** 2))
    best = min(stats[e]["sum_rms"] for e in estimators)
    print(f"\nreference floor: Σ_l ref std error {ref_se.sum():.4g} vs the smallest Σ_l RMS_l {best:.4g}"
          + ("  (WARNING: the reference is not clearly better than the best estimator; its error inflates the RMS)"
             if ref_se.sum() > 0.3 * best else ""))
    print(f"elapsed {time.monotonic() - t_start:.0f} s")
    for e in estimators:
        out["estimators"][e] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in stats[e].items()}
        out["estimators"][e]["runs"] = [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()
                                         if k != "layers"} for r in runs[e]]
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
