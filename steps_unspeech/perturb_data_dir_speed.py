#!/usr/bin/env python3
"""Speed-perturbed copy of a Kaldi data directory (Kaldi's perturb_data_dir_speed_3way.sh conventions).

  perturb_data_dir_speed.py --factors "0.9 1.0 1.1" data/train data/train_sp
"""

from utils_py.cli import parse_args, step_parser
from utils_py.log import get_logger, run_step
from utils_py.kaldi.speed_perturb import perturb_data_dir

STEP = "perturb_data_dir_speed"


def main(argv=None):
    p = step_parser(
        "Write <dst> = the union of speed-perturbed copies of <src>: factor 1.0 keeps the ids, any other\n"
        "factor f prefixes utterance, speaker and recording ids with sp<f>- and plays the audio through\n"
        "'sox ... speed f |' in wav.scp. Features are not copied (compute them on <dst>).",
        epilog="Example:\n  perturb_data_dir_speed.py --factors \"0.9 1.0 1.1\" data/train data/train_sp")
    p.add_argument("--factors", default="0.9 1.0 1.1", help="speed factors, space-separated")
    p.add_argument("src", help="source data directory (utt2spk, spk2utt, wav.scp, ...)")
    p.add_argument("dst", help="destination data directory")
    args = parse_args(p, argv)
    perturb_data_dir(args.src, args.dst, args.factors, log=get_logger(STEP))
    return 0


if __name__ == "__main__":
    run_step(STEP, main)
