#!/usr/bin/env bash
# Cluster the utterances of an extraction dir into pseudo-speakers (one vector per
# utterance: utt_vectors.scp, else the mean of its ivector_online.scp rows; --method
# hdbscan | spectral | ahc, each choosing the number of speakers itself) and, given
# gold speakers, score the result.
#
# Writes <out-dir>/utt2spk + spk2utt (speakers unspk0000001, ... numbered by
# cluster size; keyed by the input utterance ids -- relabel_data_dir.sh turns
# them into a Kaldi data dir), clusters.txt, embedding_map.png, and with
# --utt2spk <gold>: scores.json (ARI, NMI, V-measure, purity, EER, minDCF, the
# method's choice ...). The log with a readable summary is <out-dir>/log/cluster.log.
# A rerun with the same inputs and options does nothing; utt2spk and .done are
# written last.

cmd=$(dirname "$0")/run_local.sh
passthrough=()   # every other option (and --config FILE) goes to cluster_utts.py unchanged
passthrough_help=$(dirname "$0")/cluster_utts.py

help_message="Usage: $0 [options] <ivector-or-utt-vector-dir> <out-dir>
 e.g.: $0 --utt2spk data/test/utt2spk.gold exp/unspeech/ivectors_test exp/unspeech/cluster_test
Job options (default):
  --cmd <cmd>               ($cmd) job runner: run.pl, queue.pl, slurm.pl, run_local.sh ...
Every other option (--method, --utt2spk, --mode, --min-cluster-size, --threshold, ...,
and --config FILE of --name=value lines) is passed unchanged to cluster_utts.py, which
owns their defaults and ranges (listed below)."

. "$(dirname "$0")/parse_options.sh"

if [ $# -ne 2 ]; then
  printf '%s\n' "$help_message" >&2
  exit 1
fi
src=$1
dir=$2
py=$(dirname "$0")/cluster_utts.py

if ! mkdir -p "$dir" 2>/dev/null || [ ! -w "$dir" ]; then
  echo "ERROR ($(basename "$0")): cannot create or write output directory: $dir" >&2
  exit 1
fi
. "$(dirname "$0")/lock_dir.sh" "$dir"

runner_err=$dir/.cluster.runner.err
$cmd "$dir/log/cluster.log" "$py" "${passthrough[@]}" "$src" "$dir" 2> "$runner_err" || {
  # One line: the step's own ERROR line from the log, else what the job runner said
  # (e.g. sbatch/qsub refused the job: then there is no log).
  grep -hs '^ERROR' "$dir/log/cluster.log" >&2 ||
    echo "ERROR ($(basename "$0")): clustering failed: $(tr '\n' ' ' < "$runner_err" | sed 's/ *$//')" \
         "(log: $dir/log/cluster.log)" >&2
  exit 1
}
rm -f "$runner_err"

grep -h 'summary: ' "$dir/log/cluster.log" | sed 's/.*summary: /  /'
if grep -q '"mode": "samedifferent"' "$dir/.done"; then
  echo "$(basename "$0"): wrote $dir/scores.json (log: $dir/log/cluster.log)"
else
  echo "$(basename "$0"): wrote $dir/utt2spk (log: $dir/log/cluster.log)"
fi
