#!/usr/bin/env python3
"""Train the unspeech context model on Kaldi features (or, --end-to-end true, on raw audio).

    train_unspeech.py [options] <data-dir> <model-dir>          # uses <data-dir>/feats.scp
    train_unspeech.py [options] --filelist feats.scp <model-dir>  # any scp or ark
    train_unspeech.py --end-to-end true [options] <data-dir> <model-dir>   # <data-dir>/wav.scp (+ segments)

Writes <model-dir>/{final.weights.npz,config.json,metrics.json,training_curves.png},
checkpoints/, tb/ and log/train.log.  Rerun the same command to resume.
"""
import logging
import os
import sys

from utils_py.train import loop
from utils_py.cli import parse_args, step_parser
from utils_py.fileio import ensure_dir, refuse_overwrite, require_file
from utils_py.log import UnspeechError, error_line, get_logger, run_step

STEP = "train_unspeech"

EPILOG = """Examples:
  train_unspeech.py --config conf/train_demo.conf data/train exp/unspeech
  train_unspeech.py --filelist data/train/feats.scp --spk2utt data/train/spk2utt \\
      --window-length 64 --steps 400000 exp/unspeech_64
  train_unspeech.py --config conf/train_demo_e2e.conf data/train exp/unspeech_e2e   # raw audio
Defaults are the unspeech-64-ted settings (Vgg16big, 64-frame windows, 2+2 contexts,
4 negatives); the recipe confs conf/train_{demo,fsdd,tedlium}.conf override them."""


def parser():
    p = step_parser("Train the unspeech context model (siamese CNN, target vs context windows).", EPILOG)
    p.usage = ("%(prog)s [options] <data-dir> <model-dir>\n"
               "       %(prog)s [options] --filelist <scp-or-ark> <model-dir>")
    p.add_argument("--filelist", default="",
                   help="feature scp or ark to train on instead of <data-dir>/feats.scp")
    loop.add_options(p)
    p.add_argument("dirs", nargs="+", metavar="dir",
                   help="data dir with feats.scp (omit with --filelist) and the output model dir")
    return p


def main(argv=None):
    args = parse_args(parser(), argv)
    if args.filelist and args.end_to_end:
        raise UnspeechError(f"--end-to-end true reads the audio (wav.scp) of a data dir, not a feature table: "
                            f"--filelist {args.filelist}")
    if args.filelist:
        if len(args.dirs) != 1:
            raise UnspeechError(f"with --filelist give only <model-dir>, got: {' '.join(args.dirs)}")
        feats, model_dir = args.filelist, args.dirs[0]
    else:
        if len(args.dirs) != 2:
            raise UnspeechError(f"need <data-dir> <model-dir> (or --filelist <scp> <model-dir>), "
                                f"got: {' '.join(args.dirs)}")
        model_dir = args.dirs[1]
        if args.end_to_end:
            feats = args.dirs[0]
            require_file(os.path.join(feats, "wav.scp"), "wav.scp of the data dir (--end-to-end true)")
        else:
            feats = os.path.join(args.dirs[0], "feats.scp")
            if not os.path.isfile(feats):
                raise UnspeechError(f"no feats.scp in data dir {args.dirs[0]} (run steps_unspeech/make_fbank.sh "
                                    f"first, or train on its audio with --end-to-end true)")
            require_file(feats, "feats.scp of the data dir")
    refuse_overwrite(model_dir, [args.filelist or args.dirs[0], feats, args.spk2utt], "model dir")
    log = get_logger(STEP)
    log_path = os.path.join(ensure_dir(os.path.join(model_dir, "log")), "train.log")
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s (%(name)s) %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    log.info(" ".join([os.path.basename(sys.argv[0])] + (sys.argv[1:] if argv is None else list(argv))))
    try:
        loop.run(loop.options_of(args), feats, model_dir, log=log)
    except UnspeechError as e:
        handler.stream.write(error_line(STEP, e) + "\n")
        raise
    finally:
        log.removeHandler(handler)
        handler.close()
    return 0


if __name__ == "__main__":
    run_step(STEP, main)
