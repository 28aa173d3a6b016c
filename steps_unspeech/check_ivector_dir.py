#!/usr/bin/env python3
"""Check that a Kaldi online-ivector dir (ours or Kaldi's) fits a data dir: every
utterance covered, |T - rows*period| <= period, one dim. Prints a summary, or
with --print one value for scripts: dim=$(check_ivector_dir.py --print dim DIR DATA)."""

from utils_py.cli import parse_args, positive_int, step_parser
from utils_py.kaldi.ivector_dir import check_ivector_dir
from utils_py.log import run_step

EPILOG = """Examples:
  steps_unspeech/check_ivector_dir.py exp/unspeech/ivectors_test data/test
  dim=$(steps_unspeech/check_ivector_dir.py --print dim exp/unspeech/ivectors_test data/test)"""


def build_parser():
    p = step_parser(__doc__, EPILOG)
    p.add_argument("--dim", type=positive_int, default=None, help="required embedding dim (default: any, but one)")
    p.add_argument("--period", type=positive_int, default=None, help="required ivector_period (default: any)")
    p.add_argument("--print", dest="what", choices=("summary", "dim", "period", "id"), default="summary",
                   help="what to print on stdout when the check passes")
    p.add_argument("ivector_dir", help="online-ivector dir (ivector_online.scp, ivector_period)")
    p.add_argument("data_dir", help="the data dir it belongs to (utt2spk, feats.scp)")
    return p


def main(argv=None):
    args = parse_args(build_parser(), argv)
    iv = check_ivector_dir(args.ivector_dir, args.data_dir, dim=args.dim, period=args.period)
    if args.what == "summary":
        print(f"{args.ivector_dir}: ok for {args.data_dir}: {len(iv)} utterances, dim {iv.dim}, "
              f"period {iv.period}, final.ie.id {iv.ie_id or '(none)'}")
    else:
        print({"dim": iv.dim, "period": iv.period, "id": iv.ie_id or ""}[args.what])
    return 0


if __name__ == "__main__":
    run_step("check_ivector_dir", main)
