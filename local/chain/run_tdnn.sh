#!/usr/bin/env bash
# Kaldi chain TDNN-F with unspeech embeddings in place of online i-vectors
# (stage 7 of egs/tedlium/s5_unspeech/run.sh). Laid out like Kaldi's
# egs/tedlium/s5_r3/local/chain/tuning/run_tdnn_1d.sh: the GMM system
# (alignments, lang, tree) comes from that Kaldi recipe; acoustic features,
# speaker information and the "i-vector" input come from this recipe:
#
#   --features unspeech   <ivector-root>/ivectors_<set>[_unspk]   (run.sh stages 4, 6)
#   --features ivector    Kaldi's online i-vectors, extracted here (stage 2) into
#                         <kaldi-ivector-root>/ivectors_<set>[_unspk] (the baseline)
#   --speakers clustered  data/<set>_unspk + ivectors_<set>_unspk  (run.sh stage 6)
#   --speakers original   data/<set>       + ivectors_<set>
#
# Outputs: exp/chain_<features>_<speakers>/tdnn<affix>/decode_<set>/scoring_kaldi/best_wer
# (shared by all four conditions: exp/chain_common/{lang_chain,lats_<train>,tree_<train>}).
#
# Stages: 1 copy data dirs, CMVN per speaker, split per speaker; 2 (--features
# ivector) Kaldi i-vector extractor + online i-vectors; 3 chain lang; 4 lattices
# (GMM, original speakers; renamed for clustered ones); 5 tree; 6 network
# config (input dims read from the data); 7 train; 8 graph; 9 decode + score.
# Nothing of Kaldi's runs before local/chain/check_handoff.py has checked
# KALDI_ROOT, the GMM system, the data dirs and the online-ivector dirs.
set -euo pipefail

stage=0
nj=8
decode_nj=8
train_set=train_sp
test_sets="dev test"
features=unspeech
speakers=clustered
ivector_root=exp/unspeech
kaldi_ivector_root=exp/nnet3_ivector
kaldi_recipe=
gmm_dir=
ali_dir=
lores_train_dir=
lang_dir=
lang_rescore_dir=
affix=1a
train_stage=-10
num_leaves=4000
num_epochs=6
num_jobs_initial=3
num_jobs_final=12
use_gpu=true
xent_regularize=0.1
dropout_schedule='0,0@0.20,0.5@0.50,0'
tdnn_dim=1024
bottleneck_dim=128
chunk_width=150,110,100
common_egs_dir=
remove_egs=true

help_message="Usage: $0 [options]
Kaldi chain TDNN-F on this recipe's data with unspeech embeddings (or Kaldi
i-vectors) as the online-ivector input. Needs KALDI_ROOT (compiled Kaldi) and
Kaldi's TED-LIUM s5_r3 GMM system (run.sh up to tri3 + speed-perturbed alignments).
Options (default):
  --stage <n>                ($stage) first stage (1 data/CMVN, 2 i-vectors, 3 lang, 4 lattices,
                             5 tree, 6 config, 7 train, 8 graph, 9 decode)
  --train-stage <n>          ($train_stage) --stage of steps/nnet3/chain/train.py
  --nj <n> / --decode-nj <n> ($nj / $decode_nj) jobs (capped at the number of speakers)
  --train-set <name>         ($train_set) data/<name>[_unspk]
  --test-sets <names>        ($test_sets)
  --features <f>             ($features) unspeech | ivector (Kaldi's online i-vectors)
  --speakers <s>             ($speakers) clustered (data/<set>_unspk) | original (data/<set>)
  --ivector-root <dir>       ($ivector_root) holds ivectors_<set>[_unspk] (--features unspeech)
  --kaldi-ivector-root <dir> ($kaldi_ivector_root) extractor + i-vectors (--features ivector)
  --kaldi-recipe <dir>       (\$KALDI_ROOT/egs/tedlium/s5_r3) Kaldi recipe with the GMM system
  --gmm-dir <dir>            (<kaldi-recipe>/exp/tri3)
  --ali-dir <dir>            (<kaldi-recipe>/exp/tri3_ali_<train-set>)
  --lores-train-dir <dir>    (<kaldi-recipe>/data/<train-set>) MFCC data the alignments are of
  --lang-dir <dir>           (<kaldi-recipe>/data/lang) with G.fst
  --lang-rescore-dir <dir>   ($lang_rescore_dir) optional, with G.carpa (const-arpa rescoring)
  --affix <s>                ($affix) exp/chain_<features>_<speakers>/tdnn<affix>
  --num-leaves <n>           ($num_leaves) tree leaves
  --num-epochs <n>           ($num_epochs)
  --num-jobs-initial/-final  ($num_jobs_initial/$num_jobs_final) GPU jobs of train.py
  --use-gpu <b>              ($use_gpu) true | false | wait (train.py --use-gpu)
  --tdnn-dim <n>             ($tdnn_dim)
  --bottleneck-dim <n>       ($bottleneck_dim)
  --chunk-width <s>          ($chunk_width)
  --common-egs-dir <dir>     ($common_egs_dir) reuse dumped egs
  --remove-egs <b>           ($remove_egs)"

here=$(dirname "$0")
. "$here/../../steps_unspeech/parse_options.sh"
[ -f ./path.sh ] && . ./path.sh
[ -f ./cmd.sh ] && . ./cmd.sh
train_cmd=${train_cmd:-utils/run.pl}
decode_cmd=${decode_cmd:-utils/run.pl}

die() { echo "ERROR ($(basename "$0")): $*" >&2; exit 1; }
log() { echo "$(basename "$0"): $*"; }
on_error() {  # <exit-code> <line> <command>: any other failed command (Kaldi's) stops us (set -e); say which
  echo "ERROR ($(basename "$0")): ${3%% *} failed (exit $1, line $2); see its messages above and its logs" \
       "under ${exp:-exp}/, fix it, then rerun with --stage <the stage logged last>" >&2
}
trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR
case $features in unspeech|ivector) ;; *) die "--features must be unspeech or ivector, got $features" ;; esac
case $speakers in clustered|original) ;; *) die "--speakers must be clustered or original, got $speakers" ;; esac

KALDI_ROOT=${KALDI_ROOT:-}
[ -n "$kaldi_recipe" ] || kaldi_recipe=${KALDI_ROOT:+$KALDI_ROOT/egs/tedlium/s5_r3}
[ -n "$gmm_dir" ] || gmm_dir=${kaldi_recipe:+$kaldi_recipe/exp/tri3}
[ -n "$ali_dir" ] || ali_dir=${kaldi_recipe:+$kaldi_recipe/exp/tri3_ali_$train_set}
[ -n "$lores_train_dir" ] || lores_train_dir=${kaldi_recipe:+$kaldi_recipe/data/$train_set}
[ -n "$lang_dir" ] || lang_dir=${kaldi_recipe:+$kaldi_recipe/data/lang}

suffix=
[ "$speakers" = clustered ] && suffix=_unspk
iv_root=$ivector_root
[ "$features" = ivector ] && iv_root=$kaldi_ivector_root
exp=exp/chain_${features}_${speakers}
common=exp/chain_common
dir=$exp/tdnn$affix
lang_chain=$common/lang_chain
tree_dir=$common/tree_$train_set
lat_orig=$common/lats_$train_set
lat_dir=$lat_orig
[ "$speakers" = clustered ] && lat_dir=$exp/lats_$train_set

data_of() { echo "data/$1$suffix"; }             # our data dir of a set
chain_data_of() { echo "$exp/data/$1"; }         # its copy with CMVN for the chain model
ivectors_of() { echo "$iv_root/ivectors_$1$suffix"; }
njobs() { local n; n=$(wc -l < "$1/spk2utt"); [ "$n" -lt "$2" ] && echo "$n" || echo "$2"; }

preflight() {  # [--skip-ivectors]: sets feat_dim, ivector_dim, ivector_period
  local args=(--features "$features" --kaldi-root "$KALDI_ROOT" --gmm-dir "$gmm_dir" --ali-dir "$ali_dir"
              --lores-train-dir "$lores_train_dir" --lang-dir "$lang_dir" --lang-rescore-dir "$lang_rescore_dir"
              --train "$(data_of $train_set),$(ivectors_of $train_set)" "$@") x vars
  for x in $test_sets; do args+=(--test "$(data_of $x),$(ivectors_of $x)"); done
  if [ "$speakers" = clustered ]; then
    args+=(--original-train-data "data/$train_set" --utt-map-out "$exp/utt_map")
  fi
  vars=$("$here/check_handoff.py" "${args[@]}") ||
    die "pre-flight failed (see the messages above); nothing of Kaldi's was run"
  eval "$vars"
}

skip=
[ "$features" = ivector ] && [ "$stage" -le 2 ] && skip=--skip-ivectors
ivector_dim=; ivector_period=; feat_dim=
preflight $skip
log "pre-flight ok: features $features ($(ivectors_of $train_set), dim ${ivector_dim:-after stage 2}," \
    "period ${ivector_period:-after stage 2}), speakers $speakers ($(data_of $train_set)), input dim $feat_dim"

# Kaldi's scripts call steps/ and utils/ relative to the recipe dir.
for d in steps utils; do
  [ -e $d ] || ln -s "$KALDI_ROOT/egs/wsj/s5/$d" $d
done
[ -f "$KALDI_ROOT/tools/config/common_path.sh" ] && . "$KALDI_ROOT/tools/config/common_path.sh"

if [ "$stage" -le 1 ]; then
  log "stage 1: copying data dirs into $exp/data, CMVN per speaker ($speakers)"
  for x in $train_set $test_sets; do
    cdata=$(chain_data_of $x)
    rm -rf "$cdata"
    utils/copy_data_dir.sh "$(data_of $x)" "$cdata"
    steps/compute_cmvn_stats.sh "$cdata" "$exp/log/cmvn_$x" "$exp/cmvn"
    utils/split_data.sh "$cdata" "$(njobs "$cdata" $nj)"
  done
fi

if [ "$features" = ivector ] && [ "$stage" -le 2 ]; then
  extractor=$kaldi_ivector_root/extractor
  if [ ! -f "$extractor/final.ie" ]; then
    log "stage 2: training Kaldi's i-vector extractor on data/$train_set (as run_ivector_common.sh does)"
    steps/online/nnet2/get_pca_transform.sh --cmd "$train_cmd" --splice-opts "--left-context=3 --right-context=3" \
      --max-utts 10000 --subsample 2 "data/$train_set" "$kaldi_ivector_root/pca_transform"
    steps/online/nnet2/train_diag_ubm.sh --cmd "$train_cmd" --nj "$(njobs data/$train_set $nj)" \
      --num-frames 700000 "data/$train_set" 512 "$kaldi_ivector_root/pca_transform" "$kaldi_ivector_root/diag_ubm"
    steps/online/nnet2/train_ivector_extractor.sh --cmd "$train_cmd" --nj "$(njobs data/$train_set $nj)" \
      "data/$train_set" "$kaldi_ivector_root/diag_ubm" "$extractor"
  fi
  for x in $train_set $test_sets; do
    steps/online/nnet2/extract_ivectors_online.sh --cmd "$train_cmd" --nj "$(njobs "$(data_of $x)" $nj)" \
      "$(data_of $x)" "$extractor" "$(ivectors_of $x)"
  done
  preflight   # now with the i-vector dirs: sets ivector_dim, ivector_period
fi

if [ "$stage" -le 3 ]; then
  if [ -f $lang_chain/topo ] && [ $lang_chain/L.fst -nt "$lang_dir/L.fst" ]; then
    log "stage 3: $lang_chain is up to date"
  else
    log "stage 3: $lang_chain with the chain topology"
    rm -rf $lang_chain
    mkdir -p $common
    cp -r "$lang_dir" $lang_chain
    silphonelist=$(cat $lang_chain/phones/silence.csl)
    nonsilphonelist=$(cat $lang_chain/phones/nonsilence.csl)
    steps/nnet3/chain/gen_topo.py "$nonsilphonelist" "$silphonelist" > $lang_chain/topo
  fi
fi

if [ "$stage" -le 4 ]; then
  if [ ! -f $lat_orig/lat.1.gz ]; then
    log "stage 4: GMM lattices of $lores_train_dir (original speakers; the same supervision for every condition)"
    steps/align_fmllr_lats.sh --nj "$(njobs "$lores_train_dir" $nj)" --cmd "$train_cmd" \
      "$lores_train_dir" "$lang_dir" "$gmm_dir" $lat_orig
    rm -f $lat_orig/fsts.*.gz
  fi
  if [ "$speakers" = clustered ]; then
    log "stage 4: lattices renamed to the clustered utterance ids ($exp/utt_map) in $lat_dir"
    cdata=$(chain_data_of $train_set)
    n=$(njobs "$cdata" $nj)
    rm -rf $lat_dir
    mkdir -p $lat_dir/log
    for f in $lat_orig/*; do
      case $(basename "$f") in lat.*.gz|num_jobs) ;; *) [ -f "$f" ] && cp "$f" $lat_dir/ ;; esac
    done
    lattice-copy "ark:gunzip -c $lat_orig/lat.*.gz |" ark,scp:$lat_dir/lat_orig.ark,$lat_dir/lat_orig.scp
    utils/filter_scp.pl $exp/utt_map $lat_dir/lat_orig.scp | utils/apply_map.pl -f 1 $exp/utt_map |
      sort > $lat_dir/lat.scp
    utils/split_data.sh "$cdata" "$n"
    $train_cmd JOB=1:$n $lat_dir/log/copy.JOB.log \
      lattice-copy "scp:utils/filter_scp.pl $cdata/split$n/JOB/utt2spk $lat_dir/lat.scp |" \
      "ark:| gzip -c > $lat_dir/lat.JOB.gz"
    echo "$n" > $lat_dir/num_jobs
    rm -f $lat_dir/lat_orig.ark $lat_dir/lat_orig.scp
  fi
fi

if [ "$stage" -le 5 ]; then
  if [ -f $tree_dir/final.mdl ]; then
    log "stage 5: $tree_dir exists, kept"
  else
    log "stage 5: tree ($num_leaves leaves)"
    steps/nnet3/chain/build_tree.sh --frame-subsampling-factor 3 \
      --context-opts "--context-width=2 --central-position=1" --cmd "$train_cmd" \
      $num_leaves "$lores_train_dir" $lang_chain "$ali_dir" $tree_dir
  fi
fi

if [ "$stage" -le 6 ]; then
  log "stage 6: network config: input dim $feat_dim, ivector dim $ivector_dim"
  num_targets=$(tree-info $tree_dir/tree | grep num-pdfs | awk '{print $2}')
  learning_rate_factor=$(python3 -c "print(0.5 / $xent_regularize)")
  affine_opts="l2-regularize=0.008 dropout-proportion=0.0 dropout-per-dim-continuous=true"
  tdnnf_opts="l2-regularize=0.008 dropout-proportion=0.0 bypass-scale=0.66"
  mkdir -p $dir/configs
  {
    echo "input dim=$ivector_dim name=ivector"
    echo "input dim=$feat_dim name=input"
    echo "fixed-affine-layer name=lda input=Append(-1,0,1,ReplaceIndex(ivector, t, 0)) affine-transform-file=$dir/configs/lda.mat"
    echo "relu-batchnorm-dropout-layer name=tdnn1 $affine_opts dim=$tdnn_dim"
    layer=2
    for stride in 1 1 1 0 3 3 3 3 3 3 3 3; do
      echo "tdnnf-layer name=tdnnf$layer $tdnnf_opts dim=$tdnn_dim bottleneck-dim=$bottleneck_dim time-stride=$stride"
      layer=$((layer + 1))
    done
    echo "linear-component name=prefinal-l dim=256 l2-regularize=0.008 orthonormal-constraint=-1.0"
    for out in chain xent; do
      echo "prefinal-layer name=prefinal-$out input=prefinal-l l2-regularize=0.008 big-dim=$tdnn_dim small-dim=256"
    done
    echo "output-layer name=output include-log-softmax=false dim=$num_targets l2-regularize=0.002"
    echo "output-layer name=output-xent input=prefinal-xent dim=$num_targets learning-rate-factor=$learning_rate_factor l2-regularize=0.002"
  } > $dir/configs/network.xconfig
  steps/nnet3/xconfig_to_configs.py --xconfig-file $dir/configs/network.xconfig --config-dir $dir/configs/
fi

if [ "$stage" -le 7 ]; then
  log "stage 7: training $dir with --feat.online-ivector-dir $(ivectors_of $train_set)"
  steps/nnet3/chain/train.py --stage "$train_stage" --cmd "$decode_cmd" --use-gpu "$use_gpu" \
    --feat.online-ivector-dir "$(ivectors_of $train_set)" \
    --feat.cmvn-opts "--norm-means=true --norm-vars=false" \
    --chain.xent-regularize $xent_regularize --chain.leaky-hmm-coefficient 0.1 --chain.l2-regularize 0.0 \
    --chain.apply-deriv-weights false --chain.lm-opts="--num-extra-lm-states=2000" \
    --trainer.dropout-schedule "$dropout_schedule" \
    --trainer.add-option="--optimization.memory-compression-level=2" \
    --egs.dir "$common_egs_dir" --egs.opts "--frames-overlap-per-eg 0" --egs.chunk-width "$chunk_width" \
    --trainer.num-chunk-per-minibatch 64 --trainer.frames-per-iter 5000000 --trainer.num-epochs $num_epochs \
    --trainer.optimization.num-jobs-initial $num_jobs_initial \
    --trainer.optimization.num-jobs-final $num_jobs_final \
    --trainer.optimization.initial-effective-lrate 0.00025 \
    --trainer.optimization.final-effective-lrate 0.000025 \
    --trainer.max-param-change 2.0 --cleanup.remove-egs "$remove_egs" \
    --feat-dir "$(chain_data_of $train_set)" --tree-dir $tree_dir --lat-dir $lat_dir --dir $dir
fi

if [ "$stage" -le 8 ]; then
  log "stage 8: decoding graph"
  utils/mkgraph.sh --self-loop-scale 1.0 "$lang_dir" $dir $dir/graph
fi

if [ "$stage" -le 9 ]; then
  for x in $test_sets; do
    cdata=$(chain_data_of $x)
    log "stage 9: decoding $cdata with --online-ivector-dir $(ivectors_of $x)"
    steps/nnet3/decode.sh --nj "$(njobs "$cdata" $decode_nj)" --cmd "$decode_cmd" \
      --acwt 1.0 --post-decode-acwt 10.0 --skip-scoring true \
      --online-ivector-dir "$(ivectors_of $x)" $dir/graph "$cdata" $dir/decode_$x
    steps/score_kaldi.sh --cmd "$decode_cmd" "$cdata" $dir/graph $dir/decode_$x
    if [ -n "$lang_rescore_dir" ]; then
      steps/lmrescore_const_arpa.sh --cmd "$decode_cmd" --skip-scoring true \
        "$lang_dir" "$lang_rescore_dir" "$cdata" $dir/decode_$x $dir/decode_${x}_rescore
      steps/score_kaldi.sh --cmd "$decode_cmd" "$cdata" "$lang_rescore_dir" $dir/decode_${x}_rescore
    fi
  done
  for f in $dir/decode_*/scoring_kaldi/best_wer; do
    [ -f "$f" ] && echo "$f: $(cat "$f")"
  done
fi
log "done ($dir)"
