#!/usr/bin/env bash
# Speed perturbation of a data directory (run.sh stage 1), by the conventions of
# Kaldi's utils/data/perturb_data_dir_speed_3way.sh:
#
#   steps_unspeech/perturb_data_dir_speed.sh --factors "0.9 1.0 1.1" data/train data/train_sp
#
# Factor 1.0 keeps the original ids; every other factor f adds a copy with
# "sp<f>-" prefixed to utterance, speaker (and recording) ids and wav.scp
# entries "sox -t wav <wav or pipe> -t wav - speed f |". Segment times and
# utt2dur/reco2dur are divided by f; text, utt2uniq and utt2spk.gold follow.
# Features are not copied. Rerunning with the same source changes nothing.
set -euo pipefail

passthrough=()   # every option (--factors, --config FILE) goes to perturb_data_dir_speed.py unchanged
passthrough_help=$(dirname "$0")/perturb_data_dir_speed.py

help_message="Usage: $0 [options] <src-data-dir> <dst-data-dir>
e.g.: $0 --factors \"0.9 1.0 1.1\" data/train data/train_sp
Every option is passed unchanged to perturb_data_dir_speed.py, which owns its default (listed below)."

. "$(dirname "$0")/parse_options.sh"

if [ $# -ne 2 ]; then
  printf '%s\n' "$help_message" >&2
  exit 1
fi

. "$(dirname "$0")/lock_dir.sh" "$2"   # a second run into <dst-data-dir> stops here
"$(dirname "$0")/perturb_data_dir_speed.py" "${passthrough[@]}" "$1" "$2"
