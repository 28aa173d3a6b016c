# How jobs run. With Kaldi installed, use its run.pl here -- or slurm.pl / queue.pl
# on a grid (below). Without Kaldi, our own run_local.sh has the same
# "JOB=1:N log/x.JOB.log command" calling convention.
if [ -n "${KALDI_ROOT:-}" ] && [ -x "$KALDI_ROOT/egs/wsj/s5/utils/run.pl" ]; then
  export train_cmd="$KALDI_ROOT/egs/wsj/s5/utils/run.pl"
  export decode_cmd="$KALDI_ROOT/egs/wsj/s5/utils/run.pl"
else
  export train_cmd="steps_unspeech/run_local.sh"
  export decode_cmd="steps_unspeech/run_local.sh"
fi

# On a grid, use Kaldi's own submitters instead (each job cd's to this dir and sources
# path.sh, so the directory must be on a file system the nodes share).
# Slurm: sbatch and squeue must work on this machine; conf/slurm.conf maps --mem to
# sbatch --mem-per-cpu and names the exported variables (add "-p <partition>" there):
#   export train_cmd="$KALDI_ROOT/egs/wsj/s5/utils/parallel/slurm.pl --mem 4G"
#   export decode_cmd="$KALDI_ROOT/egs/wsj/s5/utils/parallel/slurm.pl --mem 4G"
# SGE (qsub/qstat): queue.pl reads conf/queue.conf, else Kaldi's built-in default:
#   export train_cmd="$KALDI_ROOT/egs/wsj/s5/utils/parallel/queue.pl --mem 4G"
#   export decode_cmd="$KALDI_ROOT/egs/wsj/s5/utils/parallel/queue.pl --mem 4G"
# A one-node Slurm cluster on this machine, to try it: local/slurm_one_node.sh start
