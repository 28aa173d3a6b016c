#!/usr/bin/env bash
# A one-node Slurm cluster on this machine (munged, slurmctld, slurmd on 127.0.0.1),
# for running the recipe -- or its tests -- through Kaldi's utils/parallel/slurm.pl.
# Everything (slurm.conf, munge key and socket, spool, logs, pid files) lives in
# --state-dir; the system's /etc/slurm and /etc/munge are neither read nor changed,
# and the ports are not Slurm's defaults, so a site's own Slurm is left alone.
#
#   local/slurm_one_node.sh install          # apt-get install slurm-wlm munge (root only)
#   local/slurm_one_node.sh start            # prints the SLURM_CONF to export
#   export SLURM_CONF=/tmp/unspeech_slurm_0/slurm.conf
#   ./run.sh --nj 4 ...   with   train_cmd="$KALDI_ROOT/egs/wsj/s5/utils/parallel/slurm.pl"
#   local/slurm_one_node.sh stop
#
# Made for containers: no systemd, no cgroups (proctrack/linuxproc, task/none),
# no accounting database. CPUs and memory of the node come from `slurmd -C`.
set -euo pipefail

state_dir=/tmp/unspeech_slurm_$(id -u)
port=16817            # slurmctld; slurmd listens on port+1
partition=debug
timeout=60

help_message="Usage: $0 [options] install|start|stop|status
A one-node Slurm cluster on localhost, all of its files in --state-dir.
  install   apt-get install slurm-wlm munge (as root; nothing else installs anything)
  start     write <state-dir>/slurm.conf, start munged, slurmctld and slurmd, wait until
            the node is idle; prints the 'export SLURM_CONF=...' that sbatch/squeue need
  stop      cancel this cluster's jobs, stop the three daemons
  status    the daemons' state and sinfo; exit 0 only when the node is up
Options (default):
  --state-dir <dir>   ($state_dir) config, munge key/socket, spool, logs, pid files
  --port <n>          ($port) slurmctld port; slurmd uses port+1
  --partition <name>  ($partition) the (default) partition of the node
  --timeout <s>       ($timeout) seconds start waits for the node to become idle
e.g.: $0 --state-dir /tmp/myslurm start && export SLURM_CONF=/tmp/myslurm/slurm.conf"

. "$(dirname "$0")/../steps_unspeech/parse_options.sh"

if [ $# -ne 1 ]; then
  printf '%s\n' "$help_message" >&2
  exit 1
fi
action=$1

fail() { echo "ERROR ($(basename "$0")): $*" >&2; exit 1; }
case $port in ''|*[!0-9]*) fail "--port must be a number: $port" ;; esac
case $timeout in ''|*[!0-9]*) fail "--timeout must be whole seconds: $timeout" ;; esac

conf=$state_dir/slurm.conf
logs=$state_dir/log
export SLURM_CONF=$conf

need_slurm() {
  local missing="" t
  for t in munged slurmctld slurmd sinfo sbatch squeue scontrol; do
    command -v $t >/dev/null 2>&1 || [ -x /usr/sbin/$t ] || missing="$missing $t"
  done
  [ -z "$missing" ] || fail "missing Slurm/munge programs:$missing (install them: $0 install, as root)"
  export PATH=$PATH:/usr/sbin
}

alive() {  # alive <pid-file>: the process it names runs
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

launch() {  # launch <name> <command...>: a daemon kept in the foreground, in the background;
  # its pid goes to <state-dir>/<name>.pid at once, so stop finds it even mid-start.
  local name=$1; shift
  nohup "$@" >> "$logs/$name.out" 2>&1 < /dev/null &
  echo $! > "$state_dir/$name.pid"
}

node_state() {  # the node's state as sinfo says it; "" unless OUR slurmctld answers (not another on the port)
  local ours
  ours=$(timeout 10 scontrol show config 2>/dev/null | awk -F' *= *' '$1 == "StateSaveLocation" {print $2}' || true)
  [ "$ours" = "$state_dir/ctld" ] || return 0
  timeout 10 sinfo -h -N -o '%t' 2>/dev/null | head -n 1 || true
}

write_conf() {
  local node user hw
  node=$(hostname -s)
  user=$(id -un)
  # "NodeName=x CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=23000"
  hw=$(slurmd -C 2>/dev/null | sed -n 's/^NodeName=[^ ]* \(CPUs=.*RealMemory=[0-9]*\).*/\1/p')
  [ -n "$hw" ] || fail "'slurmd -C' did not report this machine's CPUs and memory"
  mkdir -p "$state_dir/ctld" "$state_dir/d" "$state_dir/munge" "$state_dir/run" "$logs"
  chmod 755 "$state_dir" "$state_dir/munge"   # other users' sbatch reach munged; the key is 0400
  cat > "$conf.tmp" <<EOF
# Written by $0 -- a one-node cluster on 127.0.0.1; rewritten by every start.
ClusterName=unspeech
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$state_dir/munge/munge.socket.2
StateSaveLocation=$state_dir/ctld
SlurmdSpoolDir=$state_dir/d
SlurmctldPidFile=$state_dir/run/slurmctld.pid
SlurmdPidFile=$state_dir/run/slurmd.pid
SlurmctldLogFile=$logs/slurmctld.log
SlurmdLogFile=$logs/slurmd.log
# No systemd or cgroups in a container: track job processes through /proc.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=60
NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=$partition Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$conf.tmp" "$conf"
}

start_munged() {
  local key=$state_dir/munge/munge.key
  if [ ! -s "$key" ]; then
    (umask 077; dd if=/dev/urandom of="$key.tmp" bs=1024 count=1 2>/dev/null) && mv "$key.tmp" "$key" ||
      fail "cannot write the munge key $key"
  fi
  # --force: munged refuses root and some container file modes without it.
  launch munged munged --foreground --force --key-file="$key" --socket="$state_dir/munge/munge.socket.2" \
    --pid-file="$state_dir/run/munged.pid" --seed-file="$state_dir/munge/munged.seed" \
    --log-file="$logs/munged.log"
  local n=0
  until [ -S "$state_dir/munge/munge.socket.2" ]; do   # slurmctld needs it from the start
    alive "$state_dir/munged.pid" && [ $n -lt 300 ] || return 1
    sleep 0.1; n=$((n + 1))
  done
}

do_start() {
  need_slurm
  if alive "$state_dir/slurmctld.pid" && alive "$state_dir/slurmd.pid" && [ "$(node_state)" = idle ]; then
    echo "$(basename "$0"): already running ($state_dir)"
    echo "export SLURM_CONF=$conf"
    return 0
  fi
  do_stop >/dev/null 2>&1 || true   # half-started leftovers of an earlier start
  write_conf
  # A failed start stops what it started: no half-up cluster is left behind.
  start_failed() {
    local why
    why=$(grep -hE 'fatal:|Unable to|Error:' "$logs"/* 2>/dev/null | tail -n 1 || true)
    do_stop >/dev/null 2>&1 || true
    fail "$*${why:+ (last error: $why)}"
  }
  start_munged || start_failed "munged did not start; see $logs/munged.log and $logs/munged.out"
  # -D: stay in the foreground (launch keeps the pid); -c: a cold start, no jobs
  # recovered from an earlier run of this state dir.
  launch slurmctld slurmctld -D -c -f "$conf"
  launch slurmd slurmd -D -f "$conf" -N "$(hostname -s)"
  local waited=0 st
  while true; do
    alive "$state_dir/slurmctld.pid" || start_failed "slurmctld stopped; see $logs/slurmctld.log"
    alive "$state_dir/slurmd.pid" || start_failed "slurmd stopped; see $logs/slurmd.log"
    st=$(node_state)
    case $st in idle|mix|alloc) break ;; esac
    if [ "$waited" -ge "$timeout" ]; then
      start_failed "the node is not idle after ${timeout} s (sinfo state: '${st:-no answer}'); see" \
           "$logs/slurmctld.log, $logs/slurmd.log and $logs/munged.log"
    fi
    sleep 1; waited=$((waited + 1))
  done
  echo "$(basename "$0"): one-node cluster up after ${waited} s: node $(hostname -s)," \
       "partition $partition, $(sed -n 's/^NodeName=.* \(CPUs=[0-9]*\).*\(RealMemory=[0-9]*\).*/\1 \2 MB/p' "$conf")"
  echo "export SLURM_CONF=$conf"
}

stop_pid() {  # stop_pid <pid-file>: TERM the process, KILL it after 10 s
  local f=$1 pid n=0
  alive "$f" || { rm -f "$f"; return 0; }
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && [ $n -lt 20 ]; do sleep 0.5; n=$((n + 1)); done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  rm -f "$f"
}

do_stop() {
  [ -f "$conf" ] || { echo "$(basename "$0"): nothing to stop (no $conf)"; return 0; }
  need_slurm
  if alive "$state_dir/slurmctld.pid"; then
    timeout 10 scancel --user "$(id -un)" 2>/dev/null || true
    timeout 10 scontrol shutdown 2>/dev/null || true
  fi
  stop_pid "$state_dir/slurmd.pid"
  stop_pid "$state_dir/slurmctld.pid"
  stop_pid "$state_dir/munged.pid"
  echo "$(basename "$0"): stopped ($state_dir)"
}

do_status() {
  local name f up=0
  for name in munged slurmctld slurmd; do
    f=$state_dir/$name.pid
    if alive "$f"; then echo "$name: running (pid $(cat "$f"))"; else echo "$name: not running"; up=1; fi
  done
  if [ $up -eq 0 ]; then
    need_slurm
    timeout 10 sinfo -N -l 2>/dev/null || up=1
    echo "export SLURM_CONF=$conf"
  fi
  return $up
}

do_install() {
  if command -v slurmctld >/dev/null 2>&1 || [ -x /usr/sbin/slurmctld ]; then
    if { command -v munged || [ -x /usr/sbin/munged ]; } >/dev/null 2>&1; then
      echo "$(basename "$0"): slurm-wlm and munge are already installed"; return 0
    fi
  fi
  [ "$(id -u)" = 0 ] || fail "install needs root (apt-get); as root: apt-get install slurm-wlm munge"
  command -v apt-get >/dev/null || fail "install needs apt-get (Debian/Ubuntu); install Slurm and munge yourself"
  echo "$(basename "$0"): apt-get install slurm-wlm munge"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurm-wlm munge >/dev/null || fail "apt-get install slurm-wlm munge failed"
}

case $action in
  install) do_install ;;
  start)   do_start ;;
  stop)    do_stop ;;
  status)  do_status ;;
  *) fail "unknown action '$action' (install | start | stop | status)" ;;
esac
