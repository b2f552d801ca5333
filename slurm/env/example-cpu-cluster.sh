# shellcheck shell=bash
# Example per-cluster environment: a CPU cluster whose Slurm has no PMIx plugin, so ranks are started
# by mpirun inside the allocation (it reads the hosts and slot counts from Slurm). Copy it to
# slurm/env/<ClusterName>.sh (sourced by slurm/env.sh when SLURM_CLUSTER_NAME matches) or point
# HG_CLUSTER_ENV at it; slurm/env.sh's defaults fill in whatever it leaves unset. Names are site-specific.
#   HG_CLUSTER_ENV=example-cpu-cluster.sh sbatch --nodes=4 --ntasks-per-node=32 slurm/sweep.sbatch jobs/my-sweep.json

module purge
module load gcc/12.2 openmpi/4.1.6 hdf5/1.14
HG_BIN="${HG_BIN:-$HOME/hessgap/build/bin/hessgap}"

# mpirun forwards SIGUSR1 to the ranks (the sbatch scripts' time-limit warning); it passes this job's
# environment to the ranks on other nodes through the daemons it starts with srun.
HG_LAUNCHER="${HG_LAUNCHER:-mpirun --bind-to core --map-by slot}"

# One thread per rank (hessgap's --threads default is 1 too); idle ranks give their core back.
export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"
export OMP_WAIT_POLICY=PASSIVE
export OMP_PROC_BIND=close

# OpenBLAS 0.3.21 does not know every CPU and then falls back to slow generic kernels (bench/README.md):
# name the core type (SkylakeX for AVX-512 nodes, Haswell for AVX2-only ones).
export OPENBLAS_CORETYPE=SkylakeX
