#!/usr/bin/env python3
"""Prepare a Mozilla Common Voice release (one language) as Kaldi data dirs <data-root>/{train,test}.

Train and test share speakers (for scoring a clustering of test by speaker) but never a sentence.
"""

from utils_py.corpora import common_voice
from utils_py.cli import parse_args, step_parser
from utils_py.log import run_step

EPILOG = f"""Example (run.sh stage 0 for a Common Voice release, from the recipe dir):
  local/prepare_common_voice.py --seed 1 /data/cv-corpus-17.0-2024-03-15/fa data
<cv-root> holds clips/*.mp3, validated.tsv, other.tsv (and invalidated.tsv) with the
columns client_id, path, sentence ({common_voice.CV_URL}).
Uses the clips of validated.tsv + other.tsv, not those of invalidated.tsv; a clip listed
twice with the same speaker and sentence is used once, with another one it is an error.
Speaker = cv + the first --speaker-id-chars hex digits of client_id; utterance =
<spk>-<clip stem>. wav.scp pipes each mp3 through sox to a mono 16-bit wav at
--sample-rate (sox needs libsox-fmt-mp3: {common_voice.SOX_INSTALL}); utt2dur from
the mp3 headers. text: NFKC, Arabic yeh/kaf -> Persian, no diacritics, no punctuation,
ASCII digits, lower case, ZWNJ kept inside words; clips left without text are dropped.
Split (seeded, per speaker): a speaker with >= --min-clips-for-test clips gives
max(1, round(--test-fraction * n)) of them, at most --max-test-per-speaker, to test;
other speakers are train only. Train clips whose sentence is read in test are dropped.
Writes <data-root>/{{train,test}}/{{wav.scp,utt2spk,spk2utt,text,utt2dur,utt2spk.gold}}
and .done last; a rerun with the same options does nothing."""


def main(argv=None):
    p = step_parser(__doc__.strip().splitlines()[0], EPILOG)
    p.add_argument("--test-fraction", type=float, default=0.15,
                   help="share of each test speaker's clips that go to test (at least 1)")
    p.add_argument("--max-test-per-speaker", type=int, default=20,
                   help="at most this many test clips of one speaker")
    p.add_argument("--min-clips-for-test", type=int, default=5,
                   help="speakers with fewer clips are in train only")
    p.add_argument("--seed", type=int, default=1, help="random seed of the split")
    p.add_argument("--sample-rate", type=int, default=16000, help="sample rate of the wavs the wav.scp pipes give")
    p.add_argument("--speaker-id-chars", type=int, default=8,
                   help="hex digits of client_id in a speaker id (more if two speakers collide)")
    p.add_argument("--nj", type=int, default=2, help="parallel sox processes reading the clip headers")
    p.add_argument("cv_root", help="Common Voice release of one language (has clips/ and validated.tsv)")
    p.add_argument("data_root", help="where train/ and test/ go, e.g. data")
    args = parse_args(p, argv)
    common_voice.prepare(args.cv_root, args.data_root, test_fraction=args.test_fraction,
                         max_test_per_speaker=args.max_test_per_speaker, min_clips_for_test=args.min_clips_for_test,
                         seed=args.seed, sample_rate=args.sample_rate, speaker_id_chars=args.speaker_id_chars,
                         nj=args.nj)


if __name__ == "__main__":
    run_step("prepare_common_voice", main)
