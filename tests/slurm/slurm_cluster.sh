#!/usr/bin/env bash
# A one-node Slurm on this machine, for testing the sbatch scripts in slurm/ against a real Slurm.
#
#   tests/slurm/slurm_cluster.sh start  WORKDIR   munged, slurmctld and slurmd; waits until the node is idle
#   tests/slurm/slurm_cluster.sh stop   WORKDIR   cancels every job, stops the daemons, kills leftover steps
#   tests/slurm/slurm_cluster.sh status WORKDIR   daemons, sinfo, squeue; exit 0 when the node is usable
#
# Everything lives in WORKDIR (munge key and socket, slurm.conf, state, spool, logs, pid files); nothing
# in /etc is used, so a system Slurm or munge is neither needed nor touched. Clients find the cluster
# through SLURM_CONF: `start` prints `export SLURM_CONF=WORKDIR/etc/slurm.conf` and writes it to
# WORKDIR/env.sh. The daemons run as the calling user (SlurmUser = that user; root in CI).
#
# Exit codes: 0 ok, 1 failure (the daemons' log tails are printed), 2 usage, 77 Slurm or munge is not
# installed (a test skips on it).
#
# Plugin choices, made for containers (gVisor, Docker) where cgroups are absent, read-only or fake:
#   ProctrackType=proctrack/linuxproc  tracks a job's processes through /proc parent links (no cgroup);
#                                      unlike proctrack/pgid it also finds children that change their
#                                      process group (mpirun's daemons), so signals and kills reach them
#   TaskPlugin=task/none               no binding, no cgroup confinement
#   JobAcctGatherType=jobacct_gather/none, AccountingStorageType=accounting_storage/none: no slurmdbd
#   SelectType=select/cons_tres + CR_CPU: CPUs are the only consumable (no memory limits to configure)
#   SlurmdParameters=config_overrides: the node is what slurm.conf says (CPUs=2) whatever hwloc sees,
#                                      so a container's odd topology cannot drain it
#   AuthInfo cred_expire=10: a requeued job waits cred_expire seconds before it may start again
#                            (default 120 s, far too long for a test)
set -euo pipefail

usage() { echo "usage: $0 start|stop|status WORKDIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
CMD=$1
W=$2
[[ $W == /* ]] || W="$PWD/$W"

CONF="$W/etc/slurm.conf"
SOCK="$W/munge/munge.socket.2"
NODE=$(hostname -s)
export SLURM_CONF="$CONF"

log() { echo "slurm_cluster: $*" >&2; }

need_commands() {
  local c missing=()
  for c in munged munge unmunge slurmctld slurmd sbatch sinfo squeue scontrol scancel; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  if ((${#missing[@]})); then
    log "not installed: ${missing[*]} (Debian packages slurm-wlm and munge)"
    exit 77
  fi
}

# pid of a daemon from its pid file, if that process is alive and is that daemon (a stale pid file
# may name a recycled pid).
live_pid() {
  local file=$1 name=$2 pid
  [[ -s $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] || return 1
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmdline" == *"$name"* ]] || return 1
  echo "$pid"
}

# Stops one daemon: SIGTERM, up to 15 s, then SIGKILL.
stop_pid() {
  local file=$1 name=$2 pid i
  pid=$(live_pid "$file" "$name") || { rm -f "$file"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    [[ -d /proc/$pid ]] || break
    sleep 0.1
  done
  if [[ -d /proc/$pid ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$file"
}

node_state() { sinfo -h -n "$NODE" -o %t 2>/dev/null | head -1; }

# TCP ports that something listens on (from /proc/net/tcp*, state 0A = LISTEN), in decimal.
listening_ports() {
  local _ local_addr _ _ st _
  cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | while read -r _ local_addr _ st _; do
    [[ $st == 0A ]] && echo $((16#${local_addr##*:}))
  done | sort -u
}

# Two consecutive free ports from HG_SLURM_PORT (default 6817, Slurm's own): a leftover cluster of an
# earlier, killed test (other WORKDIR) then cannot block this one.
pick_ports() {
  local p=${HG_SLURM_PORT:-6817} used
  used=" $(listening_ports | tr '\n' ' ') "
  while [[ $used == *" $p "* || $used == *" $((p + 1)) "* ]]; do p=$((p + 2)); done
  echo "$p"
}

show_logs() {
  local f
  for f in "$W"/log/*.log; do
    [[ -f $f ]] || continue
    echo "----- $f (last 25 lines)" >&2
    tail -n 25 "$f" >&2
  done
}

healthy() {
  live_pid "$W/run/munged.pid" munged >/dev/null && live_pid "$W/run/slurmctld.pid" slurmctld >/dev/null &&
    live_pid "$W/run/slurmd.pid" slurmd >/dev/null && [[ $(node_state) =~ ^(idle|mix|alloc)$ ]]
}

# slurmstepd processes (the jobs' step daemons) outlive slurmd; ours are those whose working directory
# is in this WORKDIR (slurmd's daemon chdir: the log directory).
leftover_stepds() {
  local p
  for p in /proc/[0-9]*; do
    [[ $(cat "$p/comm" 2>/dev/null) == slurmstepd ]] || continue
    [[ $(readlink "$p/cwd" 2>/dev/null) == "$W/"* ]] && echo "${p#/proc/}"
  done
  return 0
}

write_conf() {
  local port=$1 user
  user=$(id -un)
  mkdir -p "$W/etc"
  cat >"$CONF" <<EOF
# Generated by tests/slurm/slurm_cluster.sh: a one-node test cluster; see the script for the choices.
ClusterName=hgtest
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK,cred_expire=10
StateSaveLocation=$W/state
SlurmdSpoolDir=$W/spool
SlurmctldPidFile=$W/run/slurmctld.pid
SlurmdPidFile=$W/run/slurmd.pid
SlurmctldLogFile=$W/log/slurmctld.log
SlurmdLogFile=$W/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
# Schedule often: a requeued job becomes eligible after cred_expire and should start promptly.
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=none
JobRequeue=1
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=10
MinJobAge=600
InactiveLimit=0
MailProg=/bin/true
NodeName=$NODE NodeHostname=$NODE NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  need_commands
  mkdir -p "$W"
  if [[ -f $CONF ]] && healthy; then
    log "already running in $W (node $NODE $(node_state))"
    echo "export SLURM_CONF=$CONF"
    return 0
  fi
  # Leftovers of an earlier start in this WORKDIR (crashed daemons, stale pid files and sockets, old
  # job state): stop what still runs and start clean (slurmctld -c below drops saved jobs).
  [[ -f $CONF ]] && stop quiet
  rm -rf "$W/state" "$W/spool" "$W/run" "$W/log"
  mkdir -p "$W/state" "$W/spool" "$W/run" "$W/log" "$W/munge" "$W/etc"

  # munged refuses a socket whose directory (and every parent) is not searchable by everyone.
  chmod 0755 "$W" "$W/munge"
  local d=$W
  while [[ $d != / ]]; do
    d=$(dirname "$d")
    if (( (8#$(stat -c %a "$d") & 1) == 0 )); then
      log "munged needs every directory above its socket to be searchable by all; $d is not (use e.g. /tmp/...)"
      exit 1
    fi
  done

  # A fresh key per cluster, readable by the daemon user only (munged checks).
  if [[ ! -s $W/munge/munge.key ]]; then
    if command -v mungekey >/dev/null; then
      mungekey --create --bits=1024 --keyfile="$W/munge/munge.key"
    else
      dd if=/dev/urandom of="$W/munge/munge.key" bs=128 count=1 status=none
    fi
  fi
  chmod 0600 "$W/munge/munge.key"

  rm -f "$SOCK" "$SOCK.lock"
  munged --socket="$SOCK" --key-file="$W/munge/munge.key" --pid-file="$W/run/munged.pid" \
    --log-file="$W/log/munged.log" --seed-file="$W/munge/munged.seed" ||
    { log "munged failed to start"; show_logs; exit 1; }
  local i
  for ((i = 0; i < 100; i++)); do
    munge -S "$SOCK" -n 2>/dev/null | unmunge -S "$SOCK" >/dev/null 2>&1 && break
    sleep 0.1
  done
  munge -S "$SOCK" -n | unmunge -S "$SOCK" >/dev/null || { log "munge does not answer on $SOCK"; show_logs; exit 1; }

  local port
  port=$(pick_ports)
  write_conf "$port"

  # Both daemons fork into the background and write their pid files.
  slurmctld -c -f "$CONF" || { log "slurmctld failed to start"; show_logs; exit 1; }
  for ((i = 0; i < 150; i++)); do
    [[ $(scontrol ping 2>/dev/null || true) == *"is UP"* ]] && break
    sleep 0.2
  done
  [[ $(scontrol ping 2>&1 || true) == *"is UP"* ]] || { log "slurmctld does not answer"; show_logs; exit 1; }
  slurmd -f "$CONF" -N "$NODE" || { log "slurmd failed to start"; show_logs; exit 1; }

  local state=""
  for ((i = 0; i < 300; i++)); do
    state=$(node_state)
    [[ $state == idle ]] && break
    # A node left down/drained by an earlier life of this cluster: return it to service.
    if [[ $state =~ ^(down|drain|drng|fail)\*?$ ]] && ((i % 25 == 10)); then
      scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
    fi
    sleep 0.2
  done
  if [[ $state != idle ]]; then
    log "node $NODE is '$state', not idle, after 60 s"
    scontrol show node "$NODE" >&2 || true
    show_logs
    exit 1
  fi
  echo "export SLURM_CONF=$CONF" >"$W/env.sh"
  log "up: node $NODE idle, ports $port/$((port + 1)), $W"
  echo "export SLURM_CONF=$CONF"
}

stop() {
  local quiet=${1:-}
  if [[ -f $CONF ]] && live_pid "$W/run/slurmctld.pid" slurmctld >/dev/null; then
    # Cancel every job (all steps and the batch shell) and give them KillWait to end, so that nothing
    # of a test keeps running after its cluster is gone.
    local jobs i
    jobs=$(squeue -h -o %A 2>/dev/null || true)
    if [[ -n $jobs ]]; then
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      for ((i = 0; i < 150; i++)); do
        [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break
        sleep 0.2
      done
    fi
  fi
  stop_pid "$W/run/slurmd.pid" slurmd
  stop_pid "$W/run/slurmctld.pid" slurmctld
  local p
  for p in $(leftover_stepds); do kill -KILL "$p" 2>/dev/null || true; done
  stop_pid "$W/run/munged.pid" munged
  rm -f "$SOCK" "$SOCK.lock"
  [[ -n $quiet ]] || log "stopped ($W)"
}

status() {
  local rc=0 d
  for d in munged slurmctld slurmd; do
    if pid=$(live_pid "$W/run/$d.pid" "$d"); then echo "$d: running (pid $pid)"; else echo "$d: not running"; rc=3; fi
  done
  if ((rc == 0)); then
    sinfo || rc=3
    squeue || rc=3
    [[ $(node_state) =~ ^(idle|mix|alloc)$ ]] || rc=3
  fi
  echo "export SLURM_CONF=$CONF"
  return $rc
}

case "$CMD" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) usage ;;
esac
