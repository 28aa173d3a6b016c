#!/usr/bin/env bash
# Kaldi's own online i-vectors, the baseline unspeech is compared with (run.sh
# stage 10), made the way Kaldi's local/nnet3/run_ivector_common.sh makes them,
# with Kaldi's steps/online/nnet2 scripts on high-resolution MFCC:
#   PCA (splice +-3) -> diagonal UBM -> i-vector extractor, trained on
#   data/<train-set><data-suffix>; online i-vectors of the training set with
#   2-utterance pseudo-speakers (utils/data/modify_speaker_info.sh
#   --utts-per-spk-max 2), of the test sets per speaker.
# With --speakers "original clustered" both speaker labellings are extracted:
# ivectors_<set> from data/<set><data-suffix>, ivectors_<set>_unspk from
# data/<set><data-suffix>_unspk (run.sh stage 8). No labels are used to train
# the extractor. Outputs: <dir>/{pca_transform,diag_ubm,extractor,ivectors_*}.
# A part whose output exists is kept (delete it to redo).
set -euo pipefail

nj=4
cmd=
train_set=train_sp
test_sets=test
data_suffix=_hires
speakers="original clustered"
num_gauss=512
ivector_dim=100
num_frames=700000
num_threads=1
num_processes=1

help_message="Usage: $0 [options] <dir>
 e.g.: $0 --train-set train_sp --test-sets test exp/nnet3
Kaldi's online i-vector extractor and online i-vectors (as local/nnet3/run_ivector_common.sh).
Needs KALDI_ROOT (path.sh).
Options (default):
  --nj <n>               ($nj) parallel jobs (capped at each data dir's speakers)
  --cmd <cmd>            (\$train_cmd) Kaldi job runner
  --train-set <set>      ($train_set) data/<set><data-suffix> trains the extractor
  --test-sets <sets>     ($test_sets)
  --data-suffix <s>      ($data_suffix) hires MFCC data dirs
  --speakers <list>      ($speakers) original (data/<set><data-suffix>) and/or clustered (..._unspk)
  --num-gauss <n>        ($num_gauss) diagonal UBM size
  --ivector-dim <n>      ($ivector_dim)
  --num-frames <n>       ($num_frames) frames for the UBM
  --num-threads <n>      ($num_threads) threads per extractor-training job
  --num-processes <n>    ($num_processes) processes per extractor-training job"

. "$(dirname "$0")/../steps_unspeech/parse_options.sh"
[ $# -eq 1 ] || { printf '%s\n' "$help_message" >&2; exit 1; }
dir=$1
[ -n "${KALDI_ROOT:-}" ] || { echo "ERROR (run_kaldi_ivectors.sh): KALDI_ROOT is not set (export KALDI_ROOT=/path/to/kaldi)" >&2; exit 1; }
cmd=${cmd:-${train_cmd:-utils/run.pl}}
for d in steps utils; do [ -e $d ] || ln -s "$KALDI_ROOT/egs/wsj/s5/$d" $d; done
for s in $speakers; do
  case $s in original|clustered) ;; *) echo "ERROR (run_kaldi_ivectors.sh): --speakers takes original and/or clustered, got $s" >&2; exit 1 ;; esac
done

njobs() { local n; n=$(wc -l < "$1/spk2utt"); [ "$n" -lt "$nj" ] && echo "$n" || echo "$nj"; }
log() { echo "$(date '+%H:%M:%S') run_kaldi_ivectors.sh: $*"; }
train=data/$train_set$data_suffix
[ -f $train/feats.scp ] || { echo "ERROR (run_kaldi_ivectors.sh): no features: $train/feats.scp (run.sh stage 8)" >&2; exit 1; }

if [ ! -f $dir/pca_transform/final.mat ]; then
  log "PCA transform on $train"
  steps/online/nnet2/get_pca_transform.sh --cmd "$cmd" --splice-opts "--left-context=3 --right-context=3" \
    --max-utts 10000 --subsample 2 $train $dir/pca_transform
fi
if [ ! -f $dir/diag_ubm/final.dubm ]; then
  log "diagonal UBM, $num_gauss Gaussians"
  steps/online/nnet2/train_diag_ubm.sh --cmd "$cmd" --nj "$(njobs $train)" --num-threads $num_threads \
    --num-frames $num_frames $train $num_gauss $dir/pca_transform $dir/diag_ubm
fi
if [ ! -f $dir/extractor/final.ie ]; then
  log "i-vector extractor, dim $ivector_dim"
  steps/online/nnet2/train_ivector_extractor.sh --cmd "$cmd" --nj "$(njobs $train)" \
    --num-threads $num_threads --num-processes $num_processes --ivector-dim $ivector_dim \
    $train $dir/diag_ubm $dir/extractor
fi

for s in $speakers; do
  suffix=; [ $s = clustered ] && suffix=_unspk
  for x in $train_set $test_sets; do
    data=data/$x$data_suffix$suffix
    out=$dir/ivectors_$x$suffix
    [ -f $out/ivector_online.scp ] && { log "$out exists, kept"; continue; }
    [ -f $data/feats.scp ] || { echo "ERROR (run_kaldi_ivectors.sh): no features: $data/feats.scp" >&2; exit 1; }
    if [ $x = $train_set ]; then   # pseudo-speakers of 2 utterances: more variety, as Kaldi's recipes do
      utils/data/modify_speaker_info.sh --utts-per-spk-max 2 $data ${data}_max2
      data=${data}_max2
    fi
    log "online i-vectors of $data -> $out"
    steps/online/nnet2/extract_ivectors_online.sh --cmd "$cmd" --nj "$(njobs $data)" $data $dir/extractor $out
  done
done
log "done: $dir/extractor, $(ls -d $dir/ivectors_* | tr '\n' ' ')"
