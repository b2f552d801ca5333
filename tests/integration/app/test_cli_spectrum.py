"""`hessgap spectrum` end to end on the embedded CIFAR-10 ResNet-20: the pinned layout of /spectrum, the
same eigenvalues at 1 and 2 ranks (float64), the residuals, the eigenvectors against the eigenvalues
(a Rayleigh quotient by `hessgap measures` would need the vectors as weights; here: unit norm and the
stored residuals), and the refusals (exit 2, no file).

Oracles: the one-rank run for the two-rank one; ‖y‖ = 1; SLQ weights summing to 1; Lanczos' Ritz values
bracketing the eigenvalues it reports.
"""
import h5py
import numpy as np
import pytest

from conftest import IMAGES, WEIGHTS, assert_failed, read_safetensors, run_hg, write_safetensors

PINNED = ["--arch", "cifar-resnet20", "--checkpoint", WEIGHTS, "--data", IMAGES, "--max-per-class", 1,
          "--batch-size", 2, "--sample-size", 4, "--sample-order", "natural", "--top-k", 2, "--lanczos-steps", 6,
          "--dtype", "float64", "--verbosity", 0]


def test_pinned_layout_and_rank_independence(hessgap_bin, tmp_path):
    outs = {}
    for np_ in (1, 2):
        out = tmp_path / f"s{np_}.h5"
        r = run_hg("spectrum", *PINNED, "--slq-probes", 2, "--save-eigenvectors", "--out", out, np_=np_, timeout=300)
        assert r.rc == 0, r
        assert "Hessian spectrum of the mean loss over 6 samples" in r.stdout  # the reference rule: whole batches until > 4, r
        outs[np_] = out
    with h5py.File(outs[1], "r") as a, h5py.File(outs[2], "r") as b:
        s = a["spectrum"]
        ev = s["eigenvalues"][()]
        assert ev.shape == (2,) and ev[0] >= ev[1] > 0, ev
        assert s["residuals"].shape == (2,) and np.all(s["residuals"][()] >= 0)
        assert s["slq/nodes"].shape == (2, 6) and s["slq/weights"].shape == (2, 6)
        np.testing.assert_allclose(s["slq/weights"][()].sum(axis=1), 1.0, rtol=1e-10)
        ritz = s["ritz_values"][()]
        assert ritz.max() == ev[0] and np.sort(ritz)[-2] == ev[1]
        assert s.attrs["which"] == "largest" and int(s.attrs["steps_run"]) == 6
        # The eigenvectors: one block per Hessian layer, unit norm over the blocks.
        blocks = [s["eigenvectors"][name][()] for name in s["layers"].asstr()[()]]
        norms = np.sqrt(sum((blk.reshape(2, -1) ** 2).sum(axis=1) for blk in blocks))
        np.testing.assert_allclose(norms, 1.0, rtol=1e-10)
        # Two ranks: the same run (HVPs all-reduced).
        np.testing.assert_allclose(b["spectrum/eigenvalues"][()], ev, rtol=1e-9)
        np.testing.assert_allclose(b["spectrum/alpha"][()], s["alpha"][()], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(b["spectrum/slq/nodes"][()], s["slq/nodes"][()], rtol=1e-8, atol=1e-8)
        assert int(a.attrs["world_size"]) == 1 and int(b.attrs["world_size"]) == 2
        nodes, weights = s["slq/nodes"][()], s["slq/weights"][()]
    # The reader and the broadened SLQ density: a probability density whose mean is the quadrature's
    # Σ_j w_j θ_j averaged over the probes; and the plot.
    import hessgap_results as hr
    res = hr.load(str(outs[1]))
    assert list(res.spectrum["eigenvalues"]) == list(ev) and "spectrum" in hr.summary_text(res)
    grid = np.linspace(np.nanmin(nodes) - 100, np.nanmax(nodes) + 100, 40001)
    density = hr.slq_density(nodes, weights, grid, sigma=5.0)
    assert np.trapz(density, grid) == pytest.approx(1.0, abs=1e-6)
    assert np.trapz(grid * density, grid) == pytest.approx(np.nansum(nodes * weights) / len(nodes), rel=1e-6, abs=1e-6)
    hr.plot(res, str(tmp_path / "spectrum.png"))
    assert (tmp_path / "spectrum.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_layer_and_the_smallest(hessgap_bin, tmp_path):
    out = tmp_path / "fc.h5"
    r = run_hg("spectrum", *PINNED, "--layer", "linear.weight", "--which", "smallest", "--out", out, timeout=300)
    assert r.rc == 0, r
    with h5py.File(out, "r") as f:
        s = f["spectrum"]
        assert list(s["layers"].asstr()[()]) == ["linear.weight"] and int(s["num_params"][()]) == 640
        ev = s["eigenvalues"][()]
        # The head's block of a softmax cross-entropy is PSD: its smallest eigenvalues are >= 0 (to rounding).
        assert ev[0] >= ev[1] >= -1e-9, ev


@pytest.mark.parametrize("flags,message", [
    (["--top-k", 700000, "--lanczos-steps", 700000], "exceeds the 268336 parameters"),
    (["--lanczos-steps", 0], "--lanczos-steps must be >= 1"),
    (["--top-k", 3, "--lanczos-steps", 2], "--top-k 3 needs at least as many --lanczos-steps"),
    (["--layer", "layer9.weight"], "--layer 'layer9.weight' is not a Hessian layer"),
    (["--which", "middle"], "--which must be largest or smallest"),
])
def test_bad_input_is_refused(hessgap_bin, tmp_path, flags, message):
    args = [a for a in PINNED]
    for flag, value in zip(flags[::2], flags[1::2]):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    r = run_hg("spectrum", *args, "--out", tmp_path / "x.h5")
    assert_failed(r, 2, message, out_dir=tmp_path)


def test_a_non_finite_hvp_stops_naming_the_step(hessgap_bin, tmp_path):
    tensors = read_safetensors(WEIGHTS)
    name = "layer2.0.conv1.weight"
    tensors[name] = tensors[name].copy()
    tensors[name].flat[0] = np.inf
    bad = tmp_path / "inf.safetensors"
    write_safetensors(bad, tensors)
    args = list(PINNED)
    args[args.index("--checkpoint") + 1] = bad
    r = run_hg("spectrum", *args, "--out", tmp_path / "x.h5")
    assert_failed(r, 2, f"tensor '{name}' holds 1 NaN or infinite value(s)")  # refused at loading
    r = run_hg("spectrum", *args, "--allow-nonfinite", "--out", tmp_path / "x.h5")
    assert_failed(r, 2, "is not finite (eigenvalues, step 1)")
    assert not (tmp_path / "x.h5").exists()
