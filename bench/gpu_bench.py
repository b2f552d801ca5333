#!/usr/bin/env python3
"""GPU benchmark of hessgap against the reference algorithm in PyTorch, on the same card in the same
run (scripts/gpu-check.sh calls it on the GPU machine; ../shared/GPU.md has the reference's figures).

Workloads (fp32, TF32 off on both sides, cuDNN benchmark mode on both sides):
  * resnet50-traces: per-layer Hutchinson traces of a torchvision ResNet-50 (random init, seed 0,
    1000 classes) on the 100 embedded CIFAR-10 test images resized to 224 px, batch 4, the
    reference's sample rule (26 batches), joint Rademacher probes, at most 100 per batch, the
    reference stopping rule with tol 1e-3. hessgap runs the whole workload; the reference (SPEC
    §7.2 compute_hessians_trace: per-layer .item() per probe) runs its first --ref-batches batches,
    and its per-HVP time is the comparison (its full-workload time = per-HVP x hessgap's HVPs).
  * roberta-traces: RoBERTa-base (random init, seed 0, 2 labels) on the first 32 MRPC training pairs,
    batch 8 x 128 tokens, at most 200 probes, tol 1e-4; the reference on its first batch.
  * resnet50 gradient / HVP at batch 32 (bench/models/bench_models --device cuda vs PyTorch), and the HVP
    as `traces --cuda-graphs` makes it (bench_models --cuda-graphs: a replayed joint probe).
  * inflight: hessgap's resnet50 trace workload again with --probes-in-flight K (--in-flight, default 8:
    K joint probes batched through one double backward), once per --probe-batching (functorch, legacy),
    against the K = 1 run above: the same estimates (printed: the largest relative difference of
    batch_mean) in how much less time.
  * graphs: both trace workloads again with --cuda-graphs (each batch's probe captured once as a CUDA
    graph, replayed for its later probes), against their eager runs: time, and the largest relative
    difference of batch_mean (the same probes).
  * probes: one joint Rademacher probe of every Hessian layer of ResNet-50 and of RoBERTa-base
    (bench_models --mode probes): hessgap's JointRademacher (all layers in ~20 kernels on the device)
    against its per-layer draw_probe (host-drawn words, one blocking copy per layer: what the H200 run
    of 2026-11-28 had), and the reference's per-layer torch.randint_like on the device.
Prints a table and writes JSON (--out). Nothing here is asserted: ratios only.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sync():
    torch.cuda.synchronize()


def ms_per_call(fn, iters, warmup=3):
    """Mean milliseconds of fn() over iters calls after warmup calls, the device drained around them."""
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - t0) * 1e3 / iters


def setup_backends():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True


# ------------------------------------------------------------------------------------------------
# the reference algorithm (SPEC §7.2): joint Rademacher probes, per-layer .item(), stop when the
# running mean of the total trace changes by less than tol (relative)
def reference_traces(loss_fn, params, max_iter, tol):
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    trace_vhv = []
    trace = 0.0
    hvps = 0
    for i in range(max_iter):
        v = [torch.randint_like(p, high=2) * 2 - 1 for p in params]
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        hvps += 1
        layer = [(h * vv).sum().item() for h, vv in zip(hv, v)]
        trace_vhv.append(layer)
        total = float(np.mean(np.sum(np.array(trace_vhv), axis=1)))
        if abs(total - trace) / (abs(trace) + 1e-6) < tol:
            break
        trace = total
    return hvps


def images(folder, size):
    from PIL import Image
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    xs, ys = [], []
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    for c, name in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(folder, name))):
            img = Image.open(os.path.join(folder, name, f)).convert("RGB").resize((size, size), Image.BILINEAR)
            x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
            xs.append((x - mean) / std)
            ys.append(c)
    return torch.stack(xs), torch.tensor(ys)


def run_hessgap(args, cmd, label):
    t0 = time.perf_counter()
    try:  # a hang (a capture gone wrong, say) must not eat the GPU window: give up on this run only
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.run_timeout)
    except subprocess.TimeoutExpired:
        print(f"[{label}] hessgap gave no result in {args.run_timeout} s: stopped", flush=True)
        return None
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"[{label}] hessgap failed ({proc.returncode}):\n{proc.stderr[-3000:]}", flush=True)
        return None
    return wall


def h5_scalars(path, *names):
    import h5py
    with h5py.File(path, "r") as f:
        return [float(np.asarray(f[n]).sum()) if n.endswith("hvps") else float(np.asarray(f[n])) for n in names]


def peak_gib(path):
    """The results file's peak memory (largest rank; on CUDA the allocator's peak allocated bytes), GiB."""
    import h5py
    with h5py.File(path, "r") as f:
        return float(f.attrs["peak_memory_bytes"]) / 2**30 if "peak_memory_bytes" in f.attrs else float("nan")


def resnet50_traces_cmd(args, out, *extra):
    """hessgap traces on the ResNet-50 workload (the checkpoint resnet50_traces saved in --work)."""
    return [args.hessgap, "traces", "--arch", "resnet50", "--num-classes", "1000", "--checkpoint",
            os.path.join(args.work, "resnet50.safetensors"), "--data", os.path.join(ROOT, "assets", "cifar10-test-100"),
            "--resize", "224", "--normalize", "imagenet", "--batch-size", "4", "--sample-order", "natural",
            "--sample-size", "100", "--probe-scope", "joint", "--stop-rule", "reference", "--tol", "1e-3",
            "--max-probes", "100", "--device", "cuda", "--out", out, "--verbosity", "0", *extra]


def resnet50_traces(args, res):
    import torchvision
    from safetensors.torch import save_file
    torch.manual_seed(0)
    model = torchvision.models.resnet50()
    ckpt = os.path.join(args.work, "resnet50.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, ckpt)
    data = os.path.join(ROOT, "assets", "cifar10-test-100")
    out = os.path.join(args.work, "r50-traces.h5")
    wall = run_hessgap(args, resnet50_traces_cmd(args, out), "resnet50-traces")
    if wall is not None:
        secs, hvps = h5_scalars(out, "/traces/seconds", "/traces/hvps")
        res["resnet50_traces_hessgap"] = {"seconds": secs, "wall": wall, "hvps": hvps, "ms_per_hvp": 1e3 * secs / hvps,
                                          "peak_gib": peak_gib(out)}
        print(f"resnet50 traces, hessgap: {secs:.2f} s compute ({wall:.2f} s wall), peak {peak_gib(out):.2f} GiB, {hvps:.0f} HVPs, "
              f"{1e3 * secs / hvps:.1f} ms/HVP", flush=True)
    # the reference, first batches
    model = model.cuda().eval()
    x, y = images(data, 224)
    params = [p for n, p in model.named_parameters() if p.dim() > 1]
    total_h, t_ref = 0, 0.0
    for b in range(args.ref_batches):
        xb, yb = x[4 * b:4 * b + 4].cuda(), y[4 * b:4 * b + 4].cuda()
        sync()
        t0 = time.perf_counter()
        total_h += reference_traces(lambda: F.cross_entropy(model(xb), yb), params, 100, 1e-3)
        sync()
        t_ref += time.perf_counter() - t0
    ms = 1e3 * t_ref / total_h
    res["resnet50_traces_reference"] = {"batches": args.ref_batches, "seconds": t_ref, "hvps": total_h, "ms_per_hvp": ms}
    print(f"resnet50 traces, reference: {args.ref_batches} batches, {total_h} HVPs, {ms:.1f} ms/HVP", flush=True)
    if "resnet50_traces_hessgap" in res:
        h = res["resnet50_traces_hessgap"]
        res["resnet50_traces_ratio_per_hvp"] = ms / h["ms_per_hvp"]
        res["resnet50_traces_ratio_workload"] = ms * h["hvps"] / 1e3 / h["seconds"]
        print(f"  reference/hessgap per HVP {res['resnet50_traces_ratio_per_hvp']:.2f}; workload "
              f"(reference ms/HVP x hessgap HVPs / hessgap s) {res['resnet50_traces_ratio_workload']:.2f}", flush=True)


def resnet50_in_flight(args, res):
    base = res.get("resnet50_traces_hessgap")
    if base is None:
        print("[inflight] needs the resnet50 workload's K = 1 run first", flush=True)
        return
    import h5py
    k1 = os.path.join(args.work, "r50-traces.h5")
    for batching in ("functorch", "legacy"):
        out = os.path.join(args.work, f"r50-traces-{batching}.h5")
        wall = run_hessgap(args, resnet50_traces_cmd(args, out, "--probes-in-flight", str(args.in_flight),
                                                     "--probe-batching", batching), f"inflight {batching}")
        if wall is None:
            continue
        secs, hvps = h5_scalars(out, "/traces/seconds", "/traces/hvps")
        with h5py.File(k1, "r") as a, h5py.File(out, "r") as b:
            x, y = a["traces/batch_mean"][()], b["traces/batch_mean"][()]
            same_probes = bool(np.array_equal(a["traces/batch_probes"][()], b["traces/batch_probes"][()]))
        diff = float(np.max(np.abs(x - y)) / (np.max(np.abs(x)) + 1e-30))
        res[f"resnet50_traces_in_flight_{batching}"] = {
            "k": args.in_flight, "seconds": secs, "hvps": hvps, "peak_gib": peak_gib(out),
            "speedup_vs_k1": base["seconds"] / secs, "max_rel_diff": diff, "same_probes": same_probes}
        print(f"resnet50 traces, hessgap --probes-in-flight {args.in_flight} --probe-batching {batching}: "
              f"{secs:.2f} s compute, {hvps:.0f} HVPs, peak {peak_gib(out):.2f} GiB; x{base['seconds'] / secs:.2f} "
              f"vs K = 1 (values {diff:.1e} apart, same probes: {same_probes})", flush=True)
        if "resnet50_traces_reference" in res:
            ms = res["resnet50_traces_reference"]["ms_per_hvp"]
            print(f"  workload vs the reference (reference ms/HVP x K=1 HVPs / this s): "
                  f"{ms * base['hvps'] / 1e3 / secs:.2f}", flush=True)


def roberta_traces_cmd(args, out, *extra):
    """hessgap traces on the RoBERTa workload (the checkpoint roberta_traces saved in --work)."""
    tsv = os.path.join(ROOT, "tests", "fixtures", "text", "glue", "MRPC", "train_head.tsv")
    return [args.hessgap, "traces", "--checkpoint", os.path.join(args.work, "roberta-base"), "--data", tsv,
            "--data-format", "glue", "--task", "mrpc", "--max-length", "128", "--batch-size", "8", "--sample-size", "32",
            "--sample-rule", "exact", "--probe-scope", "joint", "--stop-rule", "reference", "--tol", "1e-4",
            "--max-probes", "200", "--device", "cuda", "--out", out, "--verbosity", "0", *extra]


def cuda_graphs(args, res):
    """Both trace workloads again with --cuda-graphs, against their eager runs above (same probes)."""
    import h5py
    for name, cmd_fn, eager_file in (("resnet50", resnet50_traces_cmd, "r50-traces.h5"),
                                     ("roberta", roberta_traces_cmd, "roberta-traces.h5")):
        base = res.get(f"{name}_traces_hessgap")
        if base is None:
            print(f"[graphs] needs the {name} workload's eager run first", flush=True)
            continue
        out = os.path.join(args.work, f"{name}-traces-graphs.h5")
        wall = run_hessgap(args, cmd_fn(args, out, "--cuda-graphs"), f"graphs {name}")
        if wall is None:
            continue
        secs, hvps = h5_scalars(out, "/traces/seconds", "/traces/hvps")
        with h5py.File(os.path.join(args.work, eager_file), "r") as a, h5py.File(out, "r") as b:
            x, y = a["traces/batch_mean"][()], b["traces/batch_mean"][()]
            same_probes = bool(np.array_equal(a["traces/batch_probes"][()], b["traces/batch_probes"][()]))
        diff = float(np.max(np.abs(x - y)) / (np.max(np.abs(x)) + 1e-30))
        entry = {"seconds": secs, "wall": wall, "hvps": hvps, "ms_per_hvp": 1e3 * secs / hvps, "peak_gib": peak_gib(out),
                 "speedup_vs_eager": base["seconds"] / secs, "max_rel_diff": diff, "same_probes": same_probes}
        res[f"{name}_traces_graphs"] = entry
        print(f"{name} traces, hessgap --cuda-graphs: {secs:.2f} s compute, {hvps:.0f} HVPs, {entry['ms_per_hvp']:.1f} ms/HVP, "
              f"peak {entry['peak_gib']:.2f} GiB; x{entry['speedup_vs_eager']:.2f} vs eager (values {diff:.1e} apart, "
              f"same probes: {same_probes})", flush=True)
        ref = res.get(f"{name}_traces_reference")
        if ref is not None:
            ratio = ref["ms_per_hvp"] / entry["ms_per_hvp"]
            res[f"{name}_traces_graphs_ratio_per_hvp"] = ratio
            print(f"  reference/hessgap per HVP {ratio:.2f}" + (
                f"; workload (reference ms/HVP x eager HVPs / this s) {ref['ms_per_hvp'] * base['hvps'] / 1e3 / secs:.2f}"
                if name == "resnet50" else ""), flush=True)


def roberta_traces(args, res):
    from transformers import RobertaConfig, RobertaForSequenceClassification
    torch.manual_seed(0)
    config = RobertaConfig(num_labels=2)
    config._attn_implementation = "eager"  # memory-efficient SDPA has no double backward
    model = RobertaForSequenceClassification(config)
    folder = os.path.join(args.work, "roberta-base")
    model.save_pretrained(folder, safe_serialization=True)
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(ROOT, "tests", "fixtures", "text", "roberta-base", f), folder)
    out = os.path.join(args.work, "roberta-traces.h5")
    wall = run_hessgap(args, roberta_traces_cmd(args, out), "roberta-traces")
    if wall is not None:
        secs, hvps = h5_scalars(out, "/traces/seconds", "/traces/hvps")
        res["roberta_traces_hessgap"] = {"seconds": secs, "wall": wall, "hvps": hvps, "ms_per_hvp": 1e3 * secs / hvps,
                                         "peak_gib": peak_gib(out)}
        print(f"roberta traces, hessgap: {secs:.2f} s compute, peak {peak_gib(out):.2f} GiB, {hvps:.0f} HVPs, {1e3 * secs / hvps:.1f} ms/HVP", flush=True)
    model = model.cuda().eval()
    ids = torch.randint(3, 50265, (8, 128), generator=torch.Generator().manual_seed(1)).cuda()
    mask = torch.ones_like(ids)
    labels = torch.tensor([0, 1] * 4).cuda()
    params = [p for n, p in model.named_parameters() if p.dim() > 1 and "embeddings" not in n]
    sync()
    t0 = time.perf_counter()
    h = reference_traces(lambda: F.cross_entropy(model(input_ids=ids, attention_mask=mask).logits, labels), params, 200, 1e-4)
    sync()
    ms = 1e3 * (time.perf_counter() - t0) / h
    res["roberta_traces_reference"] = {"batches": 1, "hvps": h, "ms_per_hvp": ms, "layers": len(params)}
    print(f"roberta traces, reference: 1 batch, {h} HVPs, {ms:.1f} ms/HVP ({len(params)} layers)", flush=True)
    if "roberta_traces_hessgap" in res:
        r = res["roberta_traces_hessgap"]
        res["roberta_traces_ratio_per_hvp"] = ms / r["ms_per_hvp"]
        print(f"  reference/hessgap per HVP {res['roberta_traces_ratio_per_hvp']:.2f}", flush=True)


def grad_hvp(args, res):
    import torchvision
    torch.manual_seed(0)
    model = torchvision.models.resnet50().cuda().eval()
    x = torch.randn(32, 3, 224, 224, device="cuda")
    y = torch.randint(1000, (32,), device="cuda")
    params = [p for p in model.parameters() if p.dim() > 1]

    def grad():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    g_ms = ms_per_call(grad, 10)
    g = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
    v = [torch.randint_like(p, high=2) * 2 - 1 for p in params]
    h_ms = ms_per_call(lambda: torch.autograd.grad(g, params, v, retain_graph=True), 10)
    res["resnet50_b32_reference"] = {"grad_ms": g_ms, "hvp_ms": h_ms}
    print(f"resnet50 b32, reference: gradient {g_ms:.1f} ms, HVP {h_ms:.1f} ms ({h_ms / g_ms:.2f} gradients)", flush=True)
    side = {}
    for mode, extra in (("grad", []), ("hvp", []), ("hvp", ["--cuda-graphs"])):
        cmd = [args.bench_models, "--model", "resnet50", "--mode", mode, "--device", "cuda", "--warmup", "3",
               "--iters", "10" if mode == "grad" else "2", "--hvps", "5", *extra]
        name = mode + ("_graphs" if extra else "")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.run_timeout)
        except subprocess.TimeoutExpired:
            print(f"bench_models {name}: no result in {args.run_timeout} s", flush=True)
            continue
        if proc.returncode != 0:
            print(f"bench_models {name} failed:\n{proc.stderr[-2000:]}", flush=True)
            continue
        side[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    med = lambda name: 1e3 * side.get(name, {}).get("median", {}).get("hvp" if name.startswith("hvp") else name, float("nan"))
    g_hg, h_hg, hg_graphs = med("grad"), med("hvp"), med("hvp_graphs")
    res["resnet50_b32_hessgap"] = {"grad_ms": g_hg, "hvp_ms": h_hg, "hvp_graphs_ms": hg_graphs, "raw": side}
    print(f"resnet50 b32, hessgap: gradient {g_hg:.1f} ms, HVP {h_hg:.1f} ms ({h_hg / g_hg:.2f} gradients); "
          f"with --cuda-graphs (probe draw and per-layer dots included) {hg_graphs:.1f} ms ({hg_graphs / g_hg:.2f} gradients)",
          flush=True)


def probe_draws(args, res):
    """One joint probe of every Hessian layer: hessgap two ways (bench_models --mode probes) and the
    reference's draw on the same shapes (read from a small bench_models --export of the model)."""
    sys.path.insert(0, os.path.join(ROOT, "analysis"))
    from tools.safetensors_np import read as read_safetensors
    for model_name, small in (("resnet50", ["--image-size", "32"]), ("roberta-base", ["--seq-len", "8"])):
        cmd = [args.bench_models, "--model", model_name, "--mode", "probes", "--device", "cuda", "--warmup", "3",
               "--iters", "20"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"bench_models probes {model_name} failed:\n{proc.stderr[-2000:]}", flush=True)
            continue
        med = json.loads(proc.stdout.strip().splitlines()[-1])["median"]
        export = os.path.join(args.work, f"shapes-{model_name}")
        subprocess.run([args.bench_models, "--model", model_name, "--batch", "1", *small, "--export", export],
                       check=True, capture_output=True)
        shapes = [v.shape for v in read_safetensors(os.path.join(export, "v.safetensors"))[0].values()]
        params = [torch.empty(sh, device="cuda") for sh in shapes]

        def draw():  # SPEC §7.2: randint_like per layer, then 0 -> -1
            v = [torch.randint_like(p, high=2) for p in params]
            for t in v:
                t[t == 0] = -1
            return v
        ref_ms = ms_per_call(draw, 20)
        joint_ms, layers_ms = 1e3 * med["probe_joint"], 1e3 * med["probe_layers"]
        res[f"probes_{model_name}"] = {"layers": len(shapes), "joint_ms": joint_ms, "layers_ms": layers_ms,
                                       "reference_ms": ref_ms}
        print(f"{model_name} one joint probe ({len(shapes)} layers): hessgap all layers {joint_ms:.2f} ms, "
              f"layer by layer {layers_ms:.2f} ms (x{layers_ms / joint_ms:.1f}), reference randint_like "
              f"{ref_ms:.2f} ms (x{ref_ms / joint_ms:.1f})", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hessgap", required=True)
    ap.add_argument("--bench-models", required=True)
    ap.add_argument("--work", default="/tmp/hessgap-gpu-bench")
    ap.add_argument("--ref-batches", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma-separated: gradhvp,probes,resnet50,roberta,graphs,inflight")
    ap.add_argument("--in-flight", type=int, default=8, help="K of the inflight workload")
    ap.add_argument("--run-timeout", type=float, default=240, help="seconds before one hessgap run is stopped")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    setup_backends()
    res = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    print(f"device {res['device']}, torch {res['torch']}", flush=True)
    skip = set(args.skip.split(","))
    for name, fn in (("gradhvp", grad_hvp), ("probes", probe_draws), ("resnet50", resnet50_traces), ("roberta", roberta_traces),
                     ("graphs", cuda_graphs), ("inflight", resnet50_in_flight)):
        if name in skip:
            continue
        try:
            fn(args, res)
        except Exception as e:  # keep the other workloads' figures
            print(f"[{name}] failed: {type(e).__name__}: {e}", flush=True)
            res[name + "_error"] = str(e)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(res, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
