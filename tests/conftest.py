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
CV_FA = os.path.join(SHARED, "cv_fa")
KALDI_INSTALLER = os.path.abspath(os.path.join(REPO, "..", "shared", "tools", "kaldi", "install.sh"))
# Where the test run installs ../shared/tools/kaldi when KALDI_ROOT is not set.
KALDI_TEST_DEST = os.environ.get("UNSPEECH_TEST_KALDI", os.path.expanduser("~/.cache/unspeech/kaldi"))



def need_fsdd():
    """Skip (with the reason) when the FSDD corpus beside the checkout is absent."""
    if not os.path.isdir(os.path.join(FSDD, "recordings")):
        pytest.skip(f"FSDD recordings not found at {FSDD} (only beside the dev/CI checkout)")
    return FSDD


def need_kaldi_ref():
    if not os.path.isdir(KALDI_REF):
        pytest.skip(f"Kaldi reference outputs not found at {KALDI_REF}")
    return KALDI_REF


def is_kaldi_root(path):
    return bool(path) and os.path.isfile(os.path.join(path, "egs", "wsj", "s5", "utils", "run.pl")) and \
        os.path.isfile(os.path.join(path, "src", "bin", "compute-wer"))


@pytest.fixture(scope="session")
def kaldi_root():
    """A real, compiled Kaldi: $KALDI_ROOT, else the copy in ../shared/tools/kaldi installed by
    this test run (once, into ~/.cache/unspeech/kaldi); skips with the reason when neither exists."""
    env = os.environ.get("KALDI_ROOT", "")
    if is_kaldi_root(env):
        return env
    if env:
        pytest.skip(f"KALDI_ROOT={env} is not a compiled Kaldi (no egs/wsj/s5/utils/run.pl or src/bin/compute-wer)")
    if not os.path.isfile(KALDI_INSTALLER):
        pytest.skip(f"no Kaldi: KALDI_ROOT is not set and {KALDI_INSTALLER} does not exist")
    p = subprocess.run(["bash", KALDI_INSTALLER, KALDI_TEST_DEST], capture_output=True, text=True)
    if p.returncode != 0 or not is_kaldi_root(KALDI_TEST_DEST):
        pytest.fail(f"installing Kaldi with {KALDI_INSTALLER} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    return KALDI_TEST_DEST


def linked_recipe(path):
    """A copy of the recipe dir at ``path`` made of links (run.sh, cmd.sh, path.sh, conf/, local/,
    steps_unspeech/): its data/ and exp/ are the test's own."""
    os.makedirs(path, exist_ok=True)
    for name in ("run.sh", "cmd.sh", "path.sh", "conf"):
        os.symlink(os.path.join(RECIPE, name), os.path.join(path, name))
    for name in ("local", "steps_unspeech"):
        os.symlink(os.path.join(REPO, name), os.path.join(path, name))
    return path


# A short unspeech training on top of the demo settings (later options win).
TINY_TRAIN_OVERRIDES = ["--steps=200", "--max-hours=0.05", "--log-every=50", "--checkpoint-every=100"]


def tiny_demo_recipe(tmp_path_factory, name, base_conf="train_demo.conf"):
    """(root, linked recipe copy, train conf = conf/<base_conf> + TINY_TRAIN_OVERRIDES) in a temp dir
    for a run.sh of the tiny demo corpus; skips without sox/espeak-ng."""
    need_tools("sox", "espeak-ng")
    root = tmp_path_factory.mktemp(name)
    train_conf = root / "train_tiny.conf"
    with open(os.path.join(RECIPE, "conf", base_conf)) as f:
        train_conf.write_text(f.read().rstrip("\n") + "\n" + "\n".join(TINY_TRAIN_OVERRIDES) + "\n")
    return root, linked_recipe(root / "s5_unspeech"), train_conf


def ivector_dir_dim(recipe, ivector_dir, data_dir) -> int:
    """The dim ``steps_unspeech/check_ivector_dir.py --print dim`` reports (it checks the dir against the data dir)."""
    p = subprocess.run([os.path.join(REPO, "steps_unspeech", "check_ivector_dir.py"), "--print", "dim",
                        ivector_dir, data_dir], cwd=recipe, env=step_env(), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return int(p.stdout.strip())


def kaldi_env(kaldi_root):
    """step_env() plus KALDI_ROOT: what path.sh of the recipe then adds (Kaldi's binaries, utils)."""
    env = step_env()
    env["KALDI_ROOT"] = kaldi_root
    return env


def need_cv_fa():
    """Skip (with the reason) when the Common Voice Persian sample beside the checkout is absent."""
    if not os.path.isfile(os.path.join(CV_FA, "validated.tsv")):
        pytest.skip(f"Common Voice Persian sample not found at {CV_FA} (only beside the dev/CI checkout)")
    return CV_FA


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
    return env


def run_cmd(args, cwd=None, check=False, **kw):
    """Run a command with the recipe environment; returns CompletedProcess (text)."""
    p = subprocess.run(args, cwd=cwd or REPO, env=step_env(), capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def kaldi_compression_bound(mat):
    """Per-element bound on |decompressed - original| of Kaldi's automatic compression
    (``copy-feats --compress=true``, kaldiio's ``kAutomaticMethod``) of ``mat``.

    More than 8 rows: "CM" -- per column, the 0/25/75/100th percentiles are stored as 16-bit
    fractions of the matrix's [min, max], and each value as one byte within its
    percentile segment ([p0, p25]: 64 steps, [p25, p75]: 128, [p75, p100]: 63).  Rounding to the
    nearest byte is off by half a step, at most (column range) / (2 * 63); the 16-bit percentiles
    add at most (matrix range) / 65535 each, two per segment.  8 rows or fewer: "CM2", every value
    a 16-bit fraction of [min, max]: half a step, (matrix range) / 65535 / 2.  A float32 ulp of
    the largest magnitude covers the float arithmetic.
    """
    import numpy as np
    mat = np.asarray(mat, dtype=np.float64)
    lo, hi = mat.min(), mat.max()
    rng = (hi - lo) if hi > lo else 1.0 + abs(lo)
    slack = 4 * np.finfo(np.float32).eps * max(abs(lo), abs(hi), 1.0)
    if mat.shape[0] <= 8:
        return np.full(mat.shape, rng / 65535 / 2 + slack)
    col_range = mat.max(axis=0) - mat.min(axis=0)
    return np.broadcast_to(col_range / (2 * 63) + 2 * rng / 65535 + slack, mat.shape)
