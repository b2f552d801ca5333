"""Reading a hessgap sweep folder (issue #10: `hessgap sweep SPEC.json --out-dir DIR`):

    DIR/index.h5                 one row per run (status, timings, grid values, typed config, key results)
    DIR/runs/<run_id>/run.h5     each run's folder, exactly as `hessgap train --out-dir` writes it

index.h5: root attributes `format` = "hessgap-sweep-index", `format_version` = 1 and `spec` (the sweep
spec as JSON: {"base": {flag: value}, "grid": {flag: [values]}, "ranks_per_run": N}); group `/runs` with
1-D datasets of equal length sorted by run_id: run_id, status (complete|failed|pending|running),
attempts, message, host, ranks, start_time, end_time, seconds, overrides (JSON object of the run's grid
values keyed by train flag names without dashes), config (the run's typed config JSON) and the results
test_accuracy, test_loss, train_loss_clean, train_loss_noisy, gap_loss_clean, gap_loss_noisy,
gap_accuracy, measure (= /measures/sum_sqrt), bound (= /measures/bound), NaN when absent.

`load_sweep` takes the results from each run's run.h5 (the source of truth: the index is a summary that
a later `hessgap sweep` may rebuild) and falls back to the index's columns for runs whose run.h5 is
missing or unreadable.
"""
import dataclasses
import glob
import json
import math
import os
from typing import Any, Dict, List

import h5py
import numpy as np
import pandas as pd

from .runs import FINAL_KEYS, RESULT_KEYS, config_value, noise_rate_of, read_dataset, read_run, text

INDEX_FORMAT = "hessgap-sweep-index"
MAX_INDEX_VERSION = 1
INDEX_FILE = "index.h5"
RUNS_DIR = "runs"
STATUSES = ("complete", "failed", "pending", "running")
# Result columns that index.h5 carries (the others come from run.h5 only).
INDEX_RESULT_KEYS = FINAL_KEYS + ("measure", "bound")
# `hessgap train` defaults of the flags the derived columns use, for a run known only by its grid values
# (a pending run whose index row lacks the typed config): docs/cli.md.
TRAIN_DEFAULTS = {"label-noise": 0.0, "reg-method": "none", "constraint-reweight": False,
                  "load-matrix": False, "reg-extractor": 1.0, "seed": 0}
# Grid flags that the derived columns already describe (method, noise_rate, seed): a table grouping
# "over seeds" groups by the derived columns plus every other grid flag.
DERIVED_FLAGS = {"reg-method": "method", "constraint-reweight": "method", "load-matrix": "method",
                 "label-noise": "noise_rate", "reg-extractor": "radius", "seed": "seed"}


class NotASweepError(ValueError):
    """The folder is not a hessgap sweep (no index.h5 of the sweep format and no runs/*/run.h5)."""


@dataclasses.dataclass
class SweepIndex:
    """index.h5 of a sweep folder."""
    path: str                    # the index.h5 read
    attrs: Dict[str, Any]        # root attributes (`spec` still the JSON string)
    spec: Dict[str, Any]         # `spec`, parsed: base, grid, ranks_per_run
    runs: pd.DataFrame           # /runs, one row per run; `overrides` and `config` parsed into dicts


def _parse_json(value, where: str) -> Dict[str, Any]:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return {}
    try:
        parsed = json.loads(value)
    except (TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{where}: not JSON ({e})") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(parsed).__name__}")
    return parsed


def index_path(path: str) -> str:
    """index.h5 of a sweep folder, or `path` itself when it names a file."""
    return os.path.join(path, INDEX_FILE) if os.path.isdir(path) else path


def read_index(path: str) -> SweepIndex:
    """Reads DIR/index.h5 (or the index file given). Raises NotASweepError when the file is missing, is
    not HDF5 or has another `format`, and ValueError for a newer format_version or a malformed /runs."""
    path = index_path(path)
    if not os.path.isfile(path):
        raise NotASweepError(f"{path}: no sweep index (index.h5) there")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise NotASweepError(f"{path}: not an HDF5 file ({e})") from None
    with f:
        attrs = {k: text(v) for k, v in f.attrs.items()}
        if attrs.get("format") != INDEX_FORMAT:
            raise NotASweepError(f"{path}: not a hessgap sweep index (format attribute {attrs.get('format')!r}, "
                                 f"expected {INDEX_FORMAT!r})")
        version = int(attrs.get("format_version", 0))
        if version > MAX_INDEX_VERSION:
            raise ValueError(f"{path}: format_version {version} is newer than this reader ({MAX_INDEX_VERSION})")
        spec = _parse_json(attrs.get("spec", ""), f"{path}: attribute spec")
        columns = {}
        if "runs" in f:
            for name, ds in f["runs"].items():
                if isinstance(ds, h5py.Dataset):
                    value = read_dataset(ds)
                    columns[name] = list(value) if isinstance(value, (list, np.ndarray)) else [value]
    lengths = {name: len(v) for name, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{path}: the /runs columns differ in length: {lengths}")
    if columns and "run_id" not in columns:
        raise ValueError(f"{path}: /runs has no run_id column")
    runs = pd.DataFrame(columns)
    for name in ("overrides", "config"):
        if name in runs:
            runs[name] = [_parse_json(v, f"{path}: /runs/{name} of run {rid}")
                          for v, rid in zip(runs[name], runs["run_id"])]
    return SweepIndex(path=path, attrs=attrs, spec=spec, runs=runs)


def is_sweep(path: str) -> bool:
    """True for a folder with a sweep index.h5 or at least one runs/<run_id>/run.h5."""
    if not os.path.isdir(path):
        return False
    if os.path.isfile(os.path.join(path, INDEX_FILE)):
        try:
            read_index(path)
            return True
        except ValueError:
            return False
    return bool(glob.glob(os.path.join(path, RUNS_DIR, "*", "run.h5")))


def derive_method(reg_method: str, reweight: bool, load_matrix: bool = False) -> str:
    """The method's name as the paper and `hessgap run` use it: reg_method with "none" called "plain",
    "-reweight" appended for a loss reweighted by the transition matrix (--constraint-reweight), and
    "-dualt" when that matrix is the Dual-T estimate (--load-matrix). A reweighted loss without a
    distance regulariser is "reweight"."""
    base = "plain" if reg_method in ("", "none", None) else str(reg_method)
    if not reweight:
        return base
    name = "reweight" if base == "plain" else f"{base}-reweight"
    return f"{name}-dualt" if load_matrix else name


def _flag(overrides: Dict[str, Any], base: Dict[str, Any], flag: str):
    """A train flag's value for one run: its grid value, else the spec's base value, else the default."""
    if flag in overrides:
        return overrides[flag]
    if flag in base:
        return base[flag]
    return TRAIN_DEFAULTS.get(flag)


def _as_bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "on", "yes")
    return bool(value)


def _as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def derived_columns(config: Dict[str, Any], overrides: Dict[str, Any], base: Dict[str, Any]) -> Dict[str, Any]:
    """method, reg_method, reweight, noise_rate, radius and seed of one run: from its typed config when
    there is one, else from its grid values and the spec's base (a run that never started)."""
    if config.get("train"):
        reg_method = config_value(config, "train", "reg_method", "none")
        reweight = bool(config_value(config, "train", "constraint_reweight", False))
        load_matrix = bool(config_value(config, "train", "load_matrix", False))
        noise = noise_rate_of(config)
        radius = _as_float(config_value(config, "train", "reg_extractor"))
        seed = config_value(config, "train", "seed")
    else:
        reg_method = str(_flag(overrides, base, "reg-method"))
        reweight = _as_bool(_flag(overrides, base, "constraint-reweight"))
        load_matrix = _as_bool(_flag(overrides, base, "load-matrix"))
        noise = _as_float(_flag(overrides, base, "label-noise"))
        radius = _as_float(_flag(overrides, base, "reg-extractor"))
        seed = _flag(overrides, base, "seed")
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        seed = -1
    return {"method": derive_method(reg_method, reweight, load_matrix), "reg_method": reg_method,
            "reweight": reweight, "noise_rate": noise, "radius": radius, "seed": seed}


def _runs_without_index(sweep_dir: str) -> pd.DataFrame:
    """Index rows rebuilt from runs/*/run.h5 alone (a sweep whose index.h5 is gone): status is the run
    file's own ("complete" or "partial"), grid values unknown."""
    rows = []
    for path in sorted(glob.glob(os.path.join(sweep_dir, RUNS_DIR, "*", "run.h5"))):
        rows.append({"run_id": os.path.basename(os.path.dirname(path)), "status": "", "attempts": 0,
                     "message": "", "host": "", "ranks": 0, "start_time": "", "end_time": "",
                     "seconds": math.nan, "overrides": {}, "config": {}})
    return pd.DataFrame(rows)


def load_sweep(sweep_dir: str) -> pd.DataFrame:
    """One row per run of a sweep folder, sorted by run_id. Columns:

      run_id, status                 from index.h5 (complete | failed | pending | running)
      method, noise_rate, radius,    derived from the run's typed config (run.h5, else the index's
      seed, reg_method, reweight     `config`, else its grid values): method as derive_method(),
                                     noise_rate = --label-noise, radius = --reg-extractor
      <grid flags>                   one column per flag of the spec's grid (e.g. "label-noise",
                                     "reg-method"), the run's value; `seed` is the derived column
      test_accuracy ... gap_accuracy /train/final; measure = /measures/sum_sqrt, bound = /measures/bound,
      measure ... trace_total        bound_c, measure_block / bound_block (/measures_block), v_norm_sum =
                                     sum of /measures/v_norm, trace_total = sum of /traces/layer_mean,
                                     train_size; NaN when absent (failed and pending runs)
      results_from                   "run.h5", "index" (run.h5 missing or unreadable) or "none"
      run_status, run_error          run.h5's status attribute; why run.h5 could not be read ("" if it was)
      attempts, message, host, ranks, start_time, end_time, seconds   from index.h5
      folder, config, overrides      the run folder's path; parsed typed config and grid values (dicts)

    DataFrame.attrs: sweep_dir, index_path (None without index.h5), spec, grid_keys (the grid's flags).
    Raises NotASweepError for a folder that is neither a sweep (index.h5) nor holds runs/*/run.h5.
    """
    if not os.path.isdir(sweep_dir):
        raise NotASweepError(f"{sweep_dir}: not a folder")
    if os.path.isfile(os.path.join(sweep_dir, INDEX_FILE)):
        index = read_index(sweep_dir)
        raw, spec, ipath = index.runs, index.spec, index.path
    else:
        raw, spec, ipath = _runs_without_index(sweep_dir), {}, None
        if raw.empty:
            raise NotASweepError(f"{sweep_dir}: not a hessgap sweep folder (no {INDEX_FILE} and no "
                                 f"{RUNS_DIR}/<run_id>/run.h5)")
    base = spec.get("base", {}) if isinstance(spec.get("base"), dict) else {}
    grid = spec.get("grid", {}) if isinstance(spec.get("grid"), dict) else {}
    grid_keys: List[str] = list(grid)
    for overrides in raw.get("overrides", []):
        grid_keys += [k for k in overrides if k not in grid_keys]

    rows = []
    for rec in raw.to_dict("records"):
        run_id = str(rec["run_id"])
        folder = os.path.join(sweep_dir, RUNS_DIR, run_id)
        overrides = rec.get("overrides") or {}
        config = rec.get("config") or {}
        run, run_error = None, ""
        if os.path.isfile(os.path.join(folder, "run.h5")):
            try:
                run = read_run(folder)
            except (OSError, ValueError, KeyError) as e:  # a damaged file: report it, use the index
                run_error = str(e)
        row: Dict[str, Any] = {"run_id": run_id, "status": str(rec.get("status", ""))}
        for key in grid_keys:
            row[key] = overrides.get(key)
        if run is not None:
            config = run.config or config
            results = run.results()
            # A run file lacking a value (NaN) does not hide one the index has.
            for key in INDEX_RESULT_KEYS:
                if math.isnan(results[key]):
                    results[key] = _as_float(rec.get(key))
            results_from = "run.h5"
        else:
            results = {key: _as_float(rec.get(key)) if key in INDEX_RESULT_KEYS else math.nan
                       for key in RESULT_KEYS}
            results_from = "index" if any(np.isfinite(results[k]) for k in INDEX_RESULT_KEYS) else "none"
        if not row["status"]:  # no index: the run file's own status
            row["status"] = run.status if run is not None else "unknown"
        row.update(derived_columns(config, overrides, base))
        row.update(results)
        row.update({
            "results_from": results_from,
            "run_status": run.status if run is not None else "",
            "run_error": run_error,
            "attempts": int(rec.get("attempts", 0) or 0),
            "message": str(rec.get("message", "") or ""),
            "host": str(rec.get("host", "") or ""),
            "ranks": int(rec.get("ranks", 0) or 0),
            "start_time": str(rec.get("start_time", "") or ""),
            "end_time": str(rec.get("end_time", "") or ""),
            "seconds": _as_float(rec.get("seconds")),
            "folder": folder,
            "config": config,
            "overrides": overrides,
        })
        rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values("run_id", kind="stable").reset_index(drop=True)
    df.attrs.update({"sweep_dir": sweep_dir, "index_path": ipath, "spec": spec, "grid_keys": grid_keys})
    return df


def group_keys(df: pd.DataFrame) -> List[str]:
    """Columns that identify a configuration up to the seed: method and noise_rate, plus the grid flags
    that those do not already describe (the radius among them, shown as `radius`)."""
    keys = ["method", "noise_rate"]
    for flag in df.attrs.get("grid_keys", []):
        col = DERIVED_FLAGS.get(flag, flag)
        if col in ("seed", "method", "noise_rate") or col in keys or col not in df.columns:
            continue
        # A label that the keys so far already determine (a named group of flags such as "noise", whose
        # every value sets one noise rate) adds no grouping.
        if not df.empty and df.groupby(keys, dropna=False)[col].nunique(dropna=False).max() <= 1:
            continue
        keys.append(col)
    return keys
