#!/usr/bin/env bash
# Extract unspeech embeddings of a data dir into a Kaldi online-ivector dir:
# <out-dir>/ivector_online.scp (+ ivector_online.JOB.ark), ivector_period,
# final.ie.id (the model id) and the model's config.json. Point Kaldi's
# steps/nnet3/chain/train.py --feat.online-ivector-dir and
# steps/nnet3/decode.sh --online-ivector-dir at it.
#
# Row i of an utterance of T frames is the embedding of the window starting at
# frame i*period; every utterance gets exactly ceil(T/period) rows.
# Interrupted runs leave no ivector_online.scp; rerunning finishes the jobs that
# are missing (per-job .done markers) and gives identical files.
set -euo pipefail

nj=4
cmd=$(dirname "$0")/run_local.sh
passthrough=()   # every other option (and --config FILE) goes to extract_unspeech.py unchanged
passthrough_help=$(dirname "$0")/extract_unspeech.py

help_message="Usage: $0 [options] <data-dir> <model-dir> <out-dir>
 e.g.: $0 --nj 4 --speaker-vectors true data/test exp/unspeech exp/unspeech/ivectors_test
Job options (default):
  --nj <n>                  ($nj) parallel jobs (data dir split by speaker)
  --cmd <cmd>               ($cmd) job runner: run.pl, queue.pl, run_local.sh ...
Every other option (--period, --padding, --speaker-vectors, --compress, --num-threads, ...,
and --config FILE of --name=value lines) is passed unchanged to all three tasks of
extract_unspeech.py, which owns their defaults and ranges (listed below)."

. "$(dirname "$0")/parse_options.sh"

if [ $# -ne 3 ]; then
  printf '%s\n' "$help_message" >&2
  exit 1
fi
data=$1
model_dir=$2
dir=$3
py=$(dirname "$0")/extract_unspeech.py

. "$(dirname "$0")/lock_dir.sh" "$dir"

# Checks the inputs, removes the merged scps of an earlier run, splits $data.
"$py" --task prepare --nj "$nj" "${passthrough[@]}" "$data" "$model_dir" "$dir" || exit 1

runner_err=$dir/log/.extract.runner.err
mkdir -p "$dir/log"
$cmd JOB=1:$nj "$dir/log/extract.JOB.log" \
  "$py" --task job --job JOB --nj "$nj" "${passthrough[@]}" "$data" "$model_dir" "$dir" \
  2> "$runner_err" || {
  # One line: the failed job's own error and its log; a rerun redoes only the unfinished jobs.
  "$(dirname "$0")/failed_job_error.sh" "$(basename "$0")" "$dir/log/extract.JOB.log" "$nj" "$runner_err" >&2
  exit 1
}
rm -f "$runner_err"

"$py" --task finalize --nj "$nj" "${passthrough[@]}" "$data" "$model_dir" "$dir" || exit 1
echo "$(basename "$0"): wrote $dir/ivector_online.scp (ivector_period $(cat "$dir/ivector_period"))"
