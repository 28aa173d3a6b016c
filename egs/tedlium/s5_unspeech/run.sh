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
#   6 relabel data dirs with clustered speakers  7 Kaldi chain TDNN hand-off
# Every stage is idempotent: re-running it redoes only what is missing.
set -euo pipefail

stage=0
stop_stage=100
corpus=demo            # demo | tedlium | fsdd
nj=2                   # parallel jobs for fbank / extraction
speed_perturb=true     # stage 1: add 0.9x / 1.1x copies of the training set
demo_size=small        # demo corpus size: tiny | small | medium | large
tedlium_root=db/TEDLIUM_release-3   # unpacked TED-LIUM release 2 or 3
fsdd_root=$(cd "$(dirname "$0")" && pwd)/../../../../shared/data/fsdd   # FSDD (has recordings/)
train_config=          # options for train_unspeech (default conf/train_<corpus>.conf)
period=10              # frames per embedding row (Kaldi's ivector_period)
chain_stage=0          # --stage passed to local/chain/run_tdnn.sh
chain_opts=            # more options for local/chain/run_tdnn.sh

help_message="Usage: $0 [options]
Options (default):
  --stage <n>           ($stage) first stage to run
  --stop-stage <n>      ($stop_stage) last stage to run
  --corpus <name>       ($corpus) demo | tedlium | fsdd
  --nj <n>              ($nj) parallel jobs
  --speed-perturb <b>   ($speed_perturb) 0.9/1.1 speed-perturbed copies of train
  --demo-size <s>       ($demo_size) tiny | small | medium | large
  --tedlium-root <dir>  ($tedlium_root) unpacked TED-LIUM release 2 or 3
  --fsdd-root <dir>     ($fsdd_root)
  --train-config <f>    (conf/train_<corpus>.conf) train_unspeech options
  --period <n>          ($period) frames per embedding row
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
failed_logs() {  # job logs written during the current stage that record a failure (run.pl/our runner format)
  find exp data -name '*.log' -type f -newermt "@$stage_started" 2>/dev/null |
    xargs -r grep -l -E '^# Ended \(code [1-9]|^ERROR' 2>/dev/null | head -n 3 | tr '\n' ' ' || true
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
  demo)    test_sets="test" ;;
  tedlium) test_sets="dev test" ;;
  fsdd)    test_sets="test" ;;
  *) echo "ERROR (run.sh): unknown --corpus $corpus (demo | tedlium | fsdd)" >&2; exit 1 ;;
esac
[ -n "$train_config" ] || train_config=conf/train_$corpus.conf
train_set=train
[ "$speed_perturb" = true ] && train_set=train_sp
model_dir=exp/unspeech

if run_stage 0 "data preparation ($corpus)"; then
  case $corpus in
    demo)    local/make_demo_corpus.py --size $demo_size db/demo data ;;
    tedlium) local/prepare_tedlium.sh $tedlium_root data ;;
    fsdd)    local/prepare_fsdd.py $fsdd_root data ;;
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
    steps_unspeech/cluster_utts.sh --utt2spk $gold $model_dir/ivectors_$x $model_dir/cluster_$x
  done
fi

if run_stage 6 "prepend clustered speaker ids to utterance ids"; then
  for x in $train_set $test_sets; do
    steps_unspeech/relabel_data_dir.sh --ivector-dir $model_dir/ivectors_$x \
      --ivector-out-dir $model_dir/ivectors_${x}_unspk \
      data/$x $model_dir/cluster_$x/utt2spk data/${x}_unspk
  done
fi

if run_stage 7 "Kaldi chain TDNN with unspeech features (needs KALDI_ROOT)"; then
  # Needs a compiled Kaldi ($KALDI_ROOT) and the GMM system of Kaldi's TED-LIUM
  # s5_r3 recipe (tri3 + speed-perturbed alignments); checks all of it before
  # running anything of Kaldi's (local/chain/run_tdnn.sh --help). By default it
  # uses data/<set>_unspk and $model_dir/ivectors_<set>_unspk from stage 6;
  # --chain-opts "--speakers original" uses data/<set> + ivectors_<set>, and
  # --chain-opts "--features ivector" trains the Kaldi i-vector baseline.
  local/chain/run_tdnn.sh --stage $chain_stage --nj $nj --decode-nj $nj --train-set $train_set \
    --test-sets "$test_sets" --ivector-root $model_dir $chain_opts
fi

current_stage=
log "Done (stages $stage..$stop_stage, corpus $corpus)."
