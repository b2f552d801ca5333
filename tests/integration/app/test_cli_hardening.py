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


# ---- hostile flags, paths and sweep files (second hunt): each was an internal error, a hang, a crash or
# ---- a silent wrong result ---------------------------------------------------------------------------

TRAIN = ["--checkpoint", WEIGHTS, "--data", IMAGES, "--max-per-class", 1, "--epochs", 1, "--measure-samples", 0,
         "--verbosity", 0]


def _run_text(*args, timeout=120):
    """run_hg for outputs that may hold bytes that are not UTF-8."""
    cmd = [os.environ["HESSGAP"]] + [os.fsencode(a) if isinstance(a, bytes) else str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


@pytest.mark.parametrize("sub,extra", [("eval", []), ("traces", ["--max-probes", 2])])
def test_empty_checkpoint_is_refused(hessgap_bin, tmp_path, sub, extra):
    """--checkpoint '' ran on the architecture's random initial weights and exited 0."""
    out = _out(tmp_path)
    r = run_hg(sub, "--checkpoint", "", *TINY, *extra, "--out", out / "r.h5")
    assert_failed(r, 2, "--checkpoint must not be empty", out_dir=out)
    r = run_hg("run", "--checkpoint", "", "--out-dir", out / "run", "--epochs", 1)
    assert_failed(r, 2, "--checkpoint must not be empty", out_dir=out)


def test_empty_out_dirs_are_refused(hessgap_bin, tmp_path):
    """train --out-dir '' was a filesystem error (exit 1); run --out-dir '' wrote into the current folder."""
    r = run_hg("train", *TRAIN, "--out-dir", "", cwd=tmp_path)
    assert_failed(r, 2, "--out-dir must not be empty", out_dir=tmp_path)
    r = run_hg("run", "--out-dir", "", "--epochs", 1, cwd=tmp_path)
    assert_failed(r, 2, "--out-dir must not be empty", out_dir=tmp_path)
    spec = tmp_path.parent / f"{tmp_path.name}-spec.json"
    spec.write_text(json.dumps({"base": {"epochs": 1}, "grid": {"seed": [0, 1]}}))
    r = run_hg("sweep", spec, "--out-dir", "", "--dry-run", cwd=tmp_path)
    assert_failed(r, 2, "--out-dir must not be empty", out_dir=tmp_path)


def test_fifo_config_file_is_refused(hessgap_bin, tmp_path):
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    r = run_hg("eval", "--config", fifo, *TINY, timeout=60)  # it blocked forever before
    assert_failed(r, 2, f"config file '{fifo}' is not a regular file: it is a FIFO")


def _failed_sweep(tmp_path):
    """A sweep folder (sweep.json, runs/<id>/state.json) whose one run failed at once (a missing checkpoint)."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"base": {"checkpoint": str(tmp_path / "missing.safetensors"), "data": str(IMAGES),
                                         "max-per-class": 1, "epochs": 1, "measure-samples": 0, "verbosity": 0},
                                "grid": {"seed": [0]}}))
    out = tmp_path / "sweep"
    r = run_hg("sweep", spec, "--out-dir", out, "--max-attempts", 1)
    assert r.rc == 4, r
    (run,) = (out / "runs").iterdir()
    assert (run / "state.json").is_file()
    return spec, out, run


def test_fifo_sweep_files_are_refused(hessgap_bin, tmp_path):
    fifo = tmp_path / "spec.fifo"
    os.mkfifo(fifo)
    r = run_hg("sweep", fifo, "--out-dir", tmp_path / "d", "--dry-run", timeout=60)
    assert_failed(r, 2, f"sweep spec '{fifo}' is not a regular file: it is a FIFO")
    spec, out, run = _failed_sweep(tmp_path)
    for name, args in (("state.json", ["--dry-run"]), ("claim", []), ("sweep.json", ["--dry-run"])):
        path = (out if name == "sweep.json" else run) / name
        if path.exists():
            path.unlink()
        os.mkfifo(path)
        r = run_hg("sweep", spec, "--out-dir", out, *args, timeout=60)
        assert_failed(r, 2, f"'{path}' is not a regular file: it is a FIFO")
        path.unlink()
        if name == "state.json":
            path.write_text('{"status": "failed", "attempts": 1, "final": true}')


def test_malformed_sweep_files_are_refused_naming_them(hessgap_bin, tmp_path):
    spec, out, run = _failed_sweep(tmp_path)
    sweep_json = out / "sweep.json"
    good = sweep_json.read_text()
    sweep_json.write_text("[]")  # json type_error 306 before
    r = run_hg("sweep", spec, "--out-dir", out, "--dry-run")
    assert_failed(r, 2, f"'{sweep_json}' must hold a JSON object")
    sweep_json.write_text(good)
    claim = run / "claim"
    for text, message in (('{"host":5,"pid":1}', "'host' must be a string"), ('{"pid":"x"}', "'pid' must be an integer"),
                          ("[1,2]", "must hold a JSON object")):
        claim.write_text(text)
        r = run_hg("sweep", spec, "--out-dir", out)
        assert_failed(r, 2, f"claim file '{claim}'", message)
    claim.unlink()
    state = run / "state.json"
    state.write_text("[" * 100000 + "]" * 100000)
    r = run_hg("sweep", spec, "--out-dir", out, "--dry-run")
    assert_failed(r, 2, f"run state file '{state}': JSON nested more than 128 levels deep")


def test_deeply_nested_sweep_spec_is_an_error_not_a_crash(hessgap_bin, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text('{"grid": {"seed": [0]}, "ranks_per_run": ' + "[" * 10**6 + "]" * 10**6 + "}")
    r = run_hg("sweep", spec, "--out-dir", tmp_path / "d", "--dry-run")  # exit 139 before
    assert_failed(r, 2, f"sweep spec '{spec}': JSON nested more than 128 levels deep")


def test_sweep_grids_are_bounded(hessgap_bin, tmp_path):
    """6 flags of 10 values took minutes in --dry-run, 10 of them ended in bad_alloc."""
    for flags in (6, 10, 40):
        spec = tmp_path / f"spec{flags}.json"
        spec.write_text(json.dumps({"grid": {f"flag-{k}": list(range(10)) for k in range(flags)}}))
        r = run_hg("sweep", spec, "--out-dir", tmp_path / "d", "--dry-run", timeout=60)
        assert_failed(r, 2, f"sweep spec '{spec}': the grid defines more than 100000 runs")
        assert r.seconds < 20, r
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("flags,message", [
    (["--augment-size", 100000], "--augment-size must be between 1 and 4096 pixels, or 0 for the default (got 100000)"),
    (["--augment-size", 2147483647], "--augment-size must be between 1 and 4096"),
    (["--augment-size", -1], "--augment-size must be between 1 and 4096"),
    (["--weight-decay", -1], "--weight-decay must be >= 0"),
    (["--weight-decay", "nan"], "--weight-decay must be >= 0"),
    (["--weight-decay", "1e308", "--optimizer", "adam"], "--weight-decay must be >= 0 and at most 3.40282e+38"),
    (["--lr", "1e39"], "--lr must be > 0 and at most 3.40282e+38"),
    (["--reg-method", "constraint", "--reg-extractor", "1e39"], "--reg-extractor must be > 0 and at most 3.40282e+38"),
    # Epochs, rounded into int64 optimizer steps: INT64_MIN warm-up steps and a schedule error naming no flag before.
    (["--warm-up", "1e308"], "--warm-up must be >= 0 and at most 1e+06 epochs (got 1e+308)"),
    (["--warm-up", "inf"], "--warm-up must be >= 0 and at most 1e+06 epochs (got inf)"),
])
def test_train_flags_are_checked_before_libtorch(hessgap_bin, tmp_path, flags, message):
    out = tmp_path / "o"
    r = run_hg("train", *TRAIN, *flags, "--out-dir", out)
    assert_failed(r, 2, message, out_dir=tmp_path)


@pytest.mark.parametrize("value", ["1000000000", "99999999999999999999"])
def test_max_length_is_bounded(hessgap_bin, tmp_path, value):
    out = _out(tmp_path)
    r = run_hg("eval", "--checkpoint", WEIGHTS, *TINY, "--max-length", value, "--out", out / "r.h5")
    assert r.rc == 2, r
    assert "--max-length" in r.output, r
    assert leftovers(out) == []


def test_filesystem_errors_on_user_paths_are_user_errors(hessgap_bin, tmp_path):
    """A symbolic-link loop, a name over 4096 characters, a file where a folder is expected: 'internal error:
    filesystem error' (exit 1) before."""
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    afile = tmp_path / "afile"
    afile.write_text("x")
    long_name = str(tmp_path / ("a" * 5000))
    for flag in ("--checkpoint", "--data"):
        for path in (loop, long_name):
            args = {"--checkpoint": WEIGHTS, "--data": IMAGES}
            args[flag] = path
            r = run_hg("eval", "--checkpoint", args["--checkpoint"], "--data", args["--data"], "--verbosity", 0)
            assert r.rc == 2 and "internal error" not in r.output, r
    r = run_hg("eval", "--checkpoint", WEIGHTS, *TINY, "--data-format", "glue", "--tokenizer", loop)
    assert r.rc == 2 and "internal error" not in r.output, r
    for out_dir in (afile / "x", loop / "x", long_name):
        r = run_hg("train", *TRAIN, "--out-dir", out_dir)
        assert r.rc == 2 and "internal error" not in r.output, r
    r = run_hg("train", *TRAIN, "--out-dir", loop / "x")
    assert_failed(r, 2, f"'{loop}")
    assert sorted(leftovers(tmp_path)) == ["afile", "loop"]


@pytest.fixture(scope="module")
def glue_unlabelled(tmp_path_factory):
    """MRPC/{train,dev,test}.tsv (labelled train and dev; test in GLUE's test layout: index, no labels), an
    unlabelled copy as the training split of MRPC-u, bert-tiny and a 1000-token BERT vocabulary."""
    root = tmp_path_factory.mktemp("glue-u")
    mrpc = SOURCE_DIR / "tests" / "fixtures" / "text" / "glue" / "MRPC" / "train_head.tsv"
    lines = mrpc.read_text(encoding="utf-8-sig").splitlines()[:41]
    test = ["index\t#1 ID\t#2 ID\t#1 String\t#2 String"] + ["\t".join([str(i)] + l.split("\t")[1:])
                                                               for i, l in enumerate(lines[1:])]
    labelled, unlabelled = root / "MRPC", root / "u" / "MRPC"
    for folder, train in ((labelled, lines), (unlabelled, test)):
        folder.mkdir(parents=True)
        (folder / "train.tsv").write_text("\n".join(train) + "\n", encoding="utf-8")
        (folder / "dev.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (folder / "test.tsv").write_text("\n".join(test) + "\n", encoding="utf-8")
    tok = root / "tok"
    tok.mkdir()
    vocab = (SOURCE_DIR / "tests" / "fixtures" / "text" / "bert-base-uncased" / "vocab.txt").read_text().splitlines()
    (tok / "vocab.txt").write_text("\n".join(vocab[:1000]) + "\n")
    return labelled, unlabelled, tok


@pytest.mark.parametrize("which,flags,message", [
    ("unlabelled", [], "training needs labelled data"),
    ("labelled", ["--test-split", "test"], "testing (--test-split) needs labelled data"),
])
def test_training_on_unlabelled_glue_splits_is_refused(hessgap_bin, tmp_path, glue_unlabelled, which, flags, message):
    """'Target -1 is out of bounds' (exit 1) before, or 'test accuracy nan' and exit 0."""
    labelled, unlabelled, tok = glue_unlabelled
    data = labelled if which == "labelled" else unlabelled
    split = "test" if flags else "train"
    r = run_hg("train", "--checkpoint", SOURCE_DIR / "tests" / "fixtures" / "hf" / "bert-tiny", "--new-head",
               "--data", data, "--data-format", "glue", "--tokenizer", tok, "--max-length", 32, "--epochs", 1,
               "--measure-samples", 0, "--verbosity", 0, *flags, "--out-dir", tmp_path / "o")
    assert r.rc == 2, r
    assert message in r.output and f"'{split}' split" in r.output and str(data / f"{split}.tsv") in r.output, r


def test_paths_that_are_not_utf8_are_kept(hessgap_bin, tmp_path):
    """json type_error 316 (invalid UTF-8 byte) when the configuration was dumped: exit 1, nothing written."""
    base = os.fsencode(tmp_path)
    out = base + b"/o\xff.h5"
    r = _run_text("eval", "--checkpoint", WEIGHTS, *TINY, "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.path.isfile(out)
    data = base + b"/bad\xffdir"
    shutil.copytree(IMAGES, os.fsdecode(data))
    r = _run_text("eval", "--checkpoint", WEIGHTS, "--data", data, "--max-per-class", 1, "--batch-size", 2,
                  "--sample-size", 4, "--sample-rule", "exact", "--verbosity", 0, "--out", base + b"/d.h5")
    assert r.returncode == 0, r.stdout + r.stderr


# ---- messages that named neither the flag nor the file (third hunt) ------------------------------------

BERT_TINY = SOURCE_DIR / "tests" / "fixtures" / "hf" / "bert-tiny"  # 40 position embeddings


def _glue(*args, sub="eval"):
    return run_hg(sub, "--checkpoint", BERT_TINY, "--new-head", "--data-format", "glue", "--verbosity", 0, *args)


def test_empty_splits_are_refused_naming_data_and_the_file(hessgap_bin, tmp_path, glue_unlabelled):
    """'the dataset is empty' (measures) or 'training: no training samples', naming neither --data nor a file."""
    labelled, _, tok = glue_unlabelled
    idx = tmp_path / "idx"
    idx.mkdir()
    (idx / "t10k-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">III", 0, 28, 28))
    (idx / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 0))
    out = _out(tmp_path)
    r = run_hg("eval", "--checkpoint", WEIGHTS, "--data", idx, "--data-format", "idx", "--pad", 2, "--grey-to-rgb",
               "--normalize", "cifar10", "--num-classes", 10, "--verbosity", 0, "--out", out / "r.h5")
    assert_failed(r, 2, f"hessgap eval needs samples, but --data '{idx}' holds none",
                  str(idx / "t10k-images-idx3-ubyte"), "0 images", out_dir=out)
    # A GLUE split with its header only: measured, trained on, and tested on.
    mrpc = tmp_path / "g" / "MRPC"
    mrpc.mkdir(parents=True)
    header = (labelled / "train.tsv").read_text(encoding="utf-8").splitlines()[0]
    (mrpc / "dev.tsv").write_text(header + "\n", encoding="utf-8")
    (mrpc / "train.tsv").write_text(header + "\n", encoding="utf-8")
    r = _glue("--data", mrpc, "--split", "dev", "--tokenizer", tok, "--max-length", 32, "--max-probes", 2,
              "--out", out / "r.h5", sub="traces")
    assert_failed(r, 2, f"hessgap traces needs samples, but --data '{mrpc}' holds none", str(mrpc / "dev.tsv"),
                  out_dir=out)
    train = ["--data", mrpc, "--tokenizer", tok, "--max-length", 32, "--epochs", 1, "--measure-samples", 0,
             "--out-dir", tmp_path / "o"]
    r = _glue(*train, sub="train")
    assert_failed(r, 2, f"training needs samples, but --data '{mrpc}' holds none", str(mrpc / "train.tsv"))
    shutil.copy(labelled / "train.tsv", mrpc / "train.tsv")
    r = _glue(*train, sub="train")
    assert_failed(r, 2, f"testing (--test-split dev) needs samples, but --data '{mrpc}' holds none",
                  str(mrpc / "dev.tsv"))


@pytest.mark.parametrize("sub", ["eval", "labels"])
def test_label_noise_on_an_unlabelled_split_names_the_flag_and_the_file(hessgap_bin, tmp_path, glue_unlabelled, sub):
    """'label noise (flip): sample 2 has label -1 (expected 0 or 1)' before."""
    labelled, _, tok = glue_unlabelled
    args = ["--data", labelled, "--data-format", "glue", "--split", "test", "--tokenizer", tok, "--max-length", 32,
            "--label-noise", 0.5, "--verbosity", 0]
    if sub == "eval":
        args = ["--checkpoint", BERT_TINY, "--new-head", *args, "--out", tmp_path / "r.h5"]
    r = run_hg(sub, *args)
    assert_failed(r, 2, "--label-noise 0.5 needs labelled data, but the 'test' split", f"'{labelled}' is unlabelled",
                  "40 of its 40 samples have no label", str(labelled / "test.tsv"), out_dir=tmp_path)


@pytest.mark.parametrize("sub", ["eval", "labels"])
def test_label_noise_rate_names_the_flag(hessgap_bin, tmp_path, sub):
    """'label noise rate must be in [0, 1] (got -1)' before."""
    for rate in ("-1", "1.5", "nan"):
        args = ["--data", IMAGES, "--max-per-class", 1, "--label-noise", rate, "--verbosity", 0]
        if sub == "eval":
            args = ["--checkpoint", WEIGHTS, *args, "--out", tmp_path / "r.h5"]
        r = run_hg(sub, *args)
        assert_failed(r, 2, f"--label-noise must be in [0, 1] (got {rate})", out_dir=tmp_path)


@pytest.mark.parametrize("sub,value", [("eval", 41), ("eval", 100000), ("train", 41)])
def test_max_length_beyond_the_models_positions_names_the_flag(hessgap_bin, tmp_path, glue_unlabelled, sub, value):
    """'model hf:...: sequence length 41 exceeds the 40 available positions' (at the first batch) before."""
    labelled, _, tok = glue_unlabelled
    args = ["--data", labelled, "--tokenizer", tok, "--max-length", value]
    extra = (["--epochs", 1, "--measure-samples", 0, "--out-dir", tmp_path / "o"] if sub == "train"
             else ["--split", "dev", "--out", tmp_path / "r.h5"])
    r = _glue(*args, *extra, sub=sub)
    assert_failed(r, 2, f"--max-length {value} exceeds the 40 token positions of model hf:{BERT_TINY}",
                  "give --max-length 40 or less", out_dir=tmp_path if sub == "eval" else None)
    if value == 41:  # the model's 40 positions themselves are fine
        r = _glue(*args[:-1], 40, "--split", "dev", "--sample-size", 4, "--out", tmp_path / "r.h5")
        assert r.rc == 0, r


def test_a_huge_glue_header_is_quoted_shortened(hessgap_bin, tmp_path, glue_unlabelled):
    """A header of 1,000,000 columns was printed whole (3 MB of message)."""
    _, _, tok = glue_unlabelled
    mrpc = tmp_path / "MRPC"
    mrpc.mkdir()
    (mrpc / "dev.tsv").write_text("\t".join(["x"] * 1000000) + "\n", encoding="utf-8")
    r = _glue("--data", mrpc, "--split", "dev", "--tokenizer", tok, "--max-length", 32)
    assert_failed(r, 2, f"GLUE file '{mrpc / 'dev.tsv'}' line 1: header 'x, x, x", "x,... (2999998 bytes)' is not a "
                  "mrpc header")
    assert len(r.output) < 2000, r
