"""The CLI's data paths end to end: per-sample eval outputs (against a python3-torch oracle), label noise
and its record in the output (`hessgap labels`, `--label-noise`), GLUE text data, and their input errors.
"""
import json
import math

import h5py
import numpy as np
import pytest
import torch

from conftest import CLASSES, IMAGES, SOURCE_DIR, WEIGHTS, assert_failed, leftovers, make_image_folder, run_hg
import hessgap_results
from tools import cifar_resnet

TEXT = SOURCE_DIR / "tests" / "fixtures" / "text"
SST2 = TEXT / "glue" / "SST-2" / "train_head.tsv"
MRPC = TEXT / "glue" / "MRPC" / "train_head.tsv"
ROBERTA_TOKENIZER = TEXT / "roberta-base"


def read_group(path, group):
    with h5py.File(path, "r") as f:
        g = f[group]
        return {k: g[k][()] for k in g if isinstance(g[k], h5py.Dataset)}, dict(g.attrs)


# ---- per-sample eval ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_images(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("img") / "data", per_class=3)


def python_logits(folder):
    """The oracle: python3-torch ResNet-20 on Pillow-decoded images, in ImageFolder order."""
    model = cifar_resnet.load_resnet(WEIGHTS)
    items = cifar_resnet.image_folder(folder)
    with torch.no_grad():
        x = torch.stack([cifar_resnet.image_tensor(p) for p, _ in items])
        return model(x).numpy(), np.array([y for _, y in items])


@pytest.mark.parametrize("np_", [1, 3])
def test_eval_per_sample_matches_python(hessgap_bin, tmp_path, small_images, np_):
    out = tmp_path / "eval.h5"
    r = run_hg("eval", "--checkpoint", WEIGHTS, "--data", small_images, "--batch-size", 4, "--per-sample",
               "--verbosity", 0, "--out", out, np_=np_)
    assert r.rc == 0, r
    s, _ = read_group(out, "eval/samples")
    e, _ = read_group(out, "eval")
    want, labels = python_logits(small_images)
    n = len(labels)
    assert list(s["sample_id"]) == list(range(n))  # natural order whatever the rank count
    assert s["logits"].dtype == np.float32 and s["logits"].shape == (n, 10)
    np.testing.assert_allclose(s["logits"], want, rtol=1e-4, atol=1e-4)
    assert list(s["label"]) == list(labels)
    assert list(s["predicted"]) == list(want.argmax(1))
    logp = want - np.log(np.exp(want - want.max(1, keepdims=True)).sum(1, keepdims=True)) - want.max(1, keepdims=True)
    np.testing.assert_allclose(s["loss"], -logp[np.arange(n), labels], rtol=1e-4, atol=1e-5)
    # The summary is the per-sample table's mean / hit rate.
    assert e["num_samples"] == n
    assert abs(float(e["loss"]) - s["loss"].mean()) < 1e-9
    assert int(e["correct"]) == int((s["predicted"] == s["label"]).sum())
    assert [c.decode() for c in e["class_names"]] == sorted(p.name for p in IMAGES.iterdir() if p.is_dir())
    res = hessgap_results.load(str(out))
    assert res.eval["samples"]["logits"].shape == (n, 10)
    assert f"per-sample table: {n} rows" in hessgap_results.summary_text(res)
    hessgap_results.plot(res, str(tmp_path / "confusion.png"))
    assert (tmp_path / "confusion.png").stat().st_size > 1000


def test_eval_per_sample_float64_keeps_float64(hessgap_bin, tmp_path, small_images):
    out = tmp_path / "eval64.h5"
    r = run_hg("eval", "--checkpoint", WEIGHTS, "--data", small_images, "--per-sample", "--dtype", "float64",
               "--max-per-class", 1, "--verbosity", 0, "--out", out)
    assert r.rc == 0, r
    s, _ = read_group(out, "eval/samples")
    assert s["logits"].dtype == np.float64 and s["logits"].shape == (10, 10)


def test_eval_without_per_sample_writes_no_table(hessgap_bin, tmp_path, small_images):
    out = tmp_path / "eval.h5"
    r = run_hg("eval", "--checkpoint", WEIGHTS, "--data", small_images, "--max-per-class", 1, "--verbosity", 0,
               "--out", out)
    assert r.rc == 0, r
    with h5py.File(out, "r") as f:
        assert "samples" not in f["eval"] and "labels" not in f  # clean labels: no /labels group


# ---- label noise ----------------------------------------------------------------------------------

def test_labels_symmetric_image_noise(hessgap_bin, tmp_path, small_images):
    out = tmp_path / "labels.h5"
    r = run_hg("labels", "--data", small_images, "--label-noise", 0.5, "--noise-seed", 7, "--out", out)
    assert r.rc == 0, r
    g, a = read_group(out, "labels")
    n = 30
    assert a["source"] == "synthetic" and a["noise_mode"] == "symmetric" and a["noise_rate"] == 0.5
    assert a["noise_seed"] == 7 and a["noise_chunk"] == 0
    assert list(g["clean"]) == [i // 3 for i in range(n)]  # ImageFolder order, 3 per class
    assert g["relabelled"].sum() == int(0.5 * n)  # m = floor(rho n) positions (SPEC §6.1)
    untouched = g["relabelled"] == 0
    assert (g["used"][untouched] == g["clean"][untouched]).all()
    assert ((g["used"] >= 0) & (g["used"] < 10)).all()
    differ = int((g["used"] != g["clean"]).sum())
    assert g["num_noisy"] == differ and g["realised_noise_rate"] == differ / n
    assert differ <= 15  # a redraw over all K classes may keep the label
    t = g["transitions"]
    assert t.shape == (10, 10) and t.sum() == n and np.trace(t) == n - differ
    assert "realised noise rate" in r.stdout
    res = hessgap_results.load(str(out))  # the reader knows /labels, and plots the transition matrix
    assert res.labels["num_noisy"] == differ and "[labels] source synthetic" in hessgap_results.summary_text(res)
    hessgap_results.plot(res, str(tmp_path / "labels.png"))
    assert (tmp_path / "labels.png").stat().st_size > 1000


def test_labels_text_flip_noise_is_exact(hessgap_bin, tmp_path):
    out = tmp_path / "labels.h5"
    r = run_hg("labels", "--data", SST2, "--data-format", "glue", "--task", "sst2", "--tokenizer",
               ROBERTA_TOKENIZER, "--label-noise", 0.4, "--out", out)
    assert r.rc == 0, r
    g, a = read_group(out, "labels")
    # Text noise flips (K = 2), m = int(0.4 * 300) in the one chunk of at most 1000 ids (SPEC §6.3).
    assert a["noise_mode"] == "flip" and a["noise_chunk"] == 1000
    assert g["relabelled"].sum() == 120 and g["num_noisy"] == 120 and g["realised_noise_rate"] == 0.4
    assert (g["used"] == np.where(g["relabelled"] == 1, 1 - g["clean"], g["clean"])).all()
    clean = [int(line.split("\t")[1]) for line in SST2.read_text(encoding="utf-8-sig").splitlines()[1:]]
    assert list(g["clean"]) == clean


def test_noisy_labels_are_the_same_at_any_rank_count(hessgap_bin, tmp_path, small_images):
    """The noise is keyed by sample id: eval with --label-noise at 1 and 2 ranks records the same labels and
    scores against them."""
    files = []
    for np_ in (1, 2):
        out = tmp_path / f"eval{np_}.h5"
        r = run_hg("eval", "--checkpoint", WEIGHTS, "--data", small_images, "--label-noise", 0.6, "--noise-seed", 3,
                   "--per-sample", "--batch-size", 4, "--verbosity", 0, "--out", out, np_=np_)
        assert r.rc == 0, r
        files.append(out)
    g1, _ = read_group(files[0], "labels")
    g2, _ = read_group(files[1], "labels")
    for k in ("clean", "used", "relabelled", "transitions"):
        assert (g1[k] == g2[k]).all(), k
    s1, _ = read_group(files[0], "eval/samples")
    assert (s1["label"] == g1["used"]).all()  # eval scores against the labels in use


@pytest.mark.parametrize("flags,message", [
    (["--label-noise", 1.5], "--label-noise must be in [0, 1] (got 1.5)"),
    (["--label-noise", 0.2, "--noise-mode", "pairwise"], "--noise-mode must be auto, symmetric or flip (got 'pairwise')"),
    (["--label-noise", 0.2, "--noise-chunk", -5], "--noise-chunk must be >= 0, or -1 for auto (got -5)"),
])
def test_label_noise_errors(hessgap_bin, tmp_path, small_images, flags, message):
    r = run_hg("labels", "--data", small_images, *flags, "--out", tmp_path / "x.h5")
    assert_failed(r, 2, message, out_dir=tmp_path)


# ---- GLUE -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def glue_folder(tmp_path_factory):
    """A GLUE task folder (MRPC/{train,dev}.tsv) made from the fixture rows."""
    root = tmp_path_factory.mktemp("glue") / "MRPC"
    root.mkdir()
    lines = MRPC.read_text(encoding="utf-8-sig").splitlines()
    (root / "train.tsv").write_text("\n".join(lines[:101]) + "\n", encoding="utf-8")
    (root / "dev.tsv").write_text("\n".join([lines[0]] + lines[101:]) + "\n", encoding="utf-8")
    return root


def test_glue_folder_picks_task_and_split(hessgap_bin, tmp_path, glue_folder):
    for split, n in (("train", 100), ("dev", 50), ("val", 50)):
        out = tmp_path / f"{split}.h5"
        r = run_hg("labels", "--data", glue_folder, "--data-format", "glue", "--split", split, "--tokenizer",
                   ROBERTA_TOKENIZER, "--out", out)
        assert r.rc == 0, r
        g, a = read_group(out, "labels")
        assert len(g["clean"]) == n and a["source"] == "clean"
        assert "GLUE mrpc" in a["description"]


@pytest.mark.parametrize("flags,message", [
    (["--split", "test"], "test split"),
    (["--split", "valid"], "unknown split 'valid'"),
    (["--task", "cola"], "unknown task 'cola'"),
    (["--no-tokenizer"], "no tokenizer folder given"),
    (["--tokenizer", "/nonexistent/tok"], "/nonexistent/tok"),
    (["--resize", 32], "resize, crop and max_per_class are for images"),
])
def test_glue_errors(hessgap_bin, tmp_path, glue_folder, flags, message):
    args = ["labels", "--data", glue_folder, "--data-format", "glue", "--out", tmp_path / "x.h5"]
    if "--no-tokenizer" not in flags:
        args += ["--tokenizer", ROBERTA_TOKENIZER]
    r = run_hg(*args, *[f for f in flags if f != "--no-tokenizer"])
    assert_failed(r, 2, message, out_dir=tmp_path)


def test_glue_task_from_folder_name_must_be_known(hessgap_bin, tmp_path, glue_folder):
    other = tmp_path / "CoLA"
    other.mkdir()
    (other / "train.tsv").write_text((glue_folder / "train.tsv").read_text())
    r = run_hg("labels", "--data", other, "--data-format", "glue", "--tokenizer", ROBERTA_TOKENIZER)
    assert_failed(r, 2, "cannot tell the task from the folder name 'CoLA'")


def test_glue_malformed_line_is_named(hessgap_bin, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence\tlabel\nfine\t1\nno label here\n", encoding="utf-8")
    r = run_hg("labels", "--data", bad, "--data-format", "glue", "--task", "sst2", "--tokenizer", ROBERTA_TOKENIZER)
    assert_failed(r, 2, str(bad), "line 3")


# ---- text eval against a plain-PyTorch RoBERTa -------------------------------------------------------

GLUE_GOLDEN = TEXT / "glue_golden.jsonl"
MAXLEN = 24


@pytest.fixture(scope="module")
def roberta_folder(tmp_path_factory):
    """A Hugging Face-style folder: a tiny RoBERTa config with roberta-base's vocabulary size, random weights
    written by the python model (Hugging Face's init), and the tokenizer files."""
    from tools import roberta, safetensors_np
    import json
    import shutil
    root = tmp_path_factory.mktemp("hf") / "roberta-tiny-mrpc"
    root.mkdir()
    cfg = json.loads((SOURCE_DIR / "tests" / "fixtures" / "hf" / "roberta-tiny" / "config.json").read_text())
    cfg.update(vocab_size=50265, id2label={"0": "not_equivalent", "1": "equivalent"},
               label2id={"not_equivalent": 0, "equivalent": 1})
    (root / "config.json").write_text(json.dumps(cfg, indent=2))
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(ROBERTA_TOKENIZER / f, root / f)
    torch.manual_seed(0)
    model = roberta.RobertaForSequenceClassification(roberta.RobertaConfig(root / "config.json"), 2)
    with torch.no_grad():  # LayerNorms away from (1, 0), so that they matter
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    safetensors_np.write(root / "model.safetensors", {k: v.numpy() for k, v in model.state_dict().items()})
    return root, model


def test_glue_eval_matches_python_roberta(hessgap_bin, tmp_path, glue_folder, roberta_folder):
    """hessgap eval on MRPC dev (tokenized by hessgap) vs the python RoBERTa on Hugging Face's token ids for the
    same rows (glue_golden.jsonl, max_length 24): the tokenizer, batching with padding masks, the model and
    the per-sample gathering, end to end."""
    import json
    folder, model = roberta_folder
    out = tmp_path / "glue.h5"
    r = run_hg("eval", "--checkpoint", folder, "--data", glue_folder, "--data-format", "glue", "--split", "dev",
               "--max-length", MAXLEN, "--batch-size", 8, "--per-sample", "--verbosity", 0, "--out", out, np_=2)
    assert r.rc == 0, r
    s, _ = read_group(out, "eval/samples")
    with h5py.File(out, "r") as f:
        assert f["model"].attrs["arch"] == f"hf:{folder}"
    rows = [json.loads(line) for line in GLUE_GOLDEN.read_text().splitlines()]
    rows = [g for g in rows if g["task"] == "mrpc" and 100 <= g["index"] < 150]
    assert len(rows) == 50 and list(s["sample_id"]) == list(range(50))
    ids = torch.full((50, 24), 1, dtype=torch.long)  # pad id 1
    mask = torch.zeros((50, 24), dtype=torch.long)
    for i, g in enumerate(rows):
        seq = g["roberta_24"]["ids"]
        ids[i, :len(seq)] = torch.tensor(seq)
        mask[i, :len(seq)] = 1
    with torch.no_grad():
        want = model(ids, mask, torch.zeros_like(ids)).numpy()
    np.testing.assert_allclose(s["logits"], want, rtol=1e-4, atol=1e-5)
    assert list(s["label"]) == [g["label"] for g in rows]
    assert (np.abs(want[:, 0] - want[:, 1]) > 1e-6).all()  # the logits are not degenerate


def test_text_traces_with_probes_in_flight(hessgap_bin, tmp_path, glue_folder, roberta_folder):
    """--probes-in-flight on RoBERTa (attention, LayerNorm, GELU, embeddings: every op's second derivative
    batched), both --probe-batching ways: float64 traces equal one probe at a time, the same probes used."""
    folder, _ = roberta_folder
    args = ["--checkpoint", folder, "--data", glue_folder, "--data-format", "glue", "--split", "dev",
            "--max-length", MAXLEN, "--batch-size", 4, "--sample-size", 8, "--sample-rule", "exact",
            "--dtype", "float64", "--max-probes", 7, "--tol", 1e-6, "--verbosity", 0]
    for name, flags in (("k1", []), ("functorch", ["--probes-in-flight", 3]),
                        ("legacy", ["--probes-in-flight", 3, "--probe-batching", "legacy"])):
        r = run_hg("traces", *args, *flags, "--out", tmp_path / f"{name}.h5")
        assert r.rc == 0, r
    for name in ("functorch", "legacy"):
        with h5py.File(tmp_path / "k1.h5", "r") as a, h5py.File(tmp_path / f"{name}.h5", "r") as b:
            np.testing.assert_array_equal(b["traces/batch_probes"][()], a["traces/batch_probes"][()])
            want = a["traces/batch_mean"][()]
            assert want.shape[0] == 2 and np.abs(want).max() > 0
            np.testing.assert_allclose(b["traces/batch_mean"][()], want, rtol=1e-10,
                                       atol=1e-12 * np.abs(want).max(), err_msg=name)
            assert int(b["traces"].attrs["probes_in_flight"]) == 3
            assert b["traces"].attrs["probe_batching"] == name


# ---- checkpoint formats through the CLI ---------------------------------------------------------------

def test_torch_save_zip_checkpoint_gives_the_same_eval(hessgap_bin, tmp_path, small_images):
    """A state dict written by torch.save (zip format) evaluates exactly like the safetensors file."""
    model = cifar_resnet.load_resnet(WEIGHTS)
    pt = tmp_path / "resnet20.pt"
    torch.save(model.state_dict(), pt)
    outs = []
    for ckpt in (WEIGHTS, pt):
        out = tmp_path / f"{ckpt.suffix[1:]}.h5"
        r = run_hg("eval", "--checkpoint", ckpt, "--data", small_images, "--per-sample", "--verbosity", 0, "--out", out)
        assert r.rc == 0, r
        outs.append(read_group(out, "eval/samples")[0]["logits"])
    assert np.array_equal(outs[0], outs[1])


def test_new_head_is_opt_in(hessgap_bin, tmp_path, small_images):
    r = run_hg("eval", "--checkpoint", WEIGHTS, "--data", small_images, "--num-classes", 5)
    assert_failed(r, 2, "--num-classes 5 is smaller than the 10 classes of the data")
    five = make_image_folder(tmp_path / "five", per_class=2, classes=CLASSES[:5])
    args = ["eval", "--checkpoint", WEIGHTS, "--data", five]
    r = run_hg(*args)
    assert_failed(r, 2, "linear.weight", "linear.bias")
    out = tmp_path / "newhead.h5"
    r = run_hg(*args, "--new-head", "--per-sample", "--out", out)
    assert r.rc == 0, r
    assert "new head" in r.output.lower() or "linear.weight" in r.output
    s, _ = read_group(out, "eval/samples")
    assert s["logits"].shape == (10, 5)
    with h5py.File(out, "r") as f:  # recorded in the output
        notes = [n.decode() for n in f["model/load_notes"][()]]
        assert any("new head" in n and "linear.weight" in n for n in notes), notes
    # The fresh head is seeded by --seed: the same twice.
    out2 = tmp_path / "newhead2.h5"
    assert run_hg(*args, "--new-head", "--per-sample", "--out", out2).rc == 0
    assert np.array_equal(s["logits"], read_group(out2, "eval/samples")[0]["logits"])


# ---- unreadable files ---------------------------------------------------------------------------------

def test_skip_unreadable_counts_what_it_skips(hessgap_bin, tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=2)
    bad = sorted((data / CLASSES[3]).iterdir())[1]
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    bad_id = 3 * 2 + 1  # ImageFolder order: class 3, second file
    args = ["eval", "--checkpoint", WEIGHTS, "--data", data, "--batch-size", 3, "--verbosity", 0]
    assert_failed(run_hg(*args, "--out", tmp_path / "x.h5"), 2, bad.name)  # an error by default
    out = tmp_path / "skip.h5"
    r = run_hg(*args, "--skip-unreadable", "--per-sample", "--out", out, np_=2)
    assert r.rc == 0, r
    with h5py.File(out, "r") as f:
        assert f["data"].attrs["num_skipped"] == 1
        assert list(f["data/skipped_ids"][()]) == [bad_id]
        assert int(f["eval/num_samples"][()]) == 19
        assert bad_id not in list(f["eval/samples/sample_id"][()])
    r = run_hg("traces", "--checkpoint", WEIGHTS, "--data", data, "--skip-unreadable")
    assert_failed(r, 2, "--skip-unreadable is only supported by eval")
    r = run_hg("eval", "--checkpoint", WEIGHTS, "--data", data, "--data-format", "caltech256", "--skip-unreadable")
    assert_failed(r, 2, "only supported for kind imagefolder")


# ---- Fashion-MNIST for fine-tuning: --pad, --grey-to-rgb, --subset -----------------------------------------

FASHION = "/usr/share/datasets/fashion-mnist"


def test_fashion_mnist_padded_rgb_subset_flags(hessgap_bin, tmp_path):
    """The dataset flags reach the data layer: 28 -> 32 px RGB inputs for a 3-channel CNN, the first --subset
    samples only; refusals name the flag."""
    import os
    if not os.path.exists(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz")):
        pytest.skip("dataset-fashion-mnist is not installed")
    torch.manual_seed(0)
    from tools import safetensors_np
    shapes = {"conv1.weight": (4, 3, 3, 3), "bn1.weight": (4,), "bn1.bias": (4,), "bn1.running_mean": (4,),
              "bn1.running_var": (4,), "conv2.weight": (8, 4, 3, 3), "bn2.weight": (8,), "bn2.bias": (8,),
              "bn2.running_mean": (8,), "bn2.running_var": (8,), "fc.weight": (10, 8), "fc.bias": (10,)}
    rng = np.random.default_rng(0)
    tensors = {k: (np.abs(rng.standard_normal(s)) + 0.5 if k.endswith("running_var") else rng.standard_normal(s) * 0.3)
               .astype(np.float32) for k, s in shapes.items()}
    ck = tmp_path / "cnn3.safetensors"
    safetensors_np.write(ck, tensors)
    base = ["--checkpoint", ck, "--arch", "small-cnn:in=3", "--data", FASHION, "--data-format", "idx", "--verbosity", 0]
    out = tmp_path / "e.h5"
    r = run_hg("eval", *base, "--pad", 2, "--grey-to-rgb", "--normalize", "cifar10", "--subset", 20, "--out", out)
    assert r.rc == 0, r
    with h5py.File(out, "r") as f:
        assert int(f["eval/num_samples"][()]) == 20
        desc = f["data"].attrs["description"]
        assert "padded by 2 to 32x32" in desc and "3 channels" in desc and "first 20 samples" in desc, desc
    # Without --grey-to-rgb a 3-channel normalisation is refused, and the 3-channel CNN would not fit.
    r = run_hg("eval", *base, "--normalize", "cifar10")
    assert_failed(r, 2, "give --grey-to-rgb")
    r = run_hg("eval", "--checkpoint", WEIGHTS, "--data", IMAGES, "--pad", 2)
    assert_failed(r, 2, "--pad and --grey-to-rgb are only supported for kind idx")
    r = run_hg("eval", *base, "--grey-to-rgb", "--normalize", "none", "--subset", 10001)
    assert_failed(r, 2, "--subset", "the split has 10000")


def test_labels_noise_on_a_subset(hessgap_bin, tmp_path, small_images):
    """--subset keeps the first N samples, and label noise goes on those: floor(rho N) relabelled."""
    out = tmp_path / "labels.h5"
    r = run_hg("labels", "--data", small_images, "--subset", 11, "--label-noise", 0.5, "--noise-seed", 7, "--out", out)
    assert r.rc == 0, r
    g, a = read_group(out, "labels")
    assert list(g["clean"]) == [i // 3 for i in range(11)]  # ImageFolder order, 3 per class
    assert g["relabelled"].sum() == 5
    assert "first 11 samples" in a["description"]


# ---- measures: --init-checkpoint adapted as --checkpoint; the head reference by model family ----------------

def torchvision_resnet18(seed):
    import torchvision
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=10)
    with torch.no_grad():  # running statistics away from (0, 1), so that eval mode matters
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 1.5)
    return model.eval()


def as_reference_names(state):
    """The reference's model_epoch_0.pth names (SPEC §3.1): the torchvision backbone under feature_extractor.
    (its fc replaced by an identity), the head as pred_head."""
    return {("pred_head." + k[3:]) if k.startswith("fc.") else "feature_extractor." + k: v for k, v in state.items()}


@pytest.fixture(scope="module")
def resnet18_pair(tmp_path_factory):
    """A fine-tuned ResNet-18 (torchvision names, safetensors) and its W^(s) as the reference saves it:
    torch.save({"epoch": 0, "state_dict": ...}) with feature_extractor. / pred_head. names."""
    from tools import safetensors_np
    root = tmp_path_factory.mktemp("r18")
    init = torchvision_resnet18(0).state_dict()
    fine = {k: (v + 0.01 * torch.randn_like(v)) if v.is_floating_point() and "running" not in k else v.clone()
            for k, v in init.items()}
    safetensors_np.write(root / "model_best.safetensors", {k: v.numpy() for k, v in fine.items()})
    torch.save({"epoch": 0, "state_dict": as_reference_names(init)}, root / "model_epoch_0.pth")
    small_head = dict(init)
    small_head["fc.weight"], small_head["fc.bias"] = init["fc.weight"][:5].clone(), init["fc.bias"][:5].clone()
    torch.save({"epoch": 0, "state_dict": as_reference_names(small_head)}, root / "other_head_epoch_0.pth")
    return root, init, fine


def test_init_checkpoint_with_the_reference_names(hessgap_bin, tmp_path, small_images, resnet18_pair):
    """v = W - W^(s) per Hessian layer, with W^(s) read from the reference's model_epoch_0.pth through the same
    adaptation as --checkpoint: ||v_i|| equals the norm of the difference of the two state dicts (numpy)."""
    root, init, fine = resnet18_pair
    base = ["measures", "--arch", "resnet18", "--checkpoint", root / "model_best.safetensors", "--data", small_images,
            "--max-per-class", 1, "--batch-size", 2, "--sample-size", 2, "--sample-rule", "exact",
            "--train-size", 100, "--verbosity", 0]
    for head in ("init", "auto"):
        out = tmp_path / f"m-{head}.h5"
        r = run_hg(*base, "--init-checkpoint", root / "model_epoch_0.pth", "--head-reference", head, "--out", out)
        assert r.rc == 0, r
        with h5py.File(out, "r") as f:
            names = [n.decode() if isinstance(n, bytes) else n for n in f["layers/names"][()]]
            v = f["measures/v_norm"][()]
            assert f["measures"].attrs["head_reference"] == ("init" if head == "init" else "zero")  # image: zero
            assert json.loads(f.attrs["config"])["measure"]["head_reference"] == head
        assert names[0] == "conv1.weight" and names[-1] == "fc.weight" and len(names) == 18, names
        for name, got in zip(names, v):
            w = fine[name].double().numpy()
            want = np.linalg.norm(w if (head == "auto" and name.startswith("fc.")) else w - init[name].double().numpy())
            assert math.isclose(got, want, rel_tol=1e-5), (name, got, want)
    # A head sized for another task is only acceptable when the head is measured around zero.
    r = run_hg(*base, "--init-checkpoint", root / "other_head_epoch_0.pth", "--head-reference", "init")
    assert_failed(r, 2, "other_head_epoch_0.pth", "fc.weight", "--head-reference zero measures it around zero")
    r = run_hg(*base, "--init-checkpoint", root / "other_head_epoch_0.pth", "--head-reference", "zero")
    assert r.rc == 0, r
    r = run_hg(*base, "--init-checkpoint", root / "model_epoch_0.pth", "--head-reference", "middle")
    assert_failed(r, 2, "--head-reference must be auto, zero or init")


# ---- GLUE: text measures around the head's init; predictions on the unlabelled test split ---------------------

@pytest.fixture(scope="module")
def glue_with_test(tmp_path_factory):
    """MRPC/{dev,test}.tsv: test.tsv holds the dev rows' sentences in GLUE's test format (index, #1 ID, #2 ID,
    #1 String, #2 String; no labels)."""
    root = tmp_path_factory.mktemp("gluetest") / "MRPC"
    root.mkdir()
    lines = MRPC.read_text(encoding="utf-8-sig").splitlines()
    dev = [lines[0]] + lines[101:121]
    (root / "dev.tsv").write_text("\n".join(dev) + "\n", encoding="utf-8")
    test = ["index\t#1 ID\t#2 ID\t#1 String\t#2 String"]
    for i, line in enumerate(dev[1:]):
        test.append("\t".join([str(i)] + line.split("\t")[1:]))
    (root / "test.tsv").write_text("\n".join(test) + "\n", encoding="utf-8")
    return root


@pytest.mark.parametrize("np_", [1, 2])
def test_glue_test_split_gives_predictions_without_loss(hessgap_bin, tmp_path, glue_with_test, roberta_folder, np_):
    folder, _ = roberta_folder
    common = ["--checkpoint", folder, "--data", glue_with_test, "--data-format", "glue", "--max-length", MAXLEN,
              "--batch-size", 6, "--verbosity", 0]
    dev_out, test_out = tmp_path / "dev.h5", tmp_path / "test.h5"
    r = run_hg("eval", *common, "--split", "dev", "--per-sample", "--out", dev_out, np_=np_)
    assert r.rc == 0, r
    r = run_hg("eval", *common, "--split", "test", "--out", test_out, np_=np_)  # rows without --per-sample
    assert r.rc == 0, r
    assert "unlabelled" in r.stdout and "no loss or accuracy" in r.stdout, r
    dev, _ = read_group(dev_out, "eval/samples")
    test, _ = read_group(test_out, "eval/samples")
    e, ea = read_group(test_out, "eval")
    assert ea["labelled"] == 0 and "no loss" in ea["note"]
    assert "loss" not in e and "accuracy" not in e and "correct" not in e and e["num_samples"] == 20
    assert "loss" not in test
    assert list(test["sample_id"]) == list(range(20)) and (test["label"] == -1).all()
    # The same sentences give the same logits and predictions as on the labelled split.
    np.testing.assert_array_equal(test["logits"], dev["logits"])
    assert list(test["predicted"]) == list(dev["logits"].argmax(1))
    res = hessgap_results.load(str(test_out))
    assert "20 unlabelled samples: predictions only" in hessgap_results.summary_text(res)
    # The Hessian measures need labels, and say so.
    r = run_hg("traces", *common, "--split", "test", "--max-probes", 2, "--out", tmp_path / "t.h5", np_=np_)
    assert_failed(r, 2, "traces needs labelled data", "--split dev")
    assert not (tmp_path / "t.h5").exists()


def test_text_measures_take_the_head_around_its_init(hessgap_bin, tmp_path, glue_with_test, roberta_folder):
    """SPEC §7.3: the text reference measures the classifier from W^(s). With W^(s) = W, every v_i is 0 by default
    (auto -> init for a text model); around zero the head's v_i is the head itself."""
    from tools import safetensors_np
    folder, _ = roberta_folder
    args = ["measures", "--checkpoint", folder, "--init-checkpoint", folder, "--data", glue_with_test,
            "--data-format", "glue", "--split", "dev", "--max-length", MAXLEN, "--batch-size", 2, "--sample-size", 2,
            "--sample-rule", "exact", "--train-size", 100, "--verbosity", 0]
    out = tmp_path / "auto.h5"
    r = run_hg(*args, "--out", out)
    assert r.rc == 0, r
    with h5py.File(out, "r") as f:
        assert f["measures"].attrs["head_reference"] == "init"
        assert np.all(f["measures/v_norm"][()] == 0.0) and float(f["measures/bound"][()]) == 0.0
    out0 = tmp_path / "zero.h5"
    r = run_hg(*args, "--head-reference", "zero", "--out", out0)
    assert r.rc == 0, r
    weights = safetensors_np.read(folder / "model.safetensors")[0]
    with h5py.File(out0, "r") as f:
        assert f["measures"].attrs["head_reference"] == "zero"
        names = [n.decode() if isinstance(n, bytes) else n for n in f["layers/names"][()]]
        v = dict(zip(names, f["measures/v_norm"][()]))
    heads = [n for n in names if n.startswith("classifier.")]
    assert heads, names
    for n in names:
        want = float(np.linalg.norm(weights[n].astype(np.float64))) if n in heads else 0.0
        assert math.isclose(v[n], want, rel_tol=1e-5, abs_tol=0.0), (n, v[n], want)
