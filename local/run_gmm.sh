#!/usr/bin/env bash
# The Kaldi GMM system that chain training needs (run.sh stage 9), built with
# Kaldi's own steps/ as egs/mini_librispeech/s5/run.sh does: mono -> tri1
# (deltas) -> tri2 (LDA+MLLT) -> tri3 (SAT) on the low-resolution MFCC of the
# unperturbed training set, then fMLLR alignments of the speed-perturbed set
# (exp/tri3_ali_<train-set>, for the chain tree) and a tri3 decode of the test
# sets (the GMM's own WER, a sanity check for the chain models).
# --last stops the chain of GMMs earlier (e.g. mono, for a quick test): that GMM
# aligns the set (exp/<last>_ali_<set>) and decodes the test sets.
#
# A part whose output exists (final.mdl, ali.1.gz, scoring_kaldi/best_wer) is
# kept: rerunning resumes where it stopped. Delete a dir to redo it.
set -euo pipefail

nj=4
cmd=
gmm_train=train_mfcc        # data/<name>: what the GMMs are trained on
align_set=train_sp_mfcc     # data/<name>: aligned with tri3 for the chain model
test_sets="test_mfcc"       # data/<name>: decoded with tri3 ("" to skip)
last=tri3                   # last GMM trained: mono | tri1 | tri2 | tri3
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
alignments of data/<align-set> in exp/<last>_ali_<align-set without _mfcc> (fMLLR for tri3),
decode of the test sets with <last>. Needs KALDI_ROOT (path.sh) and data/lang, data/lang_test
(local/prepare_lang.sh). Sizes suit ~20 min to a few hours of speech.
Options (default):
  --nj <n>                ($nj) parallel jobs (capped at each data dir's speakers)
  --cmd <cmd>             (\$train_cmd) Kaldi job runner
  --gmm-train <set>       ($gmm_train) low-resolution MFCC training data
  --align-set <set>       ($align_set) aligned for the chain model
  --test-sets <sets>      ($test_sets) decoded with the last GMM
  --last <gmm>            ($last) mono | tri1 | tri2 | tri3: the GMMs after it are not trained
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

case $last in mono|tri1|tri2|tri3) ;; *) echo "ERROR (run_gmm.sh): --last must be mono, tri1, tri2 or tri3, got $last" >&2; exit 1 ;; esac
njobs() { local n; n=$(wc -l < "$1/spk2utt"); [ "$n" -lt "$nj" ] && echo "$n" || echo "$nj"; }
log() { echo "$(date '+%H:%M:%S') run_gmm.sh: $*"; }
train=data/$gmm_train
n=$(njobs $train)

if [ ! -f exp/mono/final.mdl ]; then
  log "mono ($mono_gauss Gaussians)"
  steps/train_mono.sh --boost-silence $boost_silence --nj $n --cmd "$cmd" --totgauss $mono_gauss \
    $train $lang exp/mono
fi
upto() {  # upto <gmm>: true if <gmm> comes no later than --last
  local order="mono tri1 tri2 tri3"
  [[ " ${order%%$last*}$last " == *" $1 "* ]]
}
if upto tri1 && [ ! -f exp/tri1/final.mdl ]; then
  log "tri1: deltas ($tri1_leaves leaves, $tri1_gauss Gaussians)"
  steps/align_si.sh --boost-silence $boost_silence --nj $n --cmd "$cmd" $train $lang exp/mono exp/mono_ali
  steps/train_deltas.sh --boost-silence $boost_silence --cmd "$cmd" $tri1_leaves $tri1_gauss \
    $train $lang exp/mono_ali exp/tri1
fi
if upto tri2 && [ ! -f exp/tri2/final.mdl ]; then
  log "tri2: LDA+MLLT ($tri2_leaves leaves, $tri2_gauss Gaussians)"
  steps/align_si.sh --nj $n --cmd "$cmd" $train $lang exp/tri1 exp/tri1_ali
  steps/train_lda_mllt.sh --cmd "$cmd" --splice-opts "--left-context=3 --right-context=3" \
    $tri2_leaves $tri2_gauss $train $lang exp/tri1_ali exp/tri2
fi
if upto tri3 && [ ! -f exp/tri3/final.mdl ]; then
  log "tri3: SAT ($tri3_leaves leaves, $tri3_gauss Gaussians)"
  steps/align_si.sh --nj $n --cmd "$cmd" --use-graphs true $train $lang exp/tri2 exp/tri2_ali
  steps/train_sat.sh --cmd "$cmd" $tri3_leaves $tri3_gauss $train $lang exp/tri2_ali exp/tri3
fi
ali=exp/${last}_ali_${align_set%_mfcc}
if [ ! -f $ali/ali.1.gz ]; then
  if [ $last = tri3 ]; then
    log "fMLLR alignments of data/$align_set -> $ali"
    steps/align_fmllr.sh --nj "$(njobs data/$align_set)" --cmd "$cmd" data/$align_set $lang exp/tri3 $ali
  else
    log "$last alignments of data/$align_set -> $ali"
    steps/align_si.sh --nj "$(njobs data/$align_set)" --cmd "$cmd" data/$align_set $lang exp/$last $ali
  fi
fi
if [ -n "$test_sets" ]; then
  [ -f exp/$last/graph/HCLG.fst ] || utils/mkgraph.sh $lang_test exp/$last exp/$last/graph
  for x in $test_sets; do
    dir=exp/$last/decode_${x%_mfcc}
    if [ ! -f $dir/scoring_kaldi/best_wer ]; then
      log "$last decode of data/$x"
      if [ $last = tri3 ]; then
        steps/decode_fmllr.sh --nj "$(njobs data/$x)" --cmd "$cmd" exp/tri3/graph data/$x $dir
      else
        steps/decode.sh --nj "$(njobs data/$x)" --cmd "$cmd" exp/$last/graph data/$x $dir
      fi
    fi
    log "$last $(cat $dir/scoring_kaldi/best_wer)"
  done
fi
log "done: exp/$last, $ali"
