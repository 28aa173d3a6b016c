#!/usr/bin/env python3
"""Data-directory bookkeeping around the fbank jobs of make_fbank.sh.

  fbank_data_dir.py prepare --fbank-config conf/fbank.conf --nj 4 data/train
      validate data/train, check its wav files exist, split it into
      data/train/split<nj>utt/; prints the number of jobs used (nj capped at
      the number of utterances)
  fbank_data_dir.py finish --fbank-config conf/fbank.conf --nj 4 data/train fbank/raw_fbank_train
      merge the job outputs fbank/raw_fbank_train.{1..nj}.{scp,num_frames} into
      data/train/utt2num_frames, frame_shift and -- last, atomically -- feats.scp;
      validate the result
"""

from utils_py.features import fbank
from utils_py.cli import parse_args, positive_int, step_parser
from utils_py.log import get_logger, run_step

STEP = "make_fbank"


def main(argv=None):
    p = step_parser(__doc__.split("\n")[0], epilog=__doc__)
    p.add_argument("--fbank-config", default="", help="Kaldi conf file of fbank options ('' = Kaldi defaults)")
    p.add_argument("--nj", type=positive_int, default=4, help="number of jobs")
    p.add_argument("action", choices=("prepare", "finish"))
    p.add_argument("data_dir")
    p.add_argument("job_prefix", nargs="?", default=None,
                   help="(finish) job outputs are <job-prefix>.JOB.scp and <job-prefix>.JOB.num_frames")
    args = parse_args(p, argv)
    log = get_logger(STEP)
    config = fbank.FbankConfig.from_file(args.fbank_config or None)
    if args.action == "prepare":
        print(fbank.prepare_data_dir(args.data_dir, config, args.nj, log=log))
        return 0
    if not args.job_prefix:
        p.error("finish needs <job-prefix>")
    jobs = [f"{args.job_prefix}.{j}" for j in range(1, args.nj + 1)]
    fbank.finish_data_dir(args.data_dir, config, [j + ".scp" for j in jobs], [j + ".num_frames" for j in jobs],
                          log=log)
    return 0


if __name__ == "__main__":
    run_step(STEP, main)
