"""`hessgap train` end to end: the run folder (run.h5 with /train and /labels, the HDF5 checkpoints), the
constraint radii on the trained weights, rank-count independence with --sync-bn, resuming a killed run,
refusing another run's folder, a full disk while writing a checkpoint, and bad input.

Oracles: the radii the flags set (||W - W0||_F <= r per tensor, read back with h5py); the one-rank run for
the two-rank run (float64); the uninterrupted run for the resumed one (bitwise); the documented messages
and exit codes; the layout of docs/output-format.md.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import WEIGHTS, assert_failed, leftovers, make_image_folder, run_hg

RADII = {"layer1": 0.5, "layer2": 0.5, "layer3": 1.0}  # --reg-extractor 0.5 --scale-factor 2


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """40 images, 4 per class: the training split and (image folders have no splits) the test split."""
    return make_image_folder(tmp_path_factory.mktemp("train-images"), per_class=4)


def train_args(folder, out_dir, **extra):
    flags = {"checkpoint": WEIGHTS, "data": folder, "normalize": "cifar10", "epochs": 2, "batch-size": 10,
             "lr": 1e-3, "label-noise": 0.4, "noise-seed": 3, "reg-method": "constraint", "reg-norm": "frob",
             "reg-extractor": 0.5, "reg-predictor": 2.0, "scale-factor": 2, "valid-split": 0.25, "seed": 1,
             "augment-size": 32, "out-dir": out_dir, "verbosity": 0}
    flags.update(extra)
    args = ["train"]
    for k, v in flags.items():
        if v is None:
            continue
        args += [f"--{k}"] if v is True else [f"--{k}", str(v)]
    return args


def tensors(path):
    with h5py.File(path, "r") as f:
        return {k: np.asarray(v) for k, v in f["tensors"].items()}


def max_diff(a, b):
    assert sorted(a) == sorted(b)
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)))) if a[k].size else 0.0
               for k in a)


@pytest.fixture(scope="module")
def trained(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    r = run_hg(*train_args(folder, out, **{"constraint-reweight": True, "reweight-noise-rate": 0.4,
                                           "measure-samples": 8, "measure-trace-probes": 3,
                                           "measure-stability-repeats": 2}), np_=2, timeout=300)
    assert r.rc == 0, r
    return out, r


def test_run_folder_layout(trained):
    out, r = trained
    assert sorted(p.name for p in out.iterdir()) == ["best.h5", "epoch_0.h5", "last.h5", "run.h5"]
    with h5py.File(out / "run.h5", "r") as f:
        assert f.attrs["subcommand"] == "train"
        assert f.attrs["status"] == "complete" and f.attrs["complete"] == 1
        assert len(f.attrs["run_id"]) == 16
        assert f.attrs["world_size"] == 2
        assert f.attrs["peak_memory_source"].startswith("host: peak resident set size")
        assert 50e6 < int(f.attrs["peak_memory_bytes"]) < 16e9  # bytes (ru_maxrss is in kilobytes)
        steps = f["train/history/step"][()]
        assert list(steps) == list(range(len(steps))) and len(steps) == 2 * 3  # 30 training ids, batches of 10
        for name in ("loss", "accuracy", "lr", "epoch"):
            assert f[f"train/history/{name}"].shape == steps.shape
            assert "description" in f[f"train/history/{name}"].attrs
        for name in ("test_accuracy", "test_loss", "train_loss_clean", "train_loss_noisy"):
            v = f[f"train/final/{name}"][()]
            assert np.isfinite(v), name
        assert 0 <= f["train/final/test_accuracy"][()] <= 1
        assert f["train/final/num_test"][()] == 40 and f["train/final/num_train"][()] == 30
        assert "train/final/test_f1" not in f  # ten classes: no F1
        # The gap is what it says.
        assert f["train/final/gap_loss_clean"][()] == pytest.approx(
            f["train/final/test_loss"][()] - f["train/final/train_loss_clean"][()])
        # Noise on the 30 training ids only: int(0.4 * 30) = 12 relabelled, none among the validation ids.
        relabelled = f["labels/relabelled"][()]
        assert relabelled.sum() == 12
        # The reweighting matrix is pinv of the synthetic C: rows (1 - b)/a on the diagonal.
        R = f["train/reweight_matrix"][()]
        a, b = 1 - 0.4 * 10 / 9, 0.4 / 9
        assert R[0, 0] == pytest.approx((1 - b) / a, rel=1e-9) and R[0, 1] == pytest.approx(-b / a, rel=1e-9)
    with h5py.File(out / "last.h5", "r") as f:
        assert f.attrs["format"] == "hessgap-checkpoint"
        assert "state/optimizer" in f and "state/trainer" in f
        assert f["metadata"].attrs["run_id"] == f["metadata"].attrs["run_id"]
    assert "generalization gap" in r.stdout


def test_traces_after_training_equal_the_traces_subcommand_on_best(trained, folder, tmp_path):
    """The run's own traces (same seeded subset, probes keyed by seed) are what `hessgap traces` computes on
    best.h5 alone, at another rank count."""
    out, _ = trained
    res = tmp_path / "t.h5"
    r = run_hg("traces", "--checkpoint", out / "best.h5", "--data", folder, "--normalize", "cifar10",
               "--batch-size", 4, "--sample-size", 8, "--max-probes", 3, "--seed", 1, "--out", res, "--verbosity", 0)
    assert r.rc == 0, r
    with h5py.File(out / "run.h5", "r") as a, h5py.File(res, "r") as b:
        assert a["traces/batch_mean"].shape == b["traces/batch_mean"].shape == (3, 20)  # 12 samples in batches of 4
        assert np.allclose(a["traces/layer_max"][()], b["traces/layer_max"][()], rtol=1e-9, atol=1e-12)
        assert int(a["stability/num_samples"][()]) == 12 and len(a["stability/deltas"][()]) == 2
        assert a["measures/batch_quad"].shape == (3, 20)


def test_trained_weights_respect_the_radii(trained):
    out, _ = trained
    w0 = tensors(out / "epoch_0.h5")
    for ckpt in ("best.h5", "last.h5"):
        w = tensors(out / ckpt)
        checked = 0
        for name, t in w.items():
            if name.endswith("bias") or t.ndim not in (2, 4):
                continue
            if name.startswith("linear."):  # the head, around zero
                assert np.linalg.norm(t.astype(np.float64)) <= 2.0 * (1 + 1e-6), name
                checked += 1
                continue
            for group, r in RADII.items():
                if group in name:
                    d = np.linalg.norm((t.astype(np.float64) - w0[name].astype(np.float64)).ravel())
                    assert d <= r * (1 + 1e-5), (ckpt, name, d, r)
                    checked += 1
        assert checked == 19  # 18 convolutions in layer1-3 and the head; the stem is free


def test_the_measures_read_the_run_folder(trained, folder, tmp_path):
    """The checkpoints are what `hessgap measures --checkpoint best.h5 --init-checkpoint epoch_0.h5` reads."""
    out, _ = trained
    res = tmp_path / "m.h5"
    r = run_hg("measures", "--checkpoint", out / "best.h5", "--init-checkpoint", out / "epoch_0.h5", "--data", folder,
               "--normalize", "cifar10", "--batch-size", 10, "--sample-size", 20, "--sample-rule", "exact",
               "--train-size", 30, "--out", res, "--verbosity", 0)
    assert r.rc == 0, r
    with h5py.File(res, "r") as f:
        assert np.isfinite(f["measures/bound"][()])


def test_two_ranks_with_sync_bn_equal_one_rank(folder, tmp_path):
    """Augmentation (on for image folders) is keyed by (seed, epoch, sample), so it does not depend on ranks."""
    args = dict(dtype="float64", **{"sync-bn": True})
    one = run_hg(*train_args(folder, tmp_path / "np1", **args), timeout=300)
    two = run_hg(*train_args(folder, tmp_path / "np2", **args), np_=2, timeout=300)
    assert one.rc == 0 and two.rc == 0, (one, two)
    assert max_diff(tensors(tmp_path / "np1" / "best.h5"), tensors(tmp_path / "np2" / "best.h5")) < 1e-10


def test_a_killed_run_resumes_with_the_same_command(folder, tmp_path):
    whole = run_hg(*train_args(folder, tmp_path / "whole", epochs=3, dtype="float64"), timeout=300)
    assert whole.rc == 0, whole
    part = run_hg(*train_args(folder, tmp_path / "part", epochs=3, dtype="float64", **{"stop-after-epochs": 1}),
                  timeout=300)
    assert part.rc == 0, part
    with h5py.File(tmp_path / "part" / "run.h5", "r") as f:
        assert f.attrs["status"] == "partial" and f.attrs["complete"] == 0
    rest = run_hg(*train_args(folder, tmp_path / "part", epochs=3, dtype="float64", verbosity=1), timeout=300)
    assert rest.rc == 0, rest
    assert "resuming at epoch 2" in rest.output
    assert max_diff(tensors(tmp_path / "whole" / "last.h5"), tensors(tmp_path / "part" / "last.h5")) == 0.0
    with h5py.File(tmp_path / "whole" / "run.h5", "r") as a, h5py.File(tmp_path / "part" / "run.h5", "r") as b:
        assert np.array_equal(a["train/history/loss"][()], b["train/history/loss"][()])
        assert a["train/final/test_loss"][()] == b["train/final/test_loss"][()]
        assert b.attrs["complete"] == 1


def test_another_runs_folder_is_refused(trained, folder):
    out, _ = trained
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    r = run_hg(*train_args(folder, out, lr=5e-4))
    assert_failed(r, 2, "holds the files of run", "--resume")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


@pytest.mark.parametrize("flags,message", [
    ({"reg-extractor": 0}, "must be > 0"),
    ({"label-noise": 1.0}, "--label-noise must be in [0, 1)"),
    ({"constraint-reweight": True, "reweight-noise-rate": 0.9}, "--reweight-noise-rate 0.9 is degenerate for 10 classes"),
    ({"arch": "resnet18"}, "missing"),
    ({"epochs": 0}, "--epochs must be >= 1"),
])
def test_bad_input(folder, tmp_path, flags, message):
    out = tmp_path / "bad"
    r = run_hg(*train_args(folder, out, **flags))
    assert_failed(r, 2, message)
    assert not out.exists() or leftovers(out) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_keeps_the_previous_checkpoint(folder, tmp_path, trained):
    out, _ = trained
    sizes = {p.name: p.stat().st_size for p in out.iterdir()}
    mnt = tmp_path / "small"
    mnt.mkdir()
    # Room for epoch_0, best and one last.h5, but not for a second last.h5 written beside the first.
    size_kb = (sizes["epoch_0.h5"] + 2 * sizes["best.h5"] + int(1.5 * sizes["last.h5"])) // 1024
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        r = run_hg(*train_args(folder, mnt / "run", epochs=3))
        assert r.rc != 0, r
        assert "last.h5" in r.output, r
        files = sorted(p.name for p in (mnt / "run").iterdir())
        assert "last.h5" in files and not any(n.startswith(".") or "tmp" in n for n in files), files
        with h5py.File(mnt / "run" / "last.h5", "r") as f:  # the previous one, whole
            assert int(f["metadata"].attrs["epoch"]) >= 1
            assert len(f["tensors"]) == len(tensors(out / "last.h5"))
    finally:
        subprocess.run(["umount", str(mnt)])


def test_augmentation_needs_an_image_folder(tmp_path):
    r = run_hg("train", "--checkpoint", WEIGHTS, "--data", "/usr/share/datasets/fashion-mnist", "--data-format", "idx",
               "--pad", 2, "--grey-to-rgb", "--normalize", "cifar10", "--augment", "on", "--out-dir", tmp_path / "a")
    assert_failed(r, 2, "--augment on: training augmentation needs an image folder")


def test_augmentation_changes_the_training_batches(folder, tmp_path):
    on = run_hg(*train_args(folder, tmp_path / "on", epochs=1, dtype="float64"), timeout=300)
    off = run_hg(*train_args(folder, tmp_path / "off", epochs=1, dtype="float64", augment="off"), timeout=300)
    assert on.rc == 0 and off.rc == 0, (on, off)
    with h5py.File(tmp_path / "on" / "run.h5", "r") as a, h5py.File(tmp_path / "off" / "run.h5", "r") as b:
        assert a["train/history/loss"][0] != b["train/history/loss"][0]


def test_runs_report_mean_and_population_std(folder, tmp_path):
    r = run_hg(*train_args(folder, tmp_path / "runs", epochs=1, runs=2), timeout=300)
    assert r.rc == 0, r
    acc = []
    for k in range(2):
        with h5py.File(tmp_path / "runs" / f"run_{k}" / "run.h5", "r") as f:
            acc.append(float(f["train/final/test_accuracy"][()]))
            assert json.loads(f.attrs["config"])["train"]["seed"] == 1 + k  # typed
    rows = {line.split(",")[0]: line.split(",") for line in (tmp_path / "runs" / "runs.csv").read_text().splitlines()}
    assert float(rows["mean"][1]) == pytest.approx(np.mean(acc), rel=1e-9)
    assert float(rows["std"][1]) == pytest.approx(np.std(acc), abs=1e-12)
    assert "2 runs: test accuracy" in r.stdout


def test_load_matrix_estimates_dual_t_after_a_plain_pass_and_reweights_with_it(folder, tmp_path):
    out = tmp_path / "dt"
    flags = {"constraint-reweight": True, "load-matrix": True, "sync-bn": True, "dtype": "float64"}
    r = run_hg(*train_args(folder, out, epochs=1, **flags), timeout=300)
    assert r.rc == 0, r
    # The ranks predict shards of the training ids: the estimate is the same at two ranks.
    r2 = run_hg(*train_args(folder, tmp_path / "dt-np2", epochs=1, **flags), np_=2, timeout=300)
    assert r2.rc == 0, r2
    with h5py.File(out / "transition_matrix.h5", "r") as a, h5py.File(tmp_path / "dt-np2" / "transition_matrix.h5", "r") as b:
        assert np.allclose(a["transition_matrix"][()], b["transition_matrix"][()], rtol=1e-9, atol=1e-12)
    assert (out / "dual_t" / "run.h5").is_file()  # the plain first pass, a run folder of its own
    with h5py.File(out / "dual_t" / "run.h5", "r") as f:
        assert f["train"].attrs["reg_method"] == "none" and f["train"].attrs["reweighted"] == 0
    with h5py.File(out / "transition_matrix.h5", "r") as f:
        C = f["transition_matrix"][()]
        assert C.shape == (10, 10)
        assert np.allclose(C, f["t_club"][()] @ f["t_spade"][()], rtol=1e-12, atol=1e-15)
    with h5py.File(out / "run.h5", "r") as f:
        assert np.allclose(f["train/reweight_matrix"][()], np.linalg.pinv(C), rtol=1e-6, atol=1e-8)
    # A matrix of another size is refused, naming both sizes.
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f["transition_matrix"] = np.eye(3)
    r = run_hg(*train_args(folder, tmp_path / "dt2", epochs=1,
                           **{"constraint-reweight": True, "load-matrix": True, "matrix-file": bad}))
    assert_failed(r, 2, "is 2-D 3 x 3, the model has 10 classes")


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory):
    """The tiny Hugging Face RoBERTa fixture with embeddings sized for the real roberta-base tokenizer
    (50,265 tokens): a model folder `hessgap train` reads as hf:FOLDER."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "analysis"))
    from tools import safetensors_np
    src = Path(__file__).resolve().parents[2] / "fixtures" / "hf" / "roberta-tiny"
    tensors = safetensors_np.read(str(src / "model.safetensors"))[0]
    rng = np.random.default_rng(0)
    for k, v in list(tensors.items()):
        if k.endswith("word_embeddings.weight"):
            tensors[k] = (rng.standard_normal((50265, v.shape[1])) * 0.02).astype(v.dtype)
    cfg = json.loads((src / "config.json").read_text())
    cfg["vocab_size"] = 50265
    out = tmp_path_factory.mktemp("roberta") / "model"
    out.mkdir()
    safetensors_np.write(str(out / "model.safetensors"), tensors)
    (out / "config.json").write_text(json.dumps(cfg))
    return out


def test_text_training_uses_the_text_reference_settings(tiny_roberta, tmp_path):
    fixtures = Path(__file__).resolve().parents[2] / "fixtures" / "text"
    out = tmp_path / "text"
    r = run_hg("train", "--checkpoint", tiny_roberta, "--data", fixtures / "glue" / "MRPC" / "train_head.tsv",
               "--data-format", "glue", "--task", "mrpc", "--tokenizer", fixtures / "roberta-base", "--max-length", 32,
               "--epochs", 2, "--batch-size", 8, "--lr", 1e-3, "--label-noise", 0.2, "--reg-method", "constraint",
               "--reg-attention", 0.5, "--reg-linear", 0.5, "--reg-predictor", 1, "--constraint-reweight",
               "--reweight-noise-rate", 0.2, "--measure-samples", 16, "--out-dir", out, "--verbosity", 0,
               np_=2, timeout=300)
    assert r.rc == 0, r
    with h5py.File(out / "run.h5", "r") as f:
        a = f["train"].attrs
        assert a["optimizer"] == "adamw" and a["schedule"] == "linear" and a["monitor"] == "min val_loss"
        # transformers' linear schedule without warm-up: lr_s = base * (total - s) / total, per step.
        steps = f["train/history/step"][()]
        total = len(steps)
        assert np.allclose(f["train/history/lr"][()], 1e-3 * (total - steps) / total, rtol=1e-12)
        # Text flip noise on the training ids: int(0.2 * 135) = 27 flipped (chunk of 1000 covers them all).
        assert f["labels/relabelled"][()].sum() == 27
        assert f["labels"].attrs["noise_mode"] == "flip"
        # The classifier is measured around its initialisation, as the text reference does.
        assert f["measures"].attrs["head_reference"] == "init"
        assert 0 <= f["train/final/test_f1"][()] <= 1  # two classes: F1 beside accuracy
        groups = [g.decode() if isinstance(g, bytes) else g for g in f["train/constraint_groups"][()]]
        assert any("include 'attention'" in g for g in groups) and any("include 'classifier'" in g for g in groups)


def test_text_training_with_dropout_is_the_same_at_one_and_two_ranks(tiny_roberta, tmp_path):
    """The tiny RoBERTa trains with its config's dropout (0.1, Hugging Face's places); the masks are drawn for
    the whole global batch and sharded (models/dropout.h), so np = 2 ends with np = 1's weights (float64).
    Oracle: the one-rank run; and dropout is on: a run with the dropout rates set to 0 ends elsewhere."""
    fixtures = Path(__file__).resolve().parents[2] / "fixtures" / "text"
    args = ["train", "--checkpoint", tiny_roberta, "--data", fixtures / "glue" / "MRPC" / "train_head.tsv",
            "--data-format", "glue", "--task", "mrpc", "--tokenizer", fixtures / "roberta-base", "--max-length", 32,
            "--epochs", 1, "--batch-size", 8, "--lr", 1e-3, "--dtype", "float64", "--valid-split", 0,
            "--measure-samples", 0, "--verbosity", 0]
    finals = {}
    for np_ in (1, 2):
        out = tmp_path / f"np{np_}"
        r = run_hg(*args, "--out-dir", out, np_=np_, timeout=300)
        assert r.rc == 0, r
        finals[np_] = tensors(out / "last.h5")
    assert max_diff(finals[1], finals[2]) <= 1e-10
    # The same model without dropout trains to other weights.
    plain = tmp_path / "no-dropout-model"
    shutil.copytree(tiny_roberta, plain)
    config = json.loads((plain / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (plain / "config.json").write_text(json.dumps(config))
    args[2] = plain
    r = run_hg(*args, "--out-dir", tmp_path / "plain", timeout=300)
    assert r.rc == 0, r
    assert max_diff(finals[1], tensors(tmp_path / "plain" / "last.h5")) > 1e-6


def make_domainnet(root, n=(12, 6, 6)):
    """A DomainNet layout (data/domainnet.h) with real images: sample 1, domain clipart, train/val/test of
    n images from the embedded CIFAR-10 JPEGs as PNG, true labels cycling over the 5 classes, and weak
    labels on train that differ from the true ones on every third image."""
    from PIL import Image
    classes = ["sea_turtle", "vase", "whale", "bird", "violin"]
    root = Path(root)
    (root / "sample_1").mkdir(parents=True)
    (root / "sample_classes_1.txt").write_text("\n".join(classes) + "\n")
    jpgs = sorted(Path(WEIGHTS).parents[2].glob("cifar10-test-100/*/*.jpg"))
    k = 0
    for part, size in zip(("train", "val", "test"), n):
        folder = root / "sample_1" / f"{part}_clipart"
        folder.mkdir()
        true = [(i * 2 + len(part)) % 5 for i in range(size)]
        for i in range(size):
            Image.open(jpgs[k % len(jpgs)]).convert("RGB").save(folder / f"{i:06d}.png")
            k += 1
        (folder / "labels.txt").write_text("\n".join(classes[t] for t in true) + "\n")
        if part == "train":
            weak = np.array([(t + 1) % 5 if i % 3 == 0 else t for i, t in enumerate(true)], dtype=np.int64)
            np.save(root / "sample_1" / f"{part}_clipart_mv_labels.npy", weak)
    return root


def test_domainnet_trains_on_weak_labels_and_validates_on_its_own_val_split(tmp_path):
    """DomainNet (SPEC §3.2, §6.2): the weak labels are the ones trained on, the true ones are clean (the
    clean training loss and /labels); validation is the dataset's own val split, not ids held out of train.
    Oracle: hessgap eval of best.h5 on the train split with true labels and on the val split."""
    root = make_domainnet(tmp_path / "dn")
    out = tmp_path / "out"
    flags = ["--checkpoint", WEIGHTS, "--data", root, "--data-format", "domainnet", "--domain", "clipart",
             "--sample", 1, "--resize", 32, "--normalize", "domain", "--new-head", "--epochs", 2, "--batch-size", 4, "--lr", 1e-3,
             "--seed", 0, "--measure-samples", 0, "--verbosity", 0]
    r = run_hg("train", *flags, "--out-dir", out, timeout=300)
    assert r.rc == 0, r
    with h5py.File(out / "run.h5", "r") as f:
        final = {k: float(v[()]) for k, v in f["train/final"].items() if v.shape == ()}
        assert f["labels"].attrs["source"] == "weak"
        assert int(f["labels/relabelled"][()].sum()) == 4  # every third of 12
        assert final["num_train"] == 12 and final["num_valid"] == 6 and final["num_test"] == 6
    common = ["--checkpoint", out / "best.h5", "--data", root, "--data-format", "domainnet", "--domain", "clipart",
              "--sample", 1, "--resize", 32, "--normalize", "domain", "--num-classes", 5, "--batch-size", 100, "--verbosity", 0]
    for split, source, key in (("train", "true", "train_loss_clean"), ("train", "weak", "train_loss_noisy"),
                               ("val", "true", "valid_loss")):
        ev = tmp_path / f"eval-{split}-{source}.h5"
        r = run_hg("eval", *common, "--split", split, "--label-source", source, "--out", ev)
        assert r.rc == 0, r
        with h5py.File(ev, "r") as f:
            assert float(f["eval/loss"][()]) == pytest.approx(final[key], rel=1e-6), (split, source, key)
    assert final["train_loss_clean"] != final["train_loss_noisy"]
    # Synthetic noise on top of weak labels is refused (the training labels are already noisy).
    r = run_hg("train", *flags, "--label-noise", 0.2, "--out-dir", tmp_path / "out2")
    assert r.rc == 2 and "already noisy" in r.output, r
