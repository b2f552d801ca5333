"""Reading one hessgap run: the folder `hessgap train --out-dir DIR` writes (run.h5, epoch_0.h5, best.h5,
last.h5), or its run.h5 alone. Layout: docs/output-format.md ("/train", "/measures", "/traces").

Unlike `hessgap_results.load`, which reads every dataset of a results file (the per-sample label arrays
included), this reader takes what a sweep analysis needs: the root attributes, the typed configuration,
the layer names, `/train/final` and `/train/epochs`, `/measures`, `/measures_block`, `/traces`,
`/stability`, and the scalars of `/labels`. A sweep of hundreds of runs then reads in seconds.
"""
import dataclasses
import json
import math
import os
from typing import Any, Dict, List, Optional

import h5py
import numpy as np

RESULTS_FORMAT = "hessgap-results"
MAX_RESULTS_VERSION = 1

# /train/final scalars that a sweep reports per run (and that index.h5 repeats as columns).
FINAL_KEYS = ("test_accuracy", "test_loss", "train_loss_clean", "train_loss_noisy",
              "gap_loss_clean", "gap_loss_noisy", "gap_accuracy")
# Every key of Run.results(), in table order: FINAL_KEYS, then the measures. `measure` and `bound` are
# /measures/sum_sqrt and /measures/bound (joint mode, the reference's), as in index.h5.
RESULT_KEYS = FINAL_KEYS + ("measure", "bound", "bound_c", "measure_block", "bound_block",
                            "v_norm_sum", "trace_total", "train_size")


# One reading of HDF5 values for the whole analysis folder: the results-file reader's (analysis/ is on
# sys.path wherever this package is importable).
from hessgap_results import _read_dataset as read_dataset  # noqa: E402
from hessgap_results import _text as text  # noqa: E402



def _group(f, name, scalars_only=False):
    """{dataset name: value} of one group (not recursive), or None when the file lacks it."""
    if name not in f or not isinstance(f[name], h5py.Group):
        return None
    out = {}
    for key, ds in f[name].items():
        if not isinstance(ds, h5py.Dataset):
            continue
        if scalars_only and ds.shape != ():
            continue
        out[key] = read_dataset(ds)
    return out


def _attrs(obj) -> Dict[str, Any]:
    return {k: text(v) for k, v in obj.attrs.items()}


def _nan() -> float:
    return float("nan")


@dataclasses.dataclass
class Run:
    """One run file. Sections the file lacks are None; arrays are numpy, scalars Python numbers."""
    path: str                      # the run.h5 read
    attrs: Dict[str, Any]          # root attributes (`config` still the JSON string)
    config: Dict[str, Any]         # root `config`, parsed: typed sections model/data/compute/train/measure/output
    layers: List[str]              # /layers/names: the order of every per-layer array
    final: Dict[str, Any]          # /train/final scalars ({} when the run has not finished)
    epochs: Optional[Dict[str, Any]] = None          # /train/epochs columns
    measures: Optional[Dict[str, Any]] = None        # /measures (joint mode)
    measures_block: Optional[Dict[str, Any]] = None  # /measures_block (block mode)
    traces: Optional[Dict[str, Any]] = None          # /traces (with --measure-trace-probes)
    stability: Optional[Dict[str, Any]] = None       # /stability (with --measure-stability-repeats)
    labels: Optional[Dict[str, Any]] = None          # /labels: group attributes and scalars only
    group_attrs: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)  # per section

    @property
    def folder(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))

    @property
    def run_id(self) -> str:
        return str(self.attrs.get("run_id", ""))

    @property
    def status(self) -> str:
        """run.h5's own status: "complete", or "partial" after --stop-after-epochs."""
        return str(self.attrs.get("status", ""))

    def results(self) -> Dict[str, float]:
        """The key results as floats, NaN where the file has no value (RESULT_KEYS)."""
        out = {k: float(self.final[k]) if k in self.final else _nan() for k in FINAL_KEYS}
        m, mb, t = self.measures, self.measures_block, self.traces
        out["measure"] = float(m["sum_sqrt"]) if m and "sum_sqrt" in m else _nan()
        out["bound"] = float(m["bound"]) if m and "bound" in m else _nan()
        out["bound_c"] = float(m["bound_c"]) if m and "bound_c" in m else _nan()
        out["measure_block"] = float(mb["sum_sqrt"]) if mb and "sum_sqrt" in mb else _nan()
        out["bound_block"] = float(mb["bound"]) if mb and "bound" in mb else _nan()
        # The distance-only measure of the paper's Figure 1: sum_i ||v_i||_F over the Hessian layers.
        out["v_norm_sum"] = float(np.sum(m["v_norm"])) if m and "v_norm" in m else _nan()
        # Sum over layers of the per-layer mean trace: a curvature-only comparator of the measure.
        out["trace_total"] = float(np.sum(t["layer_mean"])) if t and "layer_mean" in t else _nan()
        out["train_size"] = float(m["train_size"]) if m and "train_size" in m else _nan()
        return out


def run_file(path: str) -> str:
    """The run.h5 of a run folder, or `path` itself when it is a file."""
    return os.path.join(path, "run.h5") if os.path.isdir(path) else path


def read_run(path: str) -> Run:
    """Reads a run folder (or its run.h5). Raises FileNotFoundError when there is no run.h5 and
    ValueError when the file is not a hessgap results file or is a newer format than this reader."""
    path = run_file(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such run file")
    with h5py.File(path, "r") as f:
        attrs = _attrs(f)
        if attrs.get("format") != RESULTS_FORMAT:
            raise ValueError(f"{path}: not a hessgap results file (format attribute {attrs.get('format')!r})")
        version = int(attrs.get("format_version", 0))
        if version > MAX_RESULTS_VERSION:
            raise ValueError(f"{path}: format_version {version} is newer than this reader ({MAX_RESULTS_VERSION})")
        config = json.loads(attrs["config"]) if attrs.get("config") else {}
        layers = read_dataset(f["layers/names"]) if "layers/names" in f else []
        run = Run(path=path, attrs=attrs, config=config, layers=list(layers),
                  final=_group(f, "train/final") or {}, epochs=_group(f, "train/epochs"),
                  measures=_group(f, "measures"), measures_block=_group(f, "measures_block"),
                  traces=_group(f, "traces"), stability=_group(f, "stability"),
                  # /labels holds per-sample arrays as long as the training split: not needed here.
                  labels=_group(f, "labels", scalars_only=True))
        for name in ("train", "measures", "measures_block", "traces", "stability", "labels"):
            if name in f:
                run.group_attrs[name] = _attrs(f[name])
        if run.labels is not None:
            run.labels.update(run.group_attrs["labels"])
    return run


def config_value(config: Dict[str, Any], section: str, key: str, default=None):
    """config[section][key], or default when the typed configuration lacks it."""
    value = (config or {}).get(section, {})
    return value.get(key, default) if isinstance(value, dict) else default


def noise_rate_of(config: Dict[str, Any]) -> float:
    """The synthetic label-noise rate (--label-noise) of a typed configuration."""
    dataset = config_value(config, "data", "dataset", {}) or {}
    rate = dataset.get("noise_rate") if isinstance(dataset, dict) else None
    return float(rate) if rate is not None else math.nan
