"""What README promises about a step's output: TensorFlow's log lines are off unless asked for
(UNSPEECH_TF_LOG=1), and a resumed training run ends with the uninterrupted run's weights."""
import os

import numpy as np

from conftest import run_cmd, step_env
from test_train import feats_dir, train_cmd  # noqa: F401 -- the 12-utterance feature fixture
from utils_py.model.network import WEIGHTS_FILE
from utils_py.tflog import is_tf_line


def run_env(cmd, **env):
    import subprocess
    e = step_env()
    e.pop("TF_CPP_MIN_LOG_LEVEL", None)
    e.update(env)
    return subprocess.run(cmd, env=e, capture_output=True)


def test_tensorflow_log_lines_only_when_asked(feats_dir, tmp_path):  # noqa: F811
    """Training logs its INFO lines and none of TensorFlow's C++ lines (I0000/E0000/absl) by default."""
    quiet = run_env(train_cmd(feats_dir, tmp_path / "quiet", "--steps", "3"))
    assert quiet.returncode == 0, quiet.stderr.decode()
    lines = quiet.stderr.splitlines(keepends=True)
    assert [line for line in lines if is_tf_line(line)] == [], quiet.stderr.decode()
    assert not any(line.startswith((b"I0000", b"W0000", b"E0000", b"WARNING:")) for line in lines)
    assert sum(b" INFO (train_unspeech) " in line for line in lines) >= 4
    loud = run_env(train_cmd(feats_dir, tmp_path / "loud", "--steps", "3"), UNSPEECH_TF_LOG="1")
    assert loud.returncode == 0, loud.stderr.decode()
    tf_lines = [line for line in loud.stderr.splitlines(keepends=True) if is_tf_line(line)]
    assert any(line.startswith((b"I0000", b"W0000", b"E0000")) for line in tf_lines), loud.stderr.decode()


def test_resumed_training_ends_with_the_uninterrupted_weights(feats_dir, tmp_path):  # noqa: F811
    """README: a rerun resumes from the last checkpoint with the same batches (and dropout masks,
    optimizer state): stopped at step 6 and resumed to 12 = 12 steps at once, bit for bit."""
    once, twice = tmp_path / "once", tmp_path / "twice"
    for model_dir, steps in ((once, "12"), (twice, "6"), (twice, "12")):
        p = run_cmd(train_cmd(feats_dir, model_dir, "--steps", steps, "--dropout-keep-prob", "0.5"))
        assert p.returncode == 0, p.stderr
    assert "resuming from" in p.stderr and "at step 6" in p.stderr
    a, b = np.load(once / WEIGHTS_FILE), np.load(twice / WEIGHTS_FILE)
    assert sorted(a.files) == sorted(b.files)
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert os.path.isfile(twice / "checkpoints" / "last.npz")
