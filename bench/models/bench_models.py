#!/usr/bin/python3
"""Speed and peak memory of hessgap's models against plain PyTorch: ResNet-50 and RoBERTa-base,
forward+backward and Hessian-vector products, each measurement in a fresh process.

Sides: hessgap's bench_models executable (bench_models.cpp: models::make_model, the measures'
prepare_hessian_params / batch_loss, hessian::HvpEngine) and reference_models.py (torchvision
resnet50; a plain-PyTorch RoBERTa equal to hessgap's). Both: float32, eval mode, random weights
from the same seed, the same batch layout, the same thread settings, one process per measurement,
sides alternated and the order of runs rotated per repetition; medians over --reps.

Measurements (seconds per iteration, peak RSS from getrusage):
  grad    forward + loss + backward over all parameters;
  graph   forward + loss + first backward with create_graph over the Hessian layers (HvpEngine's
          constructor), in the hvp process;
  hvp     one Hessian-vector product through that graph (joint, all Hessian layers).
First a cross-check at small sizes: hessgap exports weights, batch and a Rademacher v; the
reference reloads them and must reproduce the loss, |g| and v^T H v to --check-tol; the Python
RoBERTa is also checked against Hugging Face's logits (tests/fixtures/hf/roberta-tiny).

Run with Debian's /usr/bin/python3; see bench/models/README.md.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REFERENCE = os.path.join(HERE, "reference_models.py")


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", default=os.environ.get("BENCH_MODELS", "/work/build-bench/bin/bench_models"),
                    help="the hessgap bench_models executable (or $BENCH_MODELS)")
    ap.add_argument("--models", default="resnet50,roberta-base")
    ap.add_argument("--modes", default="grad,hvp")
    ap.add_argument("--reps", type=int, default=2, help="processes per side and measurement (median)")
    ap.add_argument("--resnet-batch", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--roberta-batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--hvps", type=int, default=1, help="products per first-order graph in the hvp runs")
    ap.add_argument("--warmup", type=int, default=0, help="untimed iterations per process")
    ap.add_argument("--iters", type=int, default=1, help="timed iterations per process")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS and torch threads, both sides")
    ap.add_argument("--openblas-coretype", default=os.environ.get("OPENBLAS_CORETYPE", "auto"),
                    help="OPENBLAS_CORETYPE for every run; 'auto': SkylakeX when OpenBLAS falls back to "
                         "Prescott on an AVX-512 CPU (see bench/README.md), 'none': leave it to OpenBLAS")
    ap.add_argument("--check-tol", type=float, default=1e-4)
    ap.add_argument("--skip-check", action="store_true", help="no cross-check")
    ap.add_argument("--check-only", action="store_true", help="only the cross-check")
    ap.add_argument("--work", default="/tmp/hessgap-bench-models")
    ap.add_argument("--json", help="write every run and the summary here")
    return ap.parse_args()


def base_env(a, coretype):
    e = dict(os.environ)
    n = str(a.threads)
    e.update(OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, OMP_WAIT_POLICY="PASSIVE")
    e.pop("OPENBLAS_CORETYPE", None)
    if coretype:
        e["OPENBLAS_CORETYPE"] = coretype
    return e


def openblas_core(env):
    e = dict(env)
    e["OPENBLAS_VERBOSE"] = "2"
    p = subprocess.run(["/usr/bin/python3", "-c", "import torch"], env=e, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    lines = [l for l in p.stdout.splitlines() if l.startswith("Core")]
    return lines[0].split(":", 1)[1].strip() if lines else "unknown"


def choose_coretype(a):
    if a.openblas_coretype == "none":
        return ""
    if a.openblas_coretype != "auto":
        return a.openblas_coretype
    with open("/proc/cpuinfo") as f:
        avx512 = " avx512f" in f.read()
    detected = openblas_core(base_env(a, ""))
    return "SkylakeX" if detected == "Prescott" and avx512 else ""


def mem_available_gib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def run_json(cmd, env):
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"FAILED ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def size_args(a, model, batch=None, size=None):
    if model == "resnet50":
        return ["--model", model, "--batch", str(batch or a.resnet_batch), "--image-size", str(size or a.image_size)]
    return ["--model", model, "--batch", str(batch or a.roberta_batch), "--seq-len", str(size or a.seq_len)]


def rel(x, y):
    return abs(x - y) / max(abs(x), abs(y), 1e-300)


def cross_check(a, env, models):
    """Identical weights, batch and v on both sides at small sizes: loss, |g|, v^T H v."""
    ok = True
    out = {}
    print("Cross-check (hessgap exports weights, batch and v; the reference reloads them):")
    for model in models:
        d = os.path.join(a.work, "check-" + model)
        small = size_args(a, model, batch=2, size=64 if model == "resnet50" else 32)
        hg = run_json([a.bench] + small + ["--seed", "7", "--export", d], env)
        py = run_json(["/usr/bin/python3", REFERENCE] + small + ["--import", d], env)
        shutil.rmtree(d, ignore_errors=True)  # ~0.8 GB for roberta-base
        diffs = {k: rel(hg[k], py[k]) for k in ("loss", "grad_norm", "vhv")}
        good = all(v <= a.check_tol for v in diffs.values())
        ok &= good
        out[model] = dict(hessgap=hg, python=py, rel=diffs, agree=good)
        print(f"  {model:13s} " + "  ".join(f"{k} {hg[k]:.9g} vs {py[k]:.9g} (rel {diffs[k]:.1e})" for k in diffs)
              + f"  -> {'AGREE' if good else 'DISAGREE'} (tol {a.check_tol:g})")
    if "roberta-base" in models:
        fx = run_json(["/usr/bin/python3", REFERENCE, "--fixture", os.path.join(ROOT, "tests/fixtures/hf/roberta-tiny")],
                      env)
        good = fx["logits_max_rel_err"] <= 1e-10
        ok &= good
        out["roberta_fixture"] = fx
        print(f"  Python RoBERTa vs Hugging Face (roberta-tiny fixture, float64): logits max rel err "
              f"{fx['logits_max_rel_err']:.1e} -> {'AGREE' if good else 'DISAGREE'} (tol 1e-10)")
    return ok, out


def main():
    a = parse()
    os.makedirs(a.work, exist_ok=True)
    if not os.access(a.bench, os.X_OK):
        sys.exit(f"bench_models not found at {a.bench} (cmake --build BUILD --target bench_models; pass --bench)")
    coretype = choose_coretype(a)
    env = base_env(a, coretype)
    models = [m for m in a.models.split(",") if m]
    modes = [m for m in a.modes.split(",") if m]
    print(f"host {os.uname().nodename}: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
          f"MemAvailable {mem_available_gib():.1f} GiB; OpenBLAS core {openblas_core(env)}"
          + (f" (OPENBLAS_CORETYPE={coretype})" if coretype else " (detected)")
          + f"; OMP_NUM_THREADS={a.threads}, OMP_WAIT_POLICY=PASSIVE")
    t_start = time.perf_counter()
    result = dict(args=vars(a), openblas_coretype=coretype)
    ok = True
    if not a.skip_check:
        ok, result["check"] = cross_check(a, env, models)
    if a.check_only:
        return 0 if ok else 1

    common = ["--threads", str(a.threads), "--warmup", str(a.warmup), "--iters", str(a.iters), "--seed", "0"]
    keys = [(m, mode) for m in models for mode in modes]
    runs = {(k, side): [] for k in keys for side in ("hessgap", "python")}
    print(f"\nRuns ({a.reps} per side and measurement, one process each):")
    for rep in range(a.reps):
        order = keys[rep % len(keys):] + keys[:rep % len(keys)]
        for i, (model, mode) in enumerate(order):
            args = size_args(a, model) + ["--mode", mode] + common + (["--hvps", str(a.hvps)] if mode == "hvp" else [])
            sides = ["hessgap", "python"] if (rep + i) % 2 == 0 else ["python", "hessgap"]
            for side in sides:
                cmd = ([a.bench] if side == "hessgap" else ["/usr/bin/python3", REFERENCE]) + args
                t0 = time.perf_counter()
                r = run_json(cmd, env)
                r["wall"] = time.perf_counter() - t0
                runs[((model, mode), side)].append(r)
                times = ", ".join(f"{k} {v:.2f} s" for k, v in r["median"].items())
                print(f"  rep {rep + 1}/{a.reps} {model:12s} {mode:4s} {side:7s} {times:32s} peak RSS "
                      f"{r['peak_rss_mib']:8.0f} MiB  loss {r['loss']:.7g}  (process {r['wall']:.1f} s)", flush=True)

    # ---- summary table
    rows = []
    for model, mode in keys:
        hg, py = runs[((model, mode), "hessgap")], runs[((model, mode), "python")]
        for metric in hg[0]["median"]:
            th = statistics.median(r["median"][metric] for r in hg)
            tp = statistics.median(r["median"][metric] for r in py)
            mh = statistics.median(r["peak_rss_mib"] for r in hg)
            mp = statistics.median(r["peak_rss_mib"] for r in py)
            # Memory above the process's own start-up footprint (libraries, interpreter).
            dh = statistics.median(r["peak_rss_mib"] - r["rss_start_mib"] for r in hg)
            dp = statistics.median(r["peak_rss_mib"] - r["rss_start_mib"] for r in py)
            shape = f"{hg[0]['batch']}x{hg[0]['size']}" + ("x" + str(hg[0]["size"]) if model == "resnet50" else "")
            rows.append(dict(model=model, shape=shape, metric=metric, hessgap_s=th, python_s=tp, time_ratio=tp / th,
                             best_hessgap_s=min(r["median"][metric] for r in hg),
                             best_python_s=min(r["median"][metric] for r in py),
                             hessgap_peak_mib=mh, python_peak_mib=mp, peak_ratio=mp / mh,
                             hessgap_above_start_mib=dh, python_above_start_mib=dp, above_start_ratio=dp / dh))
    print(f"\nMedians over {a.reps} processes per side (time: seconds per iteration; memory: peak RSS of the process "
          "that ran it, MiB; 'above start' subtracts the RSS after start-up):")
    hdr = (f"  {'model':12s} {'shape':11s} {'what':5s} {'hessgap s':>9s} {'python s':>9s} {'py/hg':>6s} "
           f"{'best hg':>8s} {'best py':>8s} {'hg peak':>8s} {'py peak':>8s} {'py/hg':>6s} "
           f"{'hg >start':>9s} {'py >start':>9s} {'py/hg':>6s}")
    print(hdr)
    for r in rows:
        print(f"  {r['model']:12s} {r['shape']:11s} {r['metric']:5s} {r['hessgap_s']:9.2f} {r['python_s']:9.2f} "
              f"{r['time_ratio']:6.2f} {r['best_hessgap_s']:8.2f} {r['best_python_s']:8.2f} "
              f"{r['hessgap_peak_mib']:8.0f} {r['python_peak_mib']:8.0f} {r['peak_ratio']:6.2f} "
              f"{r['hessgap_above_start_mib']:9.0f} {r['python_above_start_mib']:9.0f} {r['above_start_ratio']:6.2f}")
    print("  (py/hg > 1: hessgap is faster / uses less memory; the peak of an hvp process covers graph + product)")
    print(f"\nbench took {time.perf_counter() - t_start:.0f} s")
    result.update(rows=rows, runs={f"{m}:{mode}:{side}": v for ((m, mode), side), v in runs.items()})
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
