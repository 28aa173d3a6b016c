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
period=10
padding=repeat
combine_contexts=false
speaker_vectors=false
fast=false
batch_size=512
num_threads=1
compress=true

help_message="Usage: $0 [options] <data-dir> <model-dir> <out-dir>
 e.g.: $0 --nj 4 --speaker-vectors true data/test exp/unspeech exp/unspeech/ivectors_test
Options (default):
  --nj <n>                  ($nj) parallel jobs (data dir split by speaker)
  --cmd <cmd>               ($cmd) job runner: run.pl, queue.pl, run_local.sh ...
  --period <n>              ($period) frames per output row (Kaldi's ivector_period)
  --padding <mode>          ($padding) windows past the last frame: repeat (repeat the last
                            frame) | zeros (zero frames) | last-window (reuse the last full window)
  --combine-contexts <b>    ($combine_contexts) append the context tower's embedding (2x dim)
  --speaker-vectors <b>     ($speaker_vectors) also write utt_vectors.scp (mean row per utterance)
  --fast <b>                ($fast) conv stack once per utterance, head per row (approximate)
  --batch-size <n>          ($batch_size) windows per forward pass
  --num-threads <n>         ($num_threads) TensorFlow threads per job (0: all cores)
  --compress <b>            ($compress) ivector_online rows as Kaldi compressed matrices (like Kaldi's
                            extract_ivectors_online.sh); false = float32 (utt_vectors: always float32)"

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

opts="--period $period --padding $padding --combine-contexts $combine_contexts --fast $fast"
opts="$opts --speaker-vectors $speaker_vectors --batch-size $batch_size --compress $compress"

# Checks the inputs, removes the merged scps of an earlier run, splits $data.
"$py" --task prepare --nj "$nj" $opts "$data" "$model_dir" "$dir" || exit 1

runner_err=$dir/log/.extract.runner.err
mkdir -p "$dir/log"
$cmd JOB=1:$nj "$dir/log/extract.JOB.log" \
  "$py" --task job --job JOB --nj "$nj" --num-threads "$num_threads" $opts "$data" "$model_dir" "$dir" \
  2> "$runner_err" || {
  # One line: the failed job's own error and its log; a rerun redoes only the unfinished jobs.
  "$(dirname "$0")/failed_job_error.sh" "$(basename "$0")" "$dir/log/extract.JOB.log" "$nj" "$runner_err" >&2
  exit 1
}
rm -f "$runner_err"

"$py" --task finalize --nj "$nj" $opts "$data" "$model_dir" "$dir" || exit 1
echo "$(basename "$0"): wrote $dir/ivector_online.scp (ivector_period $period)"
