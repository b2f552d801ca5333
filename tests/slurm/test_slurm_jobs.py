"""The sbatch scripts in slurm/ on a real Slurm: a one-node cluster on this machine (slurm_cluster.sh:
munged, slurmctld and slurmd from Debian's slurm-wlm and munge, 2 CPUs), real jobs, real hessgap.

* train: `sbatch slurm/train.sbatch CONFIG` fine-tunes the embedded ResNet-20 on a Fashion-MNIST subset
  at 2 ranks, under mpirun and under the default launcher (srun --mpi=pmix); checked: the job's state, the log named by the job id, run.h5 (/train/final/test_accuracy
  in [0, 1], world size 2, the command line overriding the config), the job record (git SHA, job id,
  nodes, command, config path).
* signals: a stand-in for hessgap (interruptible_stub.sh) under sweep.sbatch gets USR1 midway, the job
  requeues itself and resumes; under train.sbatch a plain scancel records "interrupted" without requeue.
* sweep: `sbatch slurm/sweep.sbatch SPEC` on a 4-run grid; midway `scancel --batch --signal=USR1` (what
  `#SBATCH --signal=B:USR1@T` does before a time limit) makes hessgap checkpoint and exit "interrupted",
  the script requeues the job, the second attempt resumes; checked: 4 complete runs in index.h5 and in
  DIR/runs/, both attempts in the log and in the job record.

The jobs are submitted from the checkout (SLURM_SUBMIT_DIR, from which the scripts find it; HG_ROOT is
unset) with --chdir to a scratch folder (the logs land there), the launcher mpirun (HG_LAUNCHER) unless
a test says otherwise.
Skipped, with a message, only when slurm-wlm or munge is missing and cannot be installed.

Environment (set by CTest, see CMakeLists.txt here): HESSGAP (the binary), HG_SOURCE_DIR (the checkout),
MPIEXEC (mpirun).
"""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

SOURCE_DIR = Path(os.environ.get("HG_SOURCE_DIR", Path(__file__).resolve().parents[2])).resolve()
HESSGAP = os.environ.get("HESSGAP") or str(SOURCE_DIR / "build" / "bin" / "hessgap")
MPIEXEC = os.environ.get("MPIEXEC") or shutil.which("mpirun") or "mpirun"
CLUSTER = SOURCE_DIR / "tests" / "slurm" / "slurm_cluster.sh"
WEIGHTS = SOURCE_DIR / "assets" / "models" / "cifar10-resnet20" / "resnet20.safetensors"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SLURM_COMMANDS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo", "slurmctld", "slurmd", "munged")
SKIP_MESSAGE = "slurm-wlm/munge unavailable"  # CMakeLists.txt turns this skip into a CTest skip

# The tiny Fashion-MNIST fine-tuning of the CLI tests (tests/integration/app/test_cli_train.py), sized so
# that a run takes a few seconds on one core and an epoch ends every second or two.
TINY_TRAIN = {
    "arch": "cifar-resnet20", "checkpoint": str(WEIGHTS), "data": str(FASHION_MNIST), "data-format": "idx",
    "pad": 2, "grey-to-rgb": True, "normalize": "cifar10", "train-subset": 200, "test-subset": 100,
    "batch-size": 20, "lr": 1e-3, "label-noise": 0.4, "noise-seed": 0, "seed": 0, "measure-samples": 8,
    "verbosity": 1,
}
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                "DEADLINE", "PREEMPTED"}


def _slurm_installed():
    return all(shutil.which(c) for c in SLURM_COMMANDS)


def _install_slurm():
    """Installs slurm-wlm and munge when missing (root with apt-get); returns why not, or None."""
    if _slurm_installed():
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "not installed, and installing needs root and apt-get (scripts/setup.sh test installs them)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "slurm-wlm", "munge"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:  # a stale package list: refresh it once
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env)
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0 or not _slurm_installed():
        missing = [c for c in SLURM_COMMANDS if not shutil.which(c)]
        return f"apt-get install slurm-wlm munge failed (missing: {' '.join(missing)}): " + (r.stderr or r.stdout)[-500:]
    return None


class Cluster:
    """The running test cluster: its work folder and the environment its clients and jobs need."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "HG_"))}
        self.env.update(SLURM_CONF=str(self.workdir / "etc" / "slurm.conf"), OMP_NUM_THREADS="1")

    def run(self, *args, check=True, timeout=60):
        r = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, args))} exited {r.returncode}:\n{r.stdout}\n{r.stderr}\n"
                                 + self.daemon_logs())
        return r

    def daemon_logs(self, lines=30):
        out = []
        for log in sorted((self.workdir / "log").glob("*.log")):
            out.append(f"----- {log} (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    def sbatch(self, script, *args, job_env=None, chdir, sbatch_flags=()):
        """Submits SOURCE_DIR/slurm/SCRIPT from the checkout (so SLURM_SUBMIT_DIR is the checkout) to run
        in `chdir`; returns the job id."""
        env = dict(self.env, **(job_env or {}))
        r = subprocess.run(["sbatch", "--parsable", f"--chdir={chdir}", *sbatch_flags, f"slurm/{script}",
                            *[str(a) for a in args]], cwd=SOURCE_DIR, env=env, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, f"sbatch failed: {r.stdout}\n{r.stderr}"
        return r.stdout.strip().split(";")[0]

    def job(self, job_id):
        """scontrol's view of a job as a dict (kept for MinJobAge = 600 s after it ends)."""
        r = self.run("scontrol", "show", "job", "-o", job_id, check=False)
        fields = {}
        for item in r.stdout.split():
            key, _, value = item.partition("=")
            fields[key] = value
        return fields

    def wait(self, job_id, timeout, log=None):
        """Waits until the job has ended (not merely paused between requeues); returns scontrol's fields."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            info = self.job(job_id)
            if info.get("JobState") in FINAL_STATES:
                return info
            time.sleep(1)
        self.run("scancel", job_id, check=False)
        raise AssertionError(f"job {job_id} still {self.job(job_id).get('JobState')} after {timeout} s\n"
                             + read_log(log) + self.daemon_logs())


def read_log(path):
    if path is None:
        return ""
    path = Path(path)
    return f"----- {path}\n{path.read_text(errors='replace')[-6000:]}\n" if path.is_file() else f"(no {path})\n"


@pytest.fixture(scope="module")
def cluster():
    why = _install_slurm()
    if why:
        pytest.skip(f"{SKIP_MESSAGE}: {why}")
    # A short folder under /tmp: munged's socket path must stay under 108 characters and every folder
    # above it must be searchable by all (pytest's tmp folders are 0700).
    workdir = tempfile.mkdtemp(prefix="hg-slurm-", dir="/tmp")
    r = subprocess.run([str(CLUSTER), "start", workdir], capture_output=True, text=True, timeout=180)
    if r.returncode == 77:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.skip(f"{SKIP_MESSAGE}: {r.stderr.strip()}")
    try:
        assert r.returncode == 0, f"slurm_cluster.sh start failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        yield Cluster(workdir)
    finally:
        stop = subprocess.run([str(CLUSTER), "stop", workdir], capture_output=True, text=True, timeout=180)
        if stop.returncode == 0:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"slurm_cluster.sh stop failed; {workdir} kept:\n{stop.stdout}\n{stop.stderr}")


MPIRUN_LAUNCHER = " ".join([MPIEXEC, "--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else []))


@pytest.fixture
def job_env(tmp_path):
    """What a user would export before sbatch: the binary, the results folder, mpirun as the launcher."""
    return {"HG_BIN": HESSGAP, "HG_OUT_DIR": str(tmp_path / "results"), "HG_LAUNCHER": MPIRUN_LAUNCHER}


def git_sha():
    r = subprocess.run(["git", "-c", "safe.directory=*", "-C", str(SOURCE_DIR), "rev-parse", "HEAD"],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def check_record(record, job_id, state, output, config, sha_at_submit, launcher=MPIRUN_LAUNCHER):
    assert record["job_id"] == job_id and record["state"] == state, record
    # The checkout's commit when the job ran (someone may commit meanwhile: then either one).
    assert record["git_sha"] in {sha_at_submit, git_sha()}, record
    assert record["nodes"] == socket.gethostname().split(".")[0], record
    assert record["submit_dir"] == str(SOURCE_DIR) and record["repository"] == str(SOURCE_DIR), record
    assert record["output"] == str(output) and record["config"] == str(config), record
    assert record["launcher"] == launcher and record["command"][0] == launcher.split()[0], record
    assert HESSGAP in record["command"], record
    assert record["cluster"] == "hgtest" and record["ntasks"] == "2", record


# mpirun (HG_LAUNCHER set, as a cluster without Slurm's PMIx plugin would) and the default, which is
# `srun --mpi=pmix` where srun lists the pmix plugin (Debian's slurm-wlm does): ranks as a job step.
@pytest.mark.parametrize("launcher", ["mpirun", "default"])
def test_train_job(cluster, job_env, tmp_path, launcher):
    assert WEIGHTS.is_file(), f"embedded weights missing: {WEIGHTS}"
    assert FASHION_MNIST.is_dir(), f"{FASHION_MNIST} missing (Debian package dataset-fashion-mnist)"
    expected_launcher = MPIRUN_LAUNCHER
    if launcher == "default":
        del job_env["HG_LAUNCHER"]
        listed = cluster.run("srun", "--mpi=list")
        assert "pmix" in listed.stdout + listed.stderr, f"srun has no PMIx plugin:\n{listed.stdout}{listed.stderr}"
        expected_launcher = "srun --mpi=pmix"
    config = tmp_path / "tiny-fmnist.json"
    config.write_text(json.dumps(dict(TINY_TRAIN, epochs=1)))
    sha = git_sha()
    # --epochs on the command line overrides the config's 1 (extra arguments reach hessgap train).
    job_id = cluster.sbatch("train.sbatch", config, "--epochs", 2, job_env=job_env, chdir=tmp_path,
                            sbatch_flags=["--ntasks=2"])
    log = tmp_path / f"hg-train-{job_id}.log"  # %x-%j.log in the job's working directory
    info = cluster.wait(job_id, timeout=300, log=log)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", (info, read_log(log))

    text = log.read_text()
    assert f"hessgap job {job_id} (restart 0)" in text and "results written to" in text, read_log(log)
    run_dir = tmp_path / "results" / f"tiny-fmnist-{job_id}"
    with h5py.File(run_dir / "run.h5", "r") as f:
        assert f.attrs["status"] == "complete" and f.attrs["world_size"] == 2
        acc = f["train/final/test_accuracy"][()]
        assert np.isfinite(acc) and 0 <= acc <= 1
        # 200 training images, 10 % validation -> 180 in batches of 20: 9 steps per epoch, 2 epochs.
        assert len(f["train/history/step"][()]) == 18
        assert json.loads(f.attrs["config"])["train"]["epochs"] == 2
    record = json.loads((run_dir / "job.json").read_text())
    check_record(record, job_id, "complete", run_dir, config, sha, launcher=expected_launcher)
    assert record["exit_code"] == 0 and record["command"][-2:] == ["--epochs", "2"], record
    assert [json.loads(line)["state"] for line in (run_dir / "job.jsonl").read_text().splitlines()] == \
        ["running", "complete"]


def wait_for(predicate, timeout, what, log=None):
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < timeout, f"{what}: not within {timeout} s\n" + read_log(log)
        time.sleep(0.3)


def records(folder):
    path = Path(folder) / "job.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def test_usr1_requeues_and_resumes_while_a_cancel_stops(cluster, job_env, tmp_path):
    """The scripts' signal and requeue logic with a stand-in for hessgap (interruptible_stub.sh: hessgap's
    exit codes, steps of 0.5 s), so that it is tested whatever hessgap's subcommands and speed: USR1 to
    the batch shell (what --signal=B:USR1@T sends) requeues a sweep job that resumes; a plain scancel
    (SIGTERM to every process) of a training job under srun records "interrupted" and does not requeue."""
    job_env = dict(job_env, HG_BIN=str(Path(__file__).with_name("interruptible_stub.sh")))
    spec = tmp_path / "stub.json"
    spec.write_text("{}")
    sweep_id = cluster.sbatch("sweep.sbatch", spec, job_env=job_env, chdir=tmp_path, sbatch_flags=["--ntasks=1"])
    # srun (the default launcher) passes SIGTERM on and waits for the ranks; mpirun would end them itself
    # and exit 1 (recorded as "cancelled").
    srun_env = {k: v for k, v in job_env.items() if k != "HG_LAUNCHER"}
    train_id = cluster.sbatch("train.sbatch", spec, job_env=srun_env, chdir=tmp_path, sbatch_flags=["--ntasks=1"])
    sweep_dir, train_dir = tmp_path / "results" / f"stub-{sweep_id}", tmp_path / "results" / f"stub-{train_id}"
    sweep_log, train_log = tmp_path / f"hg-sweep-{sweep_id}.log", tmp_path / f"hg-train-{train_id}.log"

    def progressed(folder):
        f = folder / "progress.0"
        return f.is_file() and f.read_text().strip() not in ("", "0", "1")

    wait_for(lambda: progressed(sweep_dir), 60, "sweep stub progress", sweep_log)
    cluster.run("scancel", "--batch", "--signal=USR1", sweep_id)
    wait_for(lambda: progressed(train_dir), 60, "train stub progress", train_log)
    cluster.run("scancel", train_id)

    info = cluster.wait(sweep_id, timeout=120, log=sweep_log)
    assert info["JobState"] == "COMPLETED" and int(info["Restarts"]) == 1, (info, read_log(sweep_log))
    text = sweep_log.read_text()
    assert "stub: USR1 at step" in text and "stub: complete" in text, read_log(sweep_log)
    resumed_at = [int(line.split()[-1]) for line in text.splitlines() if line.startswith("stub: starting at step")]
    assert len(resumed_at) == 2 and resumed_at[0] == 0 and resumed_at[1] >= 2, read_log(sweep_log)
    assert [(r["state"], r["restart_count"]) for r in records(sweep_dir)] == \
        [("running", 0), ("requeued", 0), ("running", 1), ("complete", 1)], records(sweep_dir)
    assert records(sweep_dir)[1]["signals"] == "USR1" and records(sweep_dir)[1]["exit_code"] == 3

    info = cluster.wait(train_id, timeout=60, log=train_log)
    assert info["JobState"] == "CANCELLED" and int(info["Restarts"]) == 0, (info, read_log(train_log))
    # The job is CANCELLED at once; the script still has KillWait (10 s) to record the outcome.
    wait_for(lambda: records(train_dir) and records(train_dir)[-1]["state"] != "running", 30,
             "the cancelled job's record", train_log)
    last = records(train_dir)[-1]
    assert (last["state"], last["exit_code"], last["signals"]) == ("interrupted", 3, "TERM"), records(train_dir)
    assert "not requeued" in train_log.read_text(), read_log(train_log)


def index_statuses(path):
    """The status column of index.h5, wherever it is: a dataset named status, or a field `status` of a
    compound dataset."""
    found = []

    def visit(name, obj):
        if not isinstance(obj, h5py.Dataset):
            return
        if name.split("/")[-1] == "status":
            found.append(list(obj[()]))
        elif obj.dtype.names and "status" in obj.dtype.names:
            found.append(list(obj[()]["status"]))

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    assert len(found) == 1, f"expected one status column in {path}, found {len(found)}"
    return [s.decode() if isinstance(s, bytes) else str(s) for s in found[0]]


def test_sweep_job_is_interrupted_requeued_and_resumed(cluster, job_env, tmp_path):
    spec = tmp_path / "tiny-sweep.json"
    # 4 runs of 4 epochs each, 2 groups of one rank: two rounds of runs, an epoch every second or two.
    spec.write_text(json.dumps({"base": dict(TINY_TRAIN, epochs=4),
                                "grid": {"lr": [1e-3, 5e-4], "label-noise": [0.0, 0.4]},
                                "ranks_per_run": 1}))
    sha = git_sha()
    job_id = cluster.sbatch("sweep.sbatch", spec, job_env=job_env, chdir=tmp_path, sbatch_flags=["--ntasks=2"])
    log = tmp_path / f"hg-sweep-{job_id}.log"
    out = tmp_path / "results" / f"tiny-sweep-{job_id}"

    # Midway: once a run has checkpointed an epoch (last.h5), the USR1 that Slurm sends before a time
    # limit (--signal=B:USR1@T signals the batch shell, as --batch does here).
    t0 = time.monotonic()
    while not list(out.glob("runs/*/last.h5")):
        info = cluster.job(job_id)
        assert info.get("JobState") in ("PENDING", "RUNNING"), (info, read_log(log))
        assert time.monotonic() - t0 < 180, "no run checkpointed within 180 s\n" + read_log(log)
        time.sleep(0.5)
    cluster.run("scancel", "--batch", "--signal=USR1", job_id)

    info = cluster.wait(job_id, timeout=600, log=log)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", (info, read_log(log))
    assert int(info["Restarts"]) >= 1, ("the job was not requeued (did the sweep end before the signal?)",
                                        info, read_log(log))
    text = log.read_text()  # --open-mode=append: both attempts
    assert f"hessgap job {job_id} (restart 0)" in text and f"hessgap job {job_id} (restart 1)" in text, read_log(log)
    assert f"requeueing job {job_id}" in text, read_log(log)

    assert index_statuses(out / "index.h5") == ["complete"] * 4
    runs = sorted(p for p in (out / "runs").iterdir() if p.is_dir())
    assert len(runs) == 4, runs
    for run in runs:
        with h5py.File(run / "run.h5", "r") as f:
            assert f.attrs["status"] == "complete", run
            assert 0 <= f["train/final/test_accuracy"][()] <= 1

    record = json.loads((out / "job.json").read_text())
    check_record(record, job_id, "complete", out, spec, sha)
    assert record["restart_count"] >= 1 and record["exit_code"] == 0, record
    attempts = [json.loads(line) for line in (out / "job.jsonl").read_text().splitlines()]
    requeued = [a for a in attempts if a["state"] == "requeued"]
    assert requeued and requeued[0]["exit_code"] == 3 and "USR1" in requeued[0]["signals"], attempts
