# shellcheck shell=bash
# Example per-cluster environment: a GPU cluster with environment modules, Open MPI with PMIx and
# InfiniBand. Copy it to slurm/env/<ClusterName>.sh (ClusterName from slurm.conf, what jobs see as
# SLURM_CLUSTER_NAME: slurm/env.sh then sources it by itself) or point HG_CLUSTER_ENV at it. It is
# sourced inside the job, before slurm/env.sh's defaults, which fill in whatever it leaves unset.
# Every name below is site-specific: `module avail`, `ibstat` and the cluster's documentation say what
# applies.
#
# One rank per GPU; --gpus-per-task makes srun bind each rank to its own GPU (CUDA_VISIBLE_DEVICES holds
# one device), so `--device cuda` in the flags means that GPU on every rank:
#   HG_CLUSTER_ENV=example-gpu-cluster.sh sbatch --nodes=2 --ntasks-per-node=4 --gpus-per-task=1 \
#       --cpus-per-task=8 slurm/sweep.sbatch jobs/my-sweep.json --ranks-per-run 4
# (and "device": "cuda" in the spec's base flags).

# Toolchain and libraries the CUDA build of hessgap was linked against (scripts/gpu-check.sh builds one).
module purge
module load gcc/12.2 cuda/12.4 openmpi/4.1.6 hdf5/1.14
# The CUDA build; LibTorch's and NCCL's libraries next to it (a pip wheel's nvidia/nccl/lib, say).
HG_BIN="${HG_BIN:-$HOME/hessgap/build-cuda/bin/hessgap}"
# export LD_LIBRARY_PATH="$HOME/venvs/torch/lib/python3.11/site-packages/nvidia/nccl/lib:${LD_LIBRARY_PATH:-}"

# Ranks as a Slurm job step, wired up by PMIx (check with `srun --mpi=list`).
HG_LAUNCHER="${HG_LAUNCHER:-srun --mpi=pmix}"

# OpenMP: the CPU threads of a rank (data loading, host-side work) on the task's own cores.
export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-8}"
export OMP_PLACES=cores
export OMP_PROC_BIND=close

# NCCL (the GPU communicator): the InfiniBand adapters and the interface for its bootstrap sockets.
export NCCL_DEBUG=WARN                 # INFO once, to see which transport and interfaces NCCL chose
export NCCL_IB_HCA=mlx5                # the HCAs to use (prefix match); `ibstat` lists them
export NCCL_SOCKET_IFNAME=ib0          # or "^lo,docker" to exclude interfaces instead
# export NCCL_IB_DISABLE=1             # Ethernet-only nodes: plain sockets
# export NCCL_P2P_LEVEL=NVL            # peer-to-peer only over NVLink
# export NCCL_NET_GDR_LEVEL=PHB        # GPUDirect RDMA when GPU and NIC share a PCIe host bridge

# Open MPI (host-side collectives, launch): UCX over InfiniBand.
export OMPI_MCA_pml=ucx
export UCX_NET_DEVICES=mlx5_0:1
