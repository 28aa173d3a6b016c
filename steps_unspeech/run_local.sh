#!/usr/bin/env bash
# Local job runner with the calling convention of Kaldi's utils/run.pl, used by
# cmd.sh when no Kaldi is installed.
#
#   run_local.sh [--max-jobs-run N] JOB=1:4 exp/x/log/job.JOB.log python3 step.py --part JOB
#   run_local.sh exp/x/log/one.log some-command args
#
# Every occurrence of "JOB" in the log name and the command is replaced by the
# job number. Each log gets the command, start/end time and exit code, like
# run.pl's. Exits 1 (naming the failed logs) if any job fails.
set -u
max_jobs=0   # 0 = all at once, like run.pl
while [ $# -gt 0 ]; do
  case "$1" in
    --max-jobs-run) max_jobs=$2; shift 2 ;;
    --max-jobs-run=*) max_jobs=${1#*=}; shift ;;
    --*) shift; [ $# -gt 0 ] && case "$1" in -*|*=*) ;; *) shift ;; esac ;;  # queue options: ignored locally
    *) break ;;
  esac
done
if [ $# -lt 2 ]; then
  echo "Usage: $0 [--max-jobs-run N] [JOB=1:N] <log-file> <command...>" >&2; exit 1
fi
var=; first=1; last=1
if [[ "$1" =~ ^([A-Za-z_][A-Za-z0-9_]*)=([0-9]+):([0-9]+)$ ]]; then
  var=${BASH_REMATCH[1]}; first=${BASH_REMATCH[2]}; last=${BASH_REMATCH[3]}; shift
elif [[ "$1" =~ ^([A-Za-z_][A-Za-z0-9_]*)=([0-9]+)$ ]]; then
  var=${BASH_REMATCH[1]}; first=${BASH_REMATCH[2]}; last=$first; shift
fi
logtmpl=$1; shift
cmdtmpl="$*"

run_one() {  # job-number
  local n=$1 log cmd start rc
  log=$logtmpl; cmd=$cmdtmpl
  if [ -n "$var" ]; then log=${log//$var/$n}; cmd=${cmd//$var/$n}; fi
  mkdir -p "$(dirname "$log")" || return 1
  start=$(date +%s)
  { echo "# $cmd"; echo "# Started at $(date)"; echo "#"; } > "$log"
  ( eval "$cmd" ) >> "$log" 2>&1
  rc=$?
  { echo "# Accounting: time=$(( $(date +%s) - start )) threads=1"
    echo "# Ended (code $rc) at $(date), elapsed time $(( $(date +%s) - start )) seconds"; } >> "$log"
  return $rc
}

declare -a pids=() nums=()
failed=()
for ((n = first; n <= last; n++)); do
  run_one "$n" &
  pids+=($!); nums+=("$n")
  if [ "$max_jobs" -gt 0 ] && [ ${#pids[@]} -ge "$max_jobs" ]; then
    wait "${pids[0]}" || failed+=("${nums[0]}")
    pids=("${pids[@]:1}"); nums=("${nums[@]:1}")
  fi
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=("${nums[$i]}")
done
if [ ${#failed[@]} -gt 0 ]; then
  total=$((last - first + 1))
  log=$logtmpl; [ -n "$var" ] && log=${log//$var/${failed[0]}}
  echo "$(basename "$0"): ${#failed[@]} / $total failed, log is in $log" >&2
  tail -n 4 "$log" | grep -E '^ERROR' >&2
  exit 1
fi
exit 0
