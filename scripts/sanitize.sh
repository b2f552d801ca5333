#!/usr/bin/env bash
# The sanitizer builds (issue #12): the code that reads untrusted bytes, built with AddressSanitizer +
# UBSan and run on its tests. Any sanitizer report fails the run (halt_on_error; UB is not recovered from).
#
#   scripts/sanitize.sh          (CI: ctest sanitize_unit) the unit tests of the parsers - tests/unit/io
#                                (checkpoint formats, zip, pickle, HDF5, atomic outputs, hostile files) and
#                                the data tests of images, IDX, tokenizers, GLUE and hostile data - built
#                                with clang in the tests/fuzz project (scripts/fuzz.sh --build-only;
#                                HG_FUZZ_BUILD_DIR, default ./build-fuzz, shared with the fuzzers) and run
#                                with LeakSanitizer. No precompiled header there, so ccache carries the
#                                build from one checkout to the next: ~9 min cold on two cores, ~1 min warm.
#   scripts/sanitize.sh --full   (CI: ctest sanitize_cli) hessgap itself built by g++ with -DHG_SANITIZE=ON
#                                in HG_SANITIZE_BUILD_DIR (default ./build/asan), then the CLI hardening
#                                tests (tests/integration/app/test_cli_hardening.py and
#                                test_cli_hostile_state.py: forged checkpoints, images, configs, outputs,
#                                trainer state, signals) against it. No precompiled header there: GCC's
#                                .gch records the checkout's paths in its debug info, so every compilation
#                                using it missed ccache in another clone; without it CI's clean clone hits
#                                what was built before (~50 min cold on two cores, minutes warm).
# hessgap itself runs without LeakSanitizer: MPI_Init's components (Open MPI, hwloc, PMIx; system
# libraries, unloaded before exit so that their stacks cannot be symbolised) keep memory for the life of
# the process, and a process that exits leaks nothing that matters; memory errors are what is looked for.
# Environment: HG_JOBS (default nproc).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export OMP_NUM_THREADS=1

# Runs one sanitized gtest binary; prints its count, or its reports and fails.
run_unit() {
  local bin="$1" log="$2" start=$SECONDS
  if (cd "$(dirname "$log")/test-tmp" && "$bin" --gtest_brief=1 >"$log" 2>&1); then
    echo "sanitize: ${bin##*/} passed ($(grep -o '[0-9]* tests\? from [0-9]* test suites\? ran' "$log" | head -1), $((SECONDS - start)) s)"
  else
    echo "sanitize: ${bin##*/} FAILED (log: $log)" >&2
    grep -E "ERROR: AddressSanitizer|runtime error|ERROR: LeakSanitizer|SUMMARY|FAILED|Failure" "$log" | head -20 >&2
    return 1
  fi
}

if [[ "${1:-}" != "--full" ]]; then
  BUILD="${HG_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
  export HG_FUZZ_BUILD_DIR="$BUILD"
  start=$SECONDS
  "$ROOT/scripts/fuzz.sh" --build-only asan_test_io asan_test_data  # exit 77 (a skip) without clang
  echo "sanitize: built the clang ASan + UBSan project in $BUILD in $((SECONDS - start)) s"
  mkdir -p "$BUILD/test-tmp"
  status=0
  for t in asan_test_io asan_test_data; do
    run_unit "$BUILD/$t" "$BUILD/$t.log" || status=1
  done
  exit $status
fi

BUILD="${HG_SANITIZE_BUILD_DIR:-$ROOT/build/asan}"

export CCACHE_BASEDIR="$ROOT" CCACHE_NOHASHDIR=1
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
LAUNCHER=()
command -v ccache >/dev/null && LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
mkdir -p "$BUILD"
# No precompiled header (see above); the unit tests are sanitize_unit's, built by clang.
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DHG_SANITIZE=ON -DHG_USE_PCH=OFF -DHG_BUILD_TESTS=OFF \
  "${LAUNCHER[@]}" >"$BUILD/configure.log" 2>&1 || { cat "$BUILD/configure.log"; exit 1; }
targets=(hessgap)
start=$SECONDS
cmake --build "$BUILD" -j "${HG_JOBS:-$(nproc)}" --target "${targets[@]}" >"$BUILD/build.log" 2>&1 ||
  { tail -60 "$BUILD/build.log"; exit 1; }
echo "sanitize: built ${targets[*]} in $((SECONDS - start)) s"

mkdir -p "$BUILD/test-tmp"
status=0
for t in test_cli_hardening test_cli_hostile_state; do
  start=$SECONDS
  log="$BUILD/$t.log"
  if (cd "$BUILD/test-tmp" && export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" &&
      HESSGAP="$BUILD/bin/hessgap" HG_SANITIZED=1 HG_SOURCE_DIR="$ROOT" MPIEXEC="${MPIEXEC:-mpirun}" \
      /usr/bin/python3 -m pytest -q -p no:cacheprovider "$ROOT/tests/integration/app/$t.py" >"$log" 2>&1); then
    echo "sanitize: $t passed ($(tail -1 "$log"), $((SECONDS - start)) s)"
  else
    echo "sanitize: $t FAILED (log: $log)" >&2
    grep -E "AddressSanitizer|runtime error|SUMMARY|FAILED|Error" "$log" | head -30 >&2
    status=1
  fi
done
exit $status
