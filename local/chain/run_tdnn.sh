#!/usr/bin/env bash
# Kaldi chain TDNN-F with an "i-vector" input of choice (run.sh stage 11), laid out
# like Kaldi's egs/tedlium/s5_r3/local/chain/tuning/run_tdnn_1d.sh. The TDNN reads
# high-resolution MFCC (data/<set><data-suffix>, CMVN per speaker) and, as its
# online-ivector input (--features):
#
#   none      nothing: the baseline without speaker/context input
#   unspeech  <unspeech-root>/ivectors_<set>[_unspk]            (run.sh stages 4, 6)
#   ivector   Kaldi's online i-vectors, <kaldi-ivector-root>/ivectors_<set>[_unspk]
#             (run.sh stage 10, local/run_kaldi_ivectors.sh)
#
# and its speakers (--speakers; they set the CMVN and, for Kaldi i-vectors, which
# utterances share an online i-vector estimate):
#   original  data/<set><data-suffix>        the corpus's own speakers
#   clustered data/<set><data-suffix>_unspk  speakers found by clustering (run.sh stage 8)
#
# The GMM system (--gmm-dir, --ali-dir, --lores-train-dir, --lang-dir) is this
# recipe's (run.sh stage 9) or Kaldi's TED-LIUM s5_r3 one. Shared by all
# conditions: exp/chain_common/{lang_chain,lats_<train>,tree_<train>,graph};
# per condition: exp/chain_<features>_<speakers>/tdnn<affix> with
# decode_<set>/scoring_kaldi/best_wer and times.json (seconds of egs+training and
# of decoding each set).
#
# Stages: 1 data dirs + CMVN per speaker; 2 chain lang; 3 lattices (GMM, original
# speakers; renamed for clustered ones); 4 tree; 5 network config (input dims read
# from the data); 6 train; 7 graph; 8 decode + score.
# Nothing of Kaldi's runs before local/chain/check_handoff.py has checked
# KALDI_ROOT, the GMM system, the data dirs and the online-ivector dirs.
set -euo pipefail

stage=0
nj=8
decode_nj=8
train_set=train_sp
test_sets="dev test"
data_suffix=_hires
features=unspeech
speakers=clustered
unspeech_root=exp/unspeech
kaldi_ivector_root=exp/nnet3
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
prefinal_dim=256
tdnnf_strides="1 1 1 0 3 3 3 3 3 3 3 3"
chunk_width=150,110,100
frames_per_iter=5000000
num_chunk_per_minibatch=64
num_utts_subset=300
initial_lrate=0.00025
final_lrate=0.000025
common_egs_dir=
remove_egs=true
decode_opts=

help_message="Usage: $0 [options]
Kaldi chain TDNN-F on this recipe's hires MFCC with no i-vector input, Kaldi's online
i-vectors or unspeech embeddings as its online-ivector input, with the corpus's or the
clustered speakers. Needs KALDI_ROOT (compiled Kaldi) and a GMM system (run.sh stage 9,
or Kaldi's TED-LIUM s5_r3 up to tri3 + speed-perturbed alignments).
Options (default):
  --stage <n>                ($stage) first stage (1 data/CMVN, 2 lang, 3 lattices, 4 tree,
                             5 config, 6 train, 7 graph, 8 decode)
  --train-stage <n>          ($train_stage) --stage of steps/nnet3/chain/train.py
  --nj <n> / --decode-nj <n> ($nj / $decode_nj) jobs (capped at the number of speakers)
  --train-set <name>         ($train_set) data/<name><data-suffix>[_unspk]
  --test-sets <names>        ($test_sets)
  --data-suffix <s>          ($data_suffix) TDNN input data dirs: data/<set><data-suffix>
  --features <f>             ($features) none | ivector (Kaldi's online i-vectors) | unspeech
  --speakers <s>             ($speakers) original | clustered (data/<set><data-suffix>_unspk)
  --unspeech-root <dir>      ($unspeech_root) holds ivectors_<set>[_unspk] (--features unspeech)
  --kaldi-ivector-root <dir> ($kaldi_ivector_root) holds ivectors_<set>[_unspk] (--features ivector)
  --kaldi-recipe <dir>       (\$KALDI_ROOT/egs/tedlium/s5_r3) Kaldi recipe with the GMM system
  --gmm-dir <dir>            (<kaldi-recipe>/exp/tri3)
  --ali-dir <dir>            (<kaldi-recipe>/exp/tri3_ali_<train-set>)
  --lores-train-dir <dir>    (<kaldi-recipe>/data/<train-set>) MFCC data the alignments are of
  --lang-dir <dir>           (<kaldi-recipe>/data/lang) with G.fst
  --lang-rescore-dir <dir>   ($lang_rescore_dir) optional, with G.carpa (const-arpa rescoring)
  --affix <s>                ($affix) exp/chain_<features>_<speakers>/tdnn<affix>
  --num-leaves <n>           ($num_leaves) tree leaves
  --num-epochs <n>           ($num_epochs)
  --num-jobs-initial/-final  ($num_jobs_initial/$num_jobs_final) parallel training jobs of train.py
  --use-gpu <b>              ($use_gpu) true | false | wait (train.py --use-gpu)
  --tdnn-dim <n>             ($tdnn_dim)
  --bottleneck-dim <n>       ($bottleneck_dim)
  --prefinal-dim <n>         ($prefinal_dim)
  --tdnnf-strides <s>        ($tdnnf_strides) one TDNN-F layer per time stride
  --chunk-width <s>          ($chunk_width)
  --frames-per-iter <n>      ($frames_per_iter)
  --num-chunk-per-minibatch <n> ($num_chunk_per_minibatch)
  --num-utts-subset <n>      ($num_utts_subset) utterances held out for Kaldi's diagnostics (and as
                             many for the training subset); small corpora need fewer
  --initial-lrate/--final-lrate ($initial_lrate/$final_lrate) effective learning rates
  --dropout-schedule <s>     ($dropout_schedule)
  --common-egs-dir <dir>     ($common_egs_dir) reuse dumped egs
  --remove-egs <b>           ($remove_egs)
  --decode-opts <s>          ($decode_opts) more options for steps/nnet3/decode.sh, e.g.
                             \"--beam 10 --lattice-beam 4 --max-active 2000\" (fast: a barely trained
                             model gives flat posteriors and huge lattices with Kaldi's defaults)
  --config <file>            bash file of option settings (e.g. conf/chain_demo.conf)"

here=$(dirname "$0")
. "$here/../../steps_unspeech/parse_options.sh"
[ -f ./path.sh ] && . ./path.sh
[ -f ./cmd.sh ] && . ./cmd.sh
train_cmd=${train_cmd:-utils/run.pl}
decode_cmd=${decode_cmd:-utils/run.pl}

die() { echo "ERROR ($(basename "$0")): $*" >&2; exit 1; }
log() { echo "$(date '+%H:%M:%S') $(basename "$0"): $*"; }
on_error() {  # <exit-code> <line> <command>: any other failed command (Kaldi's) stops us (set -e); say which
  echo "ERROR ($(basename "$0")): ${3%% *} failed (exit $1, line $2); see its messages above and its logs" \
       "under ${exp:-exp}/, fix it, then rerun with --stage <the stage logged last>" >&2
}
trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR
case $features in none|unspeech|ivector) ;; *) die "--features must be none, unspeech or ivector, got $features" ;; esac
case $speakers in clustered|original) ;; *) die "--speakers must be clustered or original, got $speakers" ;; esac

KALDI_ROOT=${KALDI_ROOT:-}
[ -n "$kaldi_recipe" ] || kaldi_recipe=${KALDI_ROOT:+$KALDI_ROOT/egs/tedlium/s5_r3}
[ -n "$gmm_dir" ] || gmm_dir=${kaldi_recipe:+$kaldi_recipe/exp/tri3}
[ -n "$ali_dir" ] || ali_dir=${kaldi_recipe:+$kaldi_recipe/exp/tri3_ali_$train_set}
[ -n "$lores_train_dir" ] || lores_train_dir=${kaldi_recipe:+$kaldi_recipe/data/$train_set}
[ -n "$lang_dir" ] || lang_dir=${kaldi_recipe:+$kaldi_recipe/data/lang}

suffix=
[ "$speakers" = clustered ] && suffix=_unspk
case $features in
  unspeech) iv_root=$unspeech_root ;;
  ivector)  iv_root=$kaldi_ivector_root ;;
  none)     iv_root= ;;
esac
exp=exp/chain_${features}_${speakers}
common=exp/chain_common
dir=$exp/tdnn$affix
lang_chain=$common/lang_chain
tree_dir=$common/tree_$train_set
graph_dir=$common/graph_$train_set
lat_orig=$common/lats_$train_set
lat_dir=$lat_orig
[ "$speakers" = clustered ] && lat_dir=$exp/lats_$train_set

data_of() { echo "data/$1$data_suffix$suffix"; }   # TDNN input data dir of a set
chain_data_of() { echo "$exp/data/$1"; }           # its copy with CMVN for the chain model
ivectors_of() { [ -z "$iv_root" ] || echo "$iv_root/ivectors_$1$suffix"; }
ivector_opt() { [ -z "$iv_root" ] || echo "$1 $(ivectors_of $2)"; }   # <option> <set>: "<option> <dir>" or nothing
njobs() { local n; n=$(wc -l < "$1/spk2utt"); [ "$n" -lt "$2" ] && echo "$n" || echo "$2"; }
write_time() {  # <key> <seconds>: add to $dir/times.json
  python3 - "$dir/times.json" "$1" "$2" <<'EOF'
import json, os, sys
path, key, value = sys.argv[1], sys.argv[2], float(sys.argv[3])
times = json.load(open(path)) if os.path.isfile(path) else {}
times[key] = round(value, 1)
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(times, f, indent=1, sort_keys=True)
os.replace(tmp, path)
EOF
}

preflight() {  # sets feat_dim, ivector_dim, ivector_period
  local args=(--features "$features" --kaldi-root "$KALDI_ROOT" --gmm-dir "$gmm_dir" --ali-dir "$ali_dir"
              --lores-train-dir "$lores_train_dir" --lang-dir "$lang_dir" --lang-rescore-dir "$lang_rescore_dir"
              --train "$(data_of $train_set),$(ivectors_of $train_set)") x vars
  for x in $test_sets; do args+=(--test "$(data_of $x),$(ivectors_of $x)"); done
  if [ "$speakers" = clustered ]; then
    args+=(--original-train-data "data/$train_set$data_suffix" --utt-map-out "$exp/utt_map")
  fi
  vars=$("$here/check_handoff.py" "${args[@]}") ||
    die "pre-flight failed (see the messages above); nothing of Kaldi's was run"
  eval "$vars"
}

ivector_dim=0; ivector_period=; feat_dim=
preflight
log "pre-flight ok: features $features (${iv_root:+$(ivectors_of $train_set), dim $ivector_dim, period $ivector_period}" \
    "), speakers $speakers ($(data_of $train_set)), input dim $feat_dim"

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

if [ "$stage" -le 2 ]; then
  if [ -f $lang_chain/topo ] && [ $lang_chain/L.fst -nt "$lang_dir/L.fst" ]; then
    log "stage 2: $lang_chain is up to date"
  else
    log "stage 2: $lang_chain with the chain topology"
    rm -rf $lang_chain
    mkdir -p $common
    cp -r "$lang_dir" $lang_chain
    silphonelist=$(cat $lang_chain/phones/silence.csl)
    nonsilphonelist=$(cat $lang_chain/phones/nonsilence.csl)
    steps/nnet3/chain/gen_topo.py "$nonsilphonelist" "$silphonelist" > $lang_chain/topo
  fi
fi

if [ "$stage" -le 3 ]; then
  if [ ! -f $lat_orig/lat.1.gz ]; then
    log "stage 3: GMM lattices of $lores_train_dir (original speakers; the same supervision for every condition)"
    steps/align_fmllr_lats.sh --nj "$(njobs "$lores_train_dir" $nj)" --cmd "$train_cmd" \
      "$lores_train_dir" "$lang_dir" "$gmm_dir" $lat_orig
    rm -f $lat_orig/fsts.*.gz
  fi
  if [ "$speakers" = clustered ]; then
    log "stage 3: lattices renamed to the clustered utterance ids ($exp/utt_map) in $lat_dir"
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

if [ "$stage" -le 4 ]; then
  if [ -f $tree_dir/final.mdl ]; then
    log "stage 4: $tree_dir exists, kept"
  else
    log "stage 4: tree ($num_leaves leaves)"
    steps/nnet3/chain/build_tree.sh --frame-subsampling-factor 3 \
      --context-opts "--context-width=2 --central-position=1" --cmd "$train_cmd" \
      $num_leaves "$lores_train_dir" $lang_chain "$ali_dir" $tree_dir
  fi
fi

if [ "$stage" -le 5 ]; then
  log "stage 5: network config: input dim $feat_dim, ivector dim $ivector_dim"
  num_targets=$(tree-info $tree_dir/tree | grep num-pdfs | awk '{print $2}')
  learning_rate_factor=$(python3 -c "print(0.5 / $xent_regularize)")
  affine_opts="l2-regularize=0.008 dropout-proportion=0.0 dropout-per-dim-continuous=true"
  tdnnf_opts="l2-regularize=0.008 dropout-proportion=0.0 bypass-scale=0.66"
  lda_input="Append(-1,0,1)"
  [ "$features" = none ] || lda_input="Append(-1,0,1,ReplaceIndex(ivector, t, 0))"
  mkdir -p $dir/configs
  {
    [ "$features" = none ] || echo "input dim=$ivector_dim name=ivector"
    echo "input dim=$feat_dim name=input"
    echo "fixed-affine-layer name=lda input=$lda_input affine-transform-file=$dir/configs/lda.mat"
    echo "relu-batchnorm-dropout-layer name=tdnn1 $affine_opts dim=$tdnn_dim"
    layer=2
    for stride in $tdnnf_strides; do
      echo "tdnnf-layer name=tdnnf$layer $tdnnf_opts dim=$tdnn_dim bottleneck-dim=$bottleneck_dim time-stride=$stride"
      layer=$((layer + 1))
    done
    echo "linear-component name=prefinal-l dim=$prefinal_dim l2-regularize=0.008 orthonormal-constraint=-1.0"
    for out in chain xent; do
      echo "prefinal-layer name=prefinal-$out input=prefinal-l l2-regularize=0.008 big-dim=$tdnn_dim small-dim=$prefinal_dim"
    done
    # Each output reads its own prefinal layer (an output-layer without input= would read the line above it).
    echo "output-layer name=output input=prefinal-chain include-log-softmax=false dim=$num_targets l2-regularize=0.002"
    echo "output-layer name=output-xent input=prefinal-xent dim=$num_targets learning-rate-factor=$learning_rate_factor l2-regularize=0.002"
  } > $dir/configs/network.xconfig
  steps/nnet3/xconfig_to_configs.py --xconfig-file $dir/configs/network.xconfig --config-dir $dir/configs/
fi

if [ "$stage" -le 6 ]; then
  log "stage 6: training $dir${iv_root:+ with --feat.online-ivector-dir $(ivectors_of $train_set)}"
  started=$(date +%s.%N)
  steps/nnet3/chain/train.py --stage "$train_stage" --cmd "$decode_cmd" --use-gpu "$use_gpu" \
    $(ivector_opt --feat.online-ivector-dir $train_set) \
    --feat.cmvn-opts "--norm-means=true --norm-vars=false" \
    --chain.xent-regularize $xent_regularize --chain.leaky-hmm-coefficient 0.1 --chain.l2-regularize 0.0 \
    --chain.apply-deriv-weights false --chain.lm-opts="--num-extra-lm-states=2000" \
    --trainer.dropout-schedule "$dropout_schedule" \
    --egs.dir "$common_egs_dir" --egs.opts "--frames-overlap-per-eg 0 --num-utts-subset $num_utts_subset" --egs.chunk-width "$chunk_width" \
    --trainer.num-chunk-per-minibatch $num_chunk_per_minibatch --trainer.frames-per-iter $frames_per_iter \
    --trainer.num-epochs $num_epochs \
    --trainer.optimization.num-jobs-initial $num_jobs_initial \
    --trainer.optimization.num-jobs-final $num_jobs_final \
    --trainer.optimization.initial-effective-lrate $initial_lrate \
    --trainer.optimization.final-effective-lrate $final_lrate \
    --trainer.max-param-change 2.0 --cleanup.remove-egs "$remove_egs" \
    --feat-dir "$(chain_data_of $train_set)" --tree-dir $tree_dir --lat-dir $lat_dir --dir $dir
  write_time train "$(python3 -c "import time; print(time.time() - $started)")"
fi

if [ "$stage" -le 7 ]; then
  if [ -f $graph_dir/HCLG.fst ] && [ $graph_dir/HCLG.fst -nt $tree_dir/final.mdl ] && [ $graph_dir/HCLG.fst -nt "$lang_dir/G.fst" ]; then
    log "stage 7: decoding graph $graph_dir is up to date"
  else
    log "stage 7: decoding graph $graph_dir"
    utils/mkgraph.sh --self-loop-scale 1.0 "$lang_dir" $tree_dir $graph_dir
  fi
fi

if [ "$stage" -le 8 ]; then
  for x in $test_sets; do
    cdata=$(chain_data_of $x)
    log "stage 8: decoding $cdata${iv_root:+ with --online-ivector-dir $(ivectors_of $x)}"
    started=$(date +%s.%N)
    steps/nnet3/decode.sh --nj "$(njobs "$cdata" $decode_nj)" --cmd "$decode_cmd" \
      --acwt 1.0 --post-decode-acwt 10.0 --skip-scoring true $decode_opts \
      $(ivector_opt --online-ivector-dir $x) $graph_dir "$cdata" $dir/decode_$x
    write_time "decode_$x" "$(python3 -c "import time; print(time.time() - $started)")"
    steps/score_kaldi.sh --cmd "$decode_cmd" "$cdata" $graph_dir $dir/decode_$x
    if [ -n "$lang_rescore_dir" ]; then
      steps/lmrescore_const_arpa.sh --cmd "$decode_cmd" --skip-scoring true \
        "$lang_dir" "$lang_rescore_dir" "$cdata" $dir/decode_$x $dir/decode_${x}_rescore
      steps/score_kaldi.sh --cmd "$decode_cmd" "$cdata" "$lang_rescore_dir" $dir/decode_${x}_rescore
    fi
  done
  for f in $dir/decode_*/scoring_kaldi/best_wer; do
    [ -f "$f" ] && log "$f: $(cat "$f")"
  done
fi
log "done ($dir)"
