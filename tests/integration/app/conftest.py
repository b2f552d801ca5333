"""Fixtures for the hessgap CLI integration tests (test_cli.py).

Environment (set by CTest, see CMakeLists.txt here):
  HESSGAP        the hessgap binary
  HG_SOURCE_DIR  the source tree (assets/, analysis/, and ../shared/data for the golden test)
  MPIEXEC        mpirun (Open MPI); run with --allow-run-as-root --oversubscribe
Inputs are kept tiny (the embedded CIFAR-10 ResNet-20 on 1-2 images per class) so the whole
suite runs in well under three minutes on two cores.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SOURCE_DIR = Path(os.environ.get("HG_SOURCE_DIR", Path(__file__).resolve().parents[3]))
ASSETS = SOURCE_DIR / "assets"
WEIGHTS = ASSETS / "models" / "cifar10-resnet20" / "resnet20.safetensors"
IMAGES = ASSETS / "cifar10-test-100"
GOLDEN_DATA = SOURCE_DIR.parent / "shared" / "data" / "cifar10-jpeg" / "test"
CLASSES = sorted(p.name for p in IMAGES.iterdir() if p.is_dir()) if IMAGES.is_dir() else []

sys.path.insert(0, str(SOURCE_DIR / "analysis"))


def pytest_configure(config):
    config.addinivalue_line("markers", "golden: needs the full CIFAR-10 test set in ../shared/data (ctest cli_golden)")


def _hessgap_binary():
    path = os.environ.get("HESSGAP") or shutil.which("hessgap")
    if not path or not os.access(path, os.X_OK):
        pytest.exit("set HESSGAP to the hessgap binary (ctest does this)", returncode=2)
    return path


HESSGAP = None


class Result:
    """Exit code, combined output and duration of one hessgap invocation."""

    def __init__(self, args, proc, seconds):
        self.args = args
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.output = proc.stdout + proc.stderr
        self.seconds = seconds

    def __repr__(self):
        return (f"hessgap exited {self.rc} after {self.seconds:.1f} s: {' '.join(map(str, self.args))}\n"
                f"--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}")


def run_hg(*args, np_=None, timeout=120, cwd=None):
    """Runs hessgap (under mpirun with np_ ranks when given) and returns a Result."""
    global HESSGAP
    if HESSGAP is None:
        HESSGAP = _hessgap_binary()
    cmd = [HESSGAP] + [str(a) for a in args]
    if np_ is not None:
        mpiexec = os.environ.get("MPIEXEC") or "mpirun"
        cmd = [mpiexec, "--allow-run-as-root", "--oversubscribe", "-x", "OMP_NUM_THREADS=1",
               "-np", str(np_)] + cmd
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    return Result(cmd, proc, time.monotonic() - t0)


# ---- safetensors (a tiny reader/writer; the python safetensors package is not installed) -------

from tools import safetensors_np  # noqa: E402  (analysis/ is on sys.path above)


def read_safetensors(path):
    """name -> numpy array, in file order."""
    return safetensors_np.read(path)[0]


def write_safetensors(path, tensors):
    safetensors_np.write(path, tensors)


# ---- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def hessgap_bin():
    global HESSGAP
    HESSGAP = _hessgap_binary()
    return HESSGAP


@pytest.fixture(scope="session")
def weights():
    assert WEIGHTS.is_file(), f"embedded weights missing: {WEIGHTS}"
    return WEIGHTS


@pytest.fixture(scope="session")
def images():
    assert len(CLASSES) == 10, f"embedded CIFAR-10 images missing or incomplete: {IMAGES}"
    return IMAGES


def make_image_folder(root, per_class=1, classes=None):
    """root/<class>/<file>.jpg with the first `per_class` asset images of each class."""
    root = Path(root)
    for c in classes or CLASSES:
        (root / c).mkdir(parents=True, exist_ok=True)
        for src in sorted((IMAGES / c).glob("*.jpg"))[:per_class]:
            shutil.copy(src, root / c / src.name)
    return root


def assert_failed(r, code, *fragments, out_dir=None):
    """Exit code `code`, every fragment in the output, and nothing left in out_dir."""
    assert r.rc == code, r
    for frag in fragments:
        assert frag in r.output, f"expected {frag!r} in the output\n{r!r}"
    if out_dir is not None:
        left = leftovers(out_dir)
        assert left == [], f"files left in {out_dir}: {left}\n{r!r}"


def leftovers(directory):
    """Files left in `directory` (to check that failures leave neither outputs nor temp files)."""
    return sorted(p.name for p in Path(directory).iterdir())


def perturbed(tmp_path_factory, weights):
    """A copy of the weights with small Gaussian noise on every float parameter, so that v != 0."""
    rng = np.random.default_rng(1234)
    tensors = read_safetensors(weights)
    for name, a in tensors.items():
        if a.dtype.kind == "f" and not name.endswith(("running_mean", "running_var")):
            tensors[name] = (a + rng.normal(0.0, 0.01 * float(np.std(a)) + 1e-4, a.shape)).astype(a.dtype)
    path = tmp_path_factory.mktemp("ckpt") / "perturbed.safetensors"
    write_safetensors(path, tensors)
    return path
