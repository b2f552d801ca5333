"""analysis/hessgap_results.py on the spectral layouts of issue #11, read from real files made by the binary.

Files (one rank, float64, the embedded ResNet-20 on 4 embedded CIFAR-10 images in batches of 2; ~45 s in all):
  joint     spectrum, top 2 by Lanczos, 3 SLQ probes, a 5-point landscape along the top eigenvector
  perlayer  spectrum --per-layer, top 2 of every layer's block, 2 SLQ probes per layer
  power     spectrum --method power (no Ritz values, no SLQ)
  psd       measures --mode psd of a perturbed copy of the weights against the weights (/measures_block beside)
  hutchpp   traces --estimator hutch++

Oracles: the files read with h5py directly; the SLQ quadrature itself for the density CSV (a probability
density whose mean is (1/P) Σ_pj w_pj θ_pj); an exact quadratic for the landscape's loss(0); the PNG signature
and a full decode by matplotlib; exit code 2 and a message for a file without SLQ.
"""
import csv
import os
import subprocess

import h5py
import numpy as np
import pytest

from conftest import ANALYSIS, PYTHON, WEIGHTS, SOURCE_DIR, hessgap_binary

import hessgap_results as hr

IMAGES = SOURCE_DIR / "assets" / "cifar10-test-100"
COMMON = ["--arch", "cifar-resnet20", "--data", str(IMAGES), "--max-per-class", "1", "--batch-size", "2",
          "--sample-size", "4", "--sample-order", "natural", "--dtype", "float64", "--verbosity", "0"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
READER = str(ANALYSIS / "hessgap_results.py")

RUNS = {
    "joint": ["spectrum", "--checkpoint", str(WEIGHTS), "--top-k", "2", "--lanczos-steps", "6", "--slq-probes", "3",
              "--landscape-points", "5", "--landscape-radius", "1e-3"],
    "perlayer": ["spectrum", "--checkpoint", str(WEIGHTS), "--top-k", "2", "--lanczos-steps", "2", "--per-layer",
                 "--slq-probes", "2"],
    "power": ["spectrum", "--checkpoint", str(WEIGHTS), "--method", "power", "--max-iter", "15"],
    "psd": ["measures", "--checkpoint", "PERTURBED", "--init-checkpoint", str(WEIGHTS), "--train-size", "1000",
            "--mode", "psd", "--psd-steps", "4", "--sample-rule", "exact"],
    "hutchpp": ["traces", "--checkpoint", str(WEIGHTS), "--estimator", "hutch++", "--max-probes", "6",
                "--sample-rule", "exact"],
}


def perturbed_weights(path):
    """The embedded weights with small Gaussian noise on every float parameter (v = W - W0 != 0)."""
    from tools import safetensors_np
    rng = np.random.default_rng(1234)
    tensors = safetensors_np.read(WEIGHTS)[0]
    for name, a in tensors.items():
        if a.dtype.kind == "f" and not name.endswith(("running_mean", "running_var")):
            tensors[name] = (a + rng.normal(0.0, 0.01 * float(np.std(a)) + 1e-4, a.shape)).astype(a.dtype)
    safetensors_np.write(path, tensors)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    assert WEIGHTS.is_file() and IMAGES.is_dir(), f"embedded assets missing: {WEIGHTS}, {IMAGES}"
    d = tmp_path_factory.mktemp("spectral")
    pert = str(perturbed_weights(d / "perturbed.safetensors"))
    out = {}
    for name, args in RUNS.items():
        out[name] = d / f"{name}.h5"
        cmd = [hessgap_binary()] + [pert if a == "PERTURBED" else a for a in args] + COMMON + ["--out", str(out[name])]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert p.returncode == 0, f"{' '.join(cmd)}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return out


def reader_cli(*args):
    p = subprocess.run([PYTHON, READER, *map(str, args)], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["eigenvalue", "density"], rows[0]
    data = np.array([[float(a), float(b)] for a, b in rows[1:]])
    return data[:, 0], data[:, 1]


def assert_png(path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.image
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    img = matplotlib.image.imread(str(path))  # a full decode
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200


# ---- the density on a grid ---------------------------------------------------------------------------------

def test_density_csv_is_a_density_with_the_quadrature_mean(files, tmp_path):
    with h5py.File(files["joint"], "r") as f:
        nodes, weights = f["spectrum/slq/nodes"][()], f["spectrum/slq/weights"][()]
    quad_mean = np.nansum(nodes * weights) / nodes.shape[0]
    res = hr.load(str(files["joint"]))
    out = tmp_path / "density.csv"
    hr.write_density_csv(res, str(out))
    x, d = read_csv(out)
    assert len(x) == 800 and np.all(np.diff(x) > 0) and np.all(d >= 0)
    assert x[0] < np.nanmin(nodes) and x[-1] > np.nanmax(nodes)
    assert np.trapz(d, x) == pytest.approx(1.0, abs=1e-6)
    assert np.trapz(x * d, x) == pytest.approx(quad_mean, rel=1e-6, abs=1e-9 * np.nanmax(np.abs(nodes)))
    assert hr.slq_mean(nodes, weights) == pytest.approx(quad_mean, rel=1e-12)
    # Narrower broadening, more points: still a density with the same mean, and σ is what was asked.
    hr.write_density_csv(res, str(out), points=3001, sigma_fraction=0.002)
    x2, d2 = read_csv(out)
    assert len(x2) == 3001 and np.trapz(d2, x2) == pytest.approx(1.0, abs=1e-6)
    assert np.trapz(x2 * d2, x2) == pytest.approx(quad_mean, rel=1e-6, abs=1e-9 * np.nanmax(np.abs(nodes)))
    _, _, sigma = hr.slq_density_grid(nodes, weights, 3001, 0.002)
    span = np.nanmax(nodes) - np.nanmin(nodes)
    assert sigma == pytest.approx(0.002 * span, rel=1e-12)
    # The command line writes the same file.
    cli = tmp_path / "cli.csv"
    rc, text = reader_cli(files["joint"], "--density-csv", cli)
    assert rc == 0 and f"spectral density written to {cli}" in text, text
    hr.write_density_csv(res, str(out))  # the defaults again
    assert cli.read_text() == out.read_text()


def test_density_csv_of_one_layer_and_the_refusals(files, tmp_path):
    with h5py.File(files["perlayer"], "r") as f:
        names = list(f["spectrum/layers"].asstr()[()])
        nodes, weights = f["spectrum/per_layer/slq_nodes"][3], f["spectrum/per_layer/slq_weights"][3]
    res = hr.load(str(files["perlayer"]))
    out = tmp_path / "layer.csv"
    hr.write_density_csv(res, str(out), layer=names[3])
    x, d = read_csv(out)
    assert np.trapz(d, x) == pytest.approx(1.0, abs=1e-6)
    assert np.trapz(x * d, x) == pytest.approx(np.nansum(nodes * weights) / nodes.shape[0], rel=1e-6)
    rc, text = reader_cli(files["perlayer"], "--density-csv", tmp_path / "by_index.csv", "--density-layer", 3)
    assert rc == 0, text
    assert (tmp_path / "by_index.csv").read_text() == out.read_text()
    # A per-layer file without a layer, an unknown layer, and files without SLQ: exit 2 with the reason.
    for args, message in [((files["perlayer"],), "name the layer"),
                          ((files["perlayer"], "--density-layer", "conv9.weight"), "no layer 'conv9.weight'"),
                          ((files["power"],), "no /spectrum/slq"),
                          ((files["hutchpp"],), "no /spectrum section")]:
        bad = tmp_path / "bad.csv"
        rc, text = reader_cli(args[0], "--density-csv", bad, *args[1:])
        assert rc == 2 and message in text, (args, text)
        assert not bad.exists()


# ---- load(): nested groups, /measures_block -----------------------------------------------------------------

def test_load_reads_nested_groups_and_their_attributes(files):
    res = hr.load(str(files["perlayer"]))
    with h5py.File(files["perlayer"], "r") as f:
        for key, ds in f["spectrum/per_layer"].items():
            np.testing.assert_array_equal(res.spectrum["per_layer"][key], ds[()])
        assert res.meta["spectrum"]["per_layer"]["eigenvalues"]["units"] == "loss/weight^2"
        assert "eigenvalues" not in res.spectrum and res.spectrum["layers"] == list(f["spectrum/layers"].asstr()[()])
    res = hr.load(str(files["joint"]))
    with h5py.File(files["joint"], "r") as f:
        np.testing.assert_array_equal(res.spectrum["landscape"]["loss"], f["spectrum/landscape/loss"][()])
        assert res.meta["spectrum"]["landscape"]["attrs"]["eigenvalue"] == f["spectrum/landscape"].attrs["eigenvalue"]
        np.testing.assert_array_equal(res.spectrum["slq"]["nodes"], f["spectrum/slq/nodes"][()])


def test_measures_block_is_read_and_shown_beside_the_psd_measure(files, tmp_path):
    res = hr.load(str(files["psd"]))
    assert res.sections() == ["measures", "measures_block"]
    with h5py.File(files["psd"], "r") as f:
        np.testing.assert_array_equal(res.measures_block["layer_max"], f["measures_block/layer_max"][()])
        np.testing.assert_array_equal(res.measures["psd_steps"], f["measures/psd_steps"][()])
        assert res.meta["measures_block"]["attrs"]["mode"] == "block"
        psd_bound, block_bound = float(f["measures/bound"][()]), float(f["measures_block/bound"][()])
        conv = f["measures/psd_converged"][()]
    text = hr.summary_text(res)
    assert "[measures] mode psd" in text and "H_i+ (psd)" in text and "H_i (block)" in text, text
    assert f"bound {hr._fmt(psd_bound)}" in text and f"block (/measures_block):" in text
    assert f"bound {hr._fmt(block_bound)}" in text.split("block (/measures_block):")[1]
    assert f"psd quadrature: {int(conv.sum())} of {conv.size} (batch, layer) pairs converged" in text
    for name in res.layers:
        assert name in text
    png = tmp_path / "psd.png"
    hr.plot(res, str(png))
    assert_png(png)


# ---- summaries ------------------------------------------------------------------------------------------------

def test_per_layer_summary_lists_every_layer(files):
    with h5py.File(files["perlayer"], "r") as f:
        names = list(f["spectrum/layers"].asstr()[()])
        ev = f["spectrum/per_layer/eigenvalues"][()]
        params = f["spectrum/per_layer/num_params"][()]
    text = hr.summary_text(hr.load(str(files["perlayer"])))
    assert len(names) == 20 and f"2 of each of {len(names)} layers' diagonal blocks" in text, text
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("  ") and
            line.split()[0] in names}
    assert list(rows) == names
    for i, name in enumerate(names):
        assert int(rows[name][1]) == params[i]
        assert float(rows[name][2]) == pytest.approx(ev[i, 0], rel=1e-7)
    top = int(np.argmax(ev[:, 0]))
    assert f"largest top eigenvalue: {names[top]}" in text
    assert "SLQ per layer: 2 probes of 2 nodes" in text


def test_power_landscape_and_estimator_summaries(files):
    text = hr.summary_text(hr.load(str(files["power"])))
    with h5py.File(files["power"], "r") as f:
        its = int(f["spectrum/iterations"][0])
    assert f"power iteration ({its} iterations, max_iter 15)" in text and "Lanczos" not in text, text
    text = hr.summary_text(hr.load(str(files["joint"])))
    with h5py.File(files["joint"], "r") as f:
        t, loss = f["spectrum/landscape/t"][()], f["spectrum/landscape/loss"][()]
    assert t[2] == 0.0
    assert f"5 points, t in [-0.001, 0.001]; loss(0) {hr._fmt(loss[2])}" in text, text
    text = hr.summary_text(hr.load(str(files["hutchpp"])))
    assert "[traces] estimator hutch++" in text and "fixed budget of 6 block HVPs per layer" in text, text


def test_landscape_loss0_cancels_the_gradient_term():
    lam, g, l0 = 250.0, -3.0, 0.7
    for n in (4, 6, 5):
        t = np.linspace(-0.1, 0.1, n)
        loss = l0 + g * t + 0.5 * lam * t ** 2
        assert hr._landscape_loss0(t, loss, lam) == pytest.approx(l0, rel=1e-12)


# ---- plots ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["joint", "perlayer", "power", "hutchpp"])
def test_plots_are_png_files(files, tmp_path, name):
    png = tmp_path / f"{name}.png"
    rc, text = reader_cli(files[name], "--plot", png)
    assert rc == 0 and f"plot written to {png}" in text, text
    assert_png(png)
