#!/usr/bin/env bash
# A stand-in for hessgap with its contract towards the sbatch scripts, so that signals, requeueing and
# resuming are tested without depending on how long real training takes:
#   stub --version                        one line
#   stub <subcommand> ... --out-dir DIR   counts HG_STUB_STEPS (20) steps of 0.5 s, progress in
#                                         DIR/progress.<rank>; a rerun continues from there (resume);
#                                         on SIGUSR1 or SIGTERM it saves and exits 3 ("interrupted,
#                                         rerun to resume"); at the end it exits 0.
[[ "${1:-}" == --version ]] && { echo "interruptible stub"; exit 0; }
dir=""
prev=""
for a in "$@"; do
  [[ "$prev" == --out-dir ]] && dir=$a
  prev=$a
done
[[ -n "$dir" ]] || { echo "stub: --out-dir missing" >&2; exit 2; }
mkdir -p "$dir"
file="$dir/progress.${OMPI_COMM_WORLD_RANK:-${SLURM_PROCID:-0}}"
n=$(cat "$file" 2>/dev/null || echo 0)
echo "stub: starting at step $n"
stop=""
trap 'stop=USR1' USR1
trap 'stop=TERM' TERM
while ((n < ${HG_STUB_STEPS:-20})); do
  sleep 0.5 &
  wait $! || true  # a trapped signal interrupts the wait; the step then ends early, which is fine here
  if [[ -n "$stop" ]]; then
    echo "$n" >"$file"
    echo "stub: $stop at step $n, checkpointed"
    exit 3
  fi
  n=$((n + 1))
  echo "$n" >"$file"
done
echo "stub: complete"
