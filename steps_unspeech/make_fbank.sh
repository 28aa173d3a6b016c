#!/usr/bin/env bash
# Kaldi-compatible 40-dim fbank features of a data directory, like Kaldi's
# steps/make_fbank.sh but with kaldi-native-fbank (no Kaldi binaries needed).
#
#   steps_unspeech/make_fbank.sh --nj 4 --cmd "$train_cmd" --fbank-config conf/fbank.conf \
#     data/train exp/make_fbank/train fbank
#
# Writes <fbank-dir>/raw_fbank_<name>.JOB.{ark,scp} (Kaldi compressed matrices unless
# --compress false, passed through to compute_fbank.py; one per job; a finished job
# leaves a .done marker and is skipped on a rerun with the same inputs) and, in
# the data dir, utt2num_frames, frame_shift and -- last, atomically -- feats.scp
# (sorted, absolute paths). Any failure leaves no feats.scp.
set -euo pipefail

nj=4
cmd=$(dirname "$0")/run_local.sh
fbank_config=conf/fbank.conf   # read by the data-dir checks and every job, as in Kaldi's make_fbank.sh
passthrough=()   # every other option (--compress, --config FILE) goes to each compute_fbank.py job
passthrough_help=$(dirname "$0")/compute_fbank.py

help_message="Usage: $0 [options] <data-dir> [<log-dir> [<fbank-dir>]]
Computes Kaldi fbank features (kaldi-native-fbank) of <data-dir> (wav.scp, optional segments).
<log-dir> defaults to <data-dir>/log, <fbank-dir> to <data-dir>/data.
Job options (default):
  --nj <n>                ($nj) number of parallel jobs (capped at the number of utterances)
  --cmd <cmd>             ($cmd) job runner: run.pl, queue.pl, ... or steps_unspeech/run_local.sh
  --fbank-config <file>   ($fbank_config) Kaldi compute-fbank-feats options (--name=value lines);
                          '' = Kaldi defaults. Fbank options belong in this file.
Every other option (e.g. --compress false) is passed unchanged to each compute_fbank.py job,
which owns its default and range (listed below).
e.g.: $0 --nj 4 --fbank-config conf/fbank.conf data/train exp/make_fbank/train fbank"

. "$(dirname "$0")/parse_options.sh"

if [ $# -lt 1 ] || [ $# -gt 3 ]; then
  printf '%s\n' "$help_message" >&2
  exit 1
fi

bindir=$(cd "$(dirname "$0")" && pwd)
data=$1
logdir=${2:-$data/log}
fbankdir=${3:-$data/data}
name=$(basename "$data")

fail() { echo "ERROR (make_fbank): $*" >&2; exit 1; }

[ -d "$data" ] || fail "data directory not found: $data"
# Options passed through are checked before anything is written (argparse reads options in
# order, so a bad value stops it before --help).
"$bindir/compute_fbank.py" "${passthrough[@]}" --help > /dev/null || exit 1
. "$bindir/lock_dir.sh" "$data"   # a second run on this data dir stops here
for f in feats.scp utt2num_frames; do   # like Kaldi: keep a backup, never a stale table
  if [ -f "$data/$f" ]; then
    { mkdir -p "$data/.backup" && mv "$data/$f" "$data/.backup/$f"; } || fail "cannot move $data/$f to $data/.backup/"
    echo "$0: moved $data/$f to $data/.backup/"
  fi
done
if [ -n "$fbank_config" ] && [ ! -f "$fbank_config" ]; then
  fail "fbank config not found: $fbank_config"
fi
mkdir -p "$logdir" "$fbankdir" 2>/dev/null || fail "cannot create $logdir or $fbankdir"
[ -w "$logdir" ] && [ -w "$fbankdir" ] || fail "cannot write to $logdir or $fbankdir"
fbankdir=$(cd "$fbankdir" && pwd)   # absolute paths end up in feats.scp
prefix=$fbankdir/raw_fbank_$name

# Validate the data dir, check the wav files, split.
nj=$("$bindir/fbank_data_dir.py" prepare --fbank-config "$fbank_config" --nj "$nj" "$data") || exit 1
split_dir=$data/split${nj}utt

echo "$0: computing fbank features of $data with $nj job(s), logs in $logdir"
runner_err=$logdir/.make_fbank_$name.runner.err
if ! $cmd JOB=1:$nj "$logdir/make_fbank_$name.JOB.log" \
    "$bindir/compute_fbank.py" --fbank-config="$fbank_config" "${passthrough[@]}" \
      --write-num-frames "$prefix.JOB.num_frames" --done-marker "$prefix.JOB.done" \
      "$split_dir/JOB" "$prefix.JOB.ark" "$prefix.JOB.scp" 2> "$runner_err"; then
  # One line: the first failed job's error (it names the utterance and file), and its log.
  "$bindir/failed_job_error.sh" make_fbank "$logdir/make_fbank_$name.JOB.log" "$nj" "$runner_err" >&2
  exit 1
fi
rm -f "$runner_err"

# utt2num_frames, frame_shift, then feats.scp last; validates the result.
"$bindir/fbank_data_dir.py" finish --fbank-config "$fbank_config" --nj "$nj" "$data" "$prefix" || exit 1
echo "$0: succeeded computing fbank features of $data ($(wc -l < "$data/feats.scp") utterances)"
