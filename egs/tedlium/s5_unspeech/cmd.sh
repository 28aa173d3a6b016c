# How jobs run. With Kaldi installed, use its run.pl here -- or queue.pl /
# slurm.pl on a grid (edit below). Without Kaldi, our own run_local.sh has the
# same "JOB=1:N log/x.JOB.log command" calling convention.
if [ -n "${KALDI_ROOT:-}" ] && [ -x "$KALDI_ROOT/egs/wsj/s5/utils/run.pl" ]; then
  export train_cmd="$KALDI_ROOT/egs/wsj/s5/utils/run.pl"   # e.g. "queue.pl --mem 4G"
  export decode_cmd="$KALDI_ROOT/egs/wsj/s5/utils/run.pl"
else
  export train_cmd="steps_unspeech/run_local.sh"
  export decode_cmd="steps_unspeech/run_local.sh"
fi
