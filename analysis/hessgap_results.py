#!/usr/bin/python3
"""Reader for hessgap results files (HDF5, layout in docs/output-format.md).

One file per `hessgap` invocation. Root attributes identify the run (version, git SHA, command
line, the resolved config as JSON, world size); /layers/names orders every per-layer array; the
sections /eval, /traces, /measures and /stability are present when the subcommand computed them.
This module only reads files (h5py + numpy); it never imports or runs the C++ code.

    >>> from hessgap_results import load
    >>> r = load("run.h5")
    >>> r.config["data"]["sample_size"], r.layers[0], r.traces["layer_mean"].shape

Command line:
    /usr/bin/python3 analysis/hessgap_results.py FILE.h5 [--plot out.png]
"""
import argparse
import dataclasses
import json
import sys
from typing import Any, Dict, List, Optional

import h5py
import numpy as np

SECTIONS = ("eval", "traces", "measures", "stability", "spectrum", "labels", "train")
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
    stability: Optional[Dict[str, Any]] = None
    spectrum: Optional[Dict[str, Any]] = None  # hessgap spectrum: eigenvalues, residuals, slq (nodes, weights)
    labels: Optional[Dict[str, Any]] = None   # clean vs used labels (label noise, weak labels)
    train: Optional[Dict[str, Any]] = None    # hessgap train: history, epochs, final (groups of columns)
    # Per section: {"attrs": group attributes, dataset name: {"description": ..., "units": ...}}
    meta: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def subcommand(self) -> str:
        return self.attrs.get("subcommand", "")

    @property
    def world_size(self) -> int:
        return int(self.attrs.get("world_size", 1))

    def sections(self) -> List[str]:
        return [s for s in SECTIONS if getattr(self, s) is not None]


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
            group = f[name]
            values, meta = {}, {"attrs": {k: _text(v) for k, v in group.attrs.items()}}
            for key, ds in group.items():
                if isinstance(ds, h5py.Group):  # e.g. /eval/samples: a table of per-sample columns
                    values[key] = {k: _read_dataset(v) for k, v in ds.items() if isinstance(v, h5py.Dataset)}
                    continue
                values[key] = _read_dataset(ds)
                meta[key] = {k: _text(v) for k, v in ds.attrs.items()}
            setattr(res, name, values)
            res.meta[name] = meta
    return res


def _fmt(x) -> str:
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.6g}"
    return str(x)


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
        lines.append(f"\n[traces] {B} batches ({int(np.sum(t['batch_sizes']))} samples), "
                     f"scope {ta.get('probe_scope')}, rule {ta.get('stop_rule')}, "
                     f"max_probes {ta.get('max_probes')}, {t['hvps']} HVPs, {t['seconds']:.1f} s")
        lines.append(f"  {'layer':<28} {'mean trace':>13} {'± stderr':>11} {'max (ref.)':>13} {'probes':>8}")
        probes = np.mean(t["batch_probes"], axis=0)
        for i, name in enumerate(res.layers):
            lines.append(f"  {name:<28} {t['layer_mean'][i]:>13.6g} {t['layer_mean_std_error'][i]:>11.3g} "
                         f"{t['layer_max'][i]:>13.6g} {probes[i]:>8.1f}")
        lines.append(f"  {'total':<28} {np.sum(t['layer_mean']):>13.6g} {'':>11} {np.sum(t['layer_max']):>13.6g}")
    if res.measures is not None:
        m, ma = res.measures, res.meta["measures"]["attrs"]
        lines.append(f"\n[measures] mode {ma.get('mode')}, head reference {ma.get('head_reference')}, "
                     f"{m['batch_quad'].shape[0]} batches, {m['seconds']:.1f} s")
        lines.append(f"  {'layer':<28} {'H_i (max)':>13} {'||v_i||_F':>13}")
        for i, name in enumerate(res.layers):
            lines.append(f"  {name:<28} {m['layer_max'][i]:>13.6g} {m['v_norm'][i]:>13.6g}")
        lines.append(f"  sum_i sqrt(H_i+) {_fmt(m['sum_sqrt'])} ({m['negative_layers']} negative clipped); "
                     f"bound {_fmt(m['bound'])} (n = {m['train_size']}); bound_c {_fmt(m['bound_c'])} "
                     f"(C = {_fmt(m['max_loss'])})")
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
        sp, sa = res.spectrum, res.meta["spectrum"]["attrs"]
        lines.append(f"\n[spectrum] {sa.get('which')} {len(sp['eigenvalues'])} of {sp['num_params']} "
                     f"({sa.get('layer')}), {sa.get('steps_run')} Lanczos steps, {sp['hvps']} HVPs")
        for k, (ev, res_k) in enumerate(zip(sp["eigenvalues"], sp["residuals"])):
            lines.append(f"  {k + 1:>3} {ev:>16.8g}  residual {_fmt(res_k)}")
        if "slq" in sp:
            lines.append(f"  SLQ: {sp['slq']['nodes'].shape[0]} probes of {sp['slq']['nodes'].shape[1]} nodes")
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


def summary(path: str) -> Results:
    """Prints a readable summary of the file and returns what load() returned."""
    res = load(path)
    print(summary_text(res))
    return res


def plot(res: Results, out: str) -> None:
    """Per-layer traces (mean ± stderr and max), distance-measure values, the stability histogram, the
    realised label-transition matrix (/labels) and the confusion matrix of a per-sample eval, saved to `out`."""
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
    if res.spectrum is not None and "slq" in res.spectrum:
        panels.append("spectrum")
    if not panels:
        raise ValueError(f"{res.path}: nothing to plot (no traces, measures, stability, labels, per-sample eval or training)")
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
            m = res.measures
            ax.bar(x, m["layer_max"], label="H_i = max_b v_i·(Hv)_i")
            ax.set_ylabel("H_i  [loss]")
            ax.set_title(f"Hessian distance measure (bound {float(m['bound']):.4g})")
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
            nodes, weights = res.spectrum["slq"]["nodes"], res.spectrum["slq"]["weights"]
            finite = nodes[np.isfinite(nodes)]
            lo, hi = float(finite.min()), float(finite.max())
            span = max(hi - lo, 1e-12)
            grid = np.linspace(lo - 0.05 * span, hi + 0.05 * span, 800)
            sigma = 0.01 * span
            ax.semilogy(grid, np.maximum(slq_density(nodes, weights, grid, sigma), 1e-12), lw=1)
            for ev in res.spectrum["eigenvalues"]:
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
    p.add_argument("--plot", metavar="OUT.png", help="also plot per-layer traces / measures to this image")
    args = p.parse_args(argv)
    try:
        res = summary(args.file)
        if args.plot:
            plot(res, args.plot)
            print(f"\nplot written to {args.plot}")
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
