"""Every recipe conf of a Python step parses with that step's own parser, and a conf
that says it states the built-in defaults does."""
import glob
import importlib.util
import os

import pytest

from conftest import REPO
from utils_py.cli import parse_args, read_config

CONF_DIR = os.path.join(REPO, "egs", "tedlium", "s5_unspeech", "conf")
# conf name prefix -> (step script, parser function, dummy positional arguments)
PYTHON_STEPS = {
    "train_": ("train_unspeech.py", "parser", ["data/train", "exp/unspeech"]),
    "cluster_": ("cluster_utts.py", "build_parser", ["data/test", "exp/unspeech/ivectors_test", "exp/c"]),
}
FBANK_CONFS = ("fbank.conf",)   # Kaldi compute-fbank-feats options, read by compute_fbank.py --fbank-config
# Not read by a Python step: Kaldi binaries' confs, bash-sourced chain sizes, slurm.pl's conf.
NOT_PYTHON = ("mfcc", "online_cmvn", "chain_", "slurm")
DEFAULTS_CLAIM = "state the built-in defaults"
NOT_DEFAULTS = "# not the defaults"


def load_step(script):
    spec = importlib.util.spec_from_file_location(script[:-3], os.path.join(REPO, "steps_unspeech", script))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def step_of(conf):
    name = os.path.basename(conf)
    for prefix, step in PYTHON_STEPS.items():
        if name.startswith(prefix):
            return step
    return None


def confs():
    return sorted(glob.glob(os.path.join(CONF_DIR, "*.conf")))


def test_every_conf_is_classified():
    """A new conf must be mapped to its step here (or listed as not read by a Python step)."""
    for conf in confs():
        name = os.path.basename(conf)
        assert step_of(conf) or name in FBANK_CONFS or name.startswith(NOT_PYTHON), name


@pytest.mark.parametrize("conf", [c for c in confs() if step_of(c)], ids=os.path.basename)
def test_conf_parses_with_its_step(conf):
    script, make, positional = step_of(conf)
    parser = getattr(load_step(script), make)()
    args = parse_args(parser, ["--config", conf, *positional])
    for token in read_config(conf):   # every value arrived, typed (e.g. "1e-3" -> 0.001)
        name, value = token[2:].split("=", 1)
        action = next(a for a in parser._actions if "--" + name in a.option_strings)
        typed = action.type(value) if action.type else value
        assert getattr(args, action.dest) == typed, (conf, name)


def not_default(conf, step) -> list:
    """Options a conf claims to state the defaults of (above the "not the defaults" line) but sets otherwise."""
    with open(conf, encoding="utf-8") as f:
        claimed = f.read().split(NOT_DEFAULTS, 1)[0]
    script, make, positional = step
    parser = getattr(load_step(script), make)()
    tokens = [t for line in claimed.splitlines() if line.split("#", 1)[0].strip()
              for t in [line.split("#", 1)[0].strip()]]
    args = parser.parse_args(tokens + positional)
    assert len(tokens) >= 10, f"{conf} claims the defaults but lists only {len(tokens)} options"
    names = [t[2:].split("=", 1)[0].replace("-", "_") for t in tokens]
    return ["--" + n.replace("_", "-") for n in names if getattr(args, n) != parser.get_default(n)]


@pytest.mark.parametrize("conf", [c for c in confs() if step_of(c)], ids=os.path.basename)
def test_conf_claiming_the_defaults_states_them(conf):
    with open(conf, encoding="utf-8") as f:
        if DEFAULTS_CLAIM not in f.read():
            pytest.skip(f"{os.path.basename(conf)} does not claim to state the defaults")
    assert not_default(conf, step_of(conf)) == []


def test_defaults_check_can_fail(tmp_path):
    """The check finds an option that differs from the default among ones that do not."""
    conf = tmp_path / "train_x.conf"
    conf.write_text(f"# these {DEFAULTS_CLAIM}\n" + open(os.path.join(CONF_DIR, "train_tedlium.conf")).read()
                    .replace("--learn-rate=3e-4", "--learn-rate=1e-3"), encoding="utf-8")
    assert not_default(str(conf), step_of(str(conf))) == ["--learn-rate"]


@pytest.mark.parametrize("name", FBANK_CONFS)
def test_fbank_conf_parses(name):
    from utils_py.features import fbank
    config = fbank.FbankConfig.from_file(os.path.join(CONF_DIR, name))
    assert config["num-mel-bins"] == 40 and config["dither"] == 0
