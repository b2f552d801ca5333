"""Fixtures for the sweep-analysis tests (test_report.py): two real sweeps made by the hessgap binary.

Environment (set by CTest, see CMakeLists.txt here):
  HESSGAP        the hessgap binary
  HG_SOURCE_DIR  the source tree (assets/ for the embedded ResNet-20, analysis/ for the code under test)
  MPIEXEC        mpirun (unused while make_sweep runs one rank per run without it)

Both sweeps fine-tune the embedded CIFAR-10 ResNet-20 on 200 Fashion-MNIST training images for one
epoch and test on 100 (Debian's dataset-fashion-mnist), so a run takes about 6 s on one core:
  methods sweep  label noise {0.2, 0.4} x reg-method {none, constraint} x seed {0, 1}, with traces
  radius sweep   radius {0.25, 1} x constraint-reweight {off, on} at noise 0.4, seed 0, no traces
12 runs, about 75 s, made once per session.
"""
import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

SOURCE_DIR = Path(os.environ.get("HG_SOURCE_DIR", Path(__file__).resolve().parents[3]))
ANALYSIS = SOURCE_DIR / "analysis"
REPORT = ANALYSIS / "report.py"
WEIGHTS = SOURCE_DIR / "assets" / "models" / "cifar10-resnet20" / "resnet20.safetensors"
FMNIST = Path("/usr/share/datasets/fashion-mnist")
PYTHON = "/usr/bin/python3"

sys.path.insert(0, str(ANALYSIS))

# Flags every run shares: tiny, so that the sweeps stay real training runs yet fast.
BASE = {"checkpoint": str(WEIGHTS), "data": str(FMNIST), "data-format": "idx", "pad": 2, "grey-to-rgb": True,
        "normalize": "cifar10", "epochs": 1, "batch-size": 32, "lr": 1e-3, "train-subset": 200,
        "test-subset": 100, "noise-seed": 0, "reg-norm": "frob", "reg-extractor": 0.5, "reg-predictor": 2.0,
        "measure-samples": 8, "measure-batch-size": 4, "verbosity": 0}
SPEC_METHODS = {"base": dict(BASE, **{"measure-trace-probes": 2}),
                "grid": {"label-noise": [0.2, 0.4], "reg-method": ["none", "constraint"], "seed": [0, 1]},
                "ranks_per_run": 1}
SPEC_RADIUS = {"base": dict(BASE, **{"label-noise": 0.4, "reg-method": "constraint", "reweight-noise-rate": 0.4,
                                     "seed": 0}),
               "grid": {"reg-extractor": [0.25, 1.0], "constraint-reweight": [False, True]},
               "ranks_per_run": 1}

INDEX_FORMAT = "hessgap-sweep-index"
INDEX_RESULTS = {"test_accuracy": "train/final/test_accuracy", "test_loss": "train/final/test_loss",
                 "train_loss_clean": "train/final/train_loss_clean", "train_loss_noisy": "train/final/train_loss_noisy",
                 "gap_loss_clean": "train/final/gap_loss_clean", "gap_loss_noisy": "train/final/gap_loss_noisy",
                 "gap_accuracy": "train/final/gap_accuracy", "measure": "measures/sum_sqrt", "bound": "measures/bound"}
INDEX_STR = ("run_id", "status", "message", "host", "start_time", "end_time", "overrides", "config")
INDEX_INT = ("attempts", "ranks")


def hessgap_binary():
    path = os.environ.get("HESSGAP") or shutil.which("hessgap")
    if not path or not os.access(path, os.X_OK):
        pytest.exit("set HESSGAP to the hessgap binary (ctest does this)", returncode=2)
    return path


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def flag_args(flags):
    """--flag value pairs; a true boolean is the bare flag, a false one is left out (the default)."""
    args = []
    for k, v in flags.items():
        if v is True:
            args.append(f"--{k}")
        elif v is not False and v is not None:
            args += [f"--{k}", str(v)]
    return args


def grid_points(grid):
    """The grid's combinations in the order of its keys (last key fastest)."""
    points = [{}]
    for key, values in grid.items():
        points = [dict(p, **{key: v}) for p in points for v in values]
    return points


def write_index(directory, spec, rows):
    """DIR/index.h5 in the sweep layout (the analysis README and hessgap_analysis/sweep.py describe it):
    one row per run sorted by run_id. `rows` are dicts with the INDEX_STR / INDEX_INT columns, `seconds`
    and the INDEX_RESULTS columns (NaN when absent). Tests use it to make failed and pending variants."""
    rows = sorted(rows, key=lambda r: r["run_id"])
    path = Path(directory) / "index.h5"
    tmp = path.with_name(f"index.h5.tmp-{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = INDEX_FORMAT
        f.attrs["format_version"] = np.int64(1)
        f.attrs["spec"] = json.dumps(spec)
        g = f.create_group("runs")
        for name in INDEX_STR:
            g.create_dataset(name, data=[str(r.get(name, "")) for r in rows], dtype=h5py.string_dtype())
        for name in INDEX_INT:
            g.create_dataset(name, data=np.array([int(r.get(name, 0)) for r in rows], dtype=np.int64))
        for name in ("seconds",) + tuple(INDEX_RESULTS):
            g.create_dataset(name, data=np.array([float(r.get(name, np.nan)) for r in rows], dtype=np.float64))
    os.replace(tmp, path)
    return path


def read_index_rows(directory):
    """index.h5's rows as dicts (h5py directly, not the code under test)."""
    with h5py.File(Path(directory) / "index.h5", "r") as f:
        spec = json.loads(f.attrs["spec"])
        cols = {}
        for name, ds in f["runs"].items():
            cols[name] = list(ds.asstr()[()]) if h5py.check_string_dtype(ds.dtype) else list(ds[()])
    n = len(cols["run_id"])
    return spec, [{k: v[i] for k, v in cols.items()} for i in range(n)]


def make_sweep(directory, spec):
    """`hessgap sweep SPEC.json --out-dir DIR` on one rank; returns DIR."""
    directory = Path(directory)
    spec_file = directory.parent / "spec.json"
    spec_file.write_text(json.dumps(spec))
    proc = subprocess.run([hessgap_binary(), "sweep", str(spec_file), "--out-dir", str(directory)], capture_output=True,
                          text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600)
    assert proc.returncode == 0, f"hessgap sweep failed ({proc.returncode})\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return directory


def run_report(sweep_dir, *extra):
    """analysis/report.py as a user runs it: (returncode, stdout + stderr)."""
    proc = subprocess.run([PYTHON, str(REPORT), str(sweep_dir), *map(str, extra)], capture_output=True, text=True,
                          timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def _make(tmp_path_factory, name, spec):
    assert WEIGHTS.is_file(), f"embedded weights missing: {WEIGHTS}"
    assert (FMNIST / "train-images-idx3-ubyte.gz").is_file(), \
        f"Fashion-MNIST missing at {FMNIST} (Debian package dataset-fashion-mnist, installed by scripts/setup.sh)"
    directory = make_sweep(tmp_path_factory.mktemp(name) / "sweep", spec)
    rc, out = run_report(directory)
    assert rc == 0, out
    return directory


@pytest.fixture(scope="session")
def methods_sweep(tmp_path_factory):
    """The methods sweep, with its report in DIR/report/."""
    return _make(tmp_path_factory, "methods", SPEC_METHODS)


@pytest.fixture(scope="session")
def radius_sweep(tmp_path_factory):
    """The radius sweep, with its report in DIR/report/."""
    return _make(tmp_path_factory, "radius", SPEC_RADIUS)
