#!/usr/bin/env python3
"""Unspeech embeddings of a data dir as a Kaldi online-ivector dir (Python side of
extract_unspeech.sh, which runs --task prepare, then --task job in parallel, then
--task finalize).  --task all does the three in one process.  A model trained on
fbank reads <data-dir>/feats.scp; an end-to-end model (--end-to-end true in training)
reads <data-dir>/wav.scp (+ segments) and puts its rows on Kaldi's frame grid."""
import os

from utils_py.kaldi import datadir
from utils_py.extract import extractor
from utils_py.cli import nonneg_int, parse_args, positive_float, positive_int, step_parser, str2bool
from utils_py.fileio import ensure_dir, refuse_overwrite
from utils_py.log import UnspeechError, get_logger, run_step

EPILOG = """Example (what extract_unspeech.sh runs):
  extract_unspeech.py --task prepare --nj 2 --period 10 data/test exp/unspeech exp/unspeech/ivectors_test
  extract_unspeech.py --task job --job 1 --nj 2 --period 10 data/test exp/unspeech exp/unspeech/ivectors_test
  extract_unspeech.py --task finalize --nj 2 --period 10 data/test exp/unspeech exp/unspeech/ivectors_test
Options that change the output (period, padding, combine-contexts, fast,
speaker-vectors, batch-size, compress, frame-*, snip-edges) must be the same for all three tasks.
--config FILE: --name=value lines of these options (Kaldi's --config)."""


def build_parser():
    p = step_parser(__doc__, EPILOG)
    p.add_argument("--task", choices=("all", "prepare", "job", "finalize"), default="all",
                   help="prepare: check inputs, split the data dir; job: one job; finalize: merge")
    p.add_argument("--nj", type=positive_int, default=1, help="number of jobs (data dir split by speaker)")
    p.add_argument("--job", type=positive_int, default=None, help="job number 1..nj (--task job)")
    p.add_argument("--period", type=positive_int, default=10, help="frames per output row (ivector_period)")
    p.add_argument("--padding", choices=extractor.PADDINGS, default="repeat",
                   help="how windows past the last frame are completed (see utils_py/extract/extractor.py)")
    p.add_argument("--combine-contexts", type=str2bool, default=False,
                   help="append the context tower's embedding (rows of 2x embedding_size)")
    p.add_argument("--speaker-vectors", type=str2bool, default=False,
                   help="also write utt_vectors.scp: the mean row of each utterance")
    p.add_argument("--fast", type=str2bool, default=False,
                   help="conv stack once per utterance, head per row (approximate positions)")
    p.add_argument("--batch-size", type=positive_int, default=512, help="windows per forward pass")
    p.add_argument("--compress", type=str2bool, default=True,
                   help="true: ivector_online rows as Kaldi compressed matrices (automatic method, like "
                        "Kaldi's extract_ivectors_online.sh; lossy); false: float32. utt_vectors "
                        "(Kaldi vectors, which Kaldi cannot compress) are float32 either way")
    p.add_argument("--frame-shift", type=positive_float, default=10.0,
                   help="end-to-end models: frame shift in ms of the features the rows go with (the chain "
                        "model's MFCC conf); an utterance gets ceil(frames / period) rows")
    p.add_argument("--frame-length", type=positive_float, default=25.0,
                   help="end-to-end models: frame length in ms of those features")
    p.add_argument("--snip-edges", type=str2bool, default=True,
                   help="end-to-end models: Kaldi's --snip-edges of those features (frame count)")
    p.add_argument("--num-threads", type=nonneg_int, default=1, help="TensorFlow threads per job (0: all cores)")
    p.add_argument("data_dir", help="Kaldi data dir with feats.scp (end-to-end model: wav.scp)")
    p.add_argument("model_dir", help="trained unspeech model (config.json + weights)")
    p.add_argument("out_dir", help="output online-ivector dir")
    return p


def main(argv=None):
    args = parse_args(build_parser(), argv)
    log = get_logger("extract_unspeech")
    opts = dict(period=args.period, padding=args.padding, combine_contexts=args.combine_contexts,
                fast=args.fast, speaker_vectors=args.speaker_vectors, batch_size=args.batch_size,
                compress=args.compress, frame_shift=args.frame_shift, frame_length=args.frame_length,
                snip_edges=args.snip_edges)
    if args.task in ("all", "prepare"):
        refuse_overwrite(args.out_dir, [args.data_dir, args.model_dir], "output dir")
        extractor.check_inputs(args.data_dir, args.model_dir)
        ensure_dir(args.out_dir)
        extractor.clear_merged(args.out_dir)
        parts = datadir.split(args.data_dir, args.nj)
        log.info(f"{args.data_dir}: split into {len(parts)} job(s)")
    if args.task == "job":
        if args.job is None or not 1 <= args.job <= args.nj:
            raise UnspeechError(f"--task job needs --job between 1 and --nj {args.nj}, got {args.job}")
        extractor.run_job(os.path.join(args.data_dir, f"split{args.nj}", str(args.job)), args.model_dir,
                        args.out_dir, args.job, num_threads=args.num_threads, **opts)
    elif args.task == "all":
        for job in range(1, args.nj + 1):
            extractor.run_job(os.path.join(args.data_dir, f"split{args.nj}", str(job)), args.model_dir,
                            args.out_dir, job, num_threads=args.num_threads, **opts)
    if args.task in ("all", "finalize"):
        n = extractor.finalize(args.data_dir, args.model_dir, args.out_dir, args.nj, **opts)
        log.info(f"{n} utterances -> {os.path.join(args.out_dir, extractor.SCP)}")
    return 0


if __name__ == "__main__":
    run_step("extract_unspeech", main)
