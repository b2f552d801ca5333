#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz with clang, AddressSanitizer and UBSan, replays every
# committed input (tests/fuzz/corpus/<target>: the seeds and each past finding) and then fuzzes each
# parser for a bounded time, printing executions per parser. A finding stops with a non-zero exit and
# leaves the input under $HG_FUZZ_BUILD_DIR/findings/: fix the parser, then commit the input to
# tests/fuzz/corpus/<target>/regression-<what> so that every later run replays it.
#
#   scripts/fuzz.sh [--seconds N] [target ...]   targets: zip image npy mat bpe wordpiece checkpoint config
#                                                idx glue hdf5 (default: all)
#   scripts/fuzz.sh --build-only [cmake-target ...]
#                                                configure and build those targets of the project (all:
#                                                the harnesses and scripts/sanitize.sh's unit tests), run
#                                                nothing
#
# Environment: HG_FUZZ_BUILD_DIR (default ./build-fuzz), HG_FUZZ_SECONDS (default 60 per target).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${HG_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
SECONDS_EACH="${HG_FUZZ_SECONDS:-60}"
BUILD_ONLY=0
if [[ "${1:-}" == "--build-only" ]]; then
  BUILD_ONLY=1
  shift
elif [[ "${1:-}" == "--seconds" ]]; then
  SECONDS_EACH="$2"
  shift 2
fi
TARGETS=("$@")
((${#TARGETS[@]} || BUILD_ONLY)) || TARGETS=(zip image npy mat bpe wordpiece checkpoint config idx glue hdf5)

if ! command -v clang++ >/dev/null; then
  echo "fuzz: clang++ is not installed (Debian: clang-14 libclang-rt-14-dev); scripts/setup.sh test installs it" >&2
  exit 77
fi
LAUNCHER=()
command -v ccache >/dev/null && LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
export CCACHE_BASEDIR="$ROOT" CCACHE_NOHASHDIR=1
mkdir -p "$BUILD"
cmake -S "$ROOT/tests/fuzz" -B "$BUILD" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo "${LAUNCHER[@]}" >"$BUILD/configure.log" 2>&1 ||
  { cat "$BUILD/configure.log"; exit 1; }
# Only what is asked for: the harnesses when fuzzing (the sanitized unit tests share their objects).
BUILD_TARGETS=()
if ((BUILD_ONLY)); then
  for t in "${TARGETS[@]}"; do BUILD_TARGETS+=(--target "$t"); done
else
  for t in "${TARGETS[@]}"; do BUILD_TARGETS+=(--target "fuzz_$t"); done
fi
cmake --build "$BUILD" -j "${HG_JOBS:-$(nproc)}" "${BUILD_TARGETS[@]}" >"$BUILD/build.log" 2>&1 ||
  { tail -50 "$BUILD/build.log"; exit 1; }
((BUILD_ONLY)) && exit 0

# Inputs over 2 GiB of memory or 10 s are findings too; leaks are reported (ASan's leak checker).
OPTIONS=(-rss_limit_mb=2048 -timeout=10)
FINDINGS="$BUILD/findings"
mkdir -p "$FINDINGS"
status=0
printf "%-10s %8s %12s %10s\n" target replayed executions "exec/s"
for t in "${TARGETS[@]}"; do
  corpus="$ROOT/tests/fuzz/corpus/$t"
  [[ -x "$BUILD/fuzz_$t" && -d "$corpus" ]] || { echo "fuzz: unknown target '$t'" >&2; exit 2; }
  log="$BUILD/fuzz_$t.log"
  # Replay: each committed input once, whole (given as files, not as a corpus that -max_len would cut).
  mapfile -t inputs < <(find "$corpus" -type f | sort)
  if ! "$BUILD/fuzz_$t" "${OPTIONS[@]}" "${inputs[@]}" >"$log.replay" 2>&1; then
    echo "fuzz: $t fails on a committed input:" >&2
    tail -40 "$log.replay" >&2
    status=1
    continue
  fi
  replayed=${#inputs[@]}
  # Fuzz: new inputs go to a scratch corpus (the first directory), seeded by the committed one.
  work="$BUILD/work/$t"
  mkdir -p "$work"
  if ! "$BUILD/fuzz_$t" "${OPTIONS[@]}" -max_len=65536 -print_final_stats=1 -max_total_time="$SECONDS_EACH" \
      -artifact_prefix="$FINDINGS/$t-" \
      "$work" "$corpus" >"$log" 2>&1; then
    echo "fuzz: $t: a finding (input under $FINDINGS):" >&2
    grep -E "ERROR|SUMMARY|==[0-9]+==|#[0-9]+ " "$log" | tail -30 >&2
    status=1
    continue
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  printf "%-10s %8s %12s %10s\n" "$t" "$replayed" "${runs:-?}" "${rate:-?}"
done
exit $status
