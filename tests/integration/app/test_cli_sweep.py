"""`hessgap sweep` end to end on real Fashion-MNIST runs (the embedded CIFAR ResNet-20, tiny subsets): the
dry run, two groups working through one sweep, a rank killed with SIGKILL, the launcher sent SIGTERM and
the job sent SIGUSR1 midway, each followed by a rerun of the same command; failed and invalid runs; the
refusals that must come before any run starts.

Oracles: the uninterrupted sweep for every interrupted-and-resumed one (the same weights, bitwise, and the
same /train/final values); the run files for the index; the documented exit codes (0 done, 2 bad input,
3 interrupted, 4 runs failed) and messages.
"""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import WEIGHTS, run_hg

FMNIST = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not FMNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")

BASE = {"checkpoint": str(WEIGHTS), "data": str(FMNIST), "data-format": "idx", "pad": 2, "grey-to-rgb": True,
        "normalize": "cifar10", "train-subset": 240, "test-subset": 60, "epochs": 3, "batch-size": 24,
        "lr": 0.001, "noise-seed": 0, "reg-extractor": 1, "reg-predictor": 3, "measure-samples": 8, "seed": 0,
        "verbosity": 0}
GRID = {"label-noise": [0.2, 0.4], "reg-method": ["none", "constraint"]}


def write_spec(path, base=None, grid=None, **extra):
    spec = {"base": BASE if base is None else base, "grid": GRID if grid is None else grid, "ranks_per_run": 1}
    spec.update(extra)
    Path(path).write_text(json.dumps(spec))
    return path


def sweep_command(spec, out, np_=2, *flags):
    mpiexec = os.environ.get("MPIEXEC") or "mpirun"
    return [mpiexec, "--allow-run-as-root", "--oversubscribe", "-x", "OMP_NUM_THREADS=1", "-np", str(np_),
            os.environ["HESSGAP"], "sweep", str(spec), "--out-dir", str(out), *map(str, flags)]


def index(out):
    with h5py.File(Path(out) / "index.h5", "r") as f:
        runs = f["runs"]
        return {k: (runs[k].asstr()[()] if runs[k].dtype.kind in "OS" else runs[k][()]) for k in runs}


def finals(out):
    """run id -> (the best weights, /train/final scalars) of every run folder."""
    got = {}
    for run in sorted((Path(out) / "runs").iterdir()):
        with h5py.File(run / "best.h5", "r") as f:
            weights = {k: np.asarray(v) for k, v in f["tensors"].items()}
        with h5py.File(run / "run.h5", "r") as f:
            assert f.attrs["status"] == "complete"
            final = {k: float(v[()]) for k, v in f["train/final"].items() if v.shape == ()}
        got[run.name] = (weights, final)
    return got


def assert_same_results(out, reference):
    a, b = finals(out), finals(reference)
    assert sorted(a) == sorted(b)
    for run in a:
        for name in b[run][0]:
            assert np.array_equal(a[run][0][name], b[run][0][name]), (run, name)
        for key, value in b[run][1].items():
            if key == "seconds":
                continue
            assert a[run][1][key] == value or (np.isnan(value) and np.isnan(a[run][1][key])), (run, key)


def assert_clean(out):
    """No claim and no temporary file anywhere in the sweep folder."""
    left = [str(p) for p in Path(out).rglob("*") if p.name == "claim" or ".tmp-" in p.name or ".stale-" in p.name]
    assert left == [], left


def hessgap_ranks(out):
    """pids of the hessgap processes (not mpirun) working on this sweep folder."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"hessgap") and str(out).encode() in b" ".join(argv):
            pids.append(int(proc.name))
    return pids


def start_and_wait_for_a_checkpoint(spec, out):
    """Starts the 2-rank sweep and returns it once some run has written last.h5 (mid-run)."""
    proc = subprocess.Popen(sweep_command(spec, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.monotonic() + 120
    while not list(Path(out).glob("runs/*/last.h5")):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.05)
    return proc


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted sweep: 4 runs over 2 groups of 1 rank."""
    tmp = tmp_path_factory.mktemp("sweep-ref")
    spec = write_spec(tmp / "spec.json")
    out = tmp / "out"
    r = subprocess.run(sweep_command(spec, out), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 complete, 0 failed, 0 not done (4 trained by this job)" in r.stdout, r.stdout
    return spec, out


def test_dry_run_lists_every_run_and_touches_nothing(hessgap_bin, tmp_path):
    spec = write_spec(tmp_path / "spec.json")
    r = run_hg("sweep", spec, "--out-dir", tmp_path / "out", "--dry-run")
    assert r.rc == 0, r
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 5 and lines[-1] == "4 runs, 1 rank(s) per run", r.stdout
    ids = [line.split()[0] for line in lines[:4]]
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids) and len(set(ids)) == 4
    assert json.loads(lines[1].split(None, 2)[2]) == {"label-noise": 0.2, "reg-method": "constraint"}
    assert not (tmp_path / "out").exists()


def test_every_job_spec_parses(hessgap_bin, tmp_path):
    """Each sweep spec in jobs/ is a valid sweep of train flags (a dry run needs no data)."""
    specs = sorted((Path(os.environ["HG_SOURCE_DIR"]) / "jobs").glob("*.json"))
    assert len(specs) >= 5, specs
    for spec in specs:
        r = run_hg("sweep", spec, "--out-dir", tmp_path / spec.stem, "--dry-run")
        assert r.rc == 0, r
        last = r.stdout.strip().splitlines()[-1]
        assert last.endswith("rank(s) per run") and int(last.split()[0]) >= 6, r.stdout
        assert "invalid" not in r.stdout, r.stdout


def test_two_groups_complete_every_run_with_its_index(reference):
    spec, out = reference
    idx = index(out)
    assert list(idx["status"]) == ["complete"] * 4 and list(idx["attempts"]) == [1] * 4
    # One row per run in the spec's order (the grid's keys sorted, the last varying fastest), as --dry-run lists.
    assert [json.loads(o) for o in idx["overrides"]] == [
        {"label-noise": n, "reg-method": m} for n in (0.2, 0.4) for m in ("none", "constraint")]
    assert sorted(set(idx["host"])) and list(idx["ranks"]) == [1] * 4
    for k, run_id in enumerate(idx["run_id"]):
        with h5py.File(out / "runs" / run_id / "run.h5", "r") as f:
            assert f.attrs["run_id"] == run_id
            assert idx["test_accuracy"][k] == f["train/final/test_accuracy"][()]
            assert idx["gap_loss_noisy"][k] == f["train/final/gap_loss_noisy"][()]
            assert idx["bound"][k] == f["measures/bound"][()]
            config = json.loads(f.attrs["config"])
        overrides = json.loads(idx["overrides"][k])
        assert config["data"]["dataset"]["noise_rate"] == overrides["label-noise"]
        assert config["train"]["reg_method"] == overrides["reg-method"]
        assert json.loads(idx["config"][k])["train"] == config["train"]
    assert_clean(out)
    # Rerunning a finished sweep trains nothing and changes nothing.
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.h5")}
    r = subprocess.run(sweep_command(spec, out), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "(0 trained by this job)" in r.stdout, r.stdout + r.stderr
    assert before == {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.h5")}


@pytest.mark.parametrize("how", ["kill-rank", "term-launcher", "usr1"])
def test_interrupted_sweep_resumes_to_the_same_results(reference, tmp_path, how):
    """kill -9 of one rank, SIGTERM to mpirun, SIGUSR1 to mpirun (forwarded to the ranks: a clean stop,
    exit 3). The rerun completes every run exactly once, with the uninterrupted sweep's weights."""
    spec, ref_out = reference
    out = tmp_path / "out"
    proc = start_and_wait_for_a_checkpoint(spec, out)
    if how == "kill-rank":
        pids = hessgap_ranks(out)
        assert len(pids) == 2, pids
        os.kill(pids[1], signal.SIGKILL)
    elif how == "term-launcher":
        proc.send_signal(signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGUSR1)
    output, _ = proc.communicate(timeout=120)
    if how == "usr1":
        assert proc.returncode == 3, output
        assert "interrupted: run the same command again to resume" in output, output
        assert_clean(out)  # a clean stop leaves no claim and no temporary file
        assert set(index(out)["status"]) <= {"complete", "pending"}
    else:
        assert proc.returncode != 0, output
    done_before = sum(json.loads(p.read_text())["status"] == "complete" for p in out.glob("runs/*/state.json"))
    r = subprocess.run(sweep_command(spec, out), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"4 complete, 0 failed, 0 not done ({4 - done_before} trained by this job)" in r.stdout, r.stdout
    assert_same_results(out, ref_out)
    assert_clean(out)
    assert list(index(out)["status"]) == ["complete"] * 4


def test_two_jobs_share_one_sweep_folder(reference, tmp_path):
    """Two independent jobs (one rank each, as two sbatch jobs) started at once on the same folder: the
    exclusive claims hand every run to exactly one of them, and the results are the uninterrupted sweep's."""
    spec, ref_out = reference
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    jobs = [subprocess.Popen(sweep_command(spec, out, 1), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env) for _ in range(2)]
    outputs = [job.communicate(timeout=600)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs
    trained = []
    for text in outputs:
        line = [l for l in text.splitlines() if l.startswith("sweep ")][-1]
        trained.append(int(line.split("(")[1].split()[0]))
    assert sum(trained) == 4, (trained, outputs)  # every run trained once, by one of the two jobs
    idx = index(out)
    assert list(idx["status"]) == ["complete"] * 4 and list(idx["attempts"]) == [1] * 4
    assert_same_results(out, ref_out)
    assert_clean(out)


def test_failed_and_invalid_runs_are_recorded_and_the_sweep_goes_on(hessgap_bin, tmp_path):
    """One grid point names a checkpoint that does not exist (fails on every attempt: retried up to
    --max-attempts), one a radius of 0 (invalid: failed at once, never started); the good one completes.
    Two ranks per run."""
    missing = tmp_path / "missing.safetensors"
    spec = write_spec(tmp_path / "spec.json", grid=None, runs=[{"checkpoint": str(missing)},
                                                                 {"reg-method": "constraint", "reg-extractor": 0}],
                      ranks_per_run=2)
    spec_json = json.loads(spec.read_text())
    spec_json["grid"] = {"epochs": [1]}
    spec.write_text(json.dumps(spec_json))
    out = tmp_path / "out"
    r = subprocess.run(sweep_command(spec, out, 2, "--max-attempts", 2), capture_output=True, text=True, timeout=300)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "1 complete, 2 failed, 0 not done" in r.stdout, r.stdout
    idx = index(out)
    by_overrides = {o: k for k, o in enumerate(idx["overrides"])}
    bad = by_overrides[json.dumps({"checkpoint": str(missing)}, separators=(",", ":"))]
    assert idx["status"][bad] == "failed" and idx["attempts"][bad] == 2
    assert str(missing) in idx["message"][bad]
    invalid = by_overrides[json.dumps({"reg-extractor": 0, "reg-method": "constraint"}, separators=(",", ":"))]
    assert idx["status"][invalid] == "failed" and idx["attempts"][invalid] == 0
    assert "--reg-extractor must be > 0" in idx["message"][invalid]
    good = by_overrides['{"epochs":1}']
    assert idx["status"][good] == "complete" and idx["ranks"][good] == 2
    assert not (out / "runs" / idx["run_id"][invalid] / "run.h5").exists()
    # A rerun does not try the failed runs again.
    r = subprocess.run(sweep_command(spec, out, 2), capture_output=True, text=True, timeout=120)
    assert r.returncode == 4 and "(0 trained by this job)" in r.stdout, r.stdout + r.stderr
    assert_clean(out)


def test_bad_sweeps_are_refused_before_any_run(hessgap_bin, tmp_path):
    out = tmp_path / "out"
    cases = [
        (write_spec(tmp_path / "key.json", grid={"learning-speed": [1, 2]}), 1, [],
         "'learning-speed' (in grid) is not a configuration key"),
        (write_spec(tmp_path / "empty.json", grid={}), 1, [], "the grid is empty"),
        (write_spec(tmp_path / "outdir.json", grid={"out-dir": ["a"]}), 1, [], "is set by the sweep itself"),
        (write_spec(tmp_path / "rpr.json", ranks_per_run=2), 1, [], "ranks_per_run 2 must divide the number of ranks (1)"),
        (write_spec(tmp_path / "dup.json", grid={"verbosity": [0, 1]}), 1, [], "have the same configuration"),
    ]
    for spec, np_, flags, message in cases:
        r = run_hg("sweep", spec, "--out-dir", out, *flags, np_=np_)
        assert r.rc == 2 and message in r.output, (message, r)
        assert not out.exists(), message
    # A folder holding another sweep: refused, its files untouched.
    first = write_spec(tmp_path / "first.json", grid={"seed": [0]}, base=dict(BASE, epochs=1))
    r = run_hg("sweep", first, "--out-dir", out, np_=1, timeout=300)
    assert r.rc == 0, r
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    other = write_spec(tmp_path / "other.json", grid={"seed": [0]}, base=dict(BASE, epochs=2))
    r = run_hg("sweep", other, "--out-dir", out, np_=1)
    assert r.rc == 2 and "holds a different sweep" in r.output, r
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*")}
