#!/usr/bin/env python3
"""Make the synthetic demo corpus: wavs plus Kaldi data dirs <data-root>/{train,test}.

See utils_py/corpora/demo.py for what the speakers and channels are.
"""

from utils_py.corpora import demo
from utils_py.cli import parse_args, step_parser
from utils_py.log import run_step

EPILOG = """Example (run.sh stage 0, from the recipe dir):
  local/make_demo_corpus.py --size small db/demo data
Sizes (speakers x train+test utterances of 3-15 s):
""" + "\n".join(f"  {name:7s} {s.speakers} x {s.train_utts}+{s.test_utts}, {s.min_seconds:g}-{s.max_seconds:g} s"
                for name, s in demo.SIZES.items()) + """
Writes <wav-dir>/<spk>/<utt>.wav (16 kHz 16-bit mono), <wav-dir>/speakers.txt (voice and
channel of each speaker), and <data-root>/{train,test}/{wav.scp,utt2spk,spk2utt,text,utt2dur,
utt2spk.gold}. Same speakers in train and test, different sentences. Needs espeak-ng and sox."""


def main(argv=None):
    p = step_parser(__doc__.strip().splitlines()[0], EPILOG)
    p.add_argument("--size", default="small", choices=sorted(demo.SIZES), help="corpus size")
    p.add_argument("--seed", type=int, default=1, help="random seed (same seed, same corpus bytes)")
    p.add_argument("--nj", type=int, default=2, help="parallel synthesis jobs")
    p.add_argument("--words", default=demo.DEFAULT_WORDS, help="word list of the sentence grammar")
    p.add_argument("wav_dir", help="where the wavs go, e.g. db/demo")
    p.add_argument("data_root", help="where train/ and test/ go, e.g. data")
    args = parse_args(p, argv)
    demo.make_corpus(args.wav_dir, args.data_root, size=args.size, seed=args.seed, nj=args.nj,
                            words_path=args.words)


if __name__ == "__main__":
    run_step("make_demo_corpus", main)
