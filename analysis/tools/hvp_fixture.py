"""The derivative part of the model fixtures (tests/fixtures/models): gradient, a closed-form probe
and its Hessian-vector product for the Hessian layers, stored as strided samples plus whole-tensor
scalars, in the layout the C++ fixture tests read."""
import math

import torch


def probe(i, numel):
    """v_i[k] = sin(0.1*(k+1) + i): layer i (Hessian-layer order), flat index k; the C++ side recomputes it."""
    k = torch.arange(numel, dtype=torch.float64)
    return torch.sin(0.1 * (k + 1) + i)


def derivative_tensors(loss, names, ws, sample):
    """[(name, tensor)]: grad./v./hv.<layer> sampled every ceil(numel/sample) entries, sample_stride,
    grad_sqnorm, hv_sqnorm and vhv (per layer). The HVP is restricted to the layers `ws`."""
    grads = torch.autograd.grad(loss, ws, create_graph=True)
    vs = [probe(i, w.numel()).view_as(w) for i, w in enumerate(ws)]
    hvs = torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, vs)), ws)
    tensors, strides = [], []
    for n, g, v, hv in zip(names, grads, vs, hvs):
        s = math.ceil(g.numel() / sample)
        strides.append(s)
        for prefix, t in (("grad", g), ("v", v), ("hv", hv)):
            tensors.append((f"{prefix}.{n}", t.detach().reshape(-1)[::s]))
    tensors += [
        ("sample_stride", torch.tensor(strides, dtype=torch.int64)),
        ("grad_sqnorm", torch.stack([g.detach().pow(2).sum() for g in grads])),
        ("hv_sqnorm", torch.stack([h.pow(2).sum() for h in hvs])),
        ("vhv", torch.stack([(v * h).sum() for v, h in zip(vs, hvs)])),
    ]
    return tensors
