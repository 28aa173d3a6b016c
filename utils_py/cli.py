"""Argument parsing shared by the Python step scripts.

Every step takes ``--config FILE`` with Kaldi-style ``--name=value`` lines (as in
``conf/fbank.conf``); options on the command line override the file.  ``--help``
shows every option with its default.

Usage::

    from utils_py.cli import step_parser, parse_args, str2bool

    p = step_parser("Compute fbank features.", epilog="Example: ...")
    p.add_argument("--nj", type=int, default=4, help="parallel jobs")
    args = parse_args(p, argv)
"""
import argparse
import os
import shlex

from utils_py.log import UnspeechError


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def step_parser(description: str, epilog: str = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, epilog=epilog, formatter_class=_Formatter)
    p.add_argument("--config", default=None,
                   help="file of --name=value lines (Kaldi conf style); command-line options win")
    return p


def str2bool(value: str) -> bool:
    """Kaldi-style booleans: true/false (also 1/0, yes/no)."""
    v = str(value).lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def read_config(path: str) -> list:
    """``--name=value`` lines (``#`` comments, blank lines ignored) as argv tokens."""
    if not os.path.isfile(path):
        raise UnspeechError(f"config file not found: {path}")
    tokens = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if not line.startswith("--"):
                raise UnspeechError(f"bad line {n} (need --name=value): {path}")
            tokens.extend(shlex.split(line))
    return tokens


def parse_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse ``argv`` after expanding ``--config FILE`` (config first, argv overrides)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.config:
        argv = read_config(known.config) + list(argv if argv is not None else __import__("sys").argv[1:])
    return parser.parse_args(argv)
