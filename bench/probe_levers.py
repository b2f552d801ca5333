#!/usr/bin/env python3
"""Which speed levers of the trace workload pay on this device: measured in PyTorch on the same kernels
LibTorch runs, before any of them is built into hessgap (issue #13 keeps only those that pay on the GPU).

One batch of a torchvision model (random init, seed 0), one first-order graph (create_graph), then
Rademacher HVPs through it, timed per HVP (median of --reps rounds, after a warm-up round):
  * seq        one double backward per probe (what hessgap and the reference do today);
  * batched K  K probes in one double backward (autograd.grad(..., is_grads_batched=True), i.e. vmap
               over the grad_outputs), per probe; checked against seq on the same probes;
  * func_vmap K  K probes through torch.func (functorch): vmap over the vjp of grad(loss) — the real
               batching rules (convolution and batch-norm backward included), which the legacy vmap of
               is_grads_batched lacks (it loops over K for them; torch 1.13 on the CPU names
               convolution_backward, _convolution_double_backward, native_batch_norm_backward);
  * fwd_rev    forward-over-reverse in the form LibTorch's C++ API allows (no torch.func decompositions):
               the weights made dual with tangent v (autograd.forward_ad), one forward and one backward
               per probe, Hv read from the gradients' tangents. No first-order graph is kept, so it is
               timed per probe including its forward. torch 1.13 has no forward derivative of
               nll_loss_backward, _log_softmax_backward_data or native_batch_norm_backward (the failure is
               recorded);
  * tf32       seq with TF32 allowed in cuBLAS/cuDNN (CUDA only; what --allow-tf32 does), with the
               largest relative change of a per-layer value v_i.(Hv)_i against fp32;
  * channels_last  seq with the model and batch in channels-last memory format (CUDA only);
  * cuda_graph   seq captured once as a CUDA graph (the HVP and its per-layer values; CUDA only) and
               replayed with each probe copied into the captured input: what a captured HVP would save
               in launch and autograd overhead at this batch, checked against seq on the same probes.
Ratios are against seq in the same run. Nothing is asserted.

  bench/probe_levers.py --device cuda                       # ResNet-50, 224 px, batch 4 (the trace workload)
  bench/probe_levers.py --device cpu --model cifar-resnet20 --size 32 --batch 2 --threads 1   # the CPU benches' model
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def probes(params, k, seed):
    g = torch.Generator(device="cpu").manual_seed(seed)
    return [(torch.randint(0, 2, (k,) + p.shape, generator=g) * 2 - 1).to(p.device, p.dtype) for p in params]


def timed(fn, device, reps):
    fn()  # warm-up (cuDNN benchmark mode picks its kernels here)
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def graph(model, x, y, params):
    loss = F.cross_entropy(model(x), y)
    return torch.autograd.grad(loss, params, create_graph=True)


def per_layer(v, hv):
    return torch.stack([(a * b).sum(dtype=torch.float64) for a, b in zip(v, hv)])


def fwd_rev_lever(model, x, y, params, V, reference, t_seq, device, reps):
    """Hv as the tangent of the gradient, weights dual with tangent v (forward-over-reverse)."""
    import torch.autograd.forward_ad as fwAD
    try:
        from torch.func import functional_call
    except ImportError:  # torch 1.13
        from torch.nn.utils.stateless import functional_call
    names = [n for n, p in model.named_parameters() if p.dim() > 1]

    def hvp(j):
        with fwAD.dual_level():
            leaves = [p.detach().requires_grad_() for p in params]
            duals = {n: fwAD.make_dual(w, v[j]) for n, w, v in zip(names, leaves, V)}
            loss = F.cross_entropy(functional_call(model, duals, (x,)), y)
            return [fwAD.unpack_dual(t).tangent for t in torch.autograd.grad(loss, leaves)]

    t = timed(lambda: hvp(0), device, reps)
    err = max(float(((per_layer([v[j] for v in V], hvp(j)) - ref).abs() / ref.abs().clamp_min(1e-30)).max())
              for j, ref in enumerate(reference))
    print(f"  fwd_rev        {1e3 * t:9.1f} ms/HVP  x{t_seq / t:5.2f}  (values vs seq: {err:.1e})", flush=True)
    return {"ms_per_hvp": 1e3 * t, "speedup": t_seq / t, "max_rel_diff": err}


def cuda_graph_lever(model, x, y, params, V, reference, t_seq, device, reps):
    """One HVP (and its per-layer values) captured as a CUDA graph, replayed per probe.

    Backward ops run on the stream their forward ran on, and the double backward's "forward" is the
    first-order graph: so that graph is built on the capture stream too, then warmed up there."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        g = graph(model, x, y, params)
        static_v = [v[0].clone() for v in V]
        for _ in range(3):
            torch.autograd.grad(g, params, static_v, retain_graph=True)
    torch.cuda.current_stream().wait_stream(stream)
    cg = torch.cuda.CUDAGraph()
    with torch.cuda.graph(cg, stream=stream):
        static_hv = torch.autograd.grad(g, params, static_v, retain_graph=True)
        static_vals = per_layer(static_v, static_hv)

    def replay(j):
        for sv, v in zip(static_v, V):
            sv.copy_(v[j])
        cg.replay()

    t = timed(lambda: replay(0), device, reps)
    err = 0.0
    for j, ref in enumerate(reference):
        replay(j)
        sync(device)
        err = max(err, float(((static_vals - ref).abs() / ref.abs().clamp_min(1e-30)).max()))
    print(f"  cuda_graph     {1e3 * t:9.1f} ms/HVP  x{t_seq / t:5.2f}  (values vs seq: {err:.1e})", flush=True)
    return {"ms_per_hvp": 1e3 * t, "speedup": t_seq / t, "max_rel_diff": err}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--k", default="4,8,16", help="probes per batched double backward")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: leave as is)")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if not args.model.startswith("cifar-resnet"):
        import torchvision

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    if args.model.startswith("cifar-resnet"):  # the CIFAR ResNets of the CPU benches (analysis/tools)
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "analysis"))
        from tools.cifar_resnet import CifarResNet
        model = CifarResNet(int(args.model[len("cifar-resnet"):])).to(device).eval()
    else:
        model = getattr(torchvision.models, args.model)().to(device).eval()
    x = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(1)).to(device)
    y = torch.arange(args.batch, device=device) % 10
    params = [p for p in model.parameters() if p.dim() > 1]
    res = {"device": str(device), "torch": torch.__version__, "model": args.model, "size": args.size,
           "batch": args.batch, "layers": len(params)}
    if device.type == "cuda":
        res["device_name"] = torch.cuda.get_device_name(0)
    print(f"{args.model} {args.size} px, batch {args.batch}, {len(params)} layers, {device} ({torch.__version__})",
          flush=True)

    g = graph(model, x, y, params)
    kmax = max(int(k) for k in args.k.split(","))
    V = probes(params, kmax, 2)

    def seq(k):
        return [torch.autograd.grad(g, params, [v[j] for v in V], retain_graph=True) for j in range(k)]

    t_seq = timed(lambda: seq(1), device, args.reps)
    res["seq_ms"] = 1e3 * t_seq
    print(f"  seq            {1e3 * t_seq:9.1f} ms/HVP", flush=True)
    reference = [per_layer([v[j] for v in V], h) for j, h in enumerate(seq(kmax))]

    res["batched"] = {}
    for k in (int(s) for s in args.k.split(",")):
        Vk = [v[:k] for v in V]
        try:
            t = timed(lambda: torch.autograd.grad(g, params, Vk, retain_graph=True, is_grads_batched=True),
                      device, args.reps) / k
            hb = torch.autograd.grad(g, params, Vk, retain_graph=True, is_grads_batched=True)
            err = max(float(((per_layer([v[j] for v in Vk], [h[j] for h in hb]) - reference[j]).abs() /
                             reference[j].abs().clamp_min(1e-30)).max()) for j in range(k))
        except Exception as e:  # a batching rule missing on this version: record it, keep the others
            print(f"  batched K={k}: failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
            res["batched"][k] = {"error": str(e)[:500]}
            continue
        res["batched"][k] = {"ms_per_hvp": 1e3 * t, "speedup": t_seq / t, "max_rel_diff": err}
        print(f"  batched K={k:<3d}  {1e3 * t:9.1f} ms/HVP  x{t_seq / t:5.2f}  (values vs seq: {err:.1e})", flush=True)

    res["func_vmap"] = {}
    try:
        try:
            from torch.func import functional_call, grad, vjp, vmap
        except ImportError:  # torch 1.13: the functorch package
            from functorch import grad, vjp, vmap
            from torch.nn.utils.stateless import functional_call
        names = [n for n, p in model.named_parameters() if p.dim() > 1]
        weights = {n: p.detach() for n, p in model.named_parameters() if n in names}
        _, vjp_fn = vjp(grad(lambda w: F.cross_entropy(functional_call(model, w, (x,)), y)), weights)
        for k in (int(s) for s in args.k.split(",")):
            Vk = {n: v[:k] for n, v in zip(names, V)}
            t = timed(lambda: vmap(vjp_fn)(Vk), device, args.reps) / k
            out = vmap(vjp_fn)(Vk)[0]
            err = max(float(((per_layer([v[j] for v in V], [out[n][j] for n in names]) - reference[j]).abs() /
                             reference[j].abs().clamp_min(1e-30)).max()) for j in range(k))
            res["func_vmap"][k] = {"ms_per_hvp": 1e3 * t, "speedup": t_seq / t, "max_rel_diff": err}
            print(f"  func_vmap K={k:<3d}{1e3 * t:9.1f} ms/HVP  x{t_seq / t:5.2f}  (values vs seq: {err:.1e})",
                  flush=True)
    except Exception as e:
        print(f"  func_vmap: failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
        res["func_vmap"]["error"] = str(e)[:500]

    try:
        res["fwd_rev"] = fwd_rev_lever(model, x, y, params, V, reference, t_seq, device, args.reps)
    except Exception as e:
        print(f"  fwd_rev: failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
        res["fwd_rev"] = {"error": str(e)[:500]}

    if device.type == "cuda":
        try:
            res["cuda_graph"] = cuda_graph_lever(model, x, y, params, V, reference, t_seq, device, args.reps)
        except Exception as e:
            print(f"  cuda_graph: failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
            res["cuda_graph"] = {"error": str(e)[:500]}
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        g = graph(model, x, y, params)
        t = timed(lambda: seq(1), device, args.reps)
        tf = [per_layer([v[j] for v in V], h) for j, h in enumerate(seq(kmax))]
        err = max(float(((a - b).abs() / b.abs().clamp_min(1e-30)).max()) for a, b in zip(tf, reference))
        res["tf32"] = {"ms_per_hvp": 1e3 * t, "speedup": t_seq / t, "max_rel_diff": err}
        print(f"  tf32           {1e3 * t:9.1f} ms/HVP  x{t_seq / t:5.2f}  (values vs fp32: {err:.1e})", flush=True)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        model = model.to(memory_format=torch.channels_last)
        g = graph(model, x.to(memory_format=torch.channels_last), y, params)
        t = timed(lambda: seq(1), device, args.reps)
        res["channels_last"] = {"ms_per_hvp": 1e3 * t, "speedup": t_seq / t}
        print(f"  channels_last  {1e3 * t:9.1f} ms/HVP  x{t_seq / t:5.2f}", flush=True)

    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
