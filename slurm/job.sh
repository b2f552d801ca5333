# shellcheck shell=bash
# Helpers shared by the sbatch scripts (sourced after slurm/env.sh): paths from the submission
# directory, the job record written next to the output, running the launcher with signals passed on,
# and requeueing on hessgap's "interrupted" exit code.

# hg_path PATH: PATH made absolute against the directory sbatch was called from. The job itself may run
# elsewhere (--chdir), and Slurm runs a spooled copy of the script, so neither the job's working
# directory nor the script's own location is where the user's relative paths start.
hg_path() {
  case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s\n' "${SLURM_SUBMIT_DIR:-$PWD}/$1" ;;
  esac
}

# hg_json STRING: STRING as a JSON string literal (backslash, quote and control characters escaped).
hg_json() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  s=$(printf '%s' "$s" | tr -d '\000-\010\013\014\016-\037')
  printf '"%s"' "$s"
}

# hg_json_or_null VALUE: a JSON string, or null when VALUE is empty.
hg_json_or_null() { if [[ -n "$1" ]]; then hg_json "$1"; else printf 'null'; fi; }

# hg_flag_value NAME ARGS...: the value of --NAME in ARGS (last one wins, as in hessgap), both as
# "--NAME VALUE" and "--NAME=VALUE"; empty when absent.
hg_flag_value() {
  local name=$1 value="" prev="" a
  shift
  for a in "$@"; do
    [[ "$prev" == "--$name" ]] && value=$a
    [[ "$a" == "--$name="* ]] && value=${a#--"$name"=}
    prev=$a
  done
  printf '%s' "$value"
}

# hg_begin RECORD OUTPUT CONFIG COMMAND...: remembers what to record and writes the first record, state
# "running" (later requeued, complete, interrupted, cancelled or failed). RECORD is the JSON file written
# next to the output; every state change is also appended as one line to RECORD's .jsonl sibling
# (job.json -> job.jsonl), so the attempts of a requeued job stay visible.
hg_begin() {
  HG_RECORD=$1
  HG_RECORD_OUTPUT=$2
  HG_RECORD_CONFIG=$3
  shift 3
  HG_COMMAND=("$@")
  HG_STARTED=$(date -u +%FT%TZ)
  HG_SIGNALS=""
  # The checkout's commit, and whether tracked files differ from it. safe.directory: the job may run as
  # another user than the checkout's owner, which git otherwise refuses.
  local git=(git -c safe.directory='*' -C "$HG_ROOT")
  HG_GIT_SHA=$("${git[@]}" rev-parse HEAD 2>/dev/null || true)
  HG_GIT_DIRTY=null
  if [[ -n "$HG_GIT_SHA" ]]; then
    HG_GIT_DIRTY=false
    if [[ -n $("${git[@]}" status --porcelain --untracked-files=no 2>/dev/null) ]]; then HG_GIT_DIRTY=true; fi
  fi
  HG_VERSION=$("$HG_BIN" --version 2>/dev/null | head -1 || true)
  HG_CONFIG_SHA256=""
  if [[ -n "$HG_RECORD_CONFIG" && -f "$HG_RECORD_CONFIG" ]]; then
    HG_CONFIG_SHA256=$(sha256sum "$HG_RECORD_CONFIG" | cut -d' ' -f1)
  fi
  mkdir -p "$(dirname "$HG_RECORD")"
  echo "hessgap job ${SLURM_JOB_ID:-local} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST:-$(hostname)}:" \
    "commit ${HG_GIT_SHA:-unknown}, ${HG_VERSION:-hessgap version unknown}"
  echo "command: ${HG_COMMAND[*]}"
  hg_record running
}

# hg_record STATE [EXIT_CODE]: (re)writes RECORD atomically and appends the same record to the .jsonl.
hg_record() {
  local state=$1 rc=${2:-} cmd="" a sep=""
  for a in "${HG_COMMAND[@]}"; do cmd+="$sep$(hg_json "$a")"; sep=", "; done
  local fields=(
    "\"state\": $(hg_json "$state")"
    "\"exit_code\": ${rc:-null}"
    "\"job_id\": $(hg_json_or_null "${SLURM_JOB_ID:-}")"
    "\"job_name\": $(hg_json_or_null "${SLURM_JOB_NAME:-}")"
    "\"array_job_id\": $(hg_json_or_null "${SLURM_ARRAY_JOB_ID:-}")"
    "\"array_task_id\": $(hg_json_or_null "${SLURM_ARRAY_TASK_ID:-}")"
    "\"restart_count\": ${SLURM_RESTART_COUNT:-0}"
    "\"cluster\": $(hg_json_or_null "${SLURM_CLUSTER_NAME:-}")"
    "\"partition\": $(hg_json_or_null "${SLURM_JOB_PARTITION:-}")"
    "\"nodes\": $(hg_json "${SLURM_JOB_NODELIST:-$(hostname)}")"
    "\"num_nodes\": ${SLURM_JOB_NUM_NODES:-1}"
    "\"ntasks\": $(hg_json_or_null "${SLURM_NTASKS:-}")"
    "\"cpus_per_task\": $(hg_json_or_null "${SLURM_CPUS_PER_TASK:-}")"
    "\"gpus\": $(hg_json_or_null "${SLURM_GPUS_ON_NODE:-${CUDA_VISIBLE_DEVICES:-}}")"
    "\"submit_dir\": $(hg_json_or_null "${SLURM_SUBMIT_DIR:-}")"
    "\"work_dir\": $(hg_json "$PWD")"
    "\"repository\": $(hg_json "$HG_ROOT")"
    "\"git_sha\": $(hg_json_or_null "$HG_GIT_SHA")"
    "\"git_dirty\": $HG_GIT_DIRTY"
    "\"hessgap_version\": $(hg_json_or_null "$HG_VERSION")"
    "\"cluster_env\": $(hg_json_or_null "${HG_CLUSTER_ENV:-}")"
    "\"launcher\": $(hg_json "$HG_LAUNCHER")"
    "\"command\": [$cmd]"
    "\"config\": $(hg_json_or_null "$HG_RECORD_CONFIG")"
    "\"config_sha256\": $(hg_json_or_null "$HG_CONFIG_SHA256")"
    "\"output\": $(hg_json "$HG_RECORD_OUTPUT")"
    "\"signals\": $(hg_json_or_null "$HG_SIGNALS")"
    "\"started\": $(hg_json "$HG_STARTED")"
    "\"updated\": $(hg_json "$(date -u +%FT%TZ)")"
  )
  {
    printf '{\n'
    local i n=${#fields[@]}
    for ((i = 0; i < n; i++)); do
      printf '  %s%s\n' "${fields[i]}" "$([[ $i -lt $((n - 1)) ]] && echo ,)"
    done
    printf '}\n'
  } >"$HG_RECORD.tmp.$$" && mv -f "$HG_RECORD.tmp.$$" "$HG_RECORD"
  local line="{" sep=""
  for a in "${fields[@]}"; do line+="$sep$a"; sep=", "; done
  printf '%s}\n' "$line" >>"${HG_RECORD%.json}.jsonl"
}

# hg_run COMMAND...: runs COMMAND in the background and waits for it, passing USR1, USR2 and TERM on
# to it (INT as TERM: background commands of a script ignore INT). Bash runs a trap only between
# commands, so a foreground launcher would keep `#SBATCH --signal=B:USR1@T` (which signals this shell
# alone) from reaching hessgap until hessgap had ended. Sets HG_RC to COMMAND's exit status.
hg_run() {
  "$@" &
  HG_CHILD=$!
  trap 'HG_SIGNALS+="USR1 "; kill -USR1 "$HG_CHILD" 2>/dev/null || true' USR1
  trap 'HG_SIGNALS+="USR2 "; kill -USR2 "$HG_CHILD" 2>/dev/null || true' USR2
  trap 'HG_SIGNALS+="TERM "; kill -TERM "$HG_CHILD" 2>/dev/null || true' TERM
  trap 'HG_SIGNALS+="INT "; kill -TERM "$HG_CHILD" 2>/dev/null || true' INT
  local rc
  while :; do
    # `wait` returns 128+n when a trapped signal interrupts it while the command still runs.
    wait "$HG_CHILD" && rc=0 || rc=$?
    kill -0 "$HG_CHILD" 2>/dev/null || break
  done
  # If the command ended between an interrupted wait and kill -0, its status is still with bash (a
  # second wait returns it; 127 means the first wait already did).
  local again
  wait "$HG_CHILD" 2>/dev/null && again=0 || again=$?
  [[ $again -ne 127 ]] && rc=$again
  trap - USR1 USR2 TERM INT
  HG_SIGNALS=${HG_SIGNALS% }
  # shellcheck disable=SC2034  # read by the sbatch scripts
  HG_RC=$rc
}

# hg_finish RC: records the outcome and ends the script. hessgap's interrupted code (HG_EXIT_INTERRUPTED:
# every rank checkpointed after a signal; the same command resumes) requeues the job, so the same job id
# runs the same command again and resumes, unless the job was being cancelled or timed out (TERM:
# Slurm then ends the job anyway; `scancel` means stop) or HG_MAX_REQUEUES is reached.
hg_finish() {
  local rc=$1
  if [[ $rc -eq 0 ]]; then
    hg_record complete 0
    exit 0
  fi
  if [[ $rc -eq $HG_EXIT_INTERRUPTED ]]; then
    if [[ -z "${SLURM_JOB_ID:-}" ]]; then
      hg_record interrupted "$rc"
      echo "interrupted (exit $rc): run the same command again to resume" >&2
      exit "$rc"
    fi
    if [[ " $HG_SIGNALS " == *" TERM "* ]]; then
      hg_record interrupted "$rc"
      echo "interrupted by SIGTERM (cancelled or out of time): not requeued; resubmit to resume" >&2
      exit "$rc"
    fi
    if [[ ${SLURM_RESTART_COUNT:-0} -ge $HG_MAX_REQUEUES ]]; then
      hg_record interrupted "$rc"
      echo "interrupted, and requeued ${SLURM_RESTART_COUNT:-0} times already (HG_MAX_REQUEUES): not requeued" >&2
      exit "$rc"
    fi
    hg_record requeued "$rc"
    echo "interrupted (exit $rc, signals: ${HG_SIGNALS:-none}): requeueing job $SLURM_JOB_ID to resume"
    if scontrol requeue "$SLURM_JOB_ID"; then
      # Slurm now ends this attempt and runs the script again later (after its credential expiry).
      exit 0
    fi
    hg_record interrupted "$rc"
    echo "scontrol requeue $SLURM_JOB_ID failed (is the job requeueable? --requeue, JobRequeue): resubmit to resume" >&2
    exit "$rc"
  fi
  if [[ " $HG_SIGNALS " == *" TERM "* ]]; then
    # Cancelled or out of time, and hessgap did not report a checkpoint: mpirun, for one, ends the ranks
    # itself on SIGTERM and exits 1. The last checkpoint hessgap wrote (train: every epoch) still resumes.
    hg_record cancelled "$rc"
    echo "ended by SIGTERM (cancelled or out of time), exit $rc: not requeued; resubmit to resume" >&2
    exit "$rc"
  fi
  hg_record failed "$rc"
  exit "$rc"
}
