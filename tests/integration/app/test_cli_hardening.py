"""Hostile inputs and outputs (issue #12), each a regression test that failed before its fix: checkpoints
with NaN or infinite weights refused by every measuring subcommand (naming the tensor) unless
--allow-nonfinite; --out naming a FIFO, a device or a link to one refused before any work; --threads
beyond the machine's cores refused; sizes declared by a checkpoint, image, IDX header or config.json
checked before allocating (a forged zip member, a 100,000-deep pickle, a huge HDF5 dataset, a JPEG
declaring 20000x20000, HESSGAP_MAX_IMAGE_PIXELS); a FIFO or device as a checkpoint; --eps bounded;
--out '' and a read-only --out; integer weights for float ones. Exit 2, nothing written. A signal ends a
measurement with exit 3 and no leftovers.
"""
import json
import os
import shutil
import signal
import struct
import subprocess
import time
import zipfile
import zlib

import numpy as np
import pytest

from conftest import (CLASSES, IMAGES, SOURCE_DIR, WEIGHTS, assert_failed, leftovers, read_safetensors, run_hg,
                      write_safetensors)

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


def test_empty_and_read_only_outputs_are_refused(hessgap_bin, tmp_path):
    r = run_hg("eval", "--checkpoint", WEIGHTS, *TINY, "--out", "")
    assert_failed(r, 2, "--out must not be empty")
    kept = tmp_path / "kept.h5"
    kept.write_bytes(b"precious")
    kept.chmod(0o444)
    r = run_hg("eval", "--checkpoint", WEIGHTS, *TINY, "--out", kept)
    assert_failed(r, 2, f"cannot write output '{kept}': it exists and is read-only (mode 444)")
    assert kept.read_bytes() == b"precious" and leftovers(tmp_path) == ["kept.h5"]


def test_integer_weights_are_refused_naming_the_tensor(hessgap_bin, tmp_path):
    tensors = read_safetensors(WEIGHTS)
    tensors["conv1.weight"] = np.round(tensors["conv1.weight"] * 100).astype(np.int32)
    ints = tmp_path / "ints.safetensors"
    write_safetensors(ints, tensors)
    r = run_hg("eval", "--checkpoint", ints, *TINY, "--out", tmp_path / "e.h5")
    assert_failed(r, 2, "tensor 'conv1.weight'", "holds Int values", "integer weights are not converted")
    assert not (tmp_path / "e.h5").exists()


@pytest.mark.parametrize("signo", [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1])
def test_a_signal_ends_a_measurement_without_leftovers(hessgap_bin, tmp_path, signo):
    """A measuring subcommand interrupted (here during its HVPs) exits 3 and leaves neither the output nor a
    temporary file; the temporary file's own removal on a signal during the write is the unit test
    ioAtomicOutput.AFatalSignalRemovesTheTemporaryFile."""
    out = tmp_path / "t.h5"
    cmd = [hessgap_bin, "traces", "--checkpoint", str(WEIGHTS),
           "--data", str(IMAGES), "--batch-size", "4", "--sample-size", "100", "--max-probes", "1000", "--tol", "1e-12",
           "--verbosity", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    line = ""
    while not line.startswith("model:"):  # loaded: the HVPs of the first batch follow at once
        line = proc.stdout.readline()
        assert line, "hessgap ended before loading its model"
    time.sleep(1.0)
    proc.send_signal(signo)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 3, (proc.returncode, rest)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("flags,message", [
    (["--resize", 1000000], "--resize and --crop must be at most 4096 pixels (got 1000000 and 0)"),
    (["--crop", 100000], "--resize and --crop must be at most 4096 pixels (got 0 and 100000)"),
    (["--num-classes", 2000000000, "--new-head"], "--num-classes must be between 0 and 1000000 (got 2000000000)"),
])
def test_absurd_sizes_in_flags_are_user_errors(hessgap_bin, tmp_path, flags, message):
    """These ended in an internal error (std::bad_alloc, exit 1) or a LibTorch backtrace."""
    r = run_hg("eval", "--checkpoint", WEIGHTS, *TINY, *flags, "--out", tmp_path / "e.h5")
    assert_failed(r, 2, message, out_dir=tmp_path)


def test_threads_beyond_the_cores_are_refused(hessgap_bin):
    r = run_hg("eval", "--checkpoint", WEIGHTS, *TINY, "--threads", 1000)
    assert_failed(r, 2, f"--threads 1000 exceeds the {os.cpu_count()} cores")


# ---- declared sizes checked before allocating; inputs that are not regular files (issue #12) ------

def _forged_zip(path, name, data, declared_size):
    """A one-member zip whose deflated member `name` declares `declared_size` bytes uncompressed."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = co.compress(data) + co.flush()
    crc = zlib.crc32(data)
    n = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(packed), declared_size, len(n), 0)
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(packed), declared_size,
                          len(n), 0, 0, 0, 0, 0, 0)
    body = local + n + packed
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central) + len(n), len(body), 0)
    path.write_bytes(body + central + n + end)


def _out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    return out


def test_zip_member_declaring_4_gib_fails_fast_naming_it(hessgap_bin, tmp_path):
    path = tmp_path / "forged.pt"
    _forged_zip(path, "archive/data.pkl", b"\x80\x02}.", 0xFFFFFFFF)
    assert path.stat().st_size < 160
    out = _out(tmp_path)
    r = run_hg("eval", "--checkpoint", path, *TINY, "--out", out / "r.h5", timeout=60)
    assert_failed(r, 2, f"entry 'archive/data.pkl' of zip archive '{path}' declares 4294967295 bytes uncompressed",
                  out_dir=out)
    assert r.seconds < 20, r


def test_deeply_nested_pickle_is_an_error_not_a_crash(hessgap_bin, tmp_path):
    # 100,000 nested tuples in a torch.save zip (a few hundred bytes deflated): a segfault before.
    path = tmp_path / "nested.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02)" + b"\x85" * 100000 + b".")
    out = _out(tmp_path)
    r = run_hg("eval", "--checkpoint", path, *TINY, "--out", out / "r.h5")
    assert_failed(r, 2, f"torch.save file '{path}' (archive/data.pkl)", "nests values more than 1000 levels deep",
                  out_dir=out)


def test_hdf5_checkpoint_declaring_a_huge_tensor(hessgap_bin, tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "hessgap-checkpoint"
        f.attrs["format_version"] = np.int64(1)
        # Chunked and never written: no storage in the file, 4 PiB once read.
        f.create_dataset("tensors/conv1.weight", shape=(2**20, 2**20, 1024), dtype="f4", chunks=(1, 1, 1024))
    out = _out(tmp_path)
    r = run_hg("eval", "--checkpoint", path, *TINY, "--out", out / "r.h5")
    assert_failed(r, 2, f"'/tensors/conv1.weight' in HDF5 file '{path}' declares shape [1048576, 1048576, 1024] of "
                        "4503599627370496 bytes, more than the", out_dir=out)


def test_idx_header_declaring_more_than_the_file(hessgap_bin, tmp_path):
    data = tmp_path / "idx"
    data.mkdir()
    (data / "t10k-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">III", 65537, 1024, 1024))
    (data / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 2) + bytes([0, 1]))
    out = _out(tmp_path)
    r = run_hg("eval", "--checkpoint", WEIGHTS, "--data", data, "--data-format", "idx", "--pad", 2, "--grey-to-rgb",
               "--normalize", "cifar10", "--batch-size", 2, "--verbosity", 0, "--out", out / "r.h5")
    assert_failed(r, 2, f"IDX file '{data / 't10k-images-idx3-ubyte'}' is truncated or forged: its header declares "
                        "dimensions 65537x1024x1024 (68720525312 bytes of data)", out_dir=out)


def _jpeg_declaring(width, height):
    b = bytearray((IMAGES / CLASSES[0] / "0000.jpg").read_bytes())
    at = b.index(b"\xff\xc0")  # SOF0: marker, length, precision, height, width
    b[at + 5:at + 9] = struct.pack(">HH", height, width)
    return bytes(b)


def test_image_declaring_gigapixels_and_the_environment_limit(hessgap_bin, tmp_path, monkeypatch):
    data = tmp_path / "images"
    for c in CLASSES:
        (data / c).mkdir(parents=True)
        shutil.copy(IMAGES / c / "0000.jpg", data / c / "0000.jpg")
    bad = data / CLASSES[1] / "0001.jpg"
    bad.write_bytes(_jpeg_declaring(20000, 20000))
    assert bad.stat().st_size < 2000
    out = _out(tmp_path)
    args = ["--checkpoint", WEIGHTS, "--batch-size", 2, "--verbosity", 0, "--out", out / "r.h5"]
    r = run_hg("eval", "--data", data, *args)
    assert_failed(r, 2, f"cannot decode JPEG file '{bad}': it declares 20000x20000 pixels (400000000), more than the "
                        "limit of 100000000 pixels", "HESSGAP_MAX_IMAGE_PIXELS", out_dir=out)
    # The limit follows the environment: the 32x32 images (1024 pixels) are refused under 1000.
    monkeypatch.setenv("HESSGAP_MAX_IMAGE_PIXELS", "1000")
    r = run_hg("eval", "--data", IMAGES, "--max-per-class", 1, *args)
    assert_failed(r, 2, "it declares 32x32 pixels (1024), more than the limit of 1000 pixels", out_dir=out)


def test_config_json_sizes_are_bounded(hessgap_bin, tmp_path):
    folder = tmp_path / "bert"
    shutil.copytree(SOURCE_DIR / "tests" / "fixtures" / "hf" / "bert-tiny", folder)
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 1000000
    (folder / "config.json").write_text(json.dumps(config))
    out = _out(tmp_path)
    r = run_hg("eval", "--checkpoint", folder, *TINY, "--out", out / "r.h5")
    assert_failed(r, 2, f"config {folder / 'config.json'}: field 'num_hidden_layers' is 1000000, more than the limit "
                        "of 256", out_dir=out)


def test_fifo_and_device_checkpoints_are_refused_at_once(hessgap_bin, tmp_path):
    fifo = tmp_path / "ckpt.fifo"
    os.mkfifo(fifo)
    out = _out(tmp_path)
    for path, kind in ((fifo, "a FIFO"), ("/dev/zero", "a character device")):
        # Before: opening the FIFO blocked forever (no writer), hence the timeout.
        r = run_hg("eval", "--checkpoint", path, *TINY, "--out", out / "r.h5", timeout=60)
        assert_failed(r, 2, f"checkpoint '{path}' is not a regular file: it is {kind}", out_dir=out)
    r = run_hg("measures", "--checkpoint", WEIGHTS, "--init-checkpoint", fifo, "--train-size", 100, *TINY,
               "--out", out / "r.h5", timeout=60)
    assert_failed(r, 2, f"checkpoint '{fifo}' is not a regular file: it is a FIFO", out_dir=out)


def test_stability_eps_must_be_sane(hessgap_bin, tmp_path):
    out = _out(tmp_path)
    for eps in ("1e308", "2"):
        r = run_hg("stability", "--checkpoint", WEIGHTS, *TINY, "--repeats", 1, "--eps", eps, "--out", out / "r.h5")
        assert_failed(r, 2, "--eps must be > 0 and at most 1 (the absolute standard deviation of the weight noise)",
                      out_dir=out)
