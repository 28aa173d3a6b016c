#!/usr/bin/env bash
# The Kaldi GMM system that chain training needs (run.sh stage 9), built with
# Kaldi's own steps/ as egs/mini_librispeech/s5/run.sh does: mono -> tri1
# (deltas) -> tri2 (LDA+MLLT) -> tri3 (SAT) on the low-resolution MFCC of the
# unperturbed training set, then fMLLR alignments of the speed-perturbed set
# (exp/tri3_ali_<train-set>, for the chain tree) and a tri3 decode of the test
# sets (the GMM's own WER, a sanity check for the chain models).
#
# A part whose output exists (final.mdl, ali.1.gz, scoring_kaldi/best_wer) is
# kept: rerunning resumes where it stopped. Delete a dir to redo it.
set -euo pipefail

nj=4
cmd=
gmm_train=train_mfcc        # data/<name>: what the GMMs are trained on
align_set=train_sp_mfcc     # data/<name>: aligned with tri3 for the chain model
test_sets="test_mfcc"       # data/<name>: decoded with tri3 ("" to skip)
lang=data/lang
lang_test=data/lang_test
mono_gauss=1000
tri1_leaves=500
tri1_gauss=5000
tri2_leaves=600
tri2_gauss=8000
tri3_leaves=800
tri3_gauss=10000
boost_silence=1.25

help_message="Usage: $0 [options]
Kaldi GMM system (mono, tri1, tri2 = LDA+MLLT, tri3 = SAT) on data/<gmm-train>,
fMLLR alignments of data/<align-set> in exp/tri3_ali_<align-set without _mfcc>,
tri3 decode of the test sets. Needs KALDI_ROOT (path.sh) and data/lang, data/lang_test
(local/prepare_lang.sh). Sizes suit ~20 min to a few hours of speech.
Options (default):
  --nj <n>                ($nj) parallel jobs (capped at each data dir's speakers)
  --cmd <cmd>             (\$train_cmd) Kaldi job runner
  --gmm-train <set>       ($gmm_train) low-resolution MFCC training data
  --align-set <set>       ($align_set) aligned for the chain model
  --test-sets <sets>      ($test_sets) decoded with tri3
  --lang <dir>            ($lang)
  --lang-test <dir>       ($lang_test) with G.fst
  --mono-gauss <n>        ($mono_gauss)
  --tri1-leaves/-gauss    ($tri1_leaves/$tri1_gauss)
  --tri2-leaves/-gauss    ($tri2_leaves/$tri2_gauss)
  --tri3-leaves/-gauss    ($tri3_leaves/$tri3_gauss)
  --boost-silence <f>     ($boost_silence)"

. "$(dirname "$0")/../steps_unspeech/parse_options.sh"
[ $# -eq 0 ] || { printf '%s\n' "$help_message" >&2; exit 1; }
[ -n "${KALDI_ROOT:-}" ] || { echo "ERROR (run_gmm.sh): KALDI_ROOT is not set (export KALDI_ROOT=/path/to/kaldi)" >&2; exit 1; }
cmd=${cmd:-${train_cmd:-utils/run.pl}}
for d in steps utils; do [ -e $d ] || ln -s "$KALDI_ROOT/egs/wsj/s5/$d" $d; done
for x in data/$gmm_train data/$align_set $lang $lang_test; do
  [ -e "$x" ] || { echo "ERROR (run_gmm.sh): not found: $x (run.sh stages 7-8 make it)" >&2; exit 1; }
done

njobs() { local n; n=$(wc -l < "$1/spk2utt"); [ "$n" -lt "$nj" ] && echo "$n" || echo "$nj"; }
log() { echo "$(date '+%H:%M:%S') run_gmm.sh: $*"; }
train=data/$gmm_train
n=$(njobs $train)

if [ ! -f exp/mono/final.mdl ]; then
  log "mono ($mono_gauss Gaussians)"
  steps/train_mono.sh --boost-silence $boost_silence --nj $n --cmd "$cmd" --totgauss $mono_gauss \
    $train $lang exp/mono
fi
if [ ! -f exp/tri1/final.mdl ]; then
  log "tri1: deltas ($tri1_leaves leaves, $tri1_gauss Gaussians)"
  steps/align_si.sh --boost-silence $boost_silence --nj $n --cmd "$cmd" $train $lang exp/mono exp/mono_ali
  steps/train_deltas.sh --boost-silence $boost_silence --cmd "$cmd" $tri1_leaves $tri1_gauss \
    $train $lang exp/mono_ali exp/tri1
fi
if [ ! -f exp/tri2/final.mdl ]; then
  log "tri2: LDA+MLLT ($tri2_leaves leaves, $tri2_gauss Gaussians)"
  steps/align_si.sh --nj $n --cmd "$cmd" $train $lang exp/tri1 exp/tri1_ali
  steps/train_lda_mllt.sh --cmd "$cmd" --splice-opts "--left-context=3 --right-context=3" \
    $tri2_leaves $tri2_gauss $train $lang exp/tri1_ali exp/tri2
fi
if [ ! -f exp/tri3/final.mdl ]; then
  log "tri3: SAT ($tri3_leaves leaves, $tri3_gauss Gaussians)"
  steps/align_si.sh --nj $n --cmd "$cmd" --use-graphs true $train $lang exp/tri2 exp/tri2_ali
  steps/train_sat.sh --cmd "$cmd" $tri3_leaves $tri3_gauss $train $lang exp/tri2_ali exp/tri3
fi
ali=exp/tri3_ali_${align_set%_mfcc}
if [ ! -f $ali/ali.1.gz ]; then
  log "fMLLR alignments of data/$align_set -> $ali"
  steps/align_fmllr.sh --nj "$(njobs data/$align_set)" --cmd "$cmd" data/$align_set $lang exp/tri3 $ali
fi
if [ -n "$test_sets" ]; then
  [ -f exp/tri3/graph/HCLG.fst ] || utils/mkgraph.sh $lang_test exp/tri3 exp/tri3/graph
  for x in $test_sets; do
    dir=exp/tri3/decode_${x%_mfcc}
    if [ ! -f $dir/scoring_kaldi/best_wer ]; then
      log "tri3 decode of data/$x"
      steps/decode_fmllr.sh --nj "$(njobs data/$x)" --cmd "$cmd" exp/tri3/graph data/$x $dir
    fi
    log "tri3 $(cat $dir/scoring_kaldi/best_wer)"
  done
fi
log "done: exp/tri3, $ali"
