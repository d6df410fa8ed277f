#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, natively (munged + slurmctld + slurmd on 127.0.0.1), for trying
# infra/slurm/train.sbatch and for the tests that submit real jobs (tests/slurm_cluster.py).
#
#   infra/slurm-local.sh up        # munged (own key and socket), slurmctld, slurmd; waits until the node is idle
#   eval "$(infra/slurm-local.sh env)"   # this shell is now a client of it (SLURM_CONF)
#   sbatch --ntasks=2 --wrap 'srun hostname'; squeue; scontrol show job -o JOBID
#   infra/slurm-local.sh status    # sinfo
#   infra/slurm-local.sh down      # cancel the jobs still queued or running, stop what `up` started (the state dir
#                                  # stays: `up` again resumes it, finished jobs still listed)
#
# Everything lives in the state directory: slurm.conf, the munge key and socket, the daemons' logs, pids and spool.
# Nothing in /etc is read or written: clients find the cluster through SLURM_CONF, and slurm.conf names the munge
# socket (AuthInfo=socket=…), so a system-wide Slurm or munge on the same machine is left alone.
#
# One node (the CPUs, cores and memory `slurmd -C` detects), one partition `debug`; jobs may share cores
# (OverSubscribe=FORCE), so a long job never blocks a second one on a small machine. Finished jobs stay visible to
# `scontrol show job` for an hour (MinJobAge). No cgroups (proctrack/linuxproc, task/none): it runs in containers.
#
# Settings (environment):
#   LMPIPE_SLURM_DIR       the state directory                         (default: $PWD/.stack/slurm)
#   LMPIPE_SLURMCTLD_PORT  slurmctld's port on 127.0.0.1               (default: 16817; not Slurm's 6817)
#   LMPIPE_SLURMD_PORT     slurmd's port on 127.0.0.1                  (default: 16818; not Slurm's 6818)
#   LMPIPE_SLURM_TIMEOUT   seconds `up` waits for the node to be idle  (default: 60)
# Needs Debian's `apt-get install slurm-wlm munge`. Run as root (slurmd launches the jobs); the daemons run as the
# user who runs `up`. The ports are read when slurm.conf is written, on every `up` while nothing runs.
set -euo pipefail

STATE="${LMPIPE_SLURM_DIR:-$PWD/.stack/slurm}"
CTLD_PORT="${LMPIPE_SLURMCTLD_PORT:-16817}"
SLURMD_PORT="${LMPIPE_SLURMD_PORT:-16818}"
TIMEOUT="${LMPIPE_SLURM_TIMEOUT:-60}"
NODE=localhost          # NodeName; slurmd is started with -N, so it need not be `hostname -s`
PARTITION=debug
CONF="$STATE/slurm.conf"
MUNGE_DIR="$STATE/munge"
SOCKET="$MUNGE_DIR/munge.socket.2"
export SLURM_CONF="$CONF"  # for the sinfo/scontrol/scancel calls below
PATH="$PATH:/usr/sbin:/sbin"  # the daemons live there; a non-login root shell may lack it

log() { printf '[slurm-local] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need() {
  local b
  for b in munged munge slurmctld slurmd sinfo scontrol; do
    command -v "$b" >/dev/null || die "$b not found: apt-get install slurm-wlm munge"
  done
}

running() { [[ -f "$STATE/run/$1.pid" ]] && kill -0 "$(cat "$STATE/run/$1.pid")" 2>/dev/null; }

wait_for() {  # wait_for WHAT SECONDS LOG CMD...
  local what="$1" secs="$2" logf="$3"; shift 3
  for _ in $(seq "$((secs * 2))"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  die "$what not ready after ${secs} s (see $logf)"
}

write_conf() {
  # The node's hardware as slurmd sees it ("NodeName=vm CPUs=2 Boards=1 … RealMemory=…"), under our own name.
  local hw user
  hw="$(slurmd -C | head -1 | sed -E 's/^NodeName=[^ ]+ //')"
  [[ "$hw" == *CPUs=* ]] || die "slurmd -C did not report the node's CPUs: $hw"
  user="$(id -un)"
  mkdir -p "$STATE/run" "$STATE/logs" "$STATE/spool" "$STATE/state"
  : > "$STATE/plugstack.conf"
  cat > "$CONF.tmp" <<EOF
# Written by infra/slurm-local.sh: a one-node cluster on 127.0.0.1. Rewritten on every \`up\`; edit the script.
ClusterName=lmpipe-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
# slurmctld, slurmd and srun bind the address the host name resolves to (127.0.0.1 here), not every interface.
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=3600
KillWait=5
MailProg=/bin/true
PlugStackConfig=$STATE/plugstack.conf
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/logs/slurmctld.log
SlurmdLogFile=$STATE/logs/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE $hw State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
  mv "$CONF.tmp" "$CONF"
}

up_munge() {
  # munged checks that the socket's directory is reachable by everyone and not writable by others, and that the key
  # is the daemon user's and private; --force lets it run under a private parent (pytest's tmp dirs are 0700).
  (( ${#SOCKET} < 108 )) || die "munge socket path too long for a unix socket (${#SOCKET} > 107): $SOCKET"
  mkdir -p "$MUNGE_DIR"
  chmod 0755 "$MUNGE_DIR"
  if [[ ! -f "$MUNGE_DIR/munge.key" ]]; then
    (umask 077; head -c 1024 /dev/urandom > "$MUNGE_DIR/munge.key")
  fi
  chmod 0400 "$MUNGE_DIR/munge.key"
  if running munged; then log "munged already running (pid $(cat "$STATE/run/munged.pid"))"; return; fi
  rm -f "$SOCKET" "$SOCKET.lock"
  munged --force --socket="$SOCKET" --key-file="$MUNGE_DIR/munge.key" --pid-file="$STATE/run/munged.pid" \
    --log-file="$STATE/logs/munged.log" --seed-file="$MUNGE_DIR/munged.seed" \
    || die "munged did not start (see $STATE/logs/munged.log)"
  wait_for munged 10 "$STATE/logs/munged.log" sh -c "munge -S '$SOCKET' -n | unmunge -S '$SOCKET'"
  log "munged started (pid $(cat "$STATE/run/munged.pid"), socket $SOCKET)"
}

start_daemon() {  # start_daemon NAME CMD...: a daemon that forks and writes its own pid file (named in slurm.conf)
  local name="$1"; shift
  if running "$name"; then log "$name already running (pid $(cat "$STATE/run/$name.pid"))"; return; fi
  rm -f "$STATE/run/$name.pid"
  "$@" >>"$STATE/logs/$name.log" 2>&1 < /dev/null || die "$name did not start (see $STATE/logs/$name.log)"
  wait_for "$name" 10 "$STATE/logs/$name.log" running "$name"
  log "$name started (pid $(cat "$STATE/run/$name.pid"), log $STATE/logs/$name.log)"
}

node_idle() {
  local st
  st="$(sinfo -h -n "$NODE" -o %T 2>/dev/null)" || return 1
  [[ "$st" =~ ^(idle|mixed|allocated)$ ]]  # not "idle*": recovered from the saved state, slurmd not registered yet
}

up() {
  need
  mkdir -p "$STATE/run" "$STATE/logs"
  if ! running slurmctld && ! running slurmd; then write_conf; fi
  [[ -f "$CONF" ]] || die "$CONF missing while Slurm daemons run from $STATE: run down, then up"
  up_munge
  # -i: resume the saved state (queued and finished jobs) but start anyway if it cannot be read.
  start_daemon slurmctld slurmctld -i -f "$CONF"
  wait_for slurmctld 30 "$STATE/logs/slurmctld.log" scontrol ping
  start_daemon slurmd slurmd -N "$NODE" -f "$CONF"
  for _ in $(seq "$((TIMEOUT * 2))"); do
    if node_idle; then
      log "up: node $NODE $(sinfo -h -n "$NODE" -o '%T, %c CPUs, %m MB'), partition $PARTITION. Clients: export SLURM_CONF=$CONF"
      return 0
    fi
    sleep 0.5
  done
  sinfo -N -l >&2 || true
  die "node $NODE not idle after ${TIMEOUT} s (see $STATE/logs/slurmctld.log and $STATE/logs/slurmd.log)"
}

stop_pid() {
  local name="$1" pid
  [[ -f "$STATE/run/$name.pid" ]] || return 0
  pid="$(cat "$STATE/run/$name.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    log "$name stopped"
  fi
  rm -f "$STATE/run/$name.pid"
}

cancel_jobs() {  # the jobs' processes (slurmstepd and below) would outlive slurmd: cancel them while it runs
  running slurmctld || return 0
  [[ -n "$(squeue -h -t PENDING,RUNNING,SUSPENDED,COMPLETING -o %i 2>/dev/null)" ]] || return 0
  scancel --partition="$PARTITION" 2>/dev/null || true
  for _ in $(seq 60); do
    [[ -z "$(squeue -h -o %i 2>/dev/null)" ]] && { log "jobs cancelled"; return 0; }
    sleep 0.5
  done
  log "warning: jobs still listed after 30 s: $(squeue -h -o '%i %T' | tr '\n' ' ')"
}

down() {
  # Jobs first, then slurmd and slurmctld (it saves its state on SIGTERM) side by side (each takes ~2 s), munged last.
  cancel_jobs
  stop_pid slurmd &
  stop_pid slurmctld &
  wait
  stop_pid munged
}

status() {
  local name
  for name in munged slurmctld slurmd; do
    if running "$name"; then echo "$name: running (pid $(cat "$STATE/run/$name.pid"))"; else echo "$name: stopped"; fi
  done
  if running slurmctld; then sinfo; fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
