#!/usr/bin/env bash
# Cluster the utterances of an extraction dir into pseudo-speakers with HDBSCAN
# (one vector per utterance: utt_vectors.scp, else the mean of its
# ivector_online.scp rows) and, given gold speakers, score the result.
#
# Writes <out-dir>/utt2spk + spk2utt (speakers unspk0000001, ... numbered by
# cluster size; keyed by the input utterance ids -- relabel_data_dir.sh turns
# them into a Kaldi data dir), clusters.txt, embedding_map.png, and with
# --utt2spk <gold>: scores.json (ARI, NMI, V-measure, purity, EER, minDCF ...).
# The log with a readable summary is <out-dir>/log/cluster.log. A rerun with the
# same inputs and options does nothing; utt2spk and .done are written last.

cmd=$(dirname "$0")/run_local.sh
utt2spk=none
mode=cluster
half_index=0
subtract_mean=true
l2_normalize=true
pca_dim=0
min_cluster_size=5
min_samples=3
metric=euclidean
algorithm=boruvka_kdtree
outliers=own
max_exact=20000
max_pairs=1000000
plot=true
seed=0
num_threads=1

help_message="Usage: $0 [options] <ivector-or-utt-vector-dir> <out-dir>
 e.g.: $0 --utt2spk data/test/utt2spk.gold exp/unspeech/ivectors_test exp/unspeech/cluster_test
Options (default):
  --cmd <cmd>               ($cmd) job runner: run.pl, queue.pl, run_local.sh ...
  --utt2spk <file|none>     ($utt2spk) gold utt2spk: write scores.json
  --mode <m>                ($mode) cluster | samedifferent (only same/different-speaker
                            trials: EER, minDCF; needs --utt2spk; no utt2spk written)
  --half-index <n>          ($half_index) keep the first n dims (target part of target+context
                            vectors); 0 = all
  --subtract-mean <b>       ($subtract_mean) subtract the mean vector of the set
  --l2-normalize <b>        ($l2_normalize) length-normalise every vector
  --pca-dim <n>             ($pca_dim) PCA to n dims before HDBSCAN; 0 = off
  --min-cluster-size <n>    ($min_cluster_size) HDBSCAN min_cluster_size
  --min-samples <n>         ($min_samples) HDBSCAN min_samples
  --metric <m>              ($metric) euclidean | manhattan | chebyshev
  --algorithm <a>           ($algorithm) HDBSCAN's spanning tree: boruvka_kdtree (hdbscan's
                            own, as the original; any metric) | blas (the same exact tree
                            from matrix products, 4-6x faster in 100 dims; euclidean only)
  --outliers <m>            ($outliers) own: each outlier its own speaker; nearest: attach it
                            to the nearest cluster centroid
  --max-exact <n>           ($max_exact) above n utterances: cluster a seeded sample of n,
                            assign the rest to the nearest centroid; 0 = always exact
  --max-pairs <n>           ($max_pairs) same/different trials: all pairs up to n, else a
                            seeded sample of n
  --plot <b>                ($plot) write embedding_map.png
  --seed <n>                ($seed) seed of every random sample
  --num-threads <n>         ($num_threads) threads for HDBSCAN's core distances"

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
$cmd "$dir/log/cluster.log" \
  "$py" --utt2spk "$utt2spk" --mode "$mode" --half-index "$half_index" \
    --subtract-mean "$subtract_mean" --l2-normalize "$l2_normalize" --pca-dim "$pca_dim" \
    --min-cluster-size "$min_cluster_size" --min-samples "$min_samples" --metric "$metric" \
    --algorithm "$algorithm" --outliers "$outliers" --max-exact "$max_exact" --max-pairs "$max_pairs" \
    --plot "$plot" --seed "$seed" --num-threads "$num_threads" "$src" "$dir" 2> "$runner_err" || {
  # One line: the step's own ERROR line from the log, else what the job runner said
  # (e.g. sbatch/qsub refused the job: then there is no log).
  grep -hs '^ERROR' "$dir/log/cluster.log" >&2 ||
    echo "ERROR ($(basename "$0")): clustering failed: $(tr '\n' ' ' < "$runner_err" | sed 's/ *$//')" \
         "(log: $dir/log/cluster.log)" >&2
  exit 1
}
rm -f "$runner_err"

grep -h 'summary: ' "$dir/log/cluster.log" | sed 's/.*summary: /  /'
if [ "$mode" = cluster ]; then
  echo "$(basename "$0"): wrote $dir/utt2spk (log: $dir/log/cluster.log)"
else
  echo "$(basename "$0"): wrote $dir/scores.json (log: $dir/log/cluster.log)"
fi
