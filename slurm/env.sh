# shellcheck shell=bash
# Cluster environment for hessgap jobs, sourced by the sbatch scripts in slurm/ (after they have found
# the checkout, HG_ROOT: see slurm/README.md). Every knob is an environment default that a user can
# override before sbatch (sbatch passes the submitting shell's environment on), e.g.
#   HG_BIN=/path/to/hessgap HG_LAUNCHER=mpirun sbatch slurm/train.sbatch configs/x.json
: "${HG_ROOT:?slurm/env.sh: HG_ROOT must be set (the sbatch scripts set it)}"

# Per-cluster settings first (module loads, NCCL/OpenMP variables, a launcher), so that the defaults
# below only fill in what they leave unset: HG_CLUSTER_ENV names the file (absolute, or relative to
# slurm/env/); without it slurm/env/<SLURM_CLUSTER_NAME>.sh is used when it exists.
if [[ -n "${HG_CLUSTER_ENV:-}" ]]; then
  [[ "$HG_CLUSTER_ENV" == /* ]] || HG_CLUSTER_ENV="$HG_ROOT/slurm/env/$HG_CLUSTER_ENV"
  [[ -f "$HG_CLUSTER_ENV" ]] || { echo "slurm/env.sh: HG_CLUSTER_ENV=$HG_CLUSTER_ENV: no such file" >&2; exit 2; }
  # shellcheck disable=SC1090
  source "$HG_CLUSTER_ENV"
elif [[ -n "${SLURM_CLUSTER_NAME:-}" && -f "$HG_ROOT/slurm/env/$SLURM_CLUSTER_NAME.sh" ]]; then
  HG_CLUSTER_ENV="$HG_ROOT/slurm/env/$SLURM_CLUSTER_NAME.sh"
  # shellcheck disable=SC1090
  source "$HG_CLUSTER_ENV"
fi

: "${HG_BIN:=$HG_ROOT/build/bin/hessgap}"
# Results; a relative path is taken from the submission directory, like every path given to a script.
: "${HG_OUT_DIR:=$HG_ROOT/results}"
[[ "$HG_OUT_DIR" == /* ]] || HG_OUT_DIR="${SLURM_SUBMIT_DIR:-$PWD}/$HG_OUT_DIR"
# hessgap's "interrupted, rerun to resume" exit code (sweep, train): the scripts requeue on it.
: "${HG_EXIT_INTERRUPTED:=3}"
# Requeues a script may ask for (Slurm counts them in SLURM_RESTART_COUNT), against endless loops.
: "${HG_MAX_REQUEUES:=20}"

# The MPI launcher, a command prefix the program and its arguments are appended to. srun starts the
# ranks as a job step (Slurm binds and accounts them; PMIx wires MPI up); mpirun is the fallback where
# Slurm has no PMIx plugin (or outside a job); inside an allocation it takes hosts and slots from Slurm.
# As root Open MPI's mpirun also needs --allow-run-as-root (and --oversubscribe to exceed the slots).
if [[ -z "${HG_LAUNCHER:-}" ]]; then
  HG_LAUNCHER="mpirun"
  if [[ -n "${SLURM_JOB_ID:-}" ]] && command -v srun >/dev/null 2>&1; then
    # (captured, not piped into grep -q: under pipefail an early grep exit could fail the pipeline)
    hg_mpi_list=$(srun --mpi=list 2>&1 || true)
    [[ "$hg_mpi_list" == *pmix* ]] && HG_LAUNCHER="srun --mpi=pmix"
    unset hg_mpi_list
  fi
fi

# One OpenMP thread per rank unless the job asked for more CPUs per task; idle ranks yield the core.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
# Since Slurm 22.05 srun no longer inherits --cpus-per-task from sbatch; pass it on explicitly.
if [[ -n "${SLURM_CPUS_PER_TASK:-}" ]]; then
  export SRUN_CPUS_PER_TASK="${SRUN_CPUS_PER_TASK:-$SLURM_CPUS_PER_TASK}"
fi
# OpenBLAS may not recognise a cluster's CPU and fall back to slow generic kernels (bench/README.md).
if [[ -z "${OPENBLAS_CORETYPE:-}" ]] && grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=SkylakeX
fi
export HG_ROOT HG_BIN HG_OUT_DIR HG_LAUNCHER HG_EXIT_INTERRUPTED HG_MAX_REQUEUES
mkdir -p "$HG_OUT_DIR"
