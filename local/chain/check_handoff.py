#!/usr/bin/env python3
"""Pre-flight of local/chain/run_tdnn.sh: checks Kaldi, the Kaldi GMM system, our data
dirs and online-ivector dirs before anything of Kaldi's runs. Prints one ERROR line per
problem (exit 1), or on success shell assignments for the caller:
  feat_dim=40  ivector_dim=100  ivector_period=10"""
import os
import sys

from utils_py.cli import parse_args, step_parser
from utils_py.fileio import atomic_write
from utils_py.kaldi.handoff import FEATURES, Handoff
from utils_py.log import UnspeechError, error_line, run_step

STEP = "check_handoff"
EPILOG = """Example (what run_tdnn.sh runs for --speakers clustered):
  local/chain/check_handoff.py --features unspeech --kaldi-root $KALDI_ROOT \\
    --gmm-dir $k/exp/tri3 --ali-dir $k/exp/tri3_ali_train_sp --lores-train-dir $k/data/train_sp \\
    --lang-dir $k/data/lang --train data/train_sp_unspk,exp/unspeech/ivectors_train_sp_unspk \\
    --test data/test_unspk,exp/unspeech/ivectors_test_unspk \\
    --original-train-data data/train_sp --utt-map-out exp/chain_unspeech_clustered/utt_map"""


def pair(text):
    if text.count(",") != 1:
        raise ValueError(f"need DATA_DIR,IVECTOR_DIR, got {text}")
    return tuple(text.split(","))


def build_parser():
    p = step_parser(__doc__, EPILOG)
    p.add_argument("--features", choices=FEATURES, default="unspeech",
                   help="the TDNN's ivector input: none, Kaldi's own online i-vectors or unspeech embeddings")
    p.add_argument("--kaldi-root", default=os.environ.get("KALDI_ROOT", ""), help="Kaldi checkout ($KALDI_ROOT)")
    p.add_argument("--gmm-dir", default="", help="Kaldi GMM dir (tri3)")
    p.add_argument("--ali-dir", default="", help="alignments of the training set by that GMM")
    p.add_argument("--lores-train-dir", default="", help="Kaldi's MFCC data dir those alignments are of")
    p.add_argument("--lang-dir", default="", help="Kaldi lang dir with G.fst")
    p.add_argument("--lang-rescore-dir", default="", help="optional lang dir with G.carpa for rescoring")
    p.add_argument("--train", type=pair, required=True, help="DATA_DIR,IVECTOR_DIR of the training set")
    p.add_argument("--test", type=pair, action="append", default=[], help="DATA_DIR,IVECTOR_DIR of a test set")
    p.add_argument("--original-train-data", default="",
                   help="clustered speakers: the data dir the training data dir was relabelled from")
    p.add_argument("--utt-map-out", default="",
                   help="write '<GMM-data utt> <training utt>' lines here (for renaming lattices)")
    p.add_argument("--skip-ivectors", action="store_true",
                   help="do not check the online-ivector dirs (implied by --features none)")
    return p


def main(argv=None):
    args = parse_args(build_parser(), argv)
    h = Handoff(args.kaldi_root, args.features)
    args.skip_ivectors = args.skip_ivectors or args.features == "none"
    h.check_kaldi()
    h.check_gmm(args.gmm_dir, args.ali_dir, args.lores_train_dir, args.lang_dir, args.lang_rescore_dir)
    info = h.check_sets([args.train] + args.test, check_ivectors=not args.skip_ivectors)
    utt_map = h.check_alignment_coverage(args.train[0], args.lores_train_dir, args.original_train_data or None) \
        if os.path.isdir(args.lores_train_dir or "") else {}
    if h.problems:
        for message in h.problems:
            print(error_line(STEP, message), file=sys.stderr)
        raise UnspeechError(f"{len(h.problems)} problem(s) found before running anything of Kaldi's; "
                            f"fix them and rerun")
    if args.utt_map_out:
        with atomic_write(args.utt_map_out) as f:
            for new in sorted(utt_map, key=lambda u: utt_map[u].encode()):
                f.write(f"{utt_map[new]} {new}\n")
    print(f"feat_dim={info['feat_dim']}")
    if not args.skip_ivectors:
        print(f"ivector_dim={info['ivector_dim']}")
        print(f"ivector_period={info['ivector_period']}")
    return 0


if __name__ == "__main__":
    run_step(STEP, main)
