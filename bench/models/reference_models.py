#!/usr/bin/python3
"""The plain-PyTorch side of the model benchmark (bench_models.py): one measurement per process.

Models: torchvision's resnet50 (weights=None) and RoBERTa-base for sequence classification
written here in plain PyTorch (transformers is not installed), the same computation as hessgap's
src/models/transformer_text.cpp: Hugging Face's parameter names, embeddings LayerNorm(word +
token_type + position) with RoBERTa's padding-aware position ids, post-LN encoder layers with
exact (erf) GELU, eager attention softmax(QK^T/sqrt(d) + (1 - mask) * finfo.min) V, head
out_proj(tanh(dense(x[:, 0]))); Hugging Face's init (N(0, 0.02^2) weights, zero biases,
LayerNorm (1, 0), zero padding rows).

Modes (the same as hessgap's bench_models executable, eval mode, float32, mean cross-entropy):
  grad   forward + backward over all parameters (loss.backward()), per iteration;
  hvp    only the Hessian layers require grad (as hessgap's measures); "graph" = forward + first
         backward with create_graph=True; "hvp" = one Hessian-vector product
         autograd.grad(g, params, grad_outputs=v) through that graph, v Rademacher.
Prints one JSON line: times in seconds per iteration, RSS after start-up and peak RSS (MiB,
getrusage ru_maxrss).

--fixture DIR: this RoBERTa against Hugging Face's logits in tests/fixtures/hf/roberta-tiny.
--import DIR: instead of random weights and batch, load DIR/weights.safetensors, batch.safetensors
and v.safetensors written by `bench_models --export DIR`, and report loss, |g| and v^T H v for the
cross-check.
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
from analysis.tools import safetensors_np  # noqa: E402


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ---------------------------------------------------------------- RoBERTa (roberta-base shapes)
# The model lives in analysis/tools/roberta.py (shared with the CLI tests).
from analysis.tools.roberta import (RobertaConfig, RobertaForSequenceClassification,  # noqa: E402
                                     roberta_hessian_layers)


def resnet_hessian_layers(model):
    """SPEC §3.4: every Conv2d whose module name contains "conv" (no downsample), then fc.weight."""
    return [n + ".weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and "conv" in n] + ["fc.weight"]


# ---------------------------------------------------------------- batches
def text_batch(batch, seq_len, vocab, pad_id, gen):
    """Token ids (first token <s> = 0), sample b padded from T - b*T/(2B) on, token types 0."""
    ids = torch.randint(3, vocab, (batch, seq_len), generator=gen)
    ids[:, 0] = 0
    mask = torch.ones(batch, seq_len, dtype=torch.long)
    for b in range(batch):
        length = seq_len - (b * seq_len) // (2 * batch)
        ids[b, length:] = pad_id
        mask[b, length:] = 0
    return dict(inputs=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))


def build(a):
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed + 1)
    if a.model == "resnet50":
        import torchvision
        model = torchvision.models.resnet50(weights=None, num_classes=a.classes)
        batch = dict(inputs=torch.randn(a.batch, 3, a.image_size, a.image_size, generator=gen))
        layers = resnet_hessian_layers(model)
    else:
        c = RobertaConfig()
        model = RobertaForSequenceClassification(c, a.classes)
        batch = text_batch(a.batch, a.seq_len, c.vocab_size, c.pad_token_id, gen)
        layers = roberta_hessian_layers(model)
    batch["labels"] = torch.randint(a.classes, (a.batch,), generator=gen)
    return model, batch, layers


def logits_of(model, batch):
    if "attention_mask" in batch:
        return model(batch["inputs"], batch["attention_mask"], batch["token_type_ids"])
    return model(batch["inputs"])


def loss_of(model, batch):
    return F.cross_entropy(logits_of(model, batch), batch["labels"])


def select_hessian_params(model, layers):
    """Exactly the Hessian layers require grad (hessgap's measures::prepare_hessian_params)."""
    wanted = set(layers)
    named = dict(model.named_parameters())
    for n, p in named.items():
        p.requires_grad_(n in wanted)
    return [named[n] for n in layers]


def rademacher(params, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 2, p.shape, generator=g).to(p.dtype) * 2 - 1 for p in params]


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["resnet50", "roberta-base"], default="resnet50")
    ap.add_argument("--mode", choices=["grad", "hvp"], default="grad")
    ap.add_argument("--batch", type=int, default=0, help="default: resnet50 32, roberta-base 8")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--classes", type=int, default=0, help="default: resnet50 1000, roberta-base 2")
    ap.add_argument("--warmup", type=int, default=0, help="untimed iterations first")
    ap.add_argument("--iters", type=int, default=1, help="timed iterations (grad: fwd+bwd; hvp: graph + products)")
    ap.add_argument("--hvps", type=int, default=1, help="hvp mode: products per graph")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--import", dest="import_dir", help="cross-check: weights/batch/v written by bench_models --export")
    ap.add_argument("--fixture", help="check this RoBERTa against a Hugging Face fixture folder (roberta-tiny) and exit")
    a = ap.parse_args()
    if a.batch <= 0:
        a.batch = 32 if a.model == "resnet50" else 8
    if a.classes <= 0:
        a.classes = 1000 if a.model == "resnet50" else 2
    return a


def cross_check(a, model, layers):
    """Loss, |g| and v^T H v on the exported weights, batch and v (float32, eval mode)."""
    tensors, _ = safetensors_np.read(os.path.join(a.import_dir, "weights.safetensors"))
    state = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}
    model.load_state_dict(state, strict=True)  # raises on any missing, unexpected or mis-shaped name
    b, _ = safetensors_np.read(os.path.join(a.import_dir, "batch.safetensors"))
    batch = {k: torch.from_numpy(v.copy()) for k, v in b.items()}
    vt, _ = safetensors_np.read(os.path.join(a.import_dir, "v.safetensors"))
    model.eval()
    params = select_hessian_params(model, layers)
    v = [torch.from_numpy(vt[n].copy()) for n in layers]
    loss = loss_of(model, batch)
    g = torch.autograd.grad(loss, params, create_graph=True)
    hv = torch.autograd.grad(g, params, grad_outputs=v)
    out = dict(side="python", model=a.model, loss=loss.item(),
               grad_norm=math.sqrt(sum((x.detach().double() ** 2).sum().item() for x in g)),
               vhv=sum((x.double() * y.double()).sum().item() for x, y in zip(v, hv)),
               hessian_layers=len(layers))
    return out


def check_fixture(folder):
    """This RoBERTa against Hugging Face's own outputs (tests/fixtures/hf/roberta-tiny, float64):
    the maximum |logits - expected| / max |expected|."""
    model = RobertaForSequenceClassification(RobertaConfig(os.path.join(folder, "config.json")), 2)
    w, _ = safetensors_np.read(os.path.join(folder, "model.safetensors"))
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in w.items()}, strict=True)
    model.double().eval()
    e, _ = safetensors_np.read(os.path.join(folder, "expected.safetensors"))
    ids, mask = torch.from_numpy(e["input.input_ids"].copy()), torch.from_numpy(e["input.attention_mask"].copy())
    with torch.no_grad():
        logits = model(ids, mask, torch.zeros_like(ids))
    want = torch.from_numpy(e["output.logits"].copy())
    err = ((logits - want).abs().max() / want.abs().max()).item()
    print(json.dumps(dict(side="python", fixture=folder, logits_max_rel_err=err)))


def main():
    a = parse()
    if a.fixture:
        check_fixture(a.fixture)
        return
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    rss_start = rss_mib()
    model, batch, layers = build(a)
    model.eval()
    if a.import_dir:
        print(json.dumps(cross_check(a, model, layers)))
        return
    n_params = sum(p.numel() for p in model.parameters())
    times = {}
    loss_value = None
    if a.mode == "grad":
        for p in model.parameters():
            p.requires_grad_(True)
        times["grad"] = []
        for it in range(a.warmup + a.iters):
            for p in model.parameters():
                p.grad = None
            t0 = time.perf_counter()
            loss = loss_of(model, batch)
            loss.backward()
            dt = time.perf_counter() - t0
            loss_value = loss.item()
            if it >= a.warmup:
                times["grad"].append(dt)
    else:
        params = select_hessian_params(model, layers)
        v = rademacher(params, a.seed + 2)
        times["graph"], times["hvp"] = [], []
        for it in range(a.warmup + a.iters):
            t0 = time.perf_counter()
            loss = loss_of(model, batch)
            g = torch.autograd.grad(loss, params, create_graph=True)
            t1 = time.perf_counter()
            for _ in range(a.hvps):
                t2 = time.perf_counter()
                hv = torch.autograd.grad(g, params, grad_outputs=v, retain_graph=True)
                if it >= a.warmup:
                    times["hvp"].append(time.perf_counter() - t2)
                del hv
            loss_value = loss.item()
            if it >= a.warmup:
                times["graph"].append(t1 - t0)
            del g, loss
    out = dict(side="python", model=a.model, mode=a.mode, batch=a.batch,
               size=a.image_size if a.model == "resnet50" else a.seq_len, classes=a.classes,
               threads=torch.get_num_threads(), params=n_params, hessian_layers=len(layers),
               times=times, median={k: statistics.median(v) for k, v in times.items()}, loss=loss_value,
               rss_start_mib=rss_start, peak_rss_mib=peak_rss_mib())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
