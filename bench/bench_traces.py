#!/usr/bin/python3
"""Benchmark and cross-check: hessgap's `traces` and `measures` against the Python reference
(bench/reference_hutchinson.py) on the same checkpoint, the same images and the same amount of work.

Runs, alternating and repeated (median of --reps):
  traces   py     reference_hutchinson.py traces, 1 thread, --probes fixed per batch
           hg1    hessgap traces, 1 rank, --threads 1, exactly --probes probes per batch
           hg2    the same under mpirun -np 2 (batches sharded over ranks)
           hg2p   -np 2 with --probe-ranks 2 (the probes of each batch split over ranks)
           hg2s   -np 2 with --shard-batch (every batch's samples split over ranks, probe values summed)
           hg1k / hg2sk   hg1 and hg2s with --probes-in-flight K (--in-flight; K probes per batched HVP)
  measures py / hg1 / hg2 / hg2s: one HVP per batch with v = W - W_init (W_init: a perturbed copy of the
           checkpoint, written here as safetensors)
and prints per-HVP times (in-process compute seconds / HVPs, and whole-process wall / HVPs), the
ratios python/hessgap and 1-rank/2-rank, and the agreement of the deterministic measures
(python vs hessgap, per layer) and of hessgap's traces across rank layouts.

Run from anywhere with Debian's /usr/bin/python3 (torch, numpy, h5py); see bench/README.md.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import reference_hutchinson as ref  # noqa: E402


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hessgap", default=os.environ.get("HESSGAP", "/work/build-bench/bin/hessgap"))
    ap.add_argument("--checkpoint", default=os.path.join(ROOT, "assets/models/cifar10-resnet20/resnet20.safetensors"))
    ap.add_argument("--data", default=os.path.join(ROOT, "assets/cifar10-test-100"))
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--batches", type=int, default=6, help="traces: first N batches")
    ap.add_argument("--probes", type=int, default=20, help="traces: probes per batch")
    ap.add_argument("--measure-batches", type=int, default=25, help="measures: first N batches")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--in-flight", type=int, default=4, help="K of traces:hg1k and traces:hg2sk")
    ap.add_argument("--np", type=int, default=2, help="ranks of the multi-rank runs")
    ap.add_argument("--perturb", type=float, default=0.05,
                    help="W_init = W - perturb * std(W) * N(0,1) on every Hessian layer")
    ap.add_argument("--work", default="/tmp/hessgap-bench")
    ap.add_argument("--skip", default="", help="comma list of runs to skip, e.g. traces:hg2p,measures")
    ap.add_argument("--openblas-coretype", default=os.environ.get("OPENBLAS_CORETYPE", ""),
                    help="set OPENBLAS_CORETYPE for every run (e.g. SkylakeX); empty: OpenBLAS detects")
    ap.add_argument("--json", help="write all timings and comparisons here")
    return ap.parse_args()


CORETYPE = ""


def env1():
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    e.pop("OPENBLAS_CORETYPE", None)
    if CORETYPE:
        e["OPENBLAS_CORETYPE"] = CORETYPE
    return e


def mpirun(n):
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(n),
           "-x", "OMP_NUM_THREADS=1", "-x", "OMP_WAIT_POLICY=PASSIVE"]
    return cmd + (["-x", f"OPENBLAS_CORETYPE={CORETYPE}"] if CORETYPE else [])


def openblas_core():
    """The kernel family OpenBLAS picks in the runs' environment (its sgemm speed differs ~4x)."""
    e = env1()
    e["OPENBLAS_VERBOSE"] = "2"
    p = subprocess.run([sys.executable, "-c", "import torch"], env=e, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    lines = [l for l in p.stdout.splitlines() if l.startswith("Core")]
    return lines[0].split(":", 1)[1].strip() if lines else "unknown"


def make_init_checkpoint(a, path):
    state = ref.read_safetensors(a.checkpoint)
    model = ref.CifarResNet(20)
    names, _ = ref.hessian_layers(model)
    g = torch.Generator().manual_seed(1234)
    for n in names:
        w = state[n]
        state[n] = (w.double() - a.perturb * w.double().std() * torch.randn(w.shape, generator=g,
                                                                             dtype=torch.float64)).to(w.dtype)
    ref.write_safetensors(path, state)


def build_runs(a, init_ck):
    py = [sys.executable, os.path.join(HERE, "reference_hutchinson.py")]
    common_py = ["--checkpoint", a.checkpoint, "--data", a.data, "--batch-size", str(a.batch_size)]
    hg_common = ["--checkpoint", a.checkpoint, "--data", a.data, "--batch-size", str(a.batch_size),
                 "--sample-rule", "exact", "--sample-order", "natural", "--threads", "1", "--verbosity", "0"]
    def hg_traces(batches):
        return [a.hessgap, "traces"] + hg_common + [
            "--sample-size", str(a.batch_size * batches), "--probe-scope", "joint", "--stop-rule", "reference",
            "--tol", "1e-300", "--min-probes", str(a.probes), "--max-probes", str(a.probes)]
    hg_tr = hg_traces(a.batches)
    hg_tr_part = hg_traces(max(a.batches // a.np, 1))
    hg_me = [a.hessgap, "measures"] + hg_common + [
        "--sample-size", str(a.batch_size * a.measure_batches), "--init-checkpoint", init_ck,
        "--train-size", "50000"]
    W = a.work
    runs = {
        "traces:py": (py + ["traces"] + common_py + ["--batches", str(a.batches), "--probes", str(a.probes),
                                                     "--out", f"{W}/tr_py.json"], f"{W}/tr_py.json"),
        "traces:hg1": (hg_tr + ["--out", f"{W}/tr_hg1.h5"], f"{W}/tr_hg1.h5"),
        "traces:hg2": (mpirun(a.np) + hg_tr + ["--out", f"{W}/tr_hg2.h5"], f"{W}/tr_hg2.h5"),
        "traces:hg2p": (mpirun(a.np) + hg_tr + ["--probe-ranks", str(a.np), "--out", f"{W}/tr_hg2p.h5"],
                        f"{W}/tr_hg2p.h5"),
        "traces:hg2s": (mpirun(a.np) + hg_tr + ["--shard-batch", "--out", f"{W}/tr_hg2s.h5"], f"{W}/tr_hg2s.h5"),
        "traces:hg1k": (hg_tr + ["--probes-in-flight", str(a.in_flight), "--out", f"{W}/tr_hg1k.h5"], f"{W}/tr_hg1k.h5"),
        "traces:hg2sk": (mpirun(a.np) + hg_tr + ["--shard-batch", "--probes-in-flight", str(a.in_flight),
                                                 "--out", f"{W}/tr_hg2sk.h5"], f"{W}/tr_hg2sk.h5"),
        # Control: --np independent 1-rank processes at once, each on 1/np of the batches (no MPI).
        # Its speed-up over hg1 is what this machine allows np processes, whatever hessgap does.
        "traces:hg1xN": [(hg_tr_part + ["--out", f"{W}/tr_hg1x{i}.h5"], f"{W}/tr_hg1x{i}.h5")
                         for i in range(a.np)],
        "measures:py": (py + ["measures"] + common_py + ["--batches", str(a.measure_batches),
                                                         "--init-checkpoint", init_ck, "--out", f"{W}/me_py.json"],
                        f"{W}/me_py.json"),
        "measures:hg1": (hg_me + ["--out", f"{W}/me_hg1.h5"], f"{W}/me_hg1.h5"),
        "measures:hg2": (mpirun(a.np) + hg_me + ["--out", f"{W}/me_hg2.h5"], f"{W}/me_hg2.h5"),
        "measures:hg2s": (mpirun(a.np) + hg_me + ["--shard-batch", "--out", f"{W}/me_hg2s.h5"], f"{W}/me_hg2s.h5"),
    }
    skip = [s for s in a.skip.split(",") if s]
    return {k: v for k, v in runs.items() if not any(k == s or k.startswith(s + ":") for s in skip)}


def read_result(path):
    """(compute seconds, hvps, per-batch values [B,L], batch losses [B])."""
    if path.endswith(".json"):
        with open(path) as f:
            r = json.load(f)
        return r["seconds"], r["hvps"], np.asarray(r["batch_values"]), np.asarray(r["batch_loss"])
    with h5py.File(path, "r") as f:
        if "traces" in f:
            g = f["traces"]
            return float(g["seconds"][()]), int(g["hvps"][()]), g["batch_mean"][()], g["batch_loss"][()]
        g = f["measures"]
        q = g["batch_quad"][()]
        return float(g["seconds"][()]), q.shape[0], q, g["batch_loss"][()]


def run_once(spec):
    """spec: (cmd, out) or a list of them started together. Returns (wall, result); for a list the
    result has the largest compute seconds and the summed HVPs, values and losses of the first."""
    specs = spec if isinstance(spec, list) else [spec]
    for _, out in specs:
        if os.path.exists(out):
            os.remove(out)
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, env=env1(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for cmd, _ in specs]
    logs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - t0
    for p, log, (cmd, _) in zip(procs, logs, specs):
        if p.returncode != 0:
            sys.exit(f"FAILED ({p.returncode}): {' '.join(cmd)}\n{log[-3000:]}")
    res = [read_result(out) for _, out in specs]
    return wall, (max(r[0] for r in res), sum(r[1] for r in res), res[0][2], res[0][3])


def rel(a, b):
    return np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-30)


def main():
    global CORETYPE
    a = parse()
    CORETYPE = a.openblas_coretype
    os.makedirs(a.work, exist_ok=True)
    core = openblas_core()
    print(f"host {os.uname().nodename}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"OpenBLAS core: {core}" + (f" (OPENBLAS_CORETYPE={CORETYPE})" if CORETYPE else " (detected)"))
    if not os.access(a.hessgap, os.X_OK):
        sys.exit(f"hessgap binary not found at {a.hessgap} (build it, or pass --hessgap / $HESSGAP)")
    init_ck = os.path.join(a.work, "init.safetensors")
    make_init_checkpoint(a, init_ck)
    runs = build_runs(a, init_ck)
    keys = list(runs)
    timings = {k: [] for k in keys}
    results = {}
    t_bench = time.perf_counter()
    for rep in range(a.reps):
        order = keys[rep % len(keys):] + keys[:rep % len(keys)]  # rotate to spread load drift
        for k in order:
            wall, res = run_once(runs[k])
            timings[k].append((wall, res[0]))
            results[k] = res
            print(f"  rep {rep + 1}/{a.reps} {k:13s} wall {wall:7.2f} s  compute {res[0]:7.2f} s  HVPs {res[1]}",
                  flush=True)

    # ---- timing table. On a shared host the load of other jobs comes and goes: the median shows
    # typical figures, the best (minimum) of the repetitions what the code does when it gets the CPUs.
    rows = {}
    print(f"\nTimes over {a.reps} repetitions, median and best (ms per HVP = seconds / HVPs; 'compute' is the "
          "in-process measure loop, without process start-up and model/data set-up; 'wall' is the whole process):")
    print(f"  {'run':13s} {'HVPs':>5s} {'compute s':>10s} {'wall s':>8s} {'ms/HVP compute':>15s} "
          f"{'ms/HVP wall':>12s} {'best ms/HVP compute':>20s} {'best ms/HVP wall':>17s}")
    for k in keys:
        hv = results[k][1]
        walls, comps = [t[0] for t in timings[k]], [t[1] for t in timings[k]]
        r = dict(wall=statistics.median(walls), compute=statistics.median(comps), hvps=hv)
        r.update(ms_compute=1e3 * r["compute"] / hv, ms_wall=1e3 * r["wall"] / hv,
                 best_ms_compute=1e3 * min(comps) / hv, best_ms_wall=1e3 * min(walls) / hv)
        rows[k] = r
        print(f"  {k:13s} {hv:5d} {r['compute']:10.2f} {r['wall']:8.2f} {r['ms_compute']:15.1f} {r['ms_wall']:12.1f} "
              f"{r['best_ms_compute']:20.1f} {r['best_ms_wall']:17.1f}")

    ratios = {}

    def ratio(name, num, den):
        ratios[name] = {m: num[m] / den[m] for m in ("ms_compute", "ms_wall", "best_ms_compute", "best_ms_wall")}

    def time_ratio(name, num_key, den_key):
        # the same work in both runs, but with --shard-batch every rank computes every probe on its
        # shard (HVPs counted per rank), so compare times rather than times per HVP
        num, den = timings[num_key], timings[den_key]
        med = lambda xs: statistics.median(xs)  # noqa: E731
        ratios[name] = {"ms_compute": med([t[1] for t in num]) / med([t[1] for t in den]),
                        "ms_wall": med([t[0] for t in num]) / med([t[0] for t in den]),
                        "best_ms_compute": min(t[1] for t in num) / min(t[1] for t in den),
                        "best_ms_wall": min(t[0] for t in num) / min(t[0] for t in den)}

    for task in ("traces", "measures"):
        py, h1 = rows.get(f"{task}:py"), rows.get(f"{task}:hg1")
        if py and h1:
            ratio(f"{task}: python / hessgap per HVP, 1 rank", py, h1)
        for k2, label in ((f"{task}:hg2", "batch sharding"), (f"{task}:hg2p", "probe splitting"),
                          (f"{task}:hg1xN", "CONTROL: independent processes")):
            if h1 and k2 in rows:
                # per-HVP throughput (the control may do slightly fewer HVPs than hg1)
                ratio(f"{task}: speed-up {a.np} ranks / 1 rank, {label}", h1, rows[k2])
        if h1 and f"{task}:hg2s" in rows:
            time_ratio(f"{task}: speed-up {a.np} ranks / 1 rank, --shard-batch", f"{task}:hg1", f"{task}:hg2s")
        if h1 and f"{task}:hg1k" in rows:
            time_ratio(f"{task}: 1 rank, --probes-in-flight {a.in_flight} / 1", f"{task}:hg1", f"{task}:hg1k")
        if h1 and f"{task}:hg2sk" in rows:
            time_ratio(f"{task}: speed-up {a.np} ranks, --shard-batch --probes-in-flight {a.in_flight} / 1 rank",
                       f"{task}:hg1", f"{task}:hg2sk")
    print(f"\nRatios (targets: python/hessgap >= 1.0, {a.np}-rank speed-up >= 1.7; the CONTROL row is the "
          f"speed-up this host gives {a.np} independent processes, i.e. the ceiling here):")
    print(f"  {'':66s} {'median':>7s} {'median':>7s} {'best':>7s} {'best':>7s}")
    print(f"  {'':66s} {'compute':>7s} {'wall':>7s} {'compute':>7s} {'wall':>7s}")
    for k, v in ratios.items():
        print(f"  {k:66s} {v['ms_compute']:7.2f} {v['ms_wall']:7.2f} {v['best_ms_compute']:7.2f} {v['best_ms_wall']:7.2f}")

    # ---- cross-checks
    checks = {}
    layers = ref.hessian_layers(ref.CifarResNet(20))[0]
    print("\nCross-checks:")
    if "measures:py" in results and "measures:hg1" in results:
        qp, lp = results["measures:py"][2], results["measures:py"][3]
        qh, lh = results["measures:hg1"][2], results["measures:hg1"][3]
        # Per layer: the largest difference over batches relative to the layer's largest |value|
        # (a single batch's q_i can be a near-cancellation of cross-layer terms, where float32
        # rounding alone gives a large relative difference), and the difference of the per-layer
        # maxima (the reference's output).
        d_scaled = np.abs(qp - qh).max(axis=0) / np.maximum(np.abs(qp).max(axis=0), 1e-30)
        d_elem = rel(qp, qh).max(axis=0)
        d_max = rel(qp.max(axis=0), qh.max(axis=0))
        r_loss = rel(lp, lh).max()
        checks["measures_py_vs_hg1_scaled_diff_per_layer"] = d_scaled.tolist()
        checks["measures_py_vs_hg1_elementwise_rel_per_layer"] = d_elem.tolist()
        checks["measures_py_vs_hg1_layer_max_rel"] = d_max.tolist()
        checks["measures_py_vs_hg1_loss_max_rel"] = float(r_loss)
        print(f"  measures, python vs hessgap (1 rank), {qp.shape[0]} batches: batch loss max rel diff {r_loss:.2e}")
        print(f"    {'layer':24s} {'H_i python':>12s} {'H_i hessgap':>12s} {'rel(H_i)':>9s} "
              f"{'max|dq|/max|q|':>15s} {'max rel(q_b)':>13s}")
        for i, n in enumerate(layers):
            print(f"    {n:24s} {qp[:, i].max():12.6g} {qh[:, i].max():12.6g} {d_max[i]:9.1e} "
                  f"{d_scaled[i]:15.1e} {d_elem[i]:13.1e}")
        ok = d_scaled.max() < 1e-4 and d_max.max() < 1e-4 and r_loss < 1e-5
        checks["measures_agree"] = bool(ok)
        print(f"  measures agree to 1e-4 (per layer, relative to the layer's scale): {'YES' if ok else 'NO'} "
              f"(worst scaled {d_scaled.max():.1e}, worst H_i {d_max.max():.1e}; "
              f"worst single-batch relative {d_elem.max():.1e})")
    for k in ("measures:hg2", "measures:hg2s"):
        if "measures:hg1" in results and k in results:
            q1, q2 = results["measures:hg1"][2], results[k][2]
            d = (np.abs(q1 - q2).max(axis=0) / np.maximum(np.abs(q1).max(axis=0), 1e-30)).max()
            checks[f"measures_hg1_vs_{k.split(':')[1]}_scaled_diff"] = float(d)
            print(f"  measures, hessgap 1 rank vs {k}: max |dq|/max|q| per layer {d:.2e}"
                  + (" (float32 shards: rounding)" if k.endswith("s") else ""))
    if "traces:hg1" in results:
        t1 = results["traces:hg1"][2]
        for k in ("traces:hg2", "traces:hg2p"):
            if k in results:
                d = rel(t1, results[k][2]).max()
                checks[f"traces_hg1_vs_{k.split(':')[1]}_max_rel"] = float(d)
                print(f"  traces, hessgap 1 rank vs {k}: max rel diff {d:.2e} (same probes by design)")
        for k in ("traces:hg2s", "traces:hg1k", "traces:hg2sk"):
            if k in results:
                # same probes, but float32 shards and batched kernels round differently: compare on each
                # layer's scale
                t2 = results[k][2]
                d = (np.abs(t1 - t2).max(axis=0) / np.maximum(np.abs(t1).max(axis=0), 1e-30)).max()
                checks[f"traces_hg1_vs_{k.split(':')[1]}_scaled_diff"] = float(d)
                print(f"  traces, hessgap 1 rank vs {k}: max |dt|/max|t| per layer {d:.2e} "
                      "(same probes; float32 rounding)")
    if "traces:py" in results and "traces:hg1" in results:
        lp, lh = results["traces:py"][3], results["traces:hg1"][3]
        tp, th = results["traces:py"][2].sum(axis=1), results["traces:hg1"][2].sum(axis=1)
        checks["traces_loss_max_rel"] = float(rel(lp, lh).max())
        print(f"  traces, python vs hessgap batch losses: max rel diff {rel(lp, lh).max():.2e}")
        print("  total trace per batch (different probes, so they agree only statistically):")
        print("    python  " + " ".join(f"{x:9.1f}" for x in tp))
        print("    hessgap " + " ".join(f"{x:9.1f}" for x in th))
        with open(runs["traces:py"][1]) as f:
            se = np.asarray(json.load(f)["batch_total_std_error"])
        # Both are means of i.i.d. probe totals with the same distribution: the difference has a
        # standard error of about sqrt(2) * python's.
        z = (tp - th) / (np.sqrt(2) * se)
        checks["traces_total_z"] = z.tolist()
        print("    z       " + " ".join(f"{x:9.2f}" for x in z)
              + f"   (difference / (sqrt 2 * python's std. error); |z| < 3 expected; worst {np.abs(z).max():.2f})")
    print(f"\nbench took {time.perf_counter() - t_bench:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(args=vars(a), openblas_core=core, rows=rows, ratios=ratios, checks=checks,
                           raw={k: v for k, v in timings.items()}), f, indent=1)


if __name__ == "__main__":
    main()
