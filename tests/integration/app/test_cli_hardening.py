"""Hostile inputs and outputs (issue #12), each a regression test that failed before its fix: checkpoints
with NaN or infinite weights refused by every measuring subcommand (naming the tensor) unless
--allow-nonfinite; --out naming a FIFO, a device or a link to one refused before any work; --threads
beyond the machine's cores refused. Exit 2, nothing written.
"""
import os

import numpy as np
import pytest

from conftest import IMAGES, WEIGHTS, assert_failed, leftovers, read_safetensors, run_hg, write_safetensors

TINY = ["--data", IMAGES, "--max-per-class", 1, "--batch-size", 2, "--sample-size", 4, "--sample-rule", "exact",
        "--verbosity", 0]


@pytest.fixture(scope="module")
def nan_weights(tmp_path_factory):
    tensors = read_safetensors(WEIGHTS)
    name = "layer1.0.bn1.running_var"  # a buffer: the check covers buffers as well as parameters
    tensors[name] = tensors[name].copy()
    tensors[name][3] = np.nan
    path = tmp_path_factory.mktemp("nan") / "nan.safetensors"
    write_safetensors(path, tensors)
    return path, name


@pytest.mark.parametrize("sub,extra", [
    ("eval", []), ("traces", ["--max-probes", 2]), ("stability", ["--repeats", 1]),
    ("measures", ["--init-checkpoint", WEIGHTS, "--train-size", 100]), ("spectrum", ["--lanczos-steps", 2]),
])
def test_nonfinite_checkpoints_are_refused_naming_the_tensor(hessgap_bin, tmp_path, nan_weights, sub, extra):
    path, name = nan_weights
    out = tmp_path / "out"
    out.mkdir()
    r = run_hg(sub, "--checkpoint", path, *TINY, *extra, "--out", out / "r.h5")
    assert_failed(r, 2, f"--checkpoint '{path}': tensor '{name}' holds 1 NaN or infinite value(s)",
                  "--allow-nonfinite", out_dir=out)


def test_nonfinite_init_checkpoint_and_the_override(hessgap_bin, tmp_path, nan_weights):
    path, name = nan_weights
    r = run_hg("measures", "--checkpoint", WEIGHTS, "--init-checkpoint", path, "--train-size", 100, *TINY)
    assert_failed(r, 2, f"--init-checkpoint '{path}': tensor '{name}'")
    # Asked for: eval runs on it (and reports what it gets).
    r = run_hg("eval", "--checkpoint", path, "--allow-nonfinite", *TINY, "--out", tmp_path / "e.h5")
    assert r.rc == 0, r


def test_special_outputs_are_refused(hessgap_bin, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "null-link"
    link.symlink_to("/dev/null")
    for out, why in ((fifo, "it is a FIFO"), ("/dev/null", "it is a character device"),
                     (link, "it is a symbolic link to a character device")):
        r = run_hg("eval", "--checkpoint", WEIGHTS, *TINY, "--out", out)
        assert_failed(r, 2, f"cannot write output '{out}': {why}")
    assert sorted(leftovers(tmp_path)) == ["fifo", "null-link"]
    assert os.path.islink(link) and os.readlink(link) == "/dev/null"


def test_threads_beyond_the_cores_are_refused(hessgap_bin):
    r = run_hg("eval", "--checkpoint", WEIGHTS, *TINY, "--threads", 1000)
    assert_failed(r, 2, f"--threads 1000 exceeds the {os.cpu_count()} cores")
