#!/usr/bin/python3
"""Reader for hessgap results files (HDF5, layout in docs/output-format.md).

One file per `hessgap` invocation. Root attributes identify the run (version, git SHA, command
line, the resolved config as JSON, world size); /layers/names orders every per-layer array; the
sections /eval, /traces, /measures (and /measures_block beside it), /stability, /spectrum, /labels and
/train are present when the subcommand computed them; subgroups at any depth (/spectrum/per_layer,
/spectrum/landscape, /spectrum/slq, /eval/samples, /train/history) come back as nested dicts.
This module only reads files (h5py + numpy); it never imports or runs the C++ code.

    >>> from hessgap_results import load
    >>> r = load("run.h5")
    >>> r.config["data"]["sample_size"], r.layers[0], r.traces["layer_mean"].shape

Command line:
    /usr/bin/python3 analysis/hessgap_results.py FILE.h5 [--plot out.png] [--density-csv density.csv]
"""
import argparse
import dataclasses
import json
import sys
from typing import Any, Dict, List, Optional

import h5py
import numpy as np

SECTIONS = ("eval", "traces", "measures", "measures_block", "stability", "spectrum", "labels", "train")
FORMAT = "hessgap-results"
MAX_FORMAT_VERSION = 1


def _text(value):
    """h5py returns variable-length strings as str (attributes) or bytes (datasets)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    if isinstance(value, np.generic):
        return value.item()
    return value


def _read_dataset(ds):
    """A dataset as a numpy array (shape > 0), a Python scalar, or a list of str (string arrays)."""
    if h5py.check_string_dtype(ds.dtype) is not None:
        if ds.shape == ():
            return _text(ds[()])
        return [_text(s) for s in ds[()]]
    value = ds[()]
    if isinstance(value, np.ndarray):
        return value
    return value.item() if isinstance(value, np.generic) else value


@dataclasses.dataclass
class Results:
    """Everything in one results file. Sections absent from the file are None."""
    path: str
    attrs: Dict[str, Any]             # root attributes (config still as the JSON string)
    config: Dict[str, Any]            # root attribute "config", parsed (flag name -> value, as stored)
    layers: List[str]                 # /layers/names: order of every per-layer array
    model: Dict[str, Any]             # /model attributes (arch, checkpoint)
    data: Dict[str, Any]              # /data attributes (description)
    eval: Optional[Dict[str, Any]] = None
    traces: Optional[Dict[str, Any]] = None
    measures: Optional[Dict[str, Any]] = None
    # The block-mode measure written beside /measures: by `measures --mode psd` (the clipped block measure
    # v_i^T H_ii v_i next to the PSD part) and by `train` (block next to joint).
    measures_block: Optional[Dict[str, Any]] = None
    stability: Optional[Dict[str, Any]] = None
    # hessgap spectrum: eigenvalues, residuals, slq {nodes, weights}, landscape {t, loss}, or with --per-layer
    # per_layer {eigenvalues [L,K], residuals, steps, converged, num_params, slq_nodes, slq_weights [L,P,M]}
    spectrum: Optional[Dict[str, Any]] = None
    labels: Optional[Dict[str, Any]] = None   # clean vs used labels (label noise, weak labels)
    train: Optional[Dict[str, Any]] = None    # hessgap train: history, epochs, final (groups of columns)
    # Per section: {"attrs": group attributes, dataset name: {"description": ..., "units": ...},
    #              subgroup name: the same shape again (e.g. meta["spectrum"]["landscape"]["attrs"])}
    meta: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def subcommand(self) -> str:
        return self.attrs.get("subcommand", "")

    @property
    def world_size(self) -> int:
        return int(self.attrs.get("world_size", 1))

    def sections(self) -> List[str]:
        return [s for s in SECTIONS if getattr(self, s) is not None]


def _read_group(group):
    """A group as (values, meta): values maps dataset names to arrays/scalars and subgroup names to their
    own values (recursively); meta maps "attrs" to the group's attributes, dataset names to their
    attributes and subgroup names to their own meta."""
    values, meta = {}, {"attrs": {k: _text(v) for k, v in group.attrs.items()}}
    for key, obj in group.items():
        if isinstance(obj, h5py.Group):
            values[key], meta[key] = _read_group(obj)
        elif isinstance(obj, h5py.Dataset):
            values[key] = _read_dataset(obj)
            meta[key] = {k: _text(v) for k, v in obj.attrs.items()}
    return values, meta


def load(path: str) -> Results:
    """Reads a hessgap results file. Raises ValueError if it is not one (or is a newer format)."""
    with h5py.File(path, "r") as f:
        attrs = {k: _text(v) for k, v in f.attrs.items()}
        if attrs.get("format") != FORMAT:
            raise ValueError(f"{path}: not a hessgap results file (format attribute {attrs.get('format')!r})")
        version = int(attrs.get("format_version", 0))
        if version > MAX_FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {version} is newer than this reader ({MAX_FORMAT_VERSION})")
        config = json.loads(attrs["config"]) if attrs.get("config") else {}
        layers = _read_dataset(f["layers/names"]) if "layers/names" in f else []
        res = Results(
            path=path, attrs=attrs, config=config, layers=list(layers),
            model={k: _text(v) for k, v in f["model"].attrs.items()} if "model" in f else {},
            data={k: _text(v) for k, v in f["data"].attrs.items()} if "data" in f else {},
        )
        for name in SECTIONS:
            if name not in f:
                continue
            values, meta = _read_group(f[name])
            setattr(res, name, values)
            res.meta[name] = meta
    return res


def _fmt(x) -> str:
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.6g}"
    return str(x)


def _spectrum_lines(res: Results) -> List[str]:
    sp, sa = res.spectrum, res.meta["spectrum"]["attrs"]
    method = sa.get("method", "lanczos")
    lines = []
    if "per_layer" in sp:
        pl = sp["per_layer"]
        names = sp.get("layers", res.layers)
        ev = np.asarray(pl["eigenvalues"])
        L, K = ev.shape
        lines.append(f"\n[spectrum] per layer: {sa.get('which')} {K} of each of {L} layers' diagonal blocks, "
                     f"{method}, at most {sa.get('lanczos_steps')} steps, {sp['hvps']} HVPs, {sp['seconds']:.1f} s")
        lines.append(f"  {'layer':<28} {'params':>8} {'top eigenvalue':>16} {'residual':>10} {'steps':>6} {'conv.':>5}"
                     + ("  further eigenvalues" if K > 1 else ""))
        for i, name in enumerate(names):
            row = (f"  {name:<28} {int(pl['num_params'][i]):>8} {ev[i, 0]:>16.8g} {_fmt(pl['residuals'][i, 0]):>10} "
                   f"{int(pl['steps'][i]):>6} {int(pl['converged'][i]):>5}")
            if K > 1:
                row += "  " + " ".join(f"{x:.6g}" for x in ev[i, 1:])
            lines.append(row)
        top = int(np.nanargmax(ev[:, 0]))
        lines.append(f"  largest top eigenvalue: {names[top]} ({ev[top, 0]:.8g})")
        if "slq_nodes" in pl:
            lines.append(f"  SLQ per layer: {pl['slq_nodes'].shape[1]} probes of {pl['slq_nodes'].shape[2]} nodes")
        return lines
    if method == "power":
        steps = f"power iteration ({', '.join(str(int(i)) for i in sp['iterations'])} iterations, " \
                f"max_iter {sa.get('max_iter')})"
    else:
        steps = f"{sa.get('steps_run')} Lanczos steps"
    lines.append(f"\n[spectrum] {sa.get('which')} {len(sp['eigenvalues'])} of {sp['num_params']} "
                 f"({sa.get('layer')}), {steps}, {sp['hvps']} HVPs")
    for k, (ev, res_k) in enumerate(zip(sp["eigenvalues"], sp["residuals"])):
        lines.append(f"  {k + 1:>3} {ev:>16.8g}  residual {_fmt(res_k)}")
    if "slq" in sp:
        lines.append(f"  SLQ: {sp['slq']['nodes'].shape[0]} probes of {sp['slq']['nodes'].shape[1]} nodes; "
                     f"mean eigenvalue {_fmt(slq_mean(sp['slq']['nodes'], sp['slq']['weights']))} "
                     f"(trace / num_params)")
    if "landscape" in sp:
        t, loss = np.asarray(sp["landscape"]["t"]), np.asarray(sp["landscape"]["loss"])
        lam = float(res.meta["spectrum"]["landscape"]["attrs"].get("eigenvalue", sp["eigenvalues"][0]))
        l0 = _landscape_loss0(t, loss, lam)
        lines.append(f"  landscape along the unit top eigenvector (λ = {lam:.8g}): {len(t)} points, t in "
                     f"[{_fmt(t[0])}, {_fmt(t[-1])}]; loss(0) {_fmt(l0)}, loss({_fmt(t[0])}) {_fmt(loss[0])}, "
                     f"loss({_fmt(t[-1])}) {_fmt(loss[-1])}; quadratic model at t = {_fmt(t[-1])}: "
                     f"{_fmt(l0 + 0.5 * lam * t[-1] ** 2)}")
    return lines


def _landscape_loss0(t, loss, lam):
    """loss(0) of the landscape: the stored value at t = 0 (odd point counts), else the innermost symmetric
    pair with the gradient term cancelled: (loss(-a) + loss(a)) / 2 - λa²/2."""
    t, loss = np.asarray(t, dtype=float), np.asarray(loss, dtype=float)
    zero = np.flatnonzero(t == 0.0)
    if zero.size:
        return float(loss[zero[0]])
    i = int(np.argmin(np.abs(t)))
    j = int(np.argmin(np.abs(t + t[i])))
    if j == i:  # a single point: nothing to cancel the gradient term with
        return float(loss[i])
    return float(0.5 * (loss[i] + loss[j]) - 0.25 * lam * (t[i] ** 2 + t[j] ** 2))


def summary_text(res: Results) -> str:
    a = res.attrs
    lines = [
        f"{res.path}: hessgap {a.get('hessgap_version', '?')} ({a.get('git_sha', '?')}), "
        f"subcommand '{res.subcommand}', {res.world_size} rank(s), backend {a.get('backend', '?')}, "
        f"created {a.get('created_utc', '?')}",
        f"  command: {a.get('command_line', '')}",
        f"  model:   {res.model.get('arch', '?')} from {res.model.get('checkpoint', '') or '(none)'}",
        f"  data:    {res.data.get('description', '')}"
        + (f" (sample order {res.data['sample_order']})" if res.data.get("sample_order") else ""),
        f"  layers:  {len(res.layers)}; sections: {', '.join(res.sections()) or '(none)'}",
    ]
    if res.eval is not None:
        e = res.eval
        if "loss" in e:
            lines.append(f"\n[eval] {e['num_samples']} samples: loss {e['loss']:.6f} nats, "
                         f"accuracy {100 * e['accuracy']:.2f}% ({e['correct']} correct), {e['seconds']:.1f} s")
        else:  # unlabelled data (a GLUE test split): predictions only
            lines.append(f"\n[eval] {e['num_samples']} unlabelled samples: predictions only (no loss or accuracy), "
                         f"{e['seconds']:.1f} s")
        if "samples" in e:
            smp = e["samples"]
            lines.append(f"  per-sample table: {len(smp['sample_id'])} rows, logits {smp['logits'].shape} "
                         f"{smp['logits'].dtype}")
    if res.labels is not None:
        lab, la = res.labels, res.meta["labels"]["attrs"]
        lines.append(f"\n[labels] source {la.get('source')}: {len(lab['used'])} samples, {lab['num_noisy']} differ from "
                     f"the clean label (realised noise rate {lab['realised_noise_rate']:.4f}; "
                     f"{int(np.sum(lab['relabelled']))} relabelled)")
        if la.get("source") == "synthetic":
            lines.append(f"  noise: {la.get('noise_mode')} at rate {_fmt(la.get('noise_rate'))}, seed "
                         f"{la.get('noise_seed')}, chunk {la.get('noise_chunk')}")
    if res.traces is not None:
        t, ta = res.traces, res.meta["traces"]["attrs"]
        B = t["batch_mean"].shape[0]
        estimator = ta.get("estimator", "hutchinson")  # files before issue #11 have no attribute: Hutchinson
        if estimator == "hutchinson":
            how = f"rule {ta.get('stop_rule')}, max_probes {ta.get('max_probes')}"
        else:  # the sketching estimators spend a fixed budget; the stopping rule does not apply
            how = f"fixed budget of {ta.get('max_probes')} block HVPs per layer"
        lines.append(f"\n[traces] estimator {estimator}, {B} batches ({int(np.sum(t['batch_sizes']))} samples), "
                     f"scope {ta.get('probe_scope')}, {how}, {t['hvps']} HVPs, {t['seconds']:.1f} s")
        lines.append(f"  {'layer':<28} {'mean trace':>13} {'± stderr':>11} {'max (ref.)':>13} {'probes':>8}")
        probes = np.mean(t["batch_probes"], axis=0)
        for i, name in enumerate(res.layers):
            lines.append(f"  {name:<28} {t['layer_mean'][i]:>13.6g} {t['layer_mean_std_error'][i]:>11.3g} "
                         f"{t['layer_max'][i]:>13.6g} {probes[i]:>8.1f}")
        lines.append(f"  {'total':<28} {np.sum(t['layer_mean']):>13.6g} {'':>11} {np.sum(t['layer_max']):>13.6g}")
    if res.measures is not None:
        m, ma = res.measures, res.meta["measures"]["attrs"]
        mode = ma.get("mode")
        mb = res.measures_block
        head = f"\n[measures] mode {mode}, head reference {ma.get('head_reference')}, " \
               f"{m['batch_quad'].shape[0]} batches, {m['seconds']:.1f} s"
        if mode == "psd":
            head += f"; Lanczos quadrature of max(λ, 0) from v_i, at most {ma.get('psd_steps')} steps, " \
                    f"tol {_fmt(ma.get('psd_tol'))}"
        lines.append(head)
        name_m = {"psd": "H_i+ (psd)", "block": "H_i (block)", "joint": "H_i (joint)"}.get(mode, "H_i (max)")
        cols = f"  {'layer':<28} {name_m:>13}"
        if mb is not None:
            cols += f" {'H_i (block)':>13}"
        cols += f" {'||v_i||_F':>13}"
        if "psd_steps" in m:
            cols += f" {'steps':>6} {'conv.':>6}"
        lines.append(cols)
        for i, name in enumerate(res.layers):
            row = f"  {name:<28} {m['layer_max'][i]:>13.6g}"
            if mb is not None:
                row += f" {mb['layer_max'][i]:>13.6g}"
            row += f" {m['v_norm'][i]:>13.6g}"
            if "psd_steps" in m:  # [B, L]: the most steps over batches, and batches converged of B
                row += f" {int(np.max(m['psd_steps'][:, i])):>6} " \
                       f"{int(np.sum(m['psd_converged'][:, i])):>3}/{m['psd_converged'].shape[0]:<2}"
            lines.append(row)
        lines.append(f"  sum_i sqrt(H_i+) {_fmt(m['sum_sqrt'])} ({m['negative_layers']} negative clipped); "
                     f"bound {_fmt(m['bound'])} (n = {m['train_size']}); bound_c {_fmt(m['bound_c'])} "
                     f"(C = {_fmt(m['max_loss'])})")
        if mb is not None:
            lines.append(f"  block (/measures_block): sum_i sqrt(max(H_i, 0)) {_fmt(mb['sum_sqrt'])} "
                         f"({mb['negative_layers']} negative clipped); bound {_fmt(mb['bound'])}; "
                         f"bound_c {_fmt(mb['bound_c'])}")
        if "psd_converged" in m:
            conv = np.asarray(m["psd_converged"])
            lines.append(f"  psd quadrature: {int(conv.sum())} of {conv.size} (batch, layer) pairs converged; "
                         f"largest last relative change {_fmt(float(np.nanmax(m['psd_change'])))}")
    if res.train is not None:
        t, ta, fin = res.train, res.meta["train"]["attrs"], res.train["final"]
        lines.append(f"\n[train] run {a.get('run_id', '?')} ({a.get('status', '?')}): {ta.get('optimizer')} lr "
                     f"{_fmt(ta.get('lr'))}, {ta.get('schedule')} schedule, batch {ta.get('batch_size')}, "
                     f"reg {ta.get('reg_method')} ({ta.get('reg_norm')}), reweighted {bool(ta.get('reweighted'))}")
        e = t["epochs"]
        lines.append(f"  {'epoch':>5} {'lr':>10} {'train loss':>11} {'train acc':>10} {'val loss':>10} {'val acc':>9}")
        for i in range(len(e["epoch"])):
            lines.append(f"  {int(e['epoch'][i]) + 1:>5} {e['lr'][i]:>10.3g} {e['train_loss'][i]:>11.5f} "
                         f"{e['train_accuracy'][i]:>10.4f} {e['val_loss'][i]:>10.5f} {e['val_accuracy'][i]:>9.4f}")
        lines.append(f"  best epoch {int(fin['best_epoch']) + 1}: test accuracy {float(fin['test_accuracy']):.4f}, "
                     f"test loss {float(fin['test_loss']):.5f}, train loss {float(fin['train_loss_clean']):.5f} "
                     f"(clean) / {float(fin['train_loss_noisy']):.5f} (noisy); gap {float(fin['gap_loss_clean']):.5f}")
    if res.stability is not None:
        s, sa = res.stability, res.meta["stability"]["attrs"]
        lines.append(f"\n[stability] eps {_fmt(sa.get('eps'))}, {len(s['deltas'])} repeats, "
                     f"{s['num_samples']} samples: base loss {s['base_loss']:.6f}, "
                     f"accuracy {100 * s['base_accuracy']:.2f}%")
        lines.append(f"  loss change: mean {_fmt(s['mean'])} ± {_fmt(s['std'])} (population std)")
    if res.spectrum is not None:
        lines += _spectrum_lines(res)
    return "\n".join(lines)


def slq_density(nodes, weights, grid, sigma):
    """The spectral density of stochastic Lanczos quadrature on `grid`, each node broadened by a Gaussian of
    standard deviation `sigma`: (1/P) Σ_p Σ_j w_pj N(x; θ_pj, σ²). nodes, weights: [P, M] (NaN nodes, as a
    run shorter than M leaves them, are skipped). Integrates to 1 over the real line."""
    nodes = np.asarray(nodes, dtype=float)
    weights = np.asarray(weights, dtype=float)
    grid = np.asarray(grid, dtype=float)
    keep = np.isfinite(nodes)
    th, w = nodes[keep], weights[keep]
    z = (grid[:, None] - th[None, :]) / sigma
    return (np.exp(-0.5 * z * z) * w[None, :]).sum(axis=1) / (np.sqrt(2 * np.pi) * sigma * nodes.shape[0])


def slq_mean(nodes, weights) -> float:
    """The mean of the SLQ density, (1/P) Σ_p Σ_j w_pj θ_pj: for Rademacher starts an estimate of
    tr(H) / num_params. nodes, weights: [P, M] (NaN-padded nodes skipped)."""
    nodes = np.asarray(nodes, dtype=float)
    weights = np.asarray(weights, dtype=float)
    keep = np.isfinite(nodes)
    return float(np.sum(nodes[keep] * weights[keep]) / nodes.shape[0])


def slq_density_grid(nodes, weights, points=800, sigma_fraction=0.01):
    """(grid, density, sigma): the broadened SLQ density on `points` equally spaced eigenvalues. σ is
    `sigma_fraction` of the nodes' range, and the grid reaches max(5 % of the range, 6σ) beyond the outermost
    nodes, so that it holds the density's mass to ~1e-9 (a trapezoid sum over it integrates to 1)."""
    nodes = np.asarray(nodes, dtype=float)
    finite = nodes[np.isfinite(nodes)]
    if finite.size == 0:
        raise ValueError("no finite SLQ nodes")
    if points < 2 or not sigma_fraction > 0:
        raise ValueError(f"need points >= 2 and sigma_fraction > 0 (got {points}, {sigma_fraction})")
    lo, hi = float(finite.min()), float(finite.max())
    span = hi - lo
    if not span > 1e-12 * max(abs(lo), abs(hi), 1e-300):  # one distinct node: a scale from its size
        span = max(abs(hi), 1e-12)
    sigma = sigma_fraction * span
    margin = max(0.05 * span, 6.0 * sigma)
    grid = np.linspace(lo - margin, hi + margin, int(points))
    return grid, slq_density(nodes, weights, grid, sigma), sigma


def _slq_of(res: Results, layer=None):
    """(nodes, weights, label) [P, M] of the file's SLQ: the joint run's, or with a per-layer file that of
    `layer` (a name or an index; required there)."""
    sp = res.spectrum
    if sp is None:
        raise ValueError(f"{res.path}: no /spectrum section")
    if "per_layer" in sp:
        pl = sp["per_layer"]
        if "slq_nodes" not in pl:
            raise ValueError(f"{res.path}: no SLQ in /spectrum/per_layer (run hessgap spectrum with --slq-probes)")
        names = list(sp.get("layers", res.layers))
        if layer is None:
            raise ValueError(f"{res.path}: a per-layer spectrum: name the layer (one of {', '.join(names)})")
        if isinstance(layer, (int, np.integer)) or (isinstance(layer, str) and layer.isdigit()):
            i = int(layer)
            if not 0 <= i < len(names):
                raise ValueError(f"{res.path}: layer index {i} out of range (0..{len(names) - 1})")
        elif layer in names:
            i = names.index(layer)
        else:
            raise ValueError(f"{res.path}: no layer {layer!r} (one of {', '.join(names)})")
        return pl["slq_nodes"][i], pl["slq_weights"][i], names[i]
    if "slq" not in sp:
        raise ValueError(f"{res.path}: no /spectrum/slq (run hessgap spectrum with --slq-probes)")
    if layer is not None:
        raise ValueError(f"{res.path}: not a per-layer spectrum; leave the layer out")
    return sp["slq"]["nodes"], sp["slq"]["weights"], str(res.meta["spectrum"]["attrs"].get("layer", ""))


def write_density_csv(res: Results, path: str, points: int = 800, sigma_fraction: float = 0.01,
                      layer=None) -> None:
    """Writes the Gaussian-broadened SLQ spectral density on a grid to `path` as CSV with the header
    `eigenvalue,density` (units loss/weight² and its inverse): `points` rows, σ = `sigma_fraction` of the
    range of the nodes (see slq_density_grid). With a per-layer spectrum, `layer` (name or index) picks the
    block. Raises ValueError when the file has no SLQ."""
    nodes, weights, _ = _slq_of(res, layer)
    grid, density, _ = slq_density_grid(nodes, weights, points, sigma_fraction)
    with open(path, "w", encoding="utf-8") as f:
        f.write("eigenvalue,density\n")
        for x, d in zip(grid, density):
            f.write(f"{float(x)!r},{float(d)!r}\n")


def summary(path: str) -> Results:
    """Prints a readable summary of the file and returns what load() returned."""
    res = load(path)
    print(summary_text(res))
    return res


def plot(res: Results, out: str) -> None:
    """Per-layer traces (mean ± stderr and max), distance-measure values (with the block measure beside them
    when /measures_block exists), the stability histogram, the realised label-transition matrix (/labels),
    the confusion matrix of a per-sample eval, the training curves, and for a spectrum the SLQ density, the
    per-layer top eigenvalues, the loss landscape along the top eigenvector (with its quadratic model) or
    the eigenvalues with their residuals; saved to `out`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [s for s in ("traces", "measures") if getattr(res, s) is not None]
    if res.stability is not None:
        panels.append("stability")
    if res.labels is not None and "transitions" in res.labels:
        panels.append("labels")
    if res.eval is not None and "samples" in res.eval and "loss" in res.eval:  # unlabelled: no confusion matrix
        panels.append("confusion")
    if res.train is not None:
        panels.append("train")
    sp = res.spectrum
    if sp is not None:
        if "per_layer" in sp:
            panels.append("spectrum_layers")
        elif "slq" in sp:
            panels.append("spectrum")
        if "landscape" in sp:
            panels.append("landscape")
        if "per_layer" not in sp and "slq" not in sp and "landscape" not in sp:
            panels.append("eigenvalues")  # a run without SLQ (power iteration, a plain Lanczos run)
    if not panels:
        raise ValueError(f"{res.path}: nothing to plot (no traces, measures, stability, labels, per-sample eval, "
                         f"training or spectrum)")
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(8, 0.45 * len(res.layers)), 4 * len(panels)),
                             squeeze=False)
    x = np.arange(len(res.layers))
    for ax, panel in zip(axes[:, 0], panels):
        if panel == "traces":
            t = res.traces
            err = np.nan_to_num(t["layer_mean_std_error"], nan=0.0)
            ax.errorbar(x, t["layer_mean"], yerr=err, fmt="o", capsize=3, label="mean ± stderr")
            ax.plot(x, t["layer_max"], "s", mfc="none", label="max over batches (reference)")
            ax.set_ylabel("tr(H_ii)  [loss/weight²]")
            ax.set_title("Per-layer Hessian traces")
        elif panel == "measures":
            m, mb = res.measures, res.measures_block
            mode = res.meta["measures"]["attrs"].get("mode")
            what = {"psd": "H_i+ = max_b v_iᵀH_ii⁺v_i (PSD part)", "block": "H_i = max_b v_iᵀH_ii v_i (block)"}.get(
                mode, "H_i = max_b v_i·(Hv)_i")
            if mb is None:
                ax.bar(x, m["layer_max"], label=what)
                ax.set_title(f"Hessian distance measure (bound {float(m['bound']):.4g})")
            else:  # side by side: the measure and the block measure beside it (clipped at 0 in the bound)
                ax.bar(x - 0.2, m["layer_max"], width=0.4, label=what)
                ax.bar(x + 0.2, mb["layer_max"], width=0.4, label="H_i = max_b v_iᵀH_ii v_i (block, clipped at 0)")
                ax.set_title(f"Hessian distance measure, mode {mode} (bound {float(m['bound']):.4g}) "
                             f"and block (bound {float(mb['bound']):.4g})")
            ax.set_ylabel("H_i  [loss]")
            # The head usually dominates by orders of magnitude: a symmetric log scale keeps every layer visible.
            vals = np.concatenate([np.ravel(m["layer_max"])] + ([np.ravel(mb["layer_max"])] if mb is not None else []))
            vals = np.abs(vals[np.isfinite(vals) & (vals != 0)])
            if vals.size and vals.max() > 100 * vals.min():
                ax.set_yscale("symlog", linthresh=float(vals.min()))
        elif panel == "spectrum_layers":
            pl = sp["per_layer"]
            names = list(sp.get("layers", res.layers))
            ev, resid = np.asarray(pl["eigenvalues"], dtype=float), np.asarray(pl["residuals"], dtype=float)
            xl = np.arange(len(names))
            for k in range(ev.shape[1]):
                ax.plot(xl, ev[:, k], "o" if k == 0 else ".", ms=6 if k == 0 else 4, color="C0" if k == 0 else "C7",
                        label="top eigenvalue of the layer's block" if k == 0 else
                        ("further eigenvalues" if k == 1 else None))
            ax.errorbar(xl, ev[:, 0], yerr=resid[:, 0], fmt="none", ecolor="C3", capsize=2,
                        label="± residual ‖Hy − θy‖")
            finite = ev[np.isfinite(ev)]
            if finite.size and np.all(finite > 0):
                ax.set_yscale("log")
            elif finite.size:
                ax.set_yscale("symlog", linthresh=max(float(np.min(np.abs(finite[finite != 0]))), 1e-12)
                              if np.any(finite != 0) else 1.0)
            ax.set_xticks(xl)
            ax.set_xticklabels(names, rotation=70, ha="right", fontsize=7)
            ax.set_ylabel("eigenvalue  [loss/weight²]")
            ax.set_title(f"Per-layer Hessian blocks: {res.meta['spectrum']['attrs'].get('which')} eigenvalues "
                         f"({res.meta['spectrum']['attrs'].get('method', 'lanczos')})")
            ax.legend(fontsize=8)
            continue
        elif panel == "landscape":
            t, loss = np.asarray(sp["landscape"]["t"], dtype=float), np.asarray(sp["landscape"]["loss"], dtype=float)
            lam = float(res.meta["spectrum"]["landscape"]["attrs"].get("eigenvalue", sp["eigenvalues"][0]))
            l0 = _landscape_loss0(t, loss, lam)
            fine = np.linspace(t[0], t[-1], 400)
            ax.plot(t, loss, "o-", label="loss of the mean at W + t·y")
            ax.plot(fine, l0 + 0.5 * lam * fine ** 2, "--", color="C3", label=f"quadratic model loss(0) + λt²/2, "
                    f"λ = {lam:.6g}")
            lo, hi = min(float(np.min(loss)), l0), float(np.max(loss))
            pad = 0.1 * (hi - lo) if hi > lo else 0.1 * max(abs(hi), 1e-12)
            ax.set_ylim(lo - pad, hi + pad)  # the data's range: far out the quadratic model leaves the panel
            ax.set_xlabel("t  [weight units along the unit top eigenvector y]")
            ax.set_ylabel("loss  [nats]")
            ax.set_title("Loss along the top Hessian eigenvector")
            ax.legend(fontsize=8)
            continue
        elif panel == "eigenvalues":
            ev, resid = np.asarray(sp["eigenvalues"], dtype=float), np.asarray(sp["residuals"], dtype=float)
            k = np.arange(1, len(ev) + 1)
            ax.errorbar(k, ev, yerr=resid, fmt="o", capsize=3, label="eigenvalue ± residual ‖Hy − θy‖")
            if "ritz_values" in sp:
                rv = np.asarray(sp["ritz_values"], dtype=float)
                ax.plot(np.full(len(rv), 0.5), rv, "_", ms=12, color="C7", label="all Ritz values (at k = ½)")
            method = res.meta["spectrum"]["attrs"].get("method", "lanczos")
            ax.set_xticks(k)
            ax.set_xlabel("k")
            ax.set_ylabel("eigenvalue  [loss/weight²]")
            ax.set_title(f"Hessian eigenvalues ({method}, {res.meta['spectrum']['attrs'].get('layer')})")
            ax.legend(fontsize=8)
            continue
        elif panel == "train":
            h, e = res.train["history"], res.train["epochs"]
            ax.plot(h["step"], h["loss"], lw=0.8, label="training loss (global batch)")
            ax.set_xlabel("optimizer step")
            ax.set_ylabel("loss  [nats]")
            ax2 = ax.twinx()
            steps_per_epoch = len(h["step"]) / max(len(e["epoch"]), 1)
            ends = (np.asarray(e["epoch"]) + 1) * steps_per_epoch
            ax2.plot(ends, e["val_accuracy"], "o-", color="C1", label="validation accuracy")
            ax2.plot(ends, e["train_accuracy"], "s--", color="C2", label="training accuracy (training labels)")
            ax2.set_ylabel("accuracy")
            ax2.legend(fontsize=8, loc="lower right")
            ax.set_title(f"Training (best epoch {int(res.train['final']['best_epoch']) + 1}, "
                         f"test accuracy {float(res.train['final']['test_accuracy']):.4f})")
            ax.legend(fontsize=8, loc="upper right")
            continue
        elif panel == "spectrum":
            nodes, weights = sp["slq"]["nodes"], sp["slq"]["weights"]
            grid, density, _ = slq_density_grid(nodes, weights)
            ax.semilogy(grid, np.maximum(density, 1e-12), lw=1)
            for ev in sp["eigenvalues"]:
                ax.axvline(float(ev), color="C3", lw=0.6, ls="--")
            ax.set_xlabel("eigenvalue  [loss/weight²]")
            ax.set_ylabel("density (Gaussian σ = 1 % of the range)")
            ax.set_title(f"Hessian spectral density, SLQ over {nodes.shape[0]} probes (dashed: Lanczos top eigenvalues)")
            continue
        elif panel in ("labels", "confusion"):
            if panel == "labels":
                counts = np.asarray(res.labels["transitions"], dtype=float)
                title = (f"Realised label transitions ({res.meta['labels']['attrs'].get('source')}, "
                         f"noise rate {float(res.labels['realised_noise_rate']):.3f})")
                xlabel, ylabel = "label used", "clean label"
            else:
                smp = res.eval["samples"]
                k = smp["logits"].shape[1]
                counts = np.zeros((k, k))
                np.add.at(counts, (smp["label"], smp["predicted"]), 1)
                title = f"Confusion matrix ({len(smp['label'])} samples)"
                xlabel, ylabel = "predicted", "label"
            names = (res.labels if panel == "labels" else res.eval).get("class_names")
            if names is not None and len(names) == counts.shape[0] <= 30:
                ticks = np.arange(len(names))
                ax.set_xticks(ticks)
                ax.set_xticklabels(names, rotation=70, ha="right", fontsize=7)
                ax.set_yticks(ticks)
                ax.set_yticklabels(names, fontsize=7)
            rows = counts / np.maximum(counts.sum(1, keepdims=True), 1)
            im = ax.imshow(rows, cmap="viridis", vmin=0, vmax=1)
            fig.colorbar(im, ax=ax, label="fraction of the row")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            continue  # no layer ticks, no legend
        else:
            d = np.asarray(res.stability["deltas"])
            ax.hist(d, bins=max(5, min(30, len(d))))
            ax.axvline(float(res.stability["mean"]), color="k", ls="--", label="mean")
            ax.set_xlabel("f(W+U) - f(W)  [nats]")
            ax.set_title("Noise stability")
        if panel != "stability":
            ax.set_xticks(x)
            ax.set_xticklabels(res.layers, rotation=70, ha="right", fontsize=7)
            ax.axhline(0.0, color="gray", lw=0.5)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Summarise (and plot) a hessgap results file.")
    p.add_argument("file", help="results file written by hessgap --out")
    p.add_argument("--plot", metavar="OUT.png", help="also plot per-layer traces / measures / spectrum to this image")
    p.add_argument("--density-csv", metavar="PATH", help="write the Gaussian-broadened SLQ spectral density "
                   "(columns eigenvalue,density) of a spectrum file to this CSV file")
    p.add_argument("--density-points", type=int, default=800, metavar="N", help="grid points of --density-csv")
    p.add_argument("--density-sigma", type=float, default=0.01, metavar="F",
                   help="Gaussian σ of --density-csv as a fraction of the nodes' range (default 0.01)")
    p.add_argument("--density-layer", metavar="NAME", help="per-layer spectrum: the layer (name or index) of --density-csv")
    args = p.parse_args(argv)
    try:
        res = summary(args.file)
        if args.plot:
            plot(res, args.plot)
            print(f"\nplot written to {args.plot}")
        if args.density_csv:
            write_density_csv(res, args.density_csv, points=args.density_points, sigma_fraction=args.density_sigma,
                              layer=args.density_layer)
            print(f"\nspectral density written to {args.density_csv}")
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
