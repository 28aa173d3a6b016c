#!/usr/bin/env bash
# Prepare TED-LIUM release 2 or 3 as Kaldi data dirs <data-root>/{train,dev,test}.
# Text is normalised like Kaldi's egs/tedlium local/prepare_data.sh; speaker = talk.
set -euo pipefail

train_source=legacy   # release 3 only: legacy (legacy/train, as Kaldi's s5_r3) | data (data/: all 2351 talks)
sph_reader=auto       # auto (sph2pipe if found, else sox) | sox | path of sph2pipe

help_message="Usage: $0 [options] <tedlium-root> <data-root>
Prepare an unpacked TED-LIUM release 2 (<root>/{train,dev,test}/{stm,sph}) or release 3
(<root>/legacy/{train,dev,test}/{stm,sph}, and <root>/data/{stm,sph}); the layout is detected.
Writes <data-root>/{train,dev,test}/{segments,text,utt2spk,spk2utt,utt2spk.gold,wav.scp,
reco2file_and_channel,stm,glm}: utterances <talk>-<start>-<end>, speaker = talk, wav.scp keyed by
talk with 'sph2pipe -f wav -p -c 1 <sph> |' (sph2pipe on PATH or in \$KALDI_ROOT/tools) else
'sox <sph> -t wav - |'. A dir with a .done marker is left alone.
Options (default):
  --train-source <s>   ($train_source) release 3: legacy | data
  --sph-reader <r>     ($sph_reader) auto | sox | /path/to/sph2pipe
Example: $0 /data/TEDLIUM_release-3 data"

. "$(dirname "$0")/../steps_unspeech/parse_options.sh"

if [ $# -ne 2 ]; then
  printf '%s\n' "$help_message" >&2
  exit 1
fi
root=$1
data=$2
err() { echo "ERROR (prepare_tedlium): $*" >&2; exit 1; }

[ -d "$root" ] || err "TED-LIUM directory not found: $root (unpack TEDLIUM_release2.tar.gz or TEDLIUM_release-3.tgz and give its top dir)"
root=$(cd "$root" && pwd)

# Where each set's stm/ and sph/ are.
if [ -d "$root/train/stm" ]; then
  release=2; src_train=$root/train; src_dev=$root/dev; src_test=$root/test
elif [ -d "$root/legacy/dev/stm" ] || [ -d "$root/data/stm" ]; then
  release=3; src_dev=$root/legacy/dev; src_test=$root/legacy/test
  case $train_source in
    legacy) src_train=$root/legacy/train ;;
    data)   src_train=$root/data ;;
    *) err "--train-source must be legacy or data, got $train_source" ;;
  esac
  if [ ! -d "$src_train/stm" ] && [ "$train_source" = legacy ] && [ -d "$root/data/stm" ]; then
    err "no $src_train/stm; use --train-source data to train on $root/data"
  fi
else
  err "no TED-LIUM layout under $root: expected train/stm (release 2), legacy/{train,dev,test}/stm or data/stm (release 3)"
fi

case $sph_reader in
  auto)
    sph_reader=sox
    if command -v sph2pipe >/dev/null; then
      sph_reader=$(command -v sph2pipe)
    elif [ -n "${KALDI_ROOT:-}" ] && [ -x "$KALDI_ROOT/tools/sph2pipe_v2.5/sph2pipe" ]; then
      sph_reader=$KALDI_ROOT/tools/sph2pipe_v2.5/sph2pipe
    elif [ -n "${KALDI_ROOT:-}" ] && [ -x "$KALDI_ROOT/tools/sph2pipe/sph2pipe" ]; then
      sph_reader=$KALDI_ROOT/tools/sph2pipe/sph2pipe
    fi ;;
  sox) ;;
  *) [ -x "$sph_reader" ] || err "--sph-reader: not an executable: $sph_reader" ;;
esac
if [ "$sph_reader" = sox ] && ! command -v sox >/dev/null; then
  err "neither sph2pipe nor sox found; install sox (apt-get install sox) or put Kaldi's sph2pipe on PATH"
fi

echo "$0: TED-LIUM release $release at $root (train from ${src_train#$root/}), reading sph with $sph_reader"
for set in train dev test; do
  src_var=src_$set
  src=${!src_var}
  if [ ! -d "$src/stm" ] || [ ! -d "$src/sph" ]; then
    err "missing $src/stm or $src/sph (needed for $data/$set)"
  fi
  "$(dirname "$0")/tedlium_stm_to_datadir.py" --sph-reader "$sph_reader" "$src/stm" "$src/sph" "$data/$set"
done
echo "$0: done: $data/train $data/dev $data/test"
