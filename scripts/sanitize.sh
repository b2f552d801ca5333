#!/usr/bin/env bash
# The sanitizer build (issue #12): hessgap and the unit tests of the code that reads untrusted bytes,
# built with AddressSanitizer + UBSan (-DHG_SANITIZE=ON) in their own folder, then run:
#   - the unit tests of io/ (checkpoint formats, zip, pickle, HDF5, atomic outputs, hostile files),
#     data/ (images, IDX, transforms, loaders, hostile data) and the tokenizers and GLUE reader;
#   - the CLI hardening tests (tests/integration/app/test_cli_hardening.py: forged checkpoints, images,
#     configs, outputs, signals) against the sanitized hessgap.
# Any sanitizer report fails the run (halt_on_error; UB is not recovered from). The unit tests run with
# LeakSanitizer too. hessgap itself runs without it: MPI_Init's components (Open MPI, hwloc, PMIx; system
# libraries, unloaded before exit so that their stacks cannot be symbolised) keep memory for the life of
# the process, and a process that exits leaks nothing that matters; memory errors are what is looked for.
#
#   scripts/sanitize.sh            HG_SANITIZE_BUILD_DIR (default ./build/asan), HG_JOBS (default nproc)
#
# Why a subset: the whole suite under ASan would double CI's time on two cores; these are the tests that
# feed hostile bytes to hessgap's own parsers, where a memory error would be exploitable.
# The folder sits inside the main build folder, at the same depth in every checkout: ccache keys on
# paths relative to the checkout, so CI's clean clone reuses the compilations made here.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${HG_SANITIZE_BUILD_DIR:-$ROOT/build/asan}"
UNIT_TESTS=(io/test_io data/test_data data/test_data_text)

export CCACHE_BASEDIR="$ROOT" CCACHE_NOHASHDIR=1
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
LAUNCHER=()
command -v ccache >/dev/null && LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DHG_SANITIZE=ON "${LAUNCHER[@]}" >"$BUILD/configure.log" 2>&1 ||
  { cat "$BUILD/configure.log"; exit 1; }
targets=(hessgap)
for t in "${UNIT_TESTS[@]}"; do targets+=("${t##*/}"); done
start=$SECONDS
cmake --build "$BUILD" -j "${HG_JOBS:-$(nproc)}" --target "${targets[@]}" >"$BUILD/build.log" 2>&1 ||
  { tail -60 "$BUILD/build.log"; exit 1; }
echo "sanitize: built ${targets[*]} in $((SECONDS - start)) s"

export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export OMP_NUM_THREADS=1
mkdir -p "$BUILD/test-tmp"
status=0
for t in "${UNIT_TESTS[@]}"; do
  start=$SECONDS
  log="$BUILD/${t##*/}.log"
  if "$BUILD/tests/unit/$t" --gtest_brief=1 >"$log" 2>&1; then
    echo "sanitize: $t passed ($(grep -o '[0-9]* tests\? from [0-9]* test suites\? ran' "$log" | head -1), $((SECONDS - start)) s)"
  else
    echo "sanitize: $t FAILED (log: $log)" >&2
    grep -E "ERROR: AddressSanitizer|runtime error|ERROR: LeakSanitizer|SUMMARY|FAILED|Failure" "$log" | head -20 >&2
    status=1
  fi
done

start=$SECONDS
if (cd "$BUILD/test-tmp" && export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" &&
    HESSGAP="$BUILD/bin/hessgap" HG_SOURCE_DIR="$ROOT" MPIEXEC="${MPIEXEC:-mpirun}" \
    /usr/bin/python3 -m pytest -q -p no:cacheprovider "$ROOT/tests/integration/app/test_cli_hardening.py" \
    >"$BUILD/cli_hardening.log" 2>&1); then
  echo "sanitize: cli_hardening passed ($(tail -1 "$BUILD/cli_hardening.log"), $((SECONDS - start)) s)"
else
  echo "sanitize: cli_hardening FAILED (log: $BUILD/cli_hardening.log)" >&2
  grep -E "AddressSanitizer|runtime error|SUMMARY|FAILED|Error" "$BUILD/cli_hardening.log" | head -30 >&2
  status=1
fi
exit $status
