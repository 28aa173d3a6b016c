#!/usr/bin/env python3
"""Give a Kaldi data dir the clustered speakers: every utterance becomes
<cluster-speaker>-<old-utt-id> in every per-utterance file, utt2spk/spk2utt hold
the new speakers, <out-data-dir>/utt_map maps new ids to old ones. With
--ivector-dir, its ivector_online.scp (and utt_vectors.scp) are re-keyed the same
way into --ivector-out-dir. Python side of relabel_data_dir.sh."""
import os

from utils_py.kaldi import ivector_dir
from utils_py.kaldi import relabel
from utils_py.cli import parse_args, step_parser
from utils_py.fileio import refuse_overwrite
from utils_py.log import UnspeechError, get_logger, run_step

EPILOG = """Re-keyed: text segments feats.scp utt2num_frames utt2dur utt2uniq utt2lang utt2spk.gold,
other utt2* files, wav.scp without segments, any other table keyed by exactly the utterances.
Dropped (speakers changed, with a log line): cmvn.scp spk2gender. Copied: the rest.
Example (run.sh stage 6):
  relabel_data_dir.py --ivector-dir exp/unspeech/ivectors_test \\
    --ivector-out-dir exp/unspeech/ivectors_test_unspk \\
    data/test exp/unspeech/cluster_test/utt2spk data/test_unspk"""


def build_parser():
    p = step_parser(__doc__, EPILOG)
    p.add_argument("--ivector-dir", default="", help="online-ivector dir of <data-dir> to re-key as well")
    p.add_argument("--ivector-out-dir", default="", help="where the re-keyed online-ivector dir goes")
    p.add_argument("data_dir", help="Kaldi data dir")
    p.add_argument("clustered_utt2spk", help="utt2spk from cluster_utts.sh (old utt ids -> new speakers)")
    p.add_argument("out_data_dir", help="output data dir")
    return p


def main(argv=None):
    args = parse_args(build_parser(), argv)
    log = get_logger("relabel_data_dir")
    if bool(args.ivector_dir) != bool(args.ivector_out_dir):
        raise UnspeechError("--ivector-dir and --ivector-out-dir go together")
    inputs = [args.data_dir, args.clustered_utt2spk, args.ivector_dir]
    refuse_overwrite(args.out_data_dir, inputs, "output data dir")
    if args.ivector_out_dir:
        refuse_overwrite(args.ivector_out_dir, inputs + [args.out_data_dir], "--ivector-out-dir")
        refuse_overwrite(args.out_data_dir, [args.ivector_out_dir], "output data dir")
    old2new = relabel.relabel_data_dir(args.data_dir, args.clustered_utt2spk, args.out_data_dir, log)
    if args.ivector_dir:
        relabel.relabel_ivector_dir(args.ivector_dir, args.ivector_out_dir, old2new, log)
        if os.path.isfile(os.path.join(args.out_data_dir, "feats.scp")):
            ivector_dir.check_ivector_dir(args.ivector_out_dir, args.out_data_dir)
            log.info(f"checked {args.ivector_out_dir} against {args.out_data_dir} (rows vs frames)")


if __name__ == "__main__":
    run_step("relabel_data_dir", main)
