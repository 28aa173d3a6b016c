"""Shared test fixtures and paths."""
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO, "egs", "tedlium", "s5_unspeech")
SHARED = os.path.abspath(os.path.join(REPO, "..", "shared", "data"))
FSDD = os.path.join(SHARED, "fsdd")
KALDI_REF = os.path.join(SHARED, "kaldi-reference")

if REPO not in sys.path:
    sys.path.insert(0, REPO)


def need_fsdd():
    """Skip (with the reason) when the FSDD corpus beside the checkout is absent."""
    if not os.path.isdir(os.path.join(FSDD, "recordings")):
        pytest.skip(f"FSDD recordings not found at {FSDD} (only beside the dev/CI checkout)")
    return FSDD


def need_kaldi_ref():
    if not os.path.isdir(KALDI_REF):
        pytest.skip(f"Kaldi reference outputs not found at {KALDI_REF}")
    return KALDI_REF


def need_tools(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {' '.join(missing)} (apt-get install sox espeak-ng)")


def step_env():
    """Environment the recipe's path.sh would give: repo on PYTHONPATH, venv first on PATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["LC_ALL"] = "C"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def run_cmd(args, cwd=None, check=False, **kw):
    """Run a command with the recipe environment; returns CompletedProcess (text)."""
    p = subprocess.run(args, cwd=cwd or REPO, env=step_env(), capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p
