# Cluster environment for hessgap jobs: sourced by the sbatch scripts. Every knob is an environment
# default that a user can override before sbatch (e.g. HG_BIN=/path/to/hessgap sbatch ...).
: "${HG_ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
: "${HG_BIN:=$HG_ROOT/build/bin/hessgap}"
: "${HG_OUT_DIR:=$HG_ROOT/results}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
mkdir -p "$HG_OUT_DIR"
# OpenBLAS may not recognise a cluster's CPU and fall back to slow generic kernels (bench/README.md).
if [[ -z "${OPENBLAS_CORETYPE:-}" ]] && grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=SkylakeX
fi
