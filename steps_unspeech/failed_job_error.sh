#!/usr/bin/env bash
# The one ERROR line of a step whose parallel jobs failed: the first failed
# job's own error (it names the file or utterance) and the path of its log.
#
#   steps_unspeech/failed_job_error.sh <step> <log-with-JOB> <nj> [<runner-stderr-file>] >&2
#   e.g. failed_job_error.sh make_fbank exp/make_fbank/train/make_fbank_train.JOB.log 4 $dir/runner.err
#   -> ERROR (make_fbank): job 3 failed: wav file not found ...: data/x.wav (log: exp/.../make_fbank_train.3.log)
#
# A failed job is one whose log ends in "# Ended (code N)" (run.pl, run_local.sh)
# or "# Finished at <date> with status N" (queue.pl, slurm.pl) with N != 0.
# Always exits 0.
if [ $# -lt 3 ] || [ $# -gt 4 ]; then
  echo "Usage: $0 <step> <log-with-JOB> <nj> [<runner-stderr-file>]" >&2
  exit 1
fi
step=$1 log_template=$2 nj=$3 runner_err=${4:-}
for ((n = 1; n <= nj; n++)); do
  log=${log_template//JOB/$n}
  grep -qE '^# (Ended \(code [1-9]|Finished at .* with status [1-9])' "$log" 2>/dev/null || continue
  msg=$(grep -h '^ERROR' "$log" | head -n 1)
  [ -n "$msg" ] || msg=$(grep -v '^#' "$log" | grep -v '^[[:space:]]*$' | tail -n 1)
  echo "ERROR ($step): job $n failed: $(printf '%s' "$msg" | sed 's/^ERROR ([^)]*): //') (log: $log)"
  exit 0
done
more=
[ -n "$runner_err" ] && [ -s "$runner_err" ] && more=": $(tr '\n' ' ' < "$runner_err" | sed 's/ *$//')"
echo "ERROR ($step): jobs failed$more (logs: ${log_template//JOB/*})"
exit 0
