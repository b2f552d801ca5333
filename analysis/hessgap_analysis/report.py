"""The sweep report: SWEEP_DIR/report/report.md with PNG figures and CSV tables beside it.

Sections (each skipped with a sentence saying why when the sweep lacks its data):
  Runs                     one row per run: status, method, noise rate, radius, seed, accuracy, losses,
                           gaps, the Hessian distance measure, the bound, the distance-only measure
  Failed and unfinished    the runs that are not complete, with the index's message
  Per-layer traces         /traces/layer_mean ± layer_mean_std_error of every run that recorded them
  Measure against gap      the bound (the measure scaled by 1/sqrt(n)) against the measured gap, the
                           line y = x, and Kendall's tau-b between each measure and each gap
  Figure 1                 the gap, the Hessian measure and the distance-only measure sum_i ||v_i||
                           against the constraint radius (--reg-extractor), when the sweep varies it
  Accuracy                 test accuracy (and gap, measure) per method and noise rate, mean ± std
                           over seeds
Files: report.md, runs.csv, summary.csv, kendall.csv, traces.csv, figure1.csv and traces.png,
measure_vs_gap.png, figure1_radius.png, accuracy.png (each only when its section has data).
"""
import json
import math
import os
from typing import Dict, List

import numpy as np
import pandas as pd

from .runs import Run, read_run
from .stats import finite_pairs, kendall_tau_b, mean_std
from .sweep import group_keys, load_sweep

# Columns of the runs table, in order; the grid's other flags go after `seed`.
RUN_COLUMNS_HEAD = ["run_id", "status", "method", "noise_rate", "radius", "seed"]
RUN_COLUMNS_RESULTS = ["test_accuracy", "test_loss", "train_loss_clean", "train_loss_noisy", "gap_loss_noisy",
                       "gap_loss_clean", "gap_accuracy", "measure", "bound", "bound_c", "v_norm_sum",
                       "results_from"]
GAPS = {"gap_loss_noisy": "test loss − training loss on the labels trained on (noisy)",
        "gap_loss_clean": "test loss − training loss on the clean labels of the same training ids"}
# Measures whose rank agreement with the gap is reported (column -> what it is).
TAU_MEASURES = {
    "measure": "Σᵢ √max(Hᵢ,0), Hessian distance measure (joint mode, /measures/sum_sqrt)",
    "bound": "Σᵢ √max(Hᵢ,0) / √n (/measures/bound)",
    "bound_c": "√C · Σᵢ √max(Hᵢ,0) / √n (/measures/bound_c)",
    "measure_block": "Σᵢ √max(vᵢᵀHᵢᵢvᵢ,0), block mode (/measures_block/sum_sqrt)",
    "v_norm_sum": "Σᵢ ‖vᵢ‖_F, distance only (/measures/v_norm)",
    "trace_total": "Σᵢ tr(Hᵢᵢ), curvature only (/traces/layer_mean)",
}
MARKERS = "osD^vP*Xhp<>"
CSV_FLOAT = "%.17g"  # CSV keeps every digit: a number read back equals the run file's


def fmt(value) -> str:
    """A table cell: floats with 6 significant digits, NaN as n/a."""
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "n/a" if not math.isfinite(float(value)) else f"{float(value):.6g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def md_table(header: List[str], rows: List[List]) -> str:
    """A GitHub markdown table (pandas' to_markdown needs the tabulate package, not installed here)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _plt():
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    return plt


def _label(row, keys: List[str]) -> str:
    """A configuration's legend label from its group keys: "constraint, noise 0.4, radius 0.5"."""
    parts = []
    for k in keys:
        v = row[k]
        if k == "method":
            parts.append(str(v))
        elif k == "noise_rate":
            parts.append(f"noise {fmt(v)}")
        else:
            parts.append(f"{k} {fmt(v)}")
    return ", ".join(parts)


def _groups(df: pd.DataFrame, keys: List[str]):
    """(dict of key values, rows) per group, keys kept even when NaN. Grouping by a one-element list
    changes what pandas yields between versions, so one key is grouped by name."""
    by = keys[0] if len(keys) == 1 else keys
    for values, g in df.groupby(by, dropna=False, sort=True):
        yield dict(zip(keys, values if isinstance(values, tuple) else (values,))), g


def _csv(df: pd.DataFrame, path: str) -> None:
    df.to_csv(path, index=False, float_format=CSV_FLOAT)


class Report:
    def __init__(self, sweep_dir: str, out_dir: str):
        self.sweep_dir = sweep_dir
        self.out_dir = out_dir
        self.df = load_sweep(sweep_dir)
        self.lines: List[str] = []
        self.files: List[str] = []
        df = self.df
        self.complete = df[df["status"] == "complete"] if not df.empty else df
        self.keys = group_keys(df) if not df.empty else ["method", "noise_rate"]
        # Grid flags the head columns do not already show (e.g. "lr"): shown after `seed`.
        self.extra = [k for k in self.keys if k not in RUN_COLUMNS_HEAD]

    # ---- helpers ---------------------------------------------------------------------------------
    def out(self, *lines: str) -> None:
        self.lines.extend(lines)

    def save_csv(self, df: pd.DataFrame, name: str) -> None:
        _csv(df, os.path.join(self.out_dir, name))
        self.files.append(name)

    def save_fig(self, fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(os.path.join(self.out_dir, name), dpi=110)
        _plt().close(fig)
        self.files.append(name)

    def skipped(self, why: str) -> None:
        self.out(f"Skipped: {why}", "")

    # ---- sections ---------------------------------------------------------------------------------
    def header(self) -> None:
        df, spec = self.df, self.df.attrs.get("spec", {})
        self.out(f"# Sweep report: {os.path.abspath(self.sweep_dir)}", "")
        source = (f"`{os.path.basename(df.attrs['index_path'])}` and the run files" if df.attrs.get("index_path")
                  else "the run files alone (this folder has no index.h5: grid values unknown)")
        self.out(f"Read from {source} by analysis/report.py. Results come from each run's `run.h5`; the "
                 "index's columns are used only for a run whose `run.h5` is missing or unreadable "
                 "(column `results_from`).", "")
        if spec:
            grid = spec.get("grid", {})
            size = int(np.prod([len(v) for v in grid.values()])) if grid else 1
            self.out(f"- base: `{json.dumps(spec.get('base', {}), sort_keys=True)}`",
                     f"- grid: `{json.dumps(grid)}` ({size} combinations)",
                     f"- ranks per run: {spec.get('ranks_per_run', 'n/a')}")
        counts = df["status"].value_counts() if not df.empty else pd.Series(dtype=int)
        status = ", ".join(f"{s} {int(counts[s])}" for s in sorted(counts.index)) or "none"
        self.out(f"- runs: {len(df)} ({status})", "")

    def runs_table(self) -> None:
        self.out("## Runs", "")
        df = self.df
        if df.empty:
            self.skipped("the sweep has no runs.")
            return
        cols = RUN_COLUMNS_HEAD + self.extra + RUN_COLUMNS_RESULTS
        self.out(md_table(cols, df[cols].values.tolist()), "")
        self.out("Columns: accuracy and losses of the best weights (`/train/final`); "
                 f"`gap_loss_noisy` = {GAPS['gap_loss_noisy']}, `gap_loss_clean` = {GAPS['gap_loss_clean']}, "
                 "`gap_accuracy` = training accuracy (clean) − test accuracy; `measure` = Σᵢ √max(Hᵢ,0) with "
                 "Hᵢ = the per-layer max of ⟨vᵢ,(Hv)ᵢ⟩ (joint mode, `/measures/sum_sqrt`), `bound` = "
                 "measure / √n (n = training ids), `bound_c` = √C · bound, `v_norm_sum` = Σᵢ ‖vᵢ‖_F; "
                 "`radius` = `--reg-extractor` (a constraint's radius; unused by other methods). "
                 "n/a: no value (failed or unfinished runs). Every digit: `runs.csv`.", "")
        table = df.drop(columns=["config", "overrides"]).copy()
        table["overrides"] = [json.dumps(o, sort_keys=True) for o in df["overrides"]]
        self.save_csv(table, "runs.csv")

    def unfinished(self) -> None:
        self.out("## Failed and unfinished runs", "")
        df = self.df
        if df.empty:
            self.out("The sweep has no runs.", "")
            return
        bad = df[df["status"] != "complete"]
        if bad.empty:
            self.out("Every run is complete.", "")
            return
        rows = [[r.run_id, r.status, r.attempts, r.method, r.noise_rate, r.seed, r.message or r.run_error or "",
                 r.results_from] for r in bad.itertuples()]
        self.out(md_table(["run_id", "status", "attempts", "method", "noise_rate", "seed", "message",
                           "results_from"], rows), "")
        self.out("Their results are left out of the statistics below.", "")

    def traces(self) -> None:
        self.out("## Per-layer Hessian traces", "")
        runs: Dict[str, Run] = {}
        for r in self.df.itertuples() if not self.df.empty else []:
            if r.results_from != "run.h5":
                continue
            run = read_run(r.folder)
            if run.traces is not None and "layer_mean" in run.traces:
                runs[r.run_id] = run
        if not runs:
            self.skipped("no run of this sweep has `/traces` (`hessgap train` records them with "
                         "`--measure-trace-probes P`).")
            return
        df = self.df.set_index("run_id")
        long_rows, table = [], []
        for rid, run in runs.items():
            t = run.traces
            se = np.asarray(t.get("layer_mean_std_error", np.full(len(run.layers), np.nan)), dtype=float)
            for i, name in enumerate(run.layers):
                long_rows.append({"run_id": rid, "method": df.at[rid, "method"], "noise_rate": df.at[rid, "noise_rate"],
                                  "seed": df.at[rid, "seed"], "layer_index": i, "layer": name,
                                  "layer_mean": float(t["layer_mean"][i]), "layer_mean_std_error": float(se[i]),
                                  "layer_max": float(t["layer_max"][i]) if "layer_max" in t else math.nan})
            top = int(np.argmax(t["layer_mean"]))
            table.append([rid, df.at[rid, "method"], df.at[rid, "noise_rate"], df.at[rid, "seed"],
                          float(np.sum(t["layer_mean"])), run.layers[top], float(t["layer_mean"][top]),
                          float(se[top])])
        self.save_csv(pd.DataFrame(long_rows), "traces.csv")
        plt = _plt()
        noise_rates = sorted({float(df.at[rid, "noise_rate"]) for rid in runs})
        layers = next(iter(runs.values())).layers
        fig, axes = plt.subplots(len(noise_rates), 1, figsize=(max(8, 0.45 * len(layers)), 3.8 * len(noise_rates)),
                                 squeeze=False)
        methods = sorted({df.at[rid, "method"] for rid in runs})
        for ax, rate in zip(axes[:, 0], noise_rates):
            ids = [rid for rid in runs if float(df.at[rid, "noise_rate"]) == rate]
            for k, rid in enumerate(ids):
                t, x = runs[rid].traces, np.arange(len(runs[rid].layers))
                err = np.nan_to_num(np.asarray(t.get("layer_mean_std_error", np.zeros_like(x)), dtype=float), nan=0.0)
                m = df.at[rid, "method"]
                # A small horizontal offset per run keeps overlapping error bars apart.
                ax.errorbar(x + 0.08 * (k - (len(ids) - 1) / 2), t["layer_mean"], yerr=err, fmt=MARKERS[
                            methods.index(m) % len(MARKERS)], ms=4, capsize=2, lw=0.8,
                            label=f"{m}, seed {df.at[rid, 'seed']} ({rid[:8]})")
            ax.set_xticks(np.arange(len(layers)))
            ax.set_xticklabels(layers, rotation=70, ha="right", fontsize=7)
            ax.set_ylabel("tr(Hᵢᵢ)  [loss/weight²]")
            ax.set_title(f"Per-layer Hessian traces, noise rate {fmt(rate)} (mean over batches ± standard error)")
            ax.axhline(0.0, color="gray", lw=0.5)
            ax.legend(fontsize=7)
        self.save_fig(fig, "traces.png")
        self.out("![per-layer traces](traces.png)", "")
        self.out(md_table(["run_id", "method", "noise_rate", "seed", "trace_total", "largest layer",
                           "its trace", "± std error"], table), "")
        self.out("Hutchinson estimates of tr(Hᵢᵢ) on the measured test subset: the sample-weighted mean over "
                 "batches (`/traces/layer_mean`) with its standard error (`layer_mean_std_error`; a bar of 0 "
                 "where a batch had one probe). `trace_total` = Σᵢ layer_mean. Per layer: `traces.csv`.", "")

    def measure_vs_gap(self) -> None:
        self.out("## Hessian measure against the generalization gap", "")
        c = self.complete
        usable = {g: finite_pairs(c["bound"], c[g])[0].size if not c.empty else 0 for g in GAPS}
        if max(usable.values(), default=0) < 2:
            self.skipped("fewer than two complete runs have both a measure (`/measures`) and a gap "
                         "(`/train/final`); a rank correlation needs at least two.")
            return
        plt = _plt()
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), squeeze=False)
        methods = sorted(c["method"].unique())
        rates = sorted(c["noise_rate"].unique())
        cmap = plt.get_cmap("viridis")
        for ax, gap in zip(axes[0], GAPS):
            ok = np.isfinite(c["bound"]) & np.isfinite(c[gap])
            for key, g in _groups(c[ok], ["method", "noise_rate"]):
                m, rate = key["method"], key["noise_rate"]
                ax.scatter(g[gap], g["bound"], marker=MARKERS[methods.index(m) % len(MARKERS)],
                           color=cmap(rates.index(rate) / max(len(rates) - 1, 1)), label=f"{m}, noise {fmt(rate)}")
            values = np.concatenate([c.loc[ok, gap].values, c.loc[ok, "bound"].values])
            lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
            lo, hi = min(lo, 0.0), max(hi, 0.0)
            pad = 0.05 * (hi - lo or 1.0)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8, label="y = x")
            tau = kendall_tau_b(c["measure"], c[gap])
            ax.set_xlabel(f"{gap}  [nats]")
            ax.set_ylabel("bound = Σᵢ √max(Hᵢ,0) / √n")
            ax.set_title(f"{gap}: Kendall τ_b(measure, gap) = {fmt(tau)} ({int(ok.sum())} runs)", fontsize=9)
            ax.legend(fontsize=7)
        self.save_fig(fig, "measure_vs_gap.png")
        self.out("![measure against gap](measure_vs_gap.png)", "")
        self.out("Each point is a complete run: x the measured gap, y the Hessian distance measure in the units "
                 "of the bound (Σᵢ √max(Hᵢ,0) / √n, n = training ids). Left `gap_loss_noisy` = "
                 f"{GAPS['gap_loss_noisy']} (the gap the bound is about: the loss trained on); right "
                 f"`gap_loss_clean` = {GAPS['gap_loss_clean']}. Points above y = x are runs where the bound "
                 "exceeds the gap.", "")
        rows, table = [], []
        for col, what in TAU_MEASURES.items():
            row = {"measure": col, "what": what}
            cells = [col, what]
            for gap in GAPS:
                x, _ = finite_pairs(c[col], c[gap]) if not c.empty else (np.array([]), None)
                tau = kendall_tau_b(c[col], c[gap])
                row[f"tau_{gap}"], row[f"runs_{gap}"] = tau, int(x.size)
                cells += [tau, int(x.size)]
            rows.append(row)
            table.append(cells)
        self.save_csv(pd.DataFrame(rows), "kendall.csv")
        self.out(md_table(["measure", "what", "τ_b vs gap_loss_noisy", "runs", "τ_b vs gap_loss_clean", "runs"],
                          table), "")
        self.out("Kendall's τ_b across the complete runs (pairs with a missing value dropped; n/a when fewer "
                 "than two runs or a constant column). `measure` and `bound` rank alike when every run has "
                 "the same n. Also in `kendall.csv`.", "")

    def figure1(self) -> None:
        self.out("## Figure 1: gap and measures against the distance constraint", "")
        c = self.complete
        constrained = c[c["reg_method"] == "constraint"] if not c.empty else c
        if constrained.empty:
            self.skipped("no complete run uses a distance constraint (`--reg-method constraint`), so there "
                         "is no radius to plot against.")
            return
        radii = sorted(constrained["radius"].dropna().unique())
        if len(radii) < 2:
            self.skipped(f"every constrained run uses the same radius (`--reg-extractor` {fmt(radii[0]) if radii else 'n/a'});"
                         " the figure needs a sweep over at least two radii.")
            return
        keys = [k for k in self.keys if k != "radius"]
        rows = []
        for row, g in _groups(constrained, keys + ["radius"]):
            for col in ("gap_loss_noisy", "gap_loss_clean", "measure", "v_norm_sum", "test_accuracy"):
                row[f"{col}_mean"], row[f"{col}_std"], _ = mean_std(g[col])
            row["n"] = int(len(g))
            rows.append(row)
        agg = pd.DataFrame(rows).sort_values(keys + ["radius"]).reset_index(drop=True)
        self.save_csv(agg, "figure1.csv")
        plt = _plt()
        panels = [("gap_loss_noisy", "generalization gap (gap_loss_noisy)  [nats]"),
                  ("measure", "Hessian measure Σᵢ √max(Hᵢ,0)"),
                  ("v_norm_sum", "distance only Σᵢ ‖vᵢ‖_F")]
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.3), squeeze=False)
        for ax, (col, ylabel) in zip(axes[0], panels):
            for k, (row, g) in enumerate(_groups(agg, keys)):
                style = dict(color=f"C{k % 10}", capsize=3)  # one colour per configuration in every panel
                ax.errorbar(g["radius"], g[f"{col}_mean"], yerr=np.nan_to_num(g[f"{col}_std"], nan=0.0),
                            fmt=MARKERS[k % len(MARKERS)] + "-", label=_label(row, keys), **style)
                if col == "gap_loss_noisy":  # the clean-label gap beside it, dashed
                    ax.errorbar(g["radius"], g["gap_loss_clean_mean"], yerr=np.nan_to_num(g["gap_loss_clean_std"], nan=0.0),
                                fmt=MARKERS[k % len(MARKERS)] + "--", alpha=0.6,
                                label=_label(row, keys) + " (gap_loss_clean)", **style)
            if radii[0] > 0 and radii[-1] / radii[0] >= 8:
                ax.set_xscale("log")
            ax.set_xlabel("radius (--reg-extractor)")
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=7)
        fig.suptitle("The paper's Figure 1: generalization gap, Hessian distance measure and distance-only "
                     "measure against the constraint radius (mean ± std over seeds)", fontsize=10)
        self.save_fig(fig, "figure1_radius.png")
        self.out("![figure 1](figure1_radius.png)", "")
        header = keys + ["radius", "n", "gap_loss_noisy", "± std", "gap_loss_clean", "± std", "measure", "± std",
                         "v_norm_sum", "± std"]
        table = [[r[k] for k in keys] + [r["radius"], r["n"], r["gap_loss_noisy_mean"], r["gap_loss_noisy_std"],
                                         r["gap_loss_clean_mean"], r["gap_loss_clean_std"], r["measure_mean"],
                                         r["measure_std"], r["v_norm_sum_mean"], r["v_norm_sum_std"]]
                 for r in agg.to_dict("records")]
        self.out(md_table(header, table), "")
        self.out("Constrained runs only (`--reg-method constraint`); radius = `--reg-extractor` (layer1 and "
                 "layer2; layer3 at radius × `--scale-factor`). Left: `gap_loss_noisy` (solid) and "
                 "`gap_loss_clean` (dashed). Mean ± population std over seeds (n runs). Also `figure1.csv`.", "")

    def accuracy(self) -> None:
        self.out("## Test accuracy per method and noise rate", "")
        c, keys = self.complete, self.keys
        if c.empty or not np.isfinite(c["test_accuracy"]).any():
            self.skipped("no complete run has a test accuracy (`/train/final/test_accuracy`).")
            return
        rows = []
        for row, g in _groups(c, keys):
            row["seeds"] = ",".join(str(s) for s in sorted(g["seed"]))
            for col in ("test_accuracy", "gap_loss_noisy", "gap_loss_clean", "measure", "bound"):
                row[f"{col}_mean"], row[f"{col}_std"], row[f"{col}_n"] = mean_std(g[col])
            rows.append(row)
        agg = pd.DataFrame(rows).sort_values(keys).reset_index(drop=True)
        self.save_csv(agg, "summary.csv")
        plt = _plt()
        series_keys = [k for k in keys if k != "noise_rate"]
        groups = list(_groups(agg, series_keys))
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        rates = sorted(agg["noise_rate"].unique())
        step = min(np.diff(rates)) if len(rates) > 1 else 1.0
        for k, (row, g) in enumerate(groups):
            # Series side by side at each noise rate, so that error bars do not hide each other.
            offset = 0.06 * step * (k - (len(groups) - 1) / 2)
            ax.errorbar(g["noise_rate"] + offset, g["test_accuracy_mean"], yerr=np.nan_to_num(g["test_accuracy_std"], nan=0.0),
                        fmt=MARKERS[k % len(MARKERS)] + "-", capsize=3, label=_label(row, series_keys))
        ax.set_xticks(rates)
        ax.set_xlabel("label noise rate (--label-noise)")
        ax.set_ylabel("test accuracy")
        ax.set_title("Test accuracy per method (mean ± population std over seeds)")
        ax.legend(fontsize=8)
        self.save_fig(fig, "accuracy.png")
        self.out("![test accuracy](accuracy.png)", "")
        header = keys + ["seeds", "test_accuracy", "± std", "gap_loss_noisy", "± std", "gap_loss_clean", "± std",
                         "measure", "± std", "bound", "± std"]
        table = [[r[k] for k in keys] + [r["seeds"]] + [r[f"{col}_{s}"] for col in (
                 "test_accuracy", "gap_loss_noisy", "gap_loss_clean", "measure", "bound") for s in ("mean", "std")]
                 for r in agg.to_dict("records")]
        self.out(md_table(header, table), "")
        self.out("Complete runs grouped by method, noise rate and the grid's other flags (not the seed); mean "
                 "± population std over the seeds listed (std 0 with one seed; NaN values left out). Also "
                 "`summary.csv`.", "")

    def write(self) -> str:
        os.makedirs(self.out_dir, exist_ok=True)
        self.header()
        self.runs_table()
        self.unfinished()
        self.traces()
        self.measure_vs_gap()
        self.figure1()
        self.accuracy()
        self.out("Files: " + ", ".join(f"`{f}`" for f in self.files), "")
        path = os.path.join(self.out_dir, "report.md")
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("\n".join(self.lines))
        os.replace(tmp, path)  # a report that exists is complete
        return path


def write_report(sweep_dir: str, out_dir: str = None) -> str:
    """Writes the report of a sweep folder to out_dir (default SWEEP_DIR/report) and returns the path of
    report.md. Raises NotASweepError (a ValueError) for a folder that is not a sweep."""
    return Report(sweep_dir, out_dir or os.path.join(sweep_dir, "report")).write()
