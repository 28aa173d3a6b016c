#!/usr/bin/env bash
# unspeech recipe: unsupervised context embeddings as a drop-in for Kaldi's
# online i-vectors, plus speaker ids from clustering.
#
#   ./run.sh                                  # the demo corpus, all stages
#   ./run.sh --corpus tedlium --tedlium-root /data/TEDLIUM_release-3 --nj 16
#   ./run.sh --stage 4 --stop-stage 5         # resume / re-run some stages
#
# Stages (numbers are fixed so you can resume):
#   0 data prep   1 speed perturbation (train)   2 fbank   3 train unspeech
#   4 extract embeddings (ivector_online dirs)   5 cluster utterances
#   6 relabel data dirs with clustered speakers
# and with Kaldi (KALDI_ROOT; Kaldi's own steps/ and utils/):
#   7 lexicon, lang, n-gram LM   8 MFCC (low-res for the GMM, hires for the TDNN)
#   9 GMM system (mono -> tri3 SAT, alignments)   10 Kaldi online i-vectors (baseline)
#   11 chain TDNNs, one per condition   12 WER table
# TED-LIUM takes its GMM system (stages 7, 9) from Kaldi's egs/tedlium/s5_r3.
# Every stage is idempotent: re-running it redoes only what is missing.
set -euo pipefail

stage=0
stop_stage=100
corpus=demo            # demo | tedlium | fsdd | cv
nj=2                   # parallel jobs for fbank / extraction
speed_perturb=true     # stage 1: add 0.9x / 1.1x copies of the training set
demo_size=small        # demo corpus size: tiny | small | medium | large
tedlium_root=db/TEDLIUM_release-3   # unpacked TED-LIUM release 2 or 3
fsdd_root=db/free-spoken-digit-dataset   # FSDD (has recordings/)
cv_root=db/cv-corpus/fa                  # a Common Voice release of one language (has validated.tsv, clips/)
train_config=          # options for train_unspeech (default conf/train_<corpus>.conf)
period=10              # frames per embedding row (Kaldi's ivector_period)
gmm=tri3               # last GMM of stage 9 (mono | tri1 | tri2 | tri3): its alignments feed the chain model
gmm_opts=              # more options for local/run_gmm.sh (sizes: --mono-gauss, --tri1-leaves, ...)
lm_order=              # stage 7: n-gram order (default 3; fsdd: 1 = a digit loop)
chain_config=          # options for local/chain/run_tdnn.sh (default conf/chain_<corpus>.conf)
chain_conditions="none:original ivector:original unspeech:original unspeech:clustered ivector:clustered"
chain_stage=0          # --stage passed to local/chain/run_tdnn.sh
chain_opts=            # more options for local/chain/run_tdnn.sh

help_message="Usage: $0 [options]
Options (default):
  --stage <n>           ($stage) first stage to run
  --stop-stage <n>      ($stop_stage) last stage to run
  --corpus <name>       ($corpus) demo | tedlium | fsdd | cv (Common Voice)
  --nj <n>              ($nj) parallel jobs
  --speed-perturb <b>   ($speed_perturb) 0.9/1.1 speed-perturbed copies of train
  --demo-size <s>       ($demo_size) tiny | small | medium | large
  --tedlium-root <dir>  ($tedlium_root) unpacked TED-LIUM release 2 or 3
  --fsdd-root <dir>     ($fsdd_root)
  --cv-root <dir>       ($cv_root) Common Voice release of one language
  --train-config <f>    (conf/train_<corpus>.conf) train_unspeech options
  --period <n>          ($period) frames per embedding row
  --gmm <name>          ($gmm) last GMM of stage 9: mono | tri1 | tri2 | tri3 (its alignments
                        and lattices supervise the chain TDNNs; mono is enough for a quick test)
  --gmm-opts <s>        ($gmm_opts) more options for local/run_gmm.sh (GMM sizes)
  --lm-order <n>        (3; fsdd: 1) n-gram order of the stage-7 LM, 1 = uniform word loop
  --chain-config <f>    (conf/chain_<corpus>.conf) local/chain/run_tdnn.sh options (sizes)
  --chain-conditions <s> ($chain_conditions)
                        <features>:<speakers> of each chain TDNN (stage 11)
  --chain-stage <n>     ($chain_stage) --stage of local/chain/run_tdnn.sh
  --chain-opts <s>      ($chain_opts) more options for local/chain/run_tdnn.sh"

cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh
. steps_unspeech/parse_options.sh

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') ($fname:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
current_stage=
stage_started=
failed_logs() {  # job logs written during the current stage that record a failure (run.pl, slurm.pl/queue.pl, ours)
  find exp data -name '*.log' -type f -newermt "@$stage_started" 2>/dev/null |
    xargs -r grep -l -E '^# (Ended \(code [1-9]|Finished at .* with status [1-9])|^ERROR' 2>/dev/null |
    head -n 3 | tr '\n' ' ' || true
}
on_exit() {
  local rc=$1 logs
  [ "$rc" -ne 0 ] && [ -n "$current_stage" ] || return 0
  logs=$(failed_logs)
  echo "ERROR (run.sh): stage $current_stage failed (exit $rc)${logs:+; failed job log: ${logs% }}; see the" \
       "messages above (logs under exp/), fix it, then resume with --stage $current_stage" >&2
}
trap 'on_exit $?' EXIT
run_stage() {  # run_stage N "description": true if stage N is selected
  [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ] || return 1
  current_stage=$1
  stage_started=$(date +%s.%N)
  log "Stage $1: $2"
}

case $corpus in
  demo|fsdd|cv) test_sets="test" ;;
  tedlium)      test_sets="dev test" ;;
  *) echo "ERROR (run.sh): unknown --corpus $corpus (demo | tedlium | fsdd | cv)" >&2; exit 1 ;;
esac
[ -n "$train_config" ] || train_config=conf/train_$corpus.conf
[ -n "$chain_config" ] || chain_config=conf/chain_$corpus.conf
mfcc_conf=conf/mfcc.conf; mfcc_hires_conf=conf/mfcc_hires.conf
[ "$corpus" = fsdd ] && { mfcc_conf=conf/mfcc_8k.conf; mfcc_hires_conf=conf/mfcc_hires_8k.conf; }
lexicon_method=espeak; [ "$corpus" = cv ] && lexicon_method=grapheme   # no English phonemes for Persian
[ -n "$lm_order" ] || { lm_order=3; [ "$corpus" = fsdd ] && lm_order=1; }   # random digit strings: a loop
need_kaldi() {  # stages 7+ run Kaldi's scripts
  [ -n "${KALDI_ROOT:-}" ] && [ -x "$KALDI_ROOT/egs/wsj/s5/utils/run.pl" ] && return 0
  echo "ERROR (run.sh): stage $current_stage needs Kaldi: KALDI_ROOT is not set or not a Kaldi checkout" \
       "(${KALDI_ROOT:-unset}); export KALDI_ROOT=/path/to/kaldi (compiled) and rerun with --stage $current_stage" >&2
  exit 1
}
train_set=train
[ "$speed_perturb" = true ] && train_set=train_sp
model_dir=exp/unspeech

if run_stage 0 "data preparation ($corpus)"; then
  case $corpus in
    demo)    local/make_demo_corpus.py --size $demo_size db/demo data ;;
    tedlium) local/prepare_tedlium.sh $tedlium_root data ;;
    fsdd)    local/prepare_fsdd.py $fsdd_root data ;;
    cv)      local/prepare_common_voice.py $cv_root data ;;
  esac
fi

if run_stage 1 "speed perturbation of the training set"; then
  if [ "$speed_perturb" = true ]; then
    steps_unspeech/perturb_data_dir_speed.sh --factors "0.9 1.0 1.1" data/train data/train_sp
  else
    log "  --speed-perturb false: skipped"
  fi
fi

if run_stage 2 "40-dim fbank features"; then
  # data/train too: stage 3 trains on the unperturbed set.
  sets="train $test_sets"; [ "$train_set" = train ] || sets="train $train_set $test_sets"
  for x in $sets; do
    steps_unspeech/make_fbank.sh --nj $nj --cmd "$train_cmd" --fbank-config conf/fbank.conf \
      data/$x exp/make_fbank/$x fbank
  done
fi

if run_stage 3 "train the unspeech model"; then
  # Trained on the unperturbed set: speed-perturbed copies add no context signal.
  steps_unspeech/train_unspeech.sh --config $train_config data/train $model_dir
fi

if run_stage 4 "extract unspeech features as online-ivector dirs"; then
  for x in $train_set $test_sets; do
    steps_unspeech/extract_unspeech.sh --nj $nj --cmd "$train_cmd" --period $period \
      --speaker-vectors true data/$x $model_dir $model_dir/ivectors_$x
  done
fi

if run_stage 5 "cluster utterances by context"; then
  for x in $train_set $test_sets; do
    gold=none
    [ -f data/$x/utt2spk.gold ] && gold=data/$x/utt2spk.gold
    steps_unspeech/cluster_utts.sh --cmd "$train_cmd" --utt2spk $gold $model_dir/ivectors_$x $model_dir/cluster_$x
  done
fi

if run_stage 6 "prepend clustered speaker ids to utterance ids"; then
  for x in $train_set $test_sets; do
    steps_unspeech/relabel_data_dir.sh --ivector-dir $model_dir/ivectors_$x \
      --ivector-out-dir $model_dir/ivectors_${x}_unspk \
      data/$x $model_dir/cluster_$x/utt2spk data/${x}_unspk
  done
fi

if run_stage 7 "lexicon, lang and n-gram LM (Kaldi's utils/prepare_lang.sh, utils/format_lm.sh)"; then
  need_kaldi
  if [ "$corpus" = tedlium ]; then
    log "  TED-LIUM: lang and LM come with Kaldi's egs/tedlium/s5_r3 GMM system (local/chain/run_tdnn.sh --help)"
  else
    local/prepare_lang.sh --lexicon-method $lexicon_method --lm-order $lm_order data/train "data/train $(for x in $test_sets; do echo -n "data/$x "; done)" \
      data/local data/lang data/lang_test
  fi
fi

if run_stage 8 "MFCC: low-resolution for the GMM, hires for the TDNN (+ clustered-speaker copies)"; then
  need_kaldi
  for d in steps utils; do [ -e $d ] || ln -s "$KALDI_ROOT/egs/wsj/s5/$d" $d; done
  mfcc_copy() {  # <set> <suffix> <conf>: data/<set><suffix> with Kaldi's MFCC of that conf, once
    local out=data/$1$2
    [ -f $out/.done ] && return 0
    utils/copy_data_dir.sh data/$1 $out
    steps/make_mfcc.sh --nj $nj --cmd "$train_cmd" --mfcc-config $3 $out exp/make_mfcc/$1$2 mfcc
    steps/compute_cmvn_stats.sh $out exp/make_mfcc/$1$2 mfcc
    touch $out/.done
  }
  lores_sets="train $train_set $test_sets"; [ "$corpus" = tedlium ] && lores_sets=
  for x in $(echo $lores_sets | tr ' ' '\n' | sort -u); do
    mfcc_copy $x _mfcc $mfcc_conf
  done
  for x in $train_set $test_sets; do
    mfcc_copy $x _hires $mfcc_hires_conf
    steps_unspeech/relabel_data_dir.sh data/${x}_hires $model_dir/cluster_$x/utt2spk data/${x}_hires_unspk
  done
fi

if run_stage 9 "Kaldi GMM system: mono, tri1, tri2 (LDA+MLLT), tri3 (SAT) (up to --gmm $gmm), alignments of $train_set"; then
  need_kaldi
  if [ "$corpus" = tedlium ]; then
    log "  TED-LIUM: uses Kaldi's egs/tedlium/s5_r3 GMM system (exp/tri3, exp/tri3_ali_train_sp)"
  else
    local/run_gmm.sh --nj $nj --cmd "$train_cmd" --gmm-train train_mfcc --align-set ${train_set}_mfcc \
      --test-sets "$(for x in $test_sets; do echo -n "${x}_mfcc "; done)" --last $gmm $gmm_opts
  fi
fi

if run_stage 10 "Kaldi's online i-vectors (the baseline), original and clustered speakers"; then
  need_kaldi
  local/run_kaldi_ivectors.sh --nj $nj --cmd "$train_cmd" --train-set $train_set --test-sets "$test_sets" exp/nnet3
fi

if run_stage 11 "Kaldi chain TDNNs: $chain_conditions"; then
  need_kaldi
  # Our GMM system; for TED-LIUM, Kaldi's s5_r3 one (run_tdnn.sh's defaults).
  gmm_system="--gmm-dir exp/$gmm --ali-dir exp/${gmm}_ali_$train_set --lores-train-dir data/${train_set}_mfcc --lang-dir data/lang_test"
  [ "$corpus" = tedlium ] && gmm_system=
  for condition in $chain_conditions; do
    local/chain/run_tdnn.sh --config $chain_config --stage $chain_stage --nj $nj --decode-nj $nj \
      --train-set $train_set --test-sets "$test_sets" --features ${condition%:*} --speakers ${condition#*:} \
      --unspeech-root $model_dir --kaldi-ivector-root exp/nnet3 $gmm_system $chain_opts
  done
fi

if run_stage 12 "WER table"; then
  local/chain/compare_wer.py --conditions "$chain_conditions" --test-sets "$test_sets" --corpus $corpus --gmm $gmm \
    --out exp/chain_results .
fi
current_stage=
log "Done (stages $stage..$stop_stage, corpus $corpus)."
