"""`hessgap spectrum` end to end on the embedded CIFAR-10 ResNet-20: the pinned layout of /spectrum, the
same eigenvalues at 1 and 2 ranks (float64), the residuals, the eigenvectors against the eigenvalues
(a Rayleigh quotient by `hessgap measures` would need the vectors as weights; here: unit norm and the
stored residuals), and the refusals (exit 2, no file).

Oracles: the one-rank run for the two-rank one; ‖y‖ = 1; SLQ weights summing to 1; Lanczos' Ritz values
bracketing the eigenvalues it reports.
"""
import json

import h5py
import numpy as np
import pytest

from conftest import IMAGES, WEIGHTS, assert_failed, perturbed, read_safetensors, run_hg, write_safetensors

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


# ---- --per-layer, --method power, the landscape -------------------------------------------------------------

def test_per_layer_blocks_at_one_and_two_ranks(hessgap_bin, tmp_path):
    outs = {}
    args = [a for a in PINNED]
    args[args.index("--lanczos-steps") + 1] = 3
    for np_ in (1, 2):
        outs[np_] = tmp_path / f"p{np_}.h5"
        r = run_hg("spectrum", *args, "--per-layer", "--slq-probes", 1, "--out", outs[np_], np_=np_, timeout=400)
        assert r.rc == 0, r
    with h5py.File(outs[1], "r") as a, h5py.File(outs[2], "r") as b:
        p = a["spectrum/per_layer"]
        names = list(a["spectrum/layers"].asstr()[()])
        assert len(names) == 20 and "eigenvalues" not in a["spectrum"]  # the joint datasets are not written
        ev = p["eigenvalues"][()]
        assert ev.shape == (20, 2) and np.all(ev[:, 0] >= ev[:, 1])
        assert p["residuals"].shape == (20, 2) and p["slq_nodes"].shape == (20, 1, 3)
        np.testing.assert_allclose(p["slq_weights"][()].sum(axis=2), 1.0, rtol=1e-10)
        assert list(p["num_params"][()]) [0] == 16 * 3 * 9 and int(p["num_params"][()][-1]) == 640
        np.testing.assert_allclose(b["spectrum/per_layer/eigenvalues"][()], ev, rtol=1e-9, atol=1e-12)
    # One layer's row is that layer's own --layer run (the same keyed start: its block of the joint one).
    out = tmp_path / "one.h5"
    r = run_hg("spectrum", *args, "--layer", names[5], "--out", out)
    assert r.rc == 0, r
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["spectrum/eigenvalues"][()], ev[5], rtol=1e-12)


def test_power_iteration_agrees_with_lanczos_within_the_residuals(hessgap_bin, tmp_path):
    lz, pw = tmp_path / "l.h5", tmp_path / "p.h5"
    args = [a for a in PINNED]
    args[args.index("--top-k") + 1] = 1
    args[args.index("--lanczos-steps") + 1] = 12
    assert run_hg("spectrum", *args, "--out", lz, timeout=300).rc == 0
    r = run_hg("spectrum", *args, "--method", "power", "--max-iter", 40, "--tol", 1e-9, "--out", pw, timeout=300)
    assert r.rc == 0, r
    assert "power iterations" in r.stdout
    with h5py.File(lz, "r") as a, h5py.File(pw, "r") as b:
        assert b["spectrum"].attrs["method"] == "power" and int(b["spectrum/iterations"][0]) <= 40
        assert int(b["spectrum/hvps"][()]) == int(b["spectrum/iterations"][0])
        lam_l, res_l = a["spectrum/eigenvalues"][0], a["spectrum/residuals"][0]
        lam_p, res_p = b["spectrum/eigenvalues"][0], b["spectrum/residuals"][0]
        # Each value lies within its residual of a true eigenvalue: the two bracket the same top one.
        assert abs(lam_p - lam_l) <= res_p + res_l + 1e-9 * abs(lam_l), (lam_p, res_p, lam_l, res_l)
    bad = tmp_path / "bad"
    bad.mkdir()
    r = run_hg("spectrum", *args, "--method", "power", "--which", "smallest", "--out", bad / "x.h5")
    assert_failed(r, 2, "--which smallest needs --method lanczos", out_dir=bad)


def test_landscape_along_the_top_eigenvector(hessgap_bin, tmp_path):
    out, ev = tmp_path / "land.h5", tmp_path / "eval.h5"
    args = [a for a in PINNED]
    args[args.index("--top-k") + 1] = 1
    args[args.index("--lanczos-steps") + 1] = 12
    r = run_hg("spectrum", *args, "--landscape-points", 5, "--landscape-radius", 2e-6, "--out", out, np_=2, timeout=300)
    assert r.rc == 0, r
    k = PINNED.index("--top-k")
    common = PINNED[:k] + PINNED[k + 4:]  # without --top-k K --lanczos-steps M
    assert run_hg("eval", *common, "--sample-rule", "reference", "--out", ev).rc == 0  # eval defaults to exact
    with h5py.File(out, "r") as f, h5py.File(ev, "r") as e:
        t, loss = f["spectrum/landscape/t"][()], f["spectrum/landscape/loss"][()]
        lam = float(f["spectrum/eigenvalues"][0])
        assert f["spectrum/landscape"].attrs["eigenvalue"] == lam
        np.testing.assert_allclose(t, [-2e-6, -1e-6, 0.0, 1e-6, 2e-6], rtol=0, atol=1e-20)
        # At t = 0 the loss is eval's mean cross-entropy on the same samples.
        assert loss[2] == pytest.approx(float(e["eval/loss"][()]), rel=1e-12)
        # The central second difference is the curvature along y, yᵀHy, which for a Ritz vector is its Ritz
        # value exactly, to O(h²) terms. The autograd Hessian of a ReLU network ignores the kinks: a step
        # that flips an activation (already at 2e-4 here) departs from it, hence the tiny h.
        second = (loss[1] - 2 * loss[2] + loss[3]) / 1e-6 ** 2
        assert second == pytest.approx(lam, rel=1e-4), (second, lam)
    import hessgap_results as hr
    res = hr.load(str(out))
    hr.plot(res, str(tmp_path / "land.png"))
    assert (tmp_path / "land.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- traces --estimator, measures --mode psd (the same issue) ----------------------------------------------

TRACE_ARGS = ["--arch", "cifar-resnet20", "--checkpoint", WEIGHTS, "--data", IMAGES, "--max-per-class", 1,
              "--batch-size", 2, "--sample-size", 4, "--sample-rule", "exact", "--sample-order", "natural",
              "--dtype", "float64", "--verbosity", 0]


@pytest.mark.parametrize("estimator", ["hutch++", "xtrace"])
def test_sketching_trace_estimators(hessgap_bin, tmp_path, estimator):
    outs = {}
    for np_ in (1, 2):
        outs[np_] = tmp_path / f"t{np_}.h5"
        r = run_hg("traces", *TRACE_ARGS, "--estimator", estimator, "--max-probes", 6, "--out", outs[np_], np_=np_,
                   timeout=300)
        assert r.rc == 0, r
    with h5py.File(outs[1], "r") as a, h5py.File(outs[2], "r") as b:
        t = a["traces"]
        assert t.attrs["estimator"] == estimator and t.attrs["probe_scope"] == "layer"
        assert t["batch_mean"].shape == (2, 20) and np.all(t["batch_probes"][()] <= 6)
        assert np.all(np.isfinite(t["batch_mean"][()])) and np.all(t["batch_std_error"][()] >= 0)
        assert int(t["hvps"][()]) == int(t["batch_probes"][()].sum())
        np.testing.assert_allclose(b["traces/batch_mean"][()], t["batch_mean"][()], rtol=1e-10, atol=1e-12)
        cfg = json.loads(a.attrs["config"])
        assert cfg["measure"]["estimator"] == estimator
    bad = tmp_path / "bad"
    bad.mkdir()
    r = run_hg("traces", *TRACE_ARGS, "--estimator", estimator, "--probe-scope", "joint", "--out", bad / "x.h5")
    assert_failed(r, 2, "needs --probe-scope layer", out_dir=bad)
    r = run_hg("traces", *TRACE_ARGS, "--estimator", estimator, "--probe-ranks", 2, "--out", bad / "x.h5", np_=2)
    assert_failed(r, 2, "use --probe-ranks 1", out_dir=bad)
    r = run_hg("traces", *TRACE_ARGS, "--estimator", estimator, "--max-probes", 2, "--out", bad / "x.h5")
    assert_failed(r, 2, "needs --max-probes >= ", out_dir=bad)


def test_psd_measure_beside_the_clipped_one(hessgap_bin, tmp_path_factory, tmp_path):
    finetuned = perturbed(tmp_path_factory, WEIGHTS)
    args = [a for a in TRACE_ARGS]
    args[args.index("--checkpoint") + 1] = finetuned
    measure = ["--init-checkpoint", WEIGHTS, "--train-size", 1000]
    outs = {}
    for np_ in (1, 2):
        outs[np_] = tmp_path / f"psd{np_}.h5"
        r = run_hg("measures", *args, *measure, "--mode", "psd", "--psd-steps", 4, "--psd-tol", 0, "--out", outs[np_],
                   np_=np_, timeout=300)
        assert r.rc == 0, r
        assert "PSD part by Lanczos quadrature" in r.stdout
    block = tmp_path / "block.h5"
    assert run_hg("measures", *args, *measure, "--mode", "block", "--out", block, timeout=300).rc == 0
    with h5py.File(outs[1], "r") as a, h5py.File(outs[2], "r") as b, h5py.File(block, "r") as c:
        m, mb = a["measures"], a["measures_block"]
        assert m.attrs["mode"] == "psd" and mb.attrs["mode"] == "block"
        psd, blk = m["batch_quad"][()], mb["batch_quad"][()]
        # The first Lanczos step gives the block form: the same as a --mode block run.
        np.testing.assert_allclose(blk, c["measures/batch_quad"][()], rtol=1e-9, atol=1e-12)
        # e1' max(T, 0) e1 >= e1' T e1: the PSD form bounds the block form from above, and is >= 0.
        assert np.all(psd >= blk - 1e-12 * np.abs(blk)) and np.all(psd >= 0)
        assert np.all(m["psd_steps"][()] <= 4) and m["psd_steps"].shape == (2, 20)
        np.testing.assert_allclose(b["measures/batch_quad"][()], psd, rtol=1e-9, atol=1e-12)
        sum_sqrt = np.sum(np.sqrt(m["layer_max"][()]))
        assert float(m["sum_sqrt"][()]) == pytest.approx(sum_sqrt, rel=1e-12)
        assert float(m["sum_sqrt"][()]) >= float(mb["sum_sqrt"][()])
