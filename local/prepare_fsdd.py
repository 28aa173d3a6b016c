#!/usr/bin/env python3
"""Prepare the Free Spoken Digit Dataset as Kaldi data dirs <data-root>/{train,test}.

Each utterance concatenates recordings of ONE speaker (real speech, 8 kHz).
"""

from utils_py.corpora import fsdd
from utils_py.cli import parse_args, step_parser
from utils_py.log import run_step

EPILOG = f"""Example (run.sh stage 0 with --corpus fsdd, from the recipe dir):
  local/prepare_fsdd.py /data/free-spoken-digit-dataset data
<fsdd-root> must hold recordings/{{digit}}_{{speaker}}_{{index}}.wav ({fsdd.FSDD_URL}).
An utterance takes --digits-per-utt recordings of one speaker, --gap seconds apart (very
quiet noise, not digital silence), and more recordings while it is shorter than
--min-seconds. Train and test use disjoint recordings of the same speakers.
Writes <wav-dir>/<spk>-<nnnn>.wav (8 kHz 16-bit) and <data-root>/{{train,test}}/{{wav.scp,
utt2spk,spk2utt,text,utt2dur,utt2spk.gold}}; text is the digit words."""


def main(argv=None):
    p = step_parser(__doc__.strip().splitlines()[0], EPILOG)
    p.add_argument("--digits-per-utt", type=int, default=10, help="recordings per utterance (at least)")
    p.add_argument("--min-seconds", type=float, default=4.0, help="minimum utterance duration")
    p.add_argument("--gap", type=float, default=0.1, help="seconds between two digits")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of each speaker's recordings in test")
    p.add_argument("--wav-dir", default=None, help="where the wavs go (default <data-root>/../db/fsdd)")
    p.add_argument("--seed", type=int, default=1, help="random seed of the split and the grouping")
    p.add_argument("fsdd_root", help="FSDD checkout (has recordings/)")
    p.add_argument("data_root", help="where train/ and test/ go, e.g. data")
    args = parse_args(p, argv)
    fsdd.prepare(args.fsdd_root, args.data_root, wav_dir=args.wav_dir, digits_per_utt=args.digits_per_utt,
                 test_fraction=args.test_fraction, min_seconds=args.min_seconds, gap_seconds=args.gap,
                 seed=args.seed)


if __name__ == "__main__":
    run_step("prepare_fsdd", main)
