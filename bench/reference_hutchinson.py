#!/usr/bin/python3
"""Python reference for hessgap's Hessian measurements (SPEC §7.2 and §7.3), used by bench/ as both a
timing baseline and a numerical cross-check.

It re-implements, in plain PyTorch, what the reference scripts do for one mini-batch:
  * traces  (`compute_hessians_trace`): g = dL/dW with create_graph=True; for each probe a joint
    Rademacher v over all Hessian layers, Hv = autograd.grad(g, W, grad_outputs=v, retain_graph=True),
    per-layer <v_i, Hv_i>. Unlike the reference, a FIXED number of probes per batch (no early stop),
    so that this script and `hessgap traces --min-probes P --max-probes P` do identical work.
  * measures (`compute_hessians_quantity`): one HVP with v = W - W_init (the head, linear.weight,
    measured around zero as the image reference does), per-layer <v_i, (Hv)_i>.

Model: akamaster's CIFAR ResNet-20 (option-A shortcuts), written here; weights from a safetensors
file parsed by hand (8-byte little-endian header length, JSON header, raw data). Data: an image folder
(classes sorted, files sorted), PIL RGB -> [0,1] -> ImageNet mean/std, in natural order, batches of
--batch-size. Eval mode, one intra-op thread by default. Hessian layers: every conv weight plus
linear.weight (20 for ResNet-20), in module order.

Writes a JSON file with per-batch results and timings (--out), and prints a short summary.
Runs with Debian's /usr/bin/python3 (torch 1.13, Pillow); no torchvision or safetensors needed.
"""
import argparse
import json
import os
import sys
import time

T_START = time.perf_counter()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

T_IMPORTED = time.perf_counter()

# ---------------------------------------------------------------------------------------------
# safetensors and the CIFAR ResNet: shared with the fixture generators (analysis/tools)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "analysis"))
from tools import safetensors_np  # noqa: E402
from tools.cifar_resnet import CifarResNet  # noqa: E402,F401  (bench_traces.py uses ref.CifarResNet)
from tools import cifar_resnet  # noqa: E402


def read_safetensors(path):
    return {k: torch.from_numpy(v) for k, v in safetensors_np.read(path)[0].items()}


def write_safetensors(path, tensors):
    tmp = path + ".tmp"
    safetensors_np.write(tmp, {k: t.detach().cpu().numpy() for k, t in tensors.items()})
    os.replace(tmp, path)


def hessian_layers(model):
    """(names, params): conv weights of modules whose name contains "conv", then linear.weight."""
    names = cifar_resnet.hessian_layers(model)
    by_name = dict(model.named_parameters())
    return names, [by_name[n] for n in names]


def load_model(path, depth):
    model = CifarResNet(depth)
    state = read_safetensors(path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        sys.exit(f"{path}: missing {missing}, unexpected {unexpected}")
    model.eval()
    names, params = hessian_layers(model)
    wanted = set(id(p) for p in params)
    for p in model.parameters():
        p.requires_grad_(id(p) in wanted)
    return model, names, params


# ---------------------------------------------------------------------------------------------
# image folder, natural order
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def list_images(root):
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    samples = []
    for label, c in enumerate(classes):
        folder = os.path.join(root, c)
        for dirpath, _, files in sorted(os.walk(folder, followlinks=True)):
            for f in sorted(files):
                if f.lower().endswith((".jpg", ".jpeg", ".png")):
                    samples.append((os.path.join(dirpath, f), label))
    return samples


def load_image(path):
    with open(path, "rb") as f:
        img = Image.open(f).convert("RGB")
    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
    return (x - MEAN) / STD  # ToTensor + Normalize


def load_batch(samples):
    xs = torch.stack([load_image(p) for p, _ in samples])
    ys = torch.tensor([y for _, y in samples], dtype=torch.long)
    return xs, ys


# ---------------------------------------------------------------------------------------------
def dot(a, b):
    return torch.sum(a * b, dtype=torch.float64).item()


def traces_one_batch(model, params, x, y, probes):
    loss = F.cross_entropy(model(x), y)
    g = torch.autograd.grad(loss, params, create_graph=True)
    values = []
    for _ in range(probes):
        v = [torch.randint_like(p, high=2) for p in params]
        for vi in v:
            vi[vi == 0] = -1
        hv = torch.autograd.grad(g, params, grad_outputs=v, retain_graph=True)
        values.append([dot(vi, hvi) for vi, hvi in zip(v, hv)])
    return loss.item(), np.asarray(values)


def quantity_one_batch(model, params, v, x, y):
    loss = F.cross_entropy(model(x), y)
    g = torch.autograd.grad(loss, params, create_graph=True)
    hv = torch.autograd.grad(g, params, grad_outputs=v, retain_graph=True)
    return loss.item(), [dot(vi, hvi) for vi, hvi in zip(v, hv)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["traces", "measures"])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--init-checkpoint", help="measures: W^(s) (safetensors)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--batches", type=int, default=6, help="first N batches in natural order")
    ap.add_argument("--probes", type=int, default=20, help="traces: fixed probes per batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="write results and timings as JSON")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model, names, params = load_model(a.checkpoint, a.depth)
    samples = list_images(a.data)[: a.batch_size * a.batches]
    batches = [samples[i:i + a.batch_size] for i in range(0, len(samples), a.batch_size)]

    v = None
    if a.mode == "measures":
        if not a.init_checkpoint:
            sys.exit("measures needs --init-checkpoint")
        init = read_safetensors(a.init_checkpoint)
        v = [p.detach().clone() if n.startswith("linear.") else p.detach() - init[n].to(p.dtype)
             for n, p in zip(names, params)]

    t0 = time.perf_counter()
    res = {"mode": a.mode, "layers": names, "batch_loss": [], "batch_values": [], "hvps": 0}
    for b in batches:
        x, y = load_batch(b)
        if a.mode == "traces":
            loss, vals = traces_one_batch(model, params, x, y, a.probes)
            res["batch_values"].append(vals.mean(axis=0).tolist())
            tot = vals.sum(axis=1)  # per-probe total trace estimate
            res.setdefault("batch_total_std_error", []).append(
                float(tot.std(ddof=1) / np.sqrt(len(tot))) if len(tot) > 1 else float("nan"))
            res["hvps"] += a.probes
        else:
            loss, q = quantity_one_batch(model, params, v, x, y)
            res["batch_values"].append(q)
            res["hvps"] += 1
        res["batch_loss"].append(loss)
    res["seconds"] = time.perf_counter() - t0
    res["startup_seconds"] = t0 - T_START
    res["import_seconds"] = T_IMPORTED - T_START
    res["layer_max"] = np.max(np.asarray(res["batch_values"]), axis=0).tolist()
    if v is not None:
        res["v_norm"] = [float(np.sqrt(dot(vi, vi))) for vi in v]
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f)
    print(f"{a.mode}: {len(batches)} batches, {res['hvps']} HVPs in {res['seconds']:.3f} s "
          f"({1e3 * res['seconds'] / max(res['hvps'], 1):.1f} ms/HVP), start-up {res['startup_seconds']:.2f} s")


if __name__ == "__main__":
    main()
