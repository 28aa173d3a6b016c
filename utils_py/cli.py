"""Argument parsing shared by the Python step scripts: the one owner of every step option.

A step's options are defined once, in its parser (or in an option table that both the
parser and dict validation use): name, type, default, range and help.  Range-checked
types reject bad values in argparse itself, with one line::

    ERROR (train_unspeech): option --learn-rate: must be > 0, got -1

Config files: every step takes ``--config FILE``, Kaldi's meaning: ``--name=value`` lines
of the same options (``#`` starts a comment), as in ``conf/fbank.conf``; options on the
command line override the file.  ``--help`` shows every option with its default and range.

Usage::

    from utils_py.cli import Option, add_options, check_values, parse_args, positive_int, step_parser

    TABLE = [Option("nj", positive_int, 4, "parallel jobs"), Option("mode", one_of("a", "b"), "a", "...")]
    p = step_parser("Compute fbank features.", epilog="Example: ...")
    add_options(p, TABLE)
    args = parse_args(p, argv)
    check_values(TABLE, {"nj": 0})      # UnspeechError: option --nj: must be >= 1, got 0
"""
import argparse
import math
import os
import shlex
import sys
from typing import Any, Callable, NamedTuple

from utils_py.log import UnspeechError

CONFIG_HELP = ("file of --name=value lines of these options (Kaldi's --config; # comments); "
               "command-line options win")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


class _StepParser(argparse.ArgumentParser):
    """Bad options end in one ``UnspeechError`` line (``run_step`` prints it, exit 1), not a usage dump."""

    def error(self, message):
        if message.startswith("argument "):
            message = "option " + message[len("argument "):]
        raise UnspeechError(f"{message} (see --help)" if "required" in message or "unrecognized" in message
                            else message)


def step_parser(description: str, epilog: str = None) -> argparse.ArgumentParser:
    p = _StepParser(description=description, epilog=epilog, formatter_class=_Formatter)
    p.add_argument("--config", default=None, help=CONFIG_HELP)
    return p


def str2bool(value: str) -> bool:
    """Kaldi-style booleans: true/false (also 1/0, yes/no)."""
    v = str(value).lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


class Checked:
    """An argparse ``type`` that parses with ``base`` and checks a range or a set of choices.

    The same object validates values that do not come from a command line
    (``check_values``: a config read from a model dir, a dict built in code).
    """

    def __init__(self, base, lo=None, hi=None, lo_open=False, hi_open=False, choices=None):
        self.base, self.lo, self.hi, self.lo_open, self.hi_open = base, lo, hi, lo_open, hi_open
        self.choices = tuple(choices) if choices else None
        self.__name__ = base.__name__   # argparse names the type in its messages

    def describe(self) -> str:
        if self.choices:
            return " | ".join(map(str, self.choices))
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        return f"{'<' if self.hi_open else '<='} {self.hi:g}"

    def problem(self, value):
        """Why ``value`` is not allowed (``must be ...``), or None."""
        if self.choices:
            return None if value in self.choices else f"must be one of {self.describe()}, got {value}"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                self.base is int and not float(value).is_integer()) or not math.isfinite(value):
            return f"must be a finite {self.base.__name__} {self.describe()}, got {value!r}"
        too_low = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        too_high = self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi)
        return f"must be {self.describe()}, got {value:g}" if too_low or too_high else None

    def __call__(self, text):
        try:
            value = self.base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {self.__name__}, got {text!r}") from None
        why = self.problem(value)
        if why:
            raise argparse.ArgumentTypeError(why)
        return value


def int_range(lo=None, hi=None) -> Checked:
    """Integers in ``[lo, hi]`` (either end may be None: unbounded)."""
    return Checked(int, lo, hi)


def float_range(lo=None, hi=None, lo_open=False, hi_open=False) -> Checked:
    return Checked(float, lo, hi, lo_open, hi_open)


def one_of(*choices) -> Checked:
    return Checked(str, choices=choices)


positive_int = int_range(1)
nonneg_int = int_range(0)
positive_float = float_range(0, lo_open=True)
nonneg_float = float_range(0)
fraction = float_range(0, 1, hi_open=True)          # [0, 1)
probability = float_range(0, 1, lo_open=True)       # (0, 1]


class Option(NamedTuple):
    """One row of an option table: ``--name`` (underscores as dashes), type, default, help."""
    name: str
    type: Callable
    default: Any
    help: str


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


_METAVARS = {int: "N", float: "X"}


def add_options(parser, table) -> None:
    """Add every option of ``table`` to ``parser``; ranges and choices show in the help."""
    for o in table:
        extra = f" [{o.type.describe()}]" if isinstance(o.type, Checked) else ""
        base = getattr(o.type, "base", o.type)
        metavar = "true|false" if o.type is str2bool else _METAVARS.get(base, "STR")
        parser.add_argument(flag(o.name), dest=o.name, type=o.type, default=o.default, metavar=metavar,
                            help=o.help.replace("%", "%%") + extra)


def options_of(args, table) -> dict:
    return {o.name: getattr(args, o.name) for o in table}


def defaults_of(table) -> dict:
    return {o.name: o.default for o in table}


def check_values(table, values: dict) -> None:
    """UnspeechError naming the first option of ``table`` whose value in ``values`` is out of range."""
    for o in table:
        if isinstance(o.type, Checked) and o.name in values:
            why = o.type.problem(values[o.name])
            if why:
                raise UnspeechError(f"option {flag(o.name)}: {why}")


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
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.config:
        argv = read_config(known.config) + argv
    return parser.parse_args(argv)
