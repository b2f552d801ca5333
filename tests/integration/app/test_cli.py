"""End-to-end tests of the hessgap command line: usage, input errors (exit code, message, no output
left behind), single- and multi-rank failures, every subcommand's results file, config precedence,
rank-count independence, and (marker `golden`, ctest cli_golden) the CIFAR-10 accuracy of the
embedded ResNet-20 on the full test set.

Oracles: the messages and exit codes the CLI documents (docs/cli.md), the layout of
docs/output-format.md, the bound recomputed here from the stored per-layer maxima, the
single-process traces for multi-rank runs, and the published accuracy (81.03%) of the weights.
"""
import json
import os
import math
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import (CLASSES, GOLDEN_DATA, IMAGES, SOURCE_DIR, WEIGHTS, assert_failed, leftovers, make_image_folder,
                      perturbed, read_safetensors, run_hg, write_safetensors)

SUBCOMMANDS = ["traces", "measures", "stability", "eval", "run", "train"]
NUM_LAYERS = 20  # ResNet-20: 19 convolutions + the linear head


def tiny_args(data=IMAGES, ckpt=WEIGHTS, **extra):
    """The common flags for a tiny run (1 image per class, 4 samples in batches of 2)."""
    flags = {"checkpoint": ckpt, "data": data, "max-per-class": 1, "batch-size": 2, "sample-size": 4,
             "sample-rule": "exact", "verbosity": 0}
    flags.update(extra)
    args = []
    for k, v in flags.items():
        if v is None:
            continue
        args += [f"--{k}"] if v is True else [f"--{k}", str(v)]
    return args


# ---- usage ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_help_of_every_subcommand(hessgap_bin, sub):
    r = run_hg(sub, "--help")
    assert r.rc == 0, r
    assert "--data" in r.stdout and "--out" in r.stdout, r
    if sub not in ("run", "train"):
        assert "--checkpoint" in r.stdout and "REQUIRED" in r.stdout, r


def test_top_level_help_and_version(hessgap_bin):
    r = run_hg("--help")
    assert r.rc == 0, r
    for sub in SUBCOMMANDS:
        assert sub in r.stdout, r
    r = run_hg("--version")
    assert r.rc == 0 and "hessgap" in r.stdout, r


def test_unknown_subcommand_is_usage_error(hessgap_bin):
    r = run_hg("frobnicate", "--data", "x")
    assert r.rc == 2, r
    assert "unknown subcommand 'frobnicate'" in r.output, r


def test_no_subcommand_is_usage_error(hessgap_bin):
    r = run_hg()
    assert r.rc == 2, r
    assert "subcommand" in r.output.lower(), r


def test_missing_required_flag_is_usage_error(hessgap_bin, tmp_path):
    r = run_hg("traces", "--data", IMAGES, "--out", tmp_path / "t.h5")
    assert_failed(r, 2, "--checkpoint", out_dir=tmp_path)
    assert "required" in r.output.lower(), r
    r = run_hg("measures", *tiny_args(), "--train-size", 10, "--out", tmp_path / "m.h5")
    assert_failed(r, 2, "--init-checkpoint", out_dir=tmp_path)


def test_unknown_flag_is_usage_error(hessgap_bin, tmp_path):
    r = run_hg("eval", *tiny_args(), "--no-such-flag", 3, "--out", tmp_path / "e.h5")
    assert_failed(r, 2, "--no-such-flag", out_dir=tmp_path)


# ---- checkpoints ----------------------------------------------------------------------------------

def test_missing_checkpoint(hessgap_bin, tmp_path):
    missing = tmp_path / "nope.safetensors"
    out = tmp_path / "out"
    out.mkdir()
    r = run_hg("eval", *tiny_args(ckpt=missing), "--out", out / "e.h5")
    assert_failed(r, 2, str(missing), "not found", out_dir=out)


def test_random_bytes_checkpoint(hessgap_bin, tmp_path):
    bad = tmp_path / "random.safetensors"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    out = tmp_path / "out"
    out.mkdir()
    r = run_hg("eval", *tiny_args(ckpt=bad), "--out", out / "e.h5")
    assert_failed(r, 2, str(bad), out_dir=out)
    assert "format" in r.output or "safetensors" in r.output, r


def test_truncated_safetensors(hessgap_bin, tmp_path, weights):
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(weights.read_bytes()[:50000])
    out = tmp_path / "out"
    out.mkdir()
    r = run_hg("traces", *tiny_args(ckpt=bad), "--out", out / "t.h5")
    assert_failed(r, 2, str(bad), "truncated", out_dir=out)


def test_architecture_mismatch_names_missing_tensors(hessgap_bin, tmp_path):
    r = run_hg("eval", *tiny_args(), "--arch", "cifar-resnet32", "--out", tmp_path / "e.h5")
    assert_failed(r, 2, "layer1.3.conv1.weight", "missing", out_dir=tmp_path)
    assert str(WEIGHTS) in r.output, r


def test_misshaped_tensor_is_named(hessgap_bin, tmp_path, weights):
    tensors = read_safetensors(weights)
    name = "layer2.0.conv2.weight"
    assert tensors[name].shape == (32, 32, 3, 3)
    tensors[name] = np.zeros((32, 32, 1, 1), dtype=tensors[name].dtype)
    bad = tmp_path / "misshaped.safetensors"
    write_safetensors(bad, tensors)
    out = tmp_path / "out"
    out.mkdir()
    r = run_hg("eval", *tiny_args(ckpt=bad), "--out", out / "e.h5")
    assert_failed(r, 2, name, "[32, 32, 1, 1]", "[32, 32, 3, 3]", out_dir=out)


def write_h5_checkpoint(path, tensors, version=1):
    """The HDF5 checkpoint layout of docs/output-format.md, written independently with h5py."""
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "hessgap-checkpoint"
        f.attrs["format_version"] = np.int64(version)
        f.create_group("metadata").attrs["written_by"] = "test_cli.py"
        for name, a in tensors.items():
            ds = f.create_dataset(f"tensors/{name}", data=a)
            ds.attrs["dtype"] = str(a.dtype)
            ds.attrs["description"] = f"model tensor {name}"


def test_hdf5_checkpoint_gives_the_same_result(hessgap_bin, tmp_path, weights):
    ck = tmp_path / "resnet20.h5"
    write_h5_checkpoint(ck, read_safetensors(weights))
    results = {}
    for name, path in (("st", weights), ("h5", ck)):
        r = run_hg("eval", *tiny_args(ckpt=path), "--out", tmp_path / f"{name}.out.h5")
        assert r.rc == 0, r
        with h5py.File(tmp_path / f"{name}.out.h5", "r") as f:
            results[name] = (float(f["eval/loss"][()]), int(f["eval/correct"][()]))
            assert f["model"].attrs["checkpoint"] == str(path)
    assert results["st"] == results["h5"]


def test_convert_round_trip_keeps_every_tensor(hessgap_bin, tmp_path, weights):
    # safetensors -> hessgap HDF5 -> safetensors: same names, dtypes and values; the HDF5 file
    # follows the documented layout (read here with h5py), and the result evaluates identically.
    h5 = tmp_path / "r20.h5"
    back = tmp_path / "r20.safetensors"
    assert run_hg("convert", "--in", weights, "--out", h5).rc == 0
    assert run_hg("convert", "--in", h5, "--out", back).rc == 0
    original, again = read_safetensors(weights), read_safetensors(back)
    assert list(sorted(original)) == list(sorted(again))
    for name, a in original.items():
        assert again[name].dtype == a.dtype and np.array_equal(again[name], a), name
    with h5py.File(h5, "r") as f:
        assert f.attrs["format"] == "hessgap-checkpoint"
        assert np.array_equal(f["tensors/linear.weight"][()], original["linear.weight"])
    evals = [run_hg("eval", *tiny_args(ckpt=c), "--out", tmp_path / f"e{i}.h5") for i, c in enumerate((weights, h5))]
    assert all(r.rc == 0 for r in evals)
    with h5py.File(tmp_path / "e0.h5", "r") as f0, h5py.File(tmp_path / "e1.h5", "r") as f1:
        assert f0["eval/loss"][()] == f1["eval/loss"][()]


def test_convert_refuses_unknown_extension(hessgap_bin, tmp_path, weights):
    r = run_hg("convert", "--in", weights, "--out", tmp_path / "x.pt")
    assert r.rc == 2 and "must end in .safetensors, .h5 or .hdf5" in r.output, r
    assert not (tmp_path / "x.pt").exists()


def test_hdf5_checkpoint_errors(hessgap_bin, tmp_path, weights, traces_file):
    newer = tmp_path / "newer.h5"
    write_h5_checkpoint(newer, read_safetensors(weights), version=99)
    out = tmp_path / "out"
    out.mkdir()
    r = run_hg("eval", *tiny_args(ckpt=newer), "--out", out / "e.h5")
    assert_failed(r, 2, str(newer), "format_version 99", out_dir=out)
    # A results file is HDF5 but not a checkpoint.
    r = run_hg("eval", *tiny_args(ckpt=traces_file), "--out", out / "e.h5")
    assert_failed(r, 2, str(traces_file), "is not a hessgap checkpoint", out_dir=out)


def test_init_checkpoint_missing(hessgap_bin, tmp_path):
    missing = tmp_path / "init.safetensors"
    out = tmp_path / "out"
    out.mkdir()
    r = run_hg("measures", *tiny_args(), "--init-checkpoint", missing, "--train-size", 10, "--out", out / "m.h5")
    assert_failed(r, 2, str(missing), out_dir=out)


# ---- data -----------------------------------------------------------------------------------------

def test_data_folder_with_an_empty_class(hessgap_bin, tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=1)
    for f in (data / "cat").iterdir():
        f.unlink()
    out = tmp_path / "out"
    out.mkdir()
    r = run_hg("eval", *tiny_args(data=data), "--out", out / "e.h5")
    assert_failed(r, 2, "empty data folder", str(data / "cat"), out_dir=out)


def test_data_folder_without_classes(hessgap_bin, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    r = run_hg("eval", *tiny_args(data=data), "--out", out / "e.h5")
    assert_failed(r, 2, str(data), "no class sub-folders", out_dir=out)


def test_missing_data_folder(hessgap_bin, tmp_path):
    r = run_hg("eval", *tiny_args(data=tmp_path / "absent"), "--out", tmp_path / "e.h5")
    assert_failed(r, 2, str(tmp_path / "absent"), "does not exist", out_dir=tmp_path)


def test_corrupt_jpeg_is_named(hessgap_bin, tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=1)
    bad = next((data / "dog").iterdir())
    bad.write_bytes(b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 20)
    out = tmp_path / "out"
    out.mkdir()
    r = run_hg("eval", *tiny_args(data=data, **{"sample-size": 0}), "--out", out / "e.h5")
    assert_failed(r, 2, str(bad), out_dir=out)


# ---- flag values ----------------------------------------------------------------------------------

@pytest.mark.parametrize("sub,flags,message", [
    ("eval", ["--batch-size", "0"], "--batch-size must be > 0"),
    ("traces", ["--sample-size", "-1"], "--sample-size must be >= 0"),
    ("traces", ["--tol", "0"], "--tol must be > 0"),
    ("traces", ["--max-probes", "0"], "--max-probes must be >= 1"),
    ("stability", ["--eps", "0"], "--eps must be > 0"),
    ("eval", ["--dtype", "float16"], "--dtype must be float32 or float64"),
    ("traces", ["--sample-rule", "most"], "unknown sample rule 'most'"),
    ("traces", ["--probe-scope", "diagonal"], "diagonal"),
    ("traces", ["--probes-in-flight", "0"], "--probes-in-flight must be in [1, 256] (got 0)"),
    ("traces", ["--probe-batching", "jit"], "unknown probe batching 'jit' (expected functorch or legacy)"),
    ("traces", ["--probes-in-flight", "2", "--probe-scope", "layer"],
     "--probes-in-flight 2 batches joint Hutchinson probes: it needs --probe-scope joint"),
    ("measures", ["--train-size", "0", "--init-checkpoint", str(WEIGHTS)], "--train-size must be > 0"),
    ("traces", ["--cuda-graphs", "--distribution", "gaussian"],
     "--cuda-graphs captures one joint Rademacher probe of Hutchinson's estimator"),
    # this CPU machine: a CUDA LibTorch says "needs --device cuda", a CPU one that it has no CUDA graphs
    ("traces", ["--cuda-graphs"], "--cuda-graphs"),
])
def test_invalid_flag_values(hessgap_bin, tmp_path, sub, flags, message):
    extra = [] if sub != "measures" or "--train-size" in flags else ["--train-size", "10", "--init-checkpoint", WEIGHTS]
    r = run_hg(sub, *tiny_args(), *extra, *flags, "--out", tmp_path / "o.h5")
    assert_failed(r, 2, message, out_dir=tmp_path)


@pytest.mark.parametrize("command,flags,message", [
    ("traces", ["--probe-ranks", 2], "--shard-batch splits every batch's samples over all ranks; it cannot be "
                                     "combined with --probe-ranks 2"),
    ("measures", ["--mode", "psd", "--init-checkpoint", WEIGHTS, "--train-size", 100],
     "--mode psd runs Lanczos on each batch's Hessian and needs whole batches"),
])
def test_shard_batch_refusals(hessgap_bin, tmp_path, command, flags, message):
    r = run_hg(command, *tiny_args(), "--shard-batch", *flags, "--out", tmp_path / "t.h5", np_=2, timeout=60)
    assert_failed(r, 2, message, out_dir=tmp_path)


def test_probe_ranks_must_divide_the_rank_count(hessgap_bin, tmp_path):
    r = run_hg("traces", *tiny_args(), "--probe-ranks", 3, "--out", tmp_path / "t.h5", np_=2, timeout=60)
    assert_failed(r, 2, "--probe-ranks 3 must divide the number of ranks (2)", out_dir=tmp_path)


def test_output_directory_does_not_exist(hessgap_bin, tmp_path):
    r = run_hg("eval", *tiny_args(), "--out", "/nonexistent-dir/x.h5")
    assert_failed(r, 2, "cannot write output '/nonexistent-dir/x.h5'", "does not exist")


def test_output_path_is_a_directory(hessgap_bin, tmp_path):
    target = tmp_path / "adir"
    target.mkdir()
    r = run_hg("eval", *tiny_args(), "--out", target)
    assert_failed(r, 2, f"cannot write output '{target}'", "is a directory")
    assert leftovers(tmp_path) == ["adir"] and leftovers(target) == []


def test_bad_config_file(hessgap_bin, tmp_path):
    cfg = tmp_path / "bad.json"
    cfg.write_text("{ not json")
    r = run_hg("eval", "--config", cfg, *tiny_args())
    assert_failed(r, 2, str(cfg), "not valid JSON")
    cfg.write_text('{"data": {"nested": 1}}')
    r = run_hg("eval", "--config", cfg, *tiny_args())
    assert_failed(r, 2, "nested object")
    r = run_hg("eval", *tiny_args(), "--set", "batch-size")
    assert_failed(r, 2, "--set expects key=value")


# ---- one rank fails in a multi-rank job -------------------------------------------------------------

@pytest.fixture(scope="module")
def rank1_corrupt_data(tmp_path_factory):
    """1 image per class; sample 1 (class 'automobile') is corrupt. With --batch-size 1 and
    --sample-size 2 --sample-rule exact --sample-order natural, batch 1 = sample 1 belongs to rank 1 only."""
    data = make_image_folder(tmp_path_factory.mktemp("rank1") / "data", per_class=1)
    bad = next((data / CLASSES[1]).iterdir())
    bad.write_bytes(b"\xff\xd8\xff\xe0 corrupt " * 10)
    return data, bad


@pytest.mark.parametrize("sub", ["traces", "eval"])
def test_error_on_one_rank_ends_the_job(hessgap_bin, tmp_path, rank1_corrupt_data, sub):
    data, bad = rank1_corrupt_data
    args = tiny_args(data=data, **{"batch-size": 1, "sample-size": 2, "sample-order": "natural", "max-probes": 2 if sub == "traces" else None})
    r = run_hg(sub, *args, "--out", tmp_path / "o.h5", np_=2, timeout=60)
    assert r.rc != 0, r
    assert r.seconds < 45, f"the job took {r.seconds:.0f} s to end (hang?)\n{r!r}"
    assert str(bad) in r.output and "rank 1" in r.output.replace("[", " ").replace("/", " "), r
    assert not (tmp_path / "o.h5").exists(), r


def test_error_on_one_rank_leaves_no_temp_file(hessgap_bin, tmp_path, rank1_corrupt_data):
    data, _ = rank1_corrupt_data
    r = run_hg("traces", *tiny_args(data=data, **{"batch-size": 1, "sample-size": 2, "sample-order": "natural", "max-probes": 2}),
               "--out", tmp_path / "o.h5", np_=2, timeout=60)
    assert r.rc != 0, r
    assert leftovers(tmp_path) == [], r


def test_single_rank_error_after_output_opened_leaves_nothing(hessgap_bin, tmp_path, rank1_corrupt_data):
    data, bad = rank1_corrupt_data
    r = run_hg("traces", *tiny_args(data=data, **{"batch-size": 1, "sample-size": 2, "sample-order": "natural", "max-probes": 2}),
               "--out", tmp_path / "o.h5")
    assert_failed(r, 2, str(bad), out_dir=tmp_path)


# ---- success paths --------------------------------------------------------------------------------

def flat_config(config):
    """The typed configuration (sections model, data, compute, measure/train, output) flattened to one
    dict keyed as the flags in snake_case; the dataset description's fields (data.dataset) included."""
    flat = {}
    for section in config.values():
        for key, value in section.items():
            if key == "dataset":
                flat.update(value)
            else:
                flat[key] = value
    return flat


def check_common(path, sub, given, world_size=1):
    """Root attributes, layer names, descriptions and finiteness of every dataset; returns the flattened
    typed config (flat_config), checked against `given` (flag name -> value; None: present)."""
    with h5py.File(path, "r") as f:
        a = f.attrs
        assert a["format"] == "hessgap-results" and int(a["format_version"]) == 1
        assert a["subcommand"] == sub
        assert a["hessgap_version"] and a["git_sha"]
        assert f"hessgap {sub}" in a["command_line"] or f" {sub} " in a["command_line"]
        assert int(a["world_size"]) == world_size
        # the largest rank's peak RSS on the CPU: LibTorch, a ResNet-20 and a few images (ru_maxrss is in
        # kilobytes: a missed factor 1024 lands far outside either bound)
        assert a["peak_memory_source"].startswith("host: peak resident set size"), a["peak_memory_source"]
        assert 50e6 < int(a["peak_memory_bytes"]) < 16e9, int(a["peak_memory_bytes"])
        typed = json.loads(a["config"])
        assert set(typed) <= {"model", "data", "compute", "measure", "train", "output"}, typed
        config = flat_config(typed)
        for flag, v in given.items():
            k = flag.replace("-", "_")
            assert k in config, f"config lacks {k}: {config}"
            if v is not None:
                assert config[k] == v and type(config[k]) is type(v), f"config[{k}] = {config[k]!r}, expected {v!r}"
        names = [n.decode() if isinstance(n, bytes) else n for n in f["layers/names"][()]]
        assert len(names) == NUM_LAYERS and names[0] == "conv1.weight" and names[-1] == "linear.weight", names
        assert f["model"].attrs["arch"] == "cifar-resnet20"

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                assert obj.attrs.get("description"), f"{name} has no description"
                if obj.dtype.kind in "fi":
                    v = np.asarray(obj[()], dtype=np.float64)
                    if name.endswith("batch_std_error"):
                        v = v[~np.isnan(v)]
                    assert np.all(np.isfinite(v)), f"{name} has non-finite values: {v}"
        f.visititems(visit)
    return config


def load_with_reader(path):
    import hessgap_results
    res = hessgap_results.load(str(path))
    assert res.layers[0] == "conv1.weight" and len(res.layers) == NUM_LAYERS
    return res


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def traces_file(hessgap_bin, outdir):
    out = outdir / "traces.h5"
    r = run_hg("traces", *tiny_args(**{"max-probes": 3}), "--out", out)
    assert r.rc == 0, r
    assert "Per-layer Hessian traces" in r.stdout, r
    return out


def test_traces_file(traces_file):
    cfg = check_common(traces_file, "traces", {"max-probes": 3, "batch-size": 2, "sample-size": 4,
                                                "max-per-class": 1, "checkpoint": str(WEIGHTS)})
    assert cfg["probe_scope"] == "joint" and cfg["kind"] == "traces"
    with h5py.File(traces_file, "r") as f:
        t = f["traces"]
        assert t["batch_mean"].shape == (2, NUM_LAYERS)
        assert t["batch_mean"].dtype == np.float64 and t["batch_probes"].dtype == np.int64
        probes = t["batch_probes"][()]
        assert np.all(probes >= 1) and np.all(probes <= 3), probes
        assert int(t.attrs["max_probes"]) == 3
        assert list(t["batch_sizes"][()]) == [2, 2]
        bm = t["batch_mean"][()]
        np.testing.assert_allclose(t["layer_max"][()], bm.max(axis=0), rtol=1e-12)
        w = t["batch_sizes"][()] / np.sum(t["batch_sizes"][()])
        np.testing.assert_allclose(t["layer_mean"][()], w @ bm, rtol=1e-12)
        se = t["batch_std_error"][()]
        np.testing.assert_allclose(t["layer_mean_std_error"][()], np.sqrt((w**2) @ (se**2)), rtol=1e-12)
        assert t["batch_mean"].attrs["units"] == "loss/weight^2"
    res = load_with_reader(traces_file)
    assert res.traces["batch_mean"].shape == (2, NUM_LAYERS) and res.config["measure"]["max_probes"] == 3


def test_allow_tf32_is_recorded_and_changes_nothing_on_the_cpu(hessgap_bin, tmp_path, traces_file):
    out = tmp_path / "tf32.h5"
    r = run_hg("traces", *tiny_args(**{"max-probes": 3}), "--allow-tf32", "--out", out)
    assert r.rc == 0, r
    assert check_common(out, "traces", {"allow-tf32": True})["allow_tf32"] is True
    assert check_common(traces_file, "traces", {"allow-tf32": False})["allow_tf32"] is False
    with h5py.File(out, "r") as a, h5py.File(traces_file, "r") as b:
        np.testing.assert_array_equal(a["traces/batch_mean"][()], b["traces/batch_mean"][()])


def test_reader_cli_summary_and_plot(traces_file, tmp_path):
    png = tmp_path / "traces.png"
    p = subprocess.run(["/usr/bin/python3", str(SOURCE_DIR / "analysis" / "hessgap_results.py"),
                        str(traces_file), "--plot", str(png)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "conv1.weight" in p.stdout and "[traces]" in p.stdout, p.stdout
    assert png.stat().st_size > 1000


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, weights):
    return perturbed(tmp_path_factory, weights)


def check_bound(m, train_size):
    layer_max = m["layer_max"][()]
    sum_sqrt = float(np.sum(np.sqrt(np.maximum(layer_max, 0.0))))
    assert math.isclose(float(m["sum_sqrt"][()]), sum_sqrt, rel_tol=1e-12, abs_tol=1e-300)
    assert math.isclose(float(m["bound"][()]), sum_sqrt / math.sqrt(train_size), rel_tol=1e-12, abs_tol=1e-300)
    c = float(m["max_loss"][()])
    assert math.isclose(c, float(np.max(m["batch_loss"][()])), rel_tol=1e-12)
    assert math.isclose(float(m["bound_c"][()]), math.sqrt(c) * sum_sqrt / math.sqrt(train_size), rel_tol=1e-12)
    assert int(m["negative_layers"][()]) == int(np.sum(layer_max < 0))
    np.testing.assert_allclose(layer_max, m["batch_quad"][()].max(axis=0), rtol=1e-12)


@pytest.mark.parametrize("mode", ["joint", "block"])
def test_measures_file(hessgap_bin, outdir, finetuned, mode):
    out = outdir / f"measures_{mode}.h5"
    r = run_hg("measures", *tiny_args(ckpt=finetuned), "--init-checkpoint", WEIGHTS, "--train-size", 1000,
               "--mode", mode, "--out", out)
    assert r.rc == 0, r
    assert "bound" in r.stdout, r
    check_common(out, "measures", {"mode": mode, "train-size": 1000, "init-checkpoint": str(WEIGHTS)})
    with h5py.File(out, "r") as f:
        m = f["measures"]
        assert m.attrs["mode"] == mode and m.attrs["head_reference"] == "zero"
        assert m["batch_quad"].shape == (2, NUM_LAYERS)
        check_bound(m, 1000)
        v = m["v_norm"][()]
        assert np.all(v > 0), v
        assert float(m["bound"][()]) > 0
    res = load_with_reader(out)
    assert res.measures["batch_quad"].shape == (2, NUM_LAYERS)


def test_measures_head_reference_init_with_equal_checkpoints(hessgap_bin, outdir, weights):
    out = outdir / "measures_init.h5"
    r = run_hg("measures", *tiny_args(), "--init-checkpoint", weights, "--train-size", 50,
               "--head-reference", "init", "--out", out)
    assert r.rc == 0, r
    check_common(out, "measures", {"head-reference": "init"})
    with h5py.File(out, "r") as f:
        m = f["measures"]
        assert np.all(m["v_norm"][()] == 0.0), m["v_norm"][()]
        assert np.all(m["batch_quad"][()] == 0.0)
        assert float(m["bound"][()]) == 0.0
        check_bound(m, 50)
    # Around zero (the default), the head's v is the head itself.
    out0 = outdir / "measures_zero.h5"
    r = run_hg("measures", *tiny_args(), "--init-checkpoint", weights, "--train-size", 50, "--out", out0)
    assert r.rc == 0, r
    head = read_safetensors(weights)["linear.weight"]
    with h5py.File(out0, "r") as f:
        v = f["measures/v_norm"][()]
        assert np.all(v[:-1] == 0.0)
        assert math.isclose(v[-1], float(np.linalg.norm(head.astype(np.float64))), rel_tol=1e-5)


def test_stability_file(hessgap_bin, outdir):
    out = outdir / "stability.h5"
    r = run_hg("stability", *tiny_args(), "--eps", "1e-3", "--repeats", 2, "--out", out)
    assert r.rc == 0, r
    assert "Noise stability" in r.stdout, r
    check_common(out, "stability", {"eps": None, "repeats": 2})
    with h5py.File(out, "r") as f:
        s = f["stability"]
        assert s["deltas"].shape == (2,) and int(s["num_samples"][()]) == 4
        d = s["deltas"][()]
        assert math.isclose(float(s["mean"][()]), float(d.mean()), rel_tol=1e-12, abs_tol=1e-15)
        assert math.isclose(float(s["std"][()]), float(d.std()), rel_tol=1e-9, abs_tol=1e-15)
        assert float(s.attrs["eps"]) == 1e-3
        assert 0.0 <= float(s["base_accuracy"][()]) <= 1.0
    load_with_reader(out)


def test_eval_file(hessgap_bin, outdir):
    out = outdir / "eval.h5"
    r = run_hg("eval", *tiny_args(**{"max-per-class": 2, "sample-size": 0, "batch-size": 7}), "--out", out)
    assert r.rc == 0, r
    check_common(out, "eval", {"batch-size": 7, "max-per-class": 2})
    with h5py.File(out, "r") as f:
        e = f["eval"]
        n, correct = int(e["num_samples"][()]), int(e["correct"][()])
        assert n == 20
        assert float(e["accuracy"][()]) == correct / n
        assert 0.0 < float(e["loss"][()]) < 10.0
        assert e["accuracy"].attrs["units"] == "fraction" and e["loss"].attrs["units"] == "nats"
    res = load_with_reader(out)
    assert res.eval["num_samples"] == 20


RUN_TINY = ["--train-subset", 60, "--test-subset", 40, "--epochs", 1, "--batch-size", 20, "--measure-samples", 8,
            "--dtype", "float64", "--verbosity", 0]


@pytest.fixture(scope="module")
def main_job(hessgap_bin, tmp_path_factory):
    """The main job, tiny, at 1 and at 2 ranks."""
    out = tmp_path_factory.mktemp("main-job")
    one = run_hg("run", *RUN_TINY, "--out-dir", out / "np1", timeout=600)
    two = run_hg("run", *RUN_TINY, "--out-dir", out / "np2", np_=2, timeout=600)
    assert one.rc == 0 and two.rc == 0, (one, two)
    return out, one, two


def read_summary(path):
    lines = Path(path).read_text().splitlines()
    header = lines[0].split(",")
    return {row.split(",")[0]: dict(zip(header[1:], map(float, row.split(",")[1:]))) for row in lines[1:]}


def test_main_job_table_and_files(main_job):
    out, one, _ = main_job
    rows = read_summary(out / "np1" / "summary.csv")
    assert list(rows) == ["plain", "constraint", "constraint-reweight"]
    for method, row in rows.items():
        folder = out / "np1" / method
        assert sorted(p.name for p in folder.iterdir()) == ["best.h5", "epoch_0.h5", "last.h5", "run.h5"]
        assert method in one.stdout
        config = check_common(folder / "run.h5", "run", {})
        assert config["reg_method"] == ("none" if method == "plain" else "constraint")
        assert config["constraint_reweight"] == (method == "constraint-reweight")
        with h5py.File(folder / "run.h5", "r") as f:
            assert f["measures"].attrs["mode"] == "joint" and f["measures_block"].attrs["mode"] == "block"
            Hb = f["measures_block/layer_max"][()]
            assert row["bound_block"] == pytest.approx(np.sum(np.sqrt(np.maximum(Hb, 0))) / np.sqrt(54), rel=1e-9)
            # The bound from the stored per-layer maxima (the oracle) and n = 54 training ids (60 - 10 %).
            H = f["measures/layer_max"][()]
            assert int(f["measures/train_size"][()]) == 54
            assert row["bound"] == pytest.approx(np.sum(np.sqrt(np.maximum(H, 0))) / np.sqrt(54), rel=1e-9)
        with h5py.File(folder / "run.h5", "r") as f:
            assert f["train/final/test_loss"][()] == pytest.approx(row["test_loss"], rel=1e-9)
            assert f["train/final/num_test"][()] == 40
            assert f["labels/relabelled"][()].sum() == int(0.4 * 54)
            assert (f["train"].attrs["reg_method"] == "none") == (method == "plain")
            assert f["train"].attrs["reweighted"] == (method == "constraint-reweight")
    assert "sum sqrt H_i" in one.stdout and "bound" in one.stdout


def test_main_job_is_the_same_at_two_ranks(main_job):
    """--sync-bn (the main job's default) makes the table independent of the rank count (float64)."""
    out, _, _ = main_job
    one, two = read_summary(out / "np1" / "summary.csv"), read_summary(out / "np2" / "summary.csv")
    for method in one:
        for key in ("test_accuracy", "test_loss", "train_loss_clean", "train_loss_noisy", "bound"):
            assert two[method][key] == pytest.approx(one[method][key], rel=1e-8, abs=1e-10), (method, key)


def test_config_file_and_set_precedence(hessgap_bin, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"checkpoint": str(WEIGHTS), "data": str(IMAGES), "max_per_class": 1,
                               "batch-size": 3, "sample-size": 5, "seed": 7, "max-probes": 4,
                               "sample-rule": "exact", "verbosity": 0}))
    out = tmp_path / "cfg.h5"
    r = run_hg("traces", "--config", cfg, "--sample-size", 4, "--seed", 8, "--set", "seed=9",
               "--set", "max-probes=2", "--out", out)
    assert r.rc == 0, r
    config = check_common(out, "traces", {
        "batch-size": 3,    # config file only
        "max-per-class": 1,  # config file, snake_case key
        "sample-size": 4,   # command line beats config
        "seed": 9,          # --set beats command line and config
        "max-probes": 2,    # --set beats config
    })
    with h5py.File(out, "r") as f:
        assert list(f["traces/batch_sizes"][()]) == [3, 1]
        assert int(f["traces"].attrs["seed"]) == 9
        assert np.all(f["traces/batch_probes"][()] <= 2)
    assert config["probe_scope"] == "joint"
    assert config["sample_order"] == "random"  # traces' default
    assert config["new_head"] is False  # boolean flags are JSON booleans


def test_boolean_flag_from_set_and_config(hessgap_bin, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"shuffle": False, "seed": 3}))
    out = tmp_path / "b.h5"
    r = run_hg("eval", "--config", cfg, *tiny_args(), "--set", "shuffle=true", "--out", out)
    assert r.rc == 0, r
    config = check_common(out, "eval", {"seed": 3})
    assert config["sample_order"] == "random"  # --shuffle is stored as what it means


# ---- sample order -----------------------------------------------------------------------------------

def test_sample_order_random_is_the_default_of_the_measures(hessgap_bin, tmp_path):
    """stability's default subset is the seeded permutation's first samples (SPEC §3.2), the same one eval
    picks with --sample-order random: f(W) equals the mean per-sample loss of those ids. --sample-order natural
    takes the class-sorted folder's first samples instead. The order is recorded in /data."""
    args = tiny_args(**{"sample-size": 4, "batch-size": 2})
    runs = {}
    for order in ("random", "natural"):
        ev = tmp_path / f"eval-{order}.h5"
        r = run_hg("eval", *args, "--sample-order", order, "--per-sample", "--out", ev)
        assert r.rc == 0, r
        with h5py.File(ev, "r") as f:
            runs[order] = (f["eval/samples/sample_id"][()], f["eval/samples/loss"][()])
            assert f["data"].attrs["sample_order"] == order
    ids, losses = runs["random"]
    assert sorted(ids) != [0, 1, 2, 3] and len(set(ids)) == 4 and all(0 <= i < 10 for i in ids), ids
    assert list(runs["natural"][0]) == [0, 1, 2, 3]
    out = tmp_path / "stab.h5"
    r = run_hg("stability", *args, "--repeats", 1, "--out", out)  # default order
    assert r.rc == 0, r
    with h5py.File(out, "r") as f:
        assert f["data"].attrs["sample_order"] == "random" and int(f["data"].attrs["sample_seed"]) == 0
        assert json.loads(f.attrs["config"])["data"]["sample_order"] == "random"
        base = float(f["stability/base_loss"][()])
    assert math.isclose(base, float(np.mean(losses)), rel_tol=1e-5), (base, losses)
    assert not math.isclose(base, float(np.mean(runs["natural"][1])), rel_tol=1e-3)
    r = run_hg("stability", *args, "--repeats", 1, "--sample-order", "natural", "--out", tmp_path / "nat.h5")
    assert r.rc == 0, r
    with h5py.File(tmp_path / "nat.h5", "r") as f:
        assert math.isclose(float(f["stability/base_loss"][()]), float(np.mean(runs["natural"][1])), rel_tol=1e-5)
    # --shuffle is the old spelling of --sample-order random: the same subset.
    r = run_hg("stability", *args, "--repeats", 1, "--shuffle", "--out", tmp_path / "shuf.h5")
    assert r.rc == 0, r
    with h5py.File(tmp_path / "shuf.h5", "r") as f:
        assert float(f["stability/base_loss"][()]) == base and f["data"].attrs["sample_order"] == "random"


@pytest.mark.parametrize("flags,message", [
    (["--sample-order", "sideways"], "--sample-order must be random or natural (got 'sideways')"),
    (["--sample-order", "natural", "--shuffle"], "excludes"),
])
def test_sample_order_errors(hessgap_bin, tmp_path, flags, message):
    r = run_hg("traces", *tiny_args(), *flags, "--out", tmp_path / "t.h5")
    assert_failed(r, 2, message, out_dir=tmp_path)


# ---- rank-count independence ------------------------------------------------------------------------

def test_traces_same_at_1_and_2_ranks(hessgap_bin, tmp_path):
    args = tiny_args(**{"max-probes": 3, "sample-size": 6, "batch-size": 2})
    runs = {
        "np1": run_hg("traces", *args, "--out", tmp_path / "np1.h5"),
        "np2": run_hg("traces", *args, "--out", tmp_path / "np2.h5", np_=2, timeout=90),
        "np2p2": run_hg("traces", *args, "--probe-ranks", 2, "--out", tmp_path / "np2p2.h5", np_=2, timeout=90),
        # in float64: the shards' sums are exact to rounding there (float32 HVPs of other batch sizes differ
        # by ~1e-5 of the scale)
        "np1d": run_hg("traces", *args, "--dtype", "float64", "--out", tmp_path / "np1d.h5"),
        "np2s": run_hg("traces", *args, "--dtype", "float64", "--shard-batch", "--out", tmp_path / "np2s.h5",
                       np_=2, timeout=90),
        # --probes-in-flight: the probes' HVPs batched (2 of 3 probes, then 1; with shards, 2 per collective)
        "np1dk": run_hg("traces", *args, "--dtype", "float64", "--probes-in-flight", 2, "--probe-batching", "legacy",
                        "--out", tmp_path / "np1dk.h5"),
        "np2sk": run_hg("traces", *args, "--dtype", "float64", "--shard-batch", "--probes-in-flight", 2,
                        "--out", tmp_path / "np2sk.h5", np_=2, timeout=90),
    }
    for name, r in runs.items():
        assert r.rc == 0, r
    with h5py.File(tmp_path / "np1.h5", "r") as f:
        ref = f["traces/batch_mean"][()]
        ref_probes = f["traces/batch_probes"][()]
    assert ref.shape == (3, NUM_LAYERS)
    for name in ("np2", "np2p2"):
        check_common(tmp_path / f"{name}.h5", "traces", {}, world_size=2)
        with h5py.File(tmp_path / f"{name}.h5", "r") as f:
            got = f["traces/batch_mean"][()]
            np.testing.assert_array_equal(f["traces/batch_probes"][()], ref_probes)
            assert int(f["traces"].attrs["probe_ranks"]) == (2 if name == "np2p2" else 1)
            assert int(f["traces"].attrs["shard_batch"]) == 0
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max(), err_msg=name)
    # --shard-batch: each rank held one sample of every batch of 2; probe values and loss shares summed
    for name, shard, in_flight in (("np2s", 1, 1), ("np1dk", 0, 2), ("np2sk", 1, 2)):
        check_common(tmp_path / f"{name}.h5", "traces", {"probes-in-flight": in_flight},
                     world_size=2 if name.startswith("np2") else 1)
        with h5py.File(tmp_path / "np1d.h5", "r") as f, h5py.File(tmp_path / f"{name}.h5", "r") as g:
            assert int(g["traces"].attrs["shard_batch"]) == shard
            assert int(g["traces"].attrs["probes_in_flight"]) == in_flight
            assert g["traces"].attrs["probe_batching"] == ("legacy" if name == "np1dk" else "functorch")
            np.testing.assert_array_equal(g["traces/batch_probes"][()], f["traces/batch_probes"][()])
            for key in ("batch_mean", "batch_std_error", "batch_loss", "layer_max"):
                want = f["traces/" + key][()]
                np.testing.assert_allclose(g["traces/" + key][()], want, rtol=1e-10,
                                           atol=1e-12 * np.abs(want).max(), err_msg=f"{name} {key}")


# ---- golden: the embedded ResNet-20 on all 10,000 CIFAR-10 test images ------------------------------

@pytest.mark.golden
def test_golden_cifar10_eval(hessgap_bin, tmp_path):
    if not GOLDEN_DATA.is_dir():
        pytest.skip(f"CIFAR-10 test JPEGs not found at {GOLDEN_DATA} (the shared data folder is absent)")
    out = tmp_path / "golden.h5"
    r = run_hg("eval", "--checkpoint", WEIGHTS, "--data", GOLDEN_DATA, "--verbosity", 0, "--out", out,
               np_=2, timeout=900)
    assert r.rc == 0, r
    check_common(out, "eval", {}, world_size=2)
    with h5py.File(out, "r") as f:
        assert int(f["eval/num_samples"][()]) == 10000
        assert int(f["eval/correct"][()]) == 8103
        assert float(f["eval/accuracy"][()]) == pytest.approx(0.8103, abs=1e-12)
        assert float(f["eval/loss"][()]) == pytest.approx(0.8788, abs=5e-4)


def test_idx_fashion_mnist_traces(hessgap_bin, tmp_path):
    # The IDX reader end to end: a small CNN on the first Fashion-MNIST test images (Debian's
    # dataset-fashion-mnist), with random weights written here; 1 rank and 2 ranks agree.
    root = "/usr/share/datasets/fashion-mnist"
    if not os.path.exists(os.path.join(root, "t10k-images-idx3-ubyte.gz")):
        pytest.skip("dataset-fashion-mnist is not installed")
    rng = np.random.default_rng(0)
    shapes = {"conv1.weight": (4, 1, 3, 3), "bn1.weight": (4,), "bn1.bias": (4,), "bn1.running_mean": (4,),
              "bn1.running_var": (4,), "conv2.weight": (8, 4, 3, 3), "bn2.weight": (8,), "bn2.bias": (8,),
              "bn2.running_mean": (8,), "bn2.running_var": (8,), "fc.weight": (10, 8), "fc.bias": (10,)}
    tensors = {k: (rng.standard_normal(s) * 0.3 + (1.0 if k.endswith(("running_var", "bn1.weight", "bn2.weight")) else 0.0))
               .astype(np.float32) for k, s in shapes.items()}
    ck = tmp_path / "cnn.safetensors"
    write_safetensors(ck, tensors)
    args = ["--checkpoint", ck, "--arch", "small-cnn:in=1", "--data", root, "--data-format", "idx",
            "--normalize", "fashion-mnist", "--batch-size", "4", "--sample-size", "8", "--max-probes", "5",
            "--verbosity", "0"]
    r1 = run_hg("traces", *args, "--out", tmp_path / "a.h5")
    r2 = run_hg("traces", *args, "--out", tmp_path / "b.h5", np_=2)
    assert r1.rc == 0 and r2.rc == 0, (r1, r2)
    with h5py.File(tmp_path / "a.h5", "r") as a, h5py.File(tmp_path / "b.h5", "r") as b:
        assert [n.decode() if isinstance(n, bytes) else n for n in a["layers/names"][()]] == \
            ["conv1.weight", "conv2.weight", "fc.weight"]
        assert "idx" in a["data"].attrs["description"].lower() or "fashion" in a["data"].attrs["description"].lower()
        np.testing.assert_allclose(a["traces/batch_mean"][()], b["traces/batch_mean"][()], rtol=1e-6)
        assert a["traces/batch_sizes"][()].tolist() == [4, 4, 4]  # reference rule: 8 is not > 8
