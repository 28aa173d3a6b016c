#!/usr/bin/env python3
"""Kaldi fbank features of one data directory (one job of make_fbank.sh): our compute-fbank-feats.

  compute_fbank.py --fbank-config conf/fbank.conf data/train/split4utt/1 \
      fbank/raw_fbank_train.1.ark fbank/raw_fbank_train.1.scp
"""
import sys

from utils_py.features import fbank
from utils_py.cli import parse_args, step_parser, str2bool
from utils_py.log import UnspeechError, get_logger, run_step

STEP = "compute_fbank"


def fbank_options_help() -> str:
    lines = ["Kaldi fbank options (in --fbank-config, or on the command line as --name=value; default):"]
    for opt in fbank.OPTIONS.values():
        default = "from the wav" if opt.default is None else str(opt.default).lower() \
            if opt.kind is bool else opt.default
        lines.append(f"  --{opt.name:<24} ({default}) {opt.help}")
    return "\n".join(lines)


def build_parser():
    p = step_parser(
        "Compute Kaldi-compatible log mel filterbank features (kaldi-native-fbank) of every utterance\n"
        "of a data directory (wav.scp, optional segments) into a binary ark + scp of absolute paths.",
        epilog="Example:\n  compute_fbank.py --fbank-config conf/fbank.conf data/train/split4utt/1 "
               "fbank/raw_fbank_train.1.ark fbank/raw_fbank_train.1.scp\n\n" + fbank_options_help())
    p.add_argument("--fbank-config", default="",
                   help="Kaldi conf file of fbank options ('' = Kaldi defaults, dither 1.0!)")
    p.add_argument("--write-num-frames", default="",
                   help="also write '<utt> <num-frames>' lines here ('ark,t:' prefix allowed)")
    p.add_argument("--compress", type=str2bool, default=True,
                   help="true: Kaldi's compressed matrices (automatic method, like copy-feats "
                        "--compress=true and Kaldi's make_fbank.sh; lossy, ~4x smaller); false: float32")
    p.add_argument("--done-marker", default="",
                   help="skip when this marker matches the inputs and options; written last")
    p.add_argument("data_dir", help="data directory with wav.scp (and segments)")
    p.add_argument("feats_ark", help="output binary ark")
    p.add_argument("feats_scp", help="output scp (written last, absolute paths)")
    return p


def main(argv=None):
    parser = build_parser()
    args, extra = _parse(parser, argv)
    config = fbank.FbankConfig.from_file(args.fbank_config or None, overrides=extra)
    num_frames = args.write_num_frames
    if num_frames.startswith("ark,t:"):
        num_frames = num_frames[len("ark,t:"):]
    fbank.compute_data_dir(args.data_dir, config, args.feats_ark, args.feats_scp,
                           num_frames=num_frames or None, done_marker=args.done_marker or None,
                           log=get_logger(STEP), compress=args.compress)
    return 0


def _parse(parser, argv):
    """Our options via argparse; every other ``--name=value`` is a Kaldi fbank option."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ours = {s for a in parser._actions for s in a.option_strings}
    is_kaldi = [a.startswith("--") and a.split("=", 1)[0] not in ours for a in argv]
    kaldi = [a for a, k in zip(argv, is_kaldi) if k]
    rest = [a for a, k in zip(argv, is_kaldi) if not k]
    for tok in kaldi:
        if "=" not in tok and tok[2:].replace("_", "-") in fbank.OPTIONS \
                and fbank.OPTIONS[tok[2:].replace("_", "-")].kind is not bool:
            raise UnspeechError(f"write Kaldi fbank options as --name=value: {tok}")
    return parse_args(parser, rest), kaldi


if __name__ == "__main__":
    run_step(STEP, main)
