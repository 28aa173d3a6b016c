#!/usr/bin/env python3
"""A word-loop LM in ARPA format: every word of a text (one sentence per line, no ids)
and the sentence end equally likely, as the grammar of Kaldi's digit recipes (TIDIGITS).
local/prepare_lang.sh --lm-order 1 uses it where n-gram counts are too even for
Kneser-Ney discounting (random digit strings: every n-gram seen many times)."""
import math

from utils_py.cli import parse_args, step_parser
from utils_py.fileio import atomic_write_text
from utils_py.log import UnspeechError, run_step

EPILOG = """Example:
  local/make_word_loop_lm.py data/local/lm/train_text.txt data/local/lm/lm.arpa"""


def word_loop_arpa(words) -> str:
    """ARPA text of a uniform unigram over ``words`` and ``</s>``.

    >>> print(word_loop_arpa(["two", "one", "one"]), end="")
    \\data\\
    ngram 1=4
    <BLANKLINE>
    \\1-grams:
    -99 <s>
    -0.477121 </s>
    -0.477121 one
    -0.477121 two
    <BLANKLINE>
    \\end\\
    """
    vocab = sorted(set(words) - {"<s>", "</s>"}, key=lambda w: w.encode())
    if not vocab:
        raise UnspeechError("no words for the word-loop LM")
    logp = f"{math.log10(1.0 / (len(vocab) + 1)):.6f}"
    lines = ["\\data\\", f"ngram 1={len(vocab) + 2}", "", "\\1-grams:", "-99 <s>", f"{logp} </s>"]
    lines += [f"{logp} {w}" for w in vocab]
    return "\n".join(lines + ["", "\\end\\"]) + "\n"


def main(argv=None):
    p = step_parser(__doc__.strip().splitlines()[0], EPILOG)
    p.add_argument("text", help="sentences, one per line, words separated by spaces (no utterance ids)")
    p.add_argument("arpa", help="ARPA file to write")
    args = parse_args(p, argv)
    try:
        with open(args.text, encoding="utf-8") as f:
            words = f.read().split()
    except OSError as e:
        raise UnspeechError(f"cannot read ({e.strerror}): {args.text}") from None
    if not words:
        raise UnspeechError(f"no words: {args.text}")
    atomic_write_text(args.arpa, word_loop_arpa(words))


if __name__ == "__main__":
    run_step("make_word_loop_lm", main)
