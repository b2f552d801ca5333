#!/usr/bin/env bash
# Sets up a Debian 12 machine for hessgap and builds it; then optionally runs the main job or the tests.
#
#   scripts/setup.sh            install packages (if missing) and build into ./build
#   scripts/setup.sh run [...]  ... then run the main job on the embedded data under mpirun -np 2
#                               (extra arguments go to `hessgap run`)
#   scripts/setup.sh test       ... then run every test (unit, mpi, integration, slurm, fuzz; data when
#                               ../shared/data exists); also installs slurm-wlm and munge for the slurm
#                               test and clang for the fuzzers
#
# Idempotent: packages are installed only when one is missing, the build is incremental (ccache).
# Environment: HG_BUILD_DIR (default ./build), HG_JOBS (default: number of cores), HG_RANKS (run: 2).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${HG_BUILD_DIR:-$ROOT/build}"
JOBS="${HG_JOBS:-$(nproc)}"
MODE="${1:-build}"
[[ $# -gt 0 ]] && shift

PACKAGES=(g++ cmake make ccache libtorch-dev libopenblas0-openmp libopenmpi-dev openmpi-bin
  libhdf5-dev libcli11-dev libgtest-dev nlohmann-json3-dev libjpeg62-turbo-dev libpng-dev zlib1g-dev
  dataset-fashion-mnist python3-torch python3-torchvision python3-h5py python3-numpy python3-pandas
  python3-matplotlib python3-pil python3-pytest)
# The slurm test (tests/slurm) runs the sbatch scripts on a real one-node Slurm with munge: only for
# `test`, so that the first `scripts/setup.sh run` installs no more than the main job needs.
# The fuzz test (tests/fuzz, scripts/fuzz.sh) builds with clang and its libFuzzer/sanitizer runtimes.
if [[ "$MODE" == "test" ]]; then
  PACKAGES+=(slurm-wlm munge clang libclang-rt-14-dev)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${#missing[@]} Debian package(s): ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: all Debian packages present"
fi

# ccache keyed on paths relative to the checkout, so a fresh clone reuses earlier compilations.
export CCACHE_BASEDIR="$ROOT"
export CCACHE_NOHASHDIR=1
# Without these, ccache refuses every compilation that uses the shared precompiled header (91 % of them
# were "uncacheable" and CI rebuilt cold, ~15 min); with them a fresh clone in any folder hits (the PCH
# included): hg_train 55 s cold -> 3.5 s from a new clone on the dev VM.
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
LAUNCHER=()
command -v ccache >/dev/null && LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)

mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "${LAUNCHER[@]}" >"$BUILD/configure.log" 2>&1 ||
  { cat "$BUILD/configure.log"; exit 1; }
# The main job needs only the hessgap binary; the tests need everything.
TARGETS=()
[[ "$MODE" == "run" ]] && TARGETS=(--target hessgap)
echo "setup: building ${TARGETS[*]:-everything} in $BUILD with $JOBS job(s)"
cmake --build "$BUILD" -j "$JOBS" "${TARGETS[@]}"

# OpenBLAS 0.3.21 falls back to generic SSE3 kernels on CPUs it does not recognise (bench/README.md):
# name the core type from the CPU flags unless the caller did.
if [[ -z "${OPENBLAS_CORETYPE:-}" ]]; then
  if grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX
  elif grep -qw avx2 /proc/cpuinfo; then export OPENBLAS_CORETYPE=Haswell; fi
fi

# mpirun as root (CI) and with more ranks than cores (tests) must be allowed explicitly.
MPIRUN=(mpirun --oversubscribe -x OMP_NUM_THREADS=1 -x OMP_WAIT_POLICY=PASSIVE)
[[ -n "${OPENBLAS_CORETYPE:-}" ]] && MPIRUN+=(-x OPENBLAS_CORETYPE)
[[ $(id -u) -eq 0 ]] && MPIRUN+=(--allow-run-as-root)

case "$MODE" in
  build) ;;
  run)
    cd "$ROOT"
    "${MPIRUN[@]}" -np "${HG_RANKS:-2}" "$BUILD/bin/hessgap" run "$@"
    echo "Read it back: /usr/bin/python3 analysis/hessgap_results.py hessgap-run/constraint/run.h5 (or measures.h5)"
    ;;
  test)
    cd "$BUILD"
    ctest --output-on-failure -j "$JOBS" "$@"
    ;;
  *)
    echo "usage: scripts/setup.sh [build|run|test] [args...]" >&2
    exit 2
    ;;
esac
