"""analysis/report.py and the hessgap_analysis package on real sweeps made by the hessgap binary.

Oracles: the run files read with h5py directly (every number in the report's tables and CSV files), a
brute-force pair count for Kendall's tau-b (and hand-computed examples with ties), the PNG signature and
a full decode by matplotlib, the documented exit code 2 for a folder that is not a sweep, and index
variants with failed, pending and missing runs written by the fixture's own index writer.
"""
import json
import math
import shutil
import struct
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import SPEC_METHODS, read_index_rows, run_report, write_index

from hessgap_analysis import kendall_tau_b, load_sweep, read_index, read_run
from hessgap_analysis.report import write_report

FINAL = ("test_accuracy", "test_loss", "train_loss_clean", "train_loss_noisy", "gap_loss_clean", "gap_loss_noisy",
         "gap_accuracy")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---- oracles --------------------------------------------------------------------------------------

def h5_run(folder):
    """What the report must show for one run, read with h5py alone."""
    with h5py.File(Path(folder) / "run.h5", "r") as f:
        cfg = json.loads(f.attrs["config"])
        out = {k: float(f[f"train/final/{k}"][()]) for k in FINAL}
        out.update(measure=float(f["measures/sum_sqrt"][()]), bound=float(f["measures/bound"][()]),
                   bound_c=float(f["measures/bound_c"][()]), v_norm_sum=float(np.sum(f["measures/v_norm"][()])),
                   trace_total=float(np.sum(f["traces/layer_mean"][()])) if "traces" in f else math.nan,
                   run_id=f.attrs["run_id"], noise_rate=cfg["data"]["dataset"]["noise_rate"],
                   reg_method=cfg["train"]["reg_method"], reweight=cfg["train"]["constraint_reweight"],
                   radius=cfg["train"]["reg_extractor"], seed=cfg["train"]["seed"])
    return out


def all_runs(sweep):
    return {p.name: h5_run(p) for p in sorted((Path(sweep) / "runs").iterdir()) if (p / "run.h5").is_file()}


def expected_method(r):
    base = {"none": "plain"}.get(r["reg_method"], r["reg_method"])
    return base + "-reweight" if r["reweight"] else base


def brute_tau_b(x, y):
    """tau_b by counting every pair: (C - D) / sqrt((C + D + Tx) (C + D + Ty)), with Tx (Ty) the pairs
    tied in x only (y only); pairs tied in both count in neither."""
    pairs = [(a, b) for a, b in zip(x, y) if math.isfinite(a) and math.isfinite(b)]
    c = d = tx = ty = 0
    for i in range(len(pairs)):
        for j in range(i + 1, len(pairs)):
            dx, dy = pairs[i][0] - pairs[j][0], pairs[i][1] - pairs[j][1]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                tx += 1
            elif dy == 0:
                ty += 1
            elif (dx > 0) == (dy > 0):
                c += 1
            else:
                d += 1
    den = math.sqrt((c + d + tx) * (c + d + ty))
    return (c - d) / den if den > 0 else math.nan


def md_table(report_md, heading):
    """The first markdown table after `## heading` as a list of {column: cell} (cells as written)."""
    lines = Path(report_md).read_text(encoding="utf-8").splitlines()
    start = lines.index(f"## {heading}")
    rows, header = [], None
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            if header is None:
                header = cells
            elif not set(line) <= set("|-"):
                rows.append(dict(zip(header, cells)))
        elif header is not None:
            break
    assert header is not None, f"no table under '## {heading}' in {report_md}"
    return rows


def section(report_md, heading):
    text = Path(report_md).read_text(encoding="utf-8")
    body = text.split(f"## {heading}\n", 1)[1]
    return body.split("\n## ", 1)[0]


def cell(x):
    """How the report writes a number (6 significant digits, n/a for NaN)."""
    return "n/a" if not math.isfinite(x) else f"{x:.6g}"


def assert_png(path):
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path}: not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    width, height = struct.unpack(">II", data[16:24])
    assert kind == b"IHDR" and length == 13 and width > 100 and height > 100, (path, kind, width, height)
    assert data[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82", f"{path}: no IEND chunk at the end (truncated)"
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    pixels = mpimg.imread(str(path))  # decodes every chunk: a corrupt file raises
    assert pixels.shape[:2] == (height, width)


def read_csv(path):
    """A report CSV as written: every float parsed back exactly (pandas' default parser is not
    round-trip exact), ids and seed lists as strings."""
    return pd.read_csv(path, float_precision="round_trip", dtype={"run_id": str, "seeds": str})


def copy_sweep(sweep, tmp_path):
    dst = tmp_path / "sweep"
    shutil.copytree(sweep, dst, ignore=shutil.ignore_patterns("report"))
    return dst


# ---- the report's files ---------------------------------------------------------------------------

def test_methods_report_files(methods_sweep):
    rep = methods_sweep / "report"
    for name in ("traces.png", "measure_vs_gap.png", "accuracy.png"):
        assert_png(rep / name)
    for name in ("runs.csv", "summary.csv", "kendall.csv", "traces.csv"):
        assert (rep / name).stat().st_size > 0, name
    # No radius varies: Figure 1 is skipped, saying why, and writes no figure.
    assert not (rep / "figure1_radius.png").exists()
    fig1 = section(rep / "report.md", "Figure 1: gap and measures against the distance constraint")
    assert "Skipped: every constrained run uses the same radius (`--reg-extractor` 0.5)" in fig1
    text = (rep / "report.md").read_text(encoding="utf-8")
    assert "![per-layer traces](traces.png)" in text and "![measure against gap](measure_vs_gap.png)" in text
    assert "- runs: 8 (complete 8)" in text and "Every run is complete." in text


def test_radius_report_files(radius_sweep):
    rep = radius_sweep / "report"
    for name in ("figure1_radius.png", "measure_vs_gap.png", "accuracy.png"):
        assert_png(rep / name)
    # These runs recorded no traces: the section is skipped with the reason and no figure.
    assert not (rep / "traces.png").exists() and not (rep / "traces.csv").exists()
    assert "Skipped: no run of this sweep has `/traces`" in section(rep / "report.md", "Per-layer Hessian traces")


# ---- the numbers are the run files' ---------------------------------------------------------------

def test_runs_table_equals_the_run_files(methods_sweep):
    truth = all_runs(methods_sweep)
    rows = md_table(methods_sweep / "report" / "report.md", "Runs")
    assert sorted(r["run_id"] for r in rows) == sorted(truth) and len(truth) == 8
    _, index_rows = read_index_rows(methods_sweep)
    assert sorted(r["run_id"] for r in index_rows) == sorted(truth)
    for row in rows:
        t = truth[row["run_id"]]
        assert row["status"] == "complete" and row["results_from"] == "run.h5"
        assert row["method"] == expected_method(t)
        assert row["noise_rate"] == cell(t["noise_rate"]) and row["seed"] == str(t["seed"])
        assert row["radius"] == cell(t["radius"])
        for key in FINAL + ("measure", "bound", "bound_c", "v_norm_sum"):
            assert row[key] == cell(t[key]), (row["run_id"], key, row[key], t[key])
    assert {r["method"] for r in rows} == {"plain", "constraint"}


def test_csv_tables_keep_every_digit(methods_sweep):
    truth = all_runs(methods_sweep)
    runs = read_csv(methods_sweep / "report" / "runs.csv")
    assert len(runs) == 8
    for row in runs.to_dict("records"):
        t = truth[row["run_id"]]
        for key in FINAL + ("measure", "bound", "bound_c", "v_norm_sum", "trace_total"):
            assert row[key] == t[key], (row["run_id"], key)  # exact: the CSV is written with 17 digits
        assert json.loads(row["overrides"]) == {"label-noise": t["noise_rate"], "reg-method": t["reg_method"],
                                                "seed": t["seed"]}
    # Per-layer traces: the run files' arrays.
    traces = read_csv(methods_sweep / "report" / "traces.csv")
    for rid, g in traces.groupby("run_id"):
        with h5py.File(methods_sweep / "runs" / rid / "run.h5", "r") as f:
            assert list(g["layer"]) == list(f["layers/names"].asstr()[()])
            assert np.array_equal(g["layer_mean"].values, f["traces/layer_mean"][()])
            assert np.array_equal(g["layer_mean_std_error"].values, f["traces/layer_mean_std_error"][()],
                                  equal_nan=True)
    # Mean and population std over the two seeds of each (method, noise rate).
    summary = read_csv(methods_sweep / "report" / "summary.csv")
    assert len(summary) == 4
    for row in summary.to_dict("records"):
        acc = [t["test_accuracy"] for t in truth.values()
               if expected_method(t) == row["method"] and t["noise_rate"] == row["noise_rate"]]
        assert len(acc) == 2 and row["seeds"] == "0,1"
        assert row["test_accuracy_mean"] == pytest.approx(np.mean(acc), rel=1e-15)
        assert row["test_accuracy_std"] == pytest.approx(np.std(acc), rel=1e-12, abs=1e-15)
    table = md_table(methods_sweep / "report" / "report.md", "Test accuracy per method and noise rate")
    assert [r["test_accuracy"] for r in table] == [cell(v) for v in summary["test_accuracy_mean"]]


def test_figure1_table_equals_the_run_files(radius_sweep):
    truth = all_runs(radius_sweep)
    assert len(truth) == 4
    fig1 = read_csv(radius_sweep / "report" / "figure1.csv")
    assert sorted(zip(fig1["method"], fig1["radius"])) == [("constraint", 0.25), ("constraint", 1.0),
                                                            ("constraint-reweight", 0.25), ("constraint-reweight", 1.0)]
    for row in fig1.to_dict("records"):
        (t,) = [t for t in truth.values() if expected_method(t) == row["method"] and t["radius"] == row["radius"]]
        assert row["n"] == 1
        for key in ("gap_loss_noisy", "gap_loss_clean", "measure", "v_norm_sum"):
            assert row[f"{key}_mean"] == t[key] and row[f"{key}_std"] == 0.0, key


def test_load_sweep(methods_sweep):
    truth = all_runs(methods_sweep)
    df = load_sweep(str(methods_sweep))
    assert list(df["run_id"]) == sorted(truth)
    assert df.attrs["grid_keys"] == ["label-noise", "reg-method", "seed"]
    assert set(df["results_from"]) == {"run.h5"}
    for row in df.to_dict("records"):
        t = truth[row["run_id"]]
        assert row["method"] == expected_method(t) and row["seed"] == t["seed"]
        assert row["noise_rate"] == t["noise_rate"] == row["label-noise"]
        assert row["reg-method"] == t["reg_method"]
        for key in FINAL + ("measure", "bound", "v_norm_sum", "trace_total"):
            assert row[key] == t[key], key
    run = read_run(df["folder"][0])
    assert run.run_id == df["run_id"][0] and len(run.layers) == 20 and run.traces["layer_mean"].shape == (20,)
    idx = read_index(str(methods_sweep))
    assert idx.spec["base"] == json.loads(json.dumps(SPEC_METHODS["base"])) and len(idx.runs) == 8
    assert idx.spec["grid"] == SPEC_METHODS["grid"]


# ---- Kendall's tau-b -------------------------------------------------------------------------------

def test_kendall_tau_b_hand_examples():
    # Pairs of x=[1,2,2,3], y=[1,3,2,3]: 4 concordant, 0 discordant, one tied in x, one in y:
    # 4 / sqrt((6-1)(6-1)) = 0.8.
    assert kendall_tau_b([1, 2, 2, 3], [1, 3, 2, 3]) == pytest.approx(0.8, rel=1e-15)
    # x=[1,2,3,3,4], y=[2,1,3,3,3]: C=6, D=1, one pair tied in x, three in y: 5/sqrt(9*7).
    assert kendall_tau_b([1, 2, 3, 3, 4], [2, 1, 3, 3, 3]) == pytest.approx(5 / math.sqrt(63), rel=1e-15)
    assert kendall_tau_b([1, 2, 3, 4], [8, 6, 4, 2]) == -1.0
    assert kendall_tau_b([1, 2, float("nan"), 3], [1, 2, 0, 3]) == 1.0  # NaN pairs dropped
    assert math.isnan(kendall_tau_b([1, 1, 1], [1, 2, 3]))              # constant x: undefined
    assert math.isnan(kendall_tau_b([1.0], [2.0]))
    for x, y in (([1, 2, 2, 3], [1, 3, 2, 3]), ([1, 2, 3, 3, 4], [2, 1, 3, 3, 3])):
        assert brute_tau_b(x, y) == pytest.approx(kendall_tau_b(x, y), rel=1e-15)
    rng = np.random.default_rng(0)
    for _ in range(20):  # many ties: values from a small range
        x, y = rng.integers(0, 4, 25).astype(float), rng.integers(0, 5, 25).astype(float)
        assert kendall_tau_b(x, y) == pytest.approx(brute_tau_b(x, y), rel=1e-12, abs=1e-15)


def test_kendall_tau_in_the_report_is_the_brute_force_one(methods_sweep):
    truth = list(all_runs(methods_sweep).values())
    kendall = read_csv(methods_sweep / "report" / "kendall.csv").set_index("measure")
    table = {r["measure"]: r for r in md_table(methods_sweep / "report" / "report.md",
                                               "Hessian measure against the generalization gap")}
    for measure in ("measure", "bound_c", "v_norm_sum", "trace_total"):
        for gap in ("gap_loss_noisy", "gap_loss_clean"):
            expected = brute_tau_b([t[measure] for t in truth], [t[gap] for t in truth])
            assert kendall.at[measure, f"tau_{gap}"] == pytest.approx(expected, rel=1e-12, abs=1e-15), (measure, gap)
            assert kendall.at[measure, f"runs_{gap}"] == 8
        assert table[measure]["τ_b vs gap_loss_noisy"] == cell(kendall.at[measure, "tau_gap_loss_noisy"])


# ---- what is not a sweep, and sweeps with holes ----------------------------------------------------

def test_not_a_sweep_exits_2(tmp_path, methods_sweep):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, out = run_report(empty)
    assert rc == 2 and "not a hessgap sweep folder" in out, out
    assert not (empty / "report").exists()
    rc, out = run_report(tmp_path / "missing")
    assert rc == 2 and "not a folder" in out, out
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    run_h5 = next((methods_sweep / "runs").iterdir()) / "run.h5"
    shutil.copy(run_h5, wrong / "index.h5")  # an HDF5 file of another format
    rc, out = run_report(wrong)
    assert rc == 2 and "not a hessgap sweep index" in out and "'hessgap-results'" in out, out
    (wrong / "index.h5").write_text("not HDF5")
    rc, out = run_report(wrong)
    assert rc == 2 and "not an HDF5 file" in out, out
    rc, out = run_report(run_h5)  # a run file is not a sweep folder
    assert rc == 2 and "not a folder" in out, out


def test_failed_and_pending_runs(methods_sweep, tmp_path):
    sweep = copy_sweep(methods_sweep, tmp_path)
    spec, rows = read_index_rows(sweep)
    truth = all_runs(methods_sweep)
    nan_results = {k: math.nan for k in FINAL + ("measure", "bound")}
    # One run failed twice: no run.h5 left (its folder keeps epoch_0.h5 only).
    failed = next(r for r in rows if json.loads(r["overrides"]) == {"label-noise": 0.2, "reg-method": "constraint",
                                                                    "seed": 0})
    failed.update(status="failed", attempts=2, message="hessgap train exited 1: out of memory", end_time="",
                  **nan_results)
    for name in ("run.h5", "best.h5", "last.h5"):
        (sweep / "runs" / failed["run_id"] / name).unlink()
    # A pending run with its typed config, and one known only by its grid values.
    cfg = json.loads(rows[0]["config"])
    cfg["train"]["seed"] = 7
    rows.append(dict(run_id="eeeeeeeeeeeeeeee", status="pending", attempts=0, message="", host="", ranks=1,
                     start_time="", end_time="", seconds=math.nan, config=json.dumps(cfg),
                     overrides=json.dumps({"label-noise": cfg["data"]["dataset"]["noise_rate"],
                                           "reg-method": cfg["train"]["reg_method"], "seed": 7}), **nan_results))
    rows.append(dict(run_id="ffffffffffffffff", status="running", attempts=1, message="", host="node7", ranks=1,
                     start_time="2026-11-28T09:00:00Z", end_time="", seconds=math.nan, config="",
                     overrides=json.dumps({"label-noise": 0.4, "reg-method": "constraint", "seed": 3}),
                     **nan_results))
    write_index(sweep, spec, rows)

    df = load_sweep(str(sweep)).set_index("run_id")
    assert len(df) == 10
    f = df.loc[failed["run_id"]]
    assert f["status"] == "failed" and f["results_from"] == "none" and f["attempts"] == 2
    assert f["method"] == "constraint" and f["seed"] == 0 and f["noise_rate"] == 0.2  # from the index's config
    assert all(math.isnan(f[k]) for k in FINAL + ("measure", "bound", "v_norm_sum"))
    p = df.loc["eeeeeeeeeeeeeeee"]
    assert p["status"] == "pending" and p["seed"] == 7 and math.isnan(p["test_accuracy"])
    r = df.loc["ffffffffffffffff"]  # no config: grid values over the spec's base
    assert (r["method"], r["noise_rate"], r["seed"], r["radius"]) == ("constraint", 0.4, 3, 0.5)

    rc, out = run_report(sweep)
    assert rc == 0, out
    md = sweep / "report" / "report.md"
    assert "- runs: 10 (complete 7, failed 1, pending 1, running 1)" in md.read_text(encoding="utf-8")
    table = {row["run_id"]: row for row in md_table(md, "Runs")}
    assert table[failed["run_id"]]["status"] == "failed" and table[failed["run_id"]]["test_accuracy"] == "n/a"
    assert table["eeeeeeeeeeeeeeee"]["measure"] == "n/a"
    holes = {row["run_id"]: row for row in md_table(md, "Failed and unfinished runs")}
    assert set(holes) == {failed["run_id"], "eeeeeeeeeeeeeeee", "ffffffffffffffff"}
    assert holes[failed["run_id"]]["message"] == "hessgap train exited 1: out of memory"
    # The statistics use the seven complete runs.
    done = [t for rid, t in truth.items() if rid != failed["run_id"]]
    kendall = read_csv(sweep / "report" / "kendall.csv").set_index("measure")
    assert kendall.at["measure", "runs_gap_loss_noisy"] == 7
    assert kendall.at["measure", "tau_gap_loss_noisy"] == pytest.approx(
        brute_tau_b([t["measure"] for t in done], [t["gap_loss_noisy"] for t in done]), rel=1e-12, abs=1e-15)
    summary = read_csv(sweep / "report" / "summary.csv")
    row = summary[(summary["method"] == "constraint") & (summary["noise_rate"] == 0.2)].iloc[0]
    (left,) = [t for t in done if t["reg_method"] == "constraint" and t["noise_rate"] == 0.2]
    assert row["seeds"] == "1" and row["test_accuracy_mean"] == left["test_accuracy"] and row["test_accuracy_std"] == 0


def test_results_prefer_run_files_and_fall_back_to_the_index(methods_sweep, tmp_path):
    sweep = copy_sweep(methods_sweep, tmp_path)
    spec, rows = read_index_rows(sweep)
    truth = all_runs(methods_sweep)
    rows[0]["test_accuracy"] = 0.999  # a stale index value: the run file wins
    gone = rows[1]["run_id"]
    (sweep / "runs" / gone / "run.h5").unlink()  # the index alone knows this run's results
    write_index(sweep, spec, rows)
    df = load_sweep(str(sweep)).set_index("run_id")
    assert df.at[rows[0]["run_id"], "test_accuracy"] == truth[rows[0]["run_id"]]["test_accuracy"]
    assert df.at[gone, "results_from"] == "index"
    for key in FINAL + ("measure", "bound"):
        assert df.at[gone, key] == truth[gone][key], key
    assert math.isnan(df.at[gone, "v_norm_sum"])  # not in the index
    # Without index.h5 the run files still make a (grid-less) sweep.
    (sweep / "index.h5").unlink()
    df = load_sweep(str(sweep))
    assert len(df) == 7 and set(df["status"]) == {"complete"} and df.attrs["index_path"] is None
    report = write_report(str(sweep), str(tmp_path / "elsewhere"))
    assert Path(report) == tmp_path / "elsewhere" / "report.md" and "the run files alone" in Path(report).read_text()
