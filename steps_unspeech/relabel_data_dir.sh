#!/usr/bin/env bash
# Give a Kaldi data dir the speakers found by cluster_utts.sh. Kaldi needs speaker
# ids as prefixes of utterance ids, so every utterance becomes
# <cluster-speaker>-<old-utt-id> in every per-utterance file (text, segments,
# feats.scp, utt2dur, utt2num_frames, utt2uniq, utt2spk.gold, wav.scp without
# segments, ...); utt2spk/spk2utt hold the new speakers; <out-data-dir>/utt_map
# is "<new-utt> <old-utt>". cmvn.scp and spk2gender are dropped (speakers
# changed: recompute CMVN). With --ivector-dir, that online-ivector dir is copied
# to --ivector-out-dir with ivector_online.scp (and utt_vectors.scp) re-keyed;
# the scps keep pointing at the original arks. Outputs appear complete or not
# at all (built under a temp name, then renamed).

passthrough=()   # every option (--ivector-dir, --ivector-out-dir, --config FILE) goes to relabel_data_dir.py
passthrough_help=$(dirname "$0")/relabel_data_dir.py

help_message="Usage: $0 [options] <data-dir> <clustered-utt2spk> <out-data-dir>
 e.g.: $0 --ivector-dir exp/unspeech/ivectors_test --ivector-out-dir exp/unspeech/ivectors_test_unspk \\
         data/test exp/unspeech/cluster_test/utt2spk data/test_unspk
Every option is passed unchanged to relabel_data_dir.py, which owns its default (listed below)."

. "$(dirname "$0")/parse_options.sh"

if [ $# -ne 3 ]; then
  printf '%s\n' "$help_message" >&2
  exit 1
fi
data=$1
utt2spk=$2
out=$3

"$(dirname "$0")/relabel_data_dir.py" "${passthrough[@]}" "$data" "$utt2spk" "$out" || exit 1
echo "$(basename "$0"): wrote $out ($(wc -l < "$out/spk2utt") speakers)"
