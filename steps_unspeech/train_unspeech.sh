#!/usr/bin/env bash
# Train the unspeech context model (Kaldi-style wrapper of train_unspeech.py).
#
#   steps_unspeech/train_unspeech.sh --config conf/train_demo.conf data/train exp/unspeech
#   steps_unspeech/train_unspeech.sh --filelist data/train/feats.scp --steps 2000 exp/unspeech
#   steps_unspeech/train_unspeech.sh --config conf/train_demo_e2e.conf data/train exp/unspeech_e2e  # raw audio
#
# Every option goes through to steps_unspeech/train_unspeech.py (see --help for the
# full list with defaults); --config FILE holds --name=value lines of the same
# options. Progress lines go to the terminal and <model-dir>/log/train.log.
# Rerunning the same command resumes from the last checkpoint; a finished model
# dir is left alone ("already trained").
set -euo pipefail

usage="Usage: $0 [options] <data-dir> <model-dir>      (trains on <data-dir>/feats.scp)
   or: $0 [options] --filelist <scp-or-ark> <model-dir>
   or: $0 --end-to-end true [options] <data-dir> <model-dir>   (trains on the audio, <data-dir>/wav.scp)
e.g.: $0 --config conf/train_demo.conf data/train exp/unspeech
Writes <model-dir>/{final.weights.npz,config.json,metrics.json,training_curves.png,log/train.log}."

bindir=$(cd "$(dirname "$0")" && pwd)
for arg in "$@"; do
  case $arg in
    --help|-h) printf '%s\n\nOptions (all passed to train_unspeech.py):\n' "$usage"
               exec "$bindir/train_unspeech.py" --help ;;
  esac
done

# Options are --name=value or --name value; the rest are the directories.
opts=() dirs=() filelist=
while [ $# -gt 0 ]; do
  case $1 in
    --filelist=*) filelist=${1#*=}; opts+=("$1"); shift ;;
    --filelist) [ $# -ge 2 ] || { echo "ERROR (train_unspeech): --filelist needs a value" >&2; exit 1; }
                filelist=$2; opts+=("$1" "$2"); shift 2 ;;
    --*=*) opts+=("$1"); shift ;;
    --*) [ $# -ge 2 ] || { echo "ERROR (train_unspeech): option $1 needs a value" >&2; exit 1; }
         opts+=("$1" "$2"); shift 2 ;;
    *) dirs+=("$1"); shift ;;
  esac
done
want=2; [ -n "$filelist" ] && want=1
if [ ${#dirs[@]} -ne $want ]; then
  printf '%s\n' "$usage" >&2
  exit 1
fi
model_dir=${dirs[$((want - 1))]}
mkdir -p "$model_dir/log" || { echo "ERROR (train_unspeech): cannot create $model_dir/log" >&2; exit 1; }

echo "$0: training unspeech model in $model_dir (log: $model_dir/log/train.log)"
# On failure the Python step has printed its one ERROR line last (it is in the log too).
exec "$bindir/train_unspeech.py" "${opts[@]}" "${dirs[@]}"
