#!/usr/bin/env python3
"""Make a Kaldi data dir from TED-LIUM stm transcripts and sph audio (called by local/prepare_tedlium.sh)."""

from utils_py.corpora import tedlium
from utils_py.cli import parse_args, step_parser
from utils_py.log import run_step

EPILOG = """Example:
  local/tedlium_stm_to_datadir.py --sph-reader sox db/TEDLIUM_release2/dev/stm db/TEDLIUM_release2/dev/sph data/dev
Writes segments, text, utt2spk, spk2utt, utt2spk.gold (speaker = talk), wav.scp (keyed by talk),
reco2file_and_channel, stm and glm; utterances are <talk>-<start>-<end> (centiseconds, 7 digits)."""


def main(argv=None):
    p = step_parser(__doc__.strip().splitlines()[0], EPILOG)
    p.add_argument("--sph-reader", default="sox", help="'sox' or the path of Kaldi's sph2pipe")
    p.add_argument("stm_dir", help="directory of <talk>.stm files")
    p.add_argument("sph_dir", help="directory of <talk>.sph files")
    p.add_argument("data_dir", help="output data dir")
    args = parse_args(p, argv)
    tedlium.stm_to_data_dir(args.stm_dir, args.sph_dir, args.data_dir, sph_reader=args.sph_reader)


if __name__ == "__main__":
    run_step("prepare_tedlium", main)
