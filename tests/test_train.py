"""Training: objectives (hand-computed), CLI end to end, resume after SIGKILL, bad input."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, run_cmd, step_env
from utils_py.kaldi import tables
from utils_py.model.network import WEIGHTS_FILE, UnspeechModel, load_model_dir
from utils_py.tflog import is_tf_line

TRAIN_PY = os.path.join(REPO, "steps_unspeech", "train_unspeech.py")
TRAIN_SH = os.path.join(REPO, "steps_unspeech", "train_unspeech.sh")
TINY = ["--embedding-transformation", "VggCpu", "--window-length", "16", "--window-neg-length", "16",
        "--left-contexts", "1", "--right-contexts", "1", "--negative-samples", "2", "--fc-size", "16",
        "--embedding-size", "8", "--batch-size", "4", "--val-fraction", "0.2", "--val-pairs", "20",
        "--log-every", "3", "--checkpoint-every", "3"]


def softplus(x):
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


# ---------------------------------------------------------------- objectives
def test_pair_loss_value():
    from utils_py.model import objectives as obj
    loss, acc, chance = obj.pair_loss(np.array([[1.0, 1.0], [1.0, 0.0]], np.float32),
                                      np.array([[1.0, 1.0], [-1.0, 3.0]], np.float32), np.array([1.0, 0.0]))
    # logits 2 and -1: CE = softplus(-2) and softplus(-1)
    assert float(loss) == pytest.approx((softplus(-2) + softplus(-1)) / 2, rel=1e-5)
    assert float(acc) == 1.0 and float(chance) == 0.5


# B = 2 targets, K = 2 contexts each: contexts 0, 1 belong to target 0; 2, 3 to target 1.
T_EMB = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
C_EMB = np.array([[2.0, 0.0], [1.0, 0.5], [0.0, 1.0], [1.0, 0.0]], np.float32)
# logits[i, j] = <t_i, c_j>: target 0: [2, 1, 0, 1], target 1: [0, 0.5, 1, 0]


def test_inbatch_labels_and_mask():
    from utils_py.model import objectives as obj
    labels, mask = obj.inbatch_targets(np.array([7, 8]), 2)
    np.testing.assert_array_equal(labels.numpy(), [[1, 1, 0, 0], [0, 0, 1, 1]])
    np.testing.assert_array_equal(mask.numpy(), np.ones((2, 4)))
    labels, mask = obj.inbatch_targets(np.array([7, 7]), 2)   # same utterance: no negatives between them
    np.testing.assert_array_equal(mask.numpy(), labels.numpy())
    _, mask = obj.inbatch_targets(np.array([5, 6, 5]), 1)
    np.testing.assert_array_equal(mask.numpy(), [[1, 1, 0], [1, 1, 1], [0, 1, 1]])


def test_inbatch_same_utterance_positive():
    from utils_py.model import objectives as obj
    labels, mask = obj.inbatch_targets(np.array([7, 7]), 2, "positive")  # two chunks of one utterance
    np.testing.assert_array_equal(labels.numpy(), np.ones((2, 4)))
    np.testing.assert_array_equal(mask.numpy(), np.ones((2, 4)))
    labels, mask = obj.inbatch_targets(np.array([5, 6, 5]), 1, "positive")
    np.testing.assert_array_equal(labels.numpy(), [[1, 0, 1], [0, 1, 0], [1, 0, 1]])
    np.testing.assert_array_equal(mask.numpy(), np.ones((3, 3)))
    loss, acc, _ = obj.inbatch_loss(T_EMB, C_EMB, *obj.inbatch_targets(np.array([7, 7]), 2, "positive"), "sigmoid")
    # every pair positive (no negatives: their half of the loss is 0)
    pos = [2, 1, 0, 1, 0, 0.5, 1, 0]
    assert float(loss) == pytest.approx(0.5 * np.mean([softplus(-x) for x in pos]), rel=1e-5)
    assert float(acc) == pytest.approx(0.5 * 5 / 8)
    with pytest.raises(ValueError, match="unknown same_utt"):
        obj.inbatch_targets(np.array([1, 2]), 2, "negative")


@pytest.mark.parametrize("opts, message", [
    ({"inbatch_same_utt": "negative"}, "option --inbatch-same-utt: must be one of mask | positive, got negative"),
    ({"inbatch_chunks_per_utt": 3}, "--inbatch-chunks-per-utt 3 must divide --batch-size 32"),
    ({"inbatch_chunks_per_utt": 0}, "option --inbatch-chunks-per-utt: must be >= 1, got 0"),
    ({"objective": "contrastive"}, "option --objective: must be one of original | inbatch, got contrastive"),
    ({"level_jitter_db": -1.0}, "option --level-jitter-db: must be >= 0, got -1"),
    ({"learn_rate": -1}, "option --learn-rate: must be > 0, got -1"),
    ({"val_fraction": 1.0}, "option --val-fraction: must be in [0, 1), got 1"),
    ({"dropout_keep_prob": 0.0}, "option --dropout-keep-prob: must be in (0, 1], got 0"),
    ({"steps": 2.5}, "option --steps: must be a finite int >= 1, got 2.5"),
    ({"left_contexts": 0, "right_contexts": 0}, "need --left-contexts + --right-contexts >= 1"),
])
def test_bad_options_are_named(opts, message):
    from utils_py.log import UnspeechError
    from utils_py.train.loop import check_options, default_options
    with pytest.raises(UnspeechError) as e:
        check_options(dict(default_options(), **opts))
    assert message in str(e.value)


@pytest.mark.parametrize("argv, message", [
    (["--learn-rate", "-1"], "option --learn-rate: must be > 0, got -1"),
    (["--val-fraction=1.5"], "option --val-fraction: must be in [0, 1), got 1.5"),
    (["--objective", "x"], "option --objective: must be one of original | inbatch, got x"),
    (["--steps", "many"], "option --steps: expected int, got 'many'"),
])
def test_bad_option_on_the_command_line_is_one_line(tmp_path, argv, message):
    """The parser rejects a value out of range before anything is read or written."""
    model_dir = tmp_path / "model"
    p = run_cmd([TRAIN_SH, "--filelist", str(tmp_path / "none.scp"), *argv, str(model_dir)])
    assert p.returncode == 1 and p.stderr.strip().splitlines()[-1] == f"ERROR (train_unspeech): {message}", p.stderr
    assert not (model_dir / "metrics.json").exists()


def test_resume_accepts_checkpoint_older_than_an_option():
    """A checkpoint written before an option existed resumes when the option keeps its default."""
    from utils_py.train.loop import _config_diff, _other_options_message, default_options
    old = default_options()
    del old["inbatch_same_utt"]
    assert _config_diff(old, default_options()) == []
    new = dict(default_options(), inbatch_same_utt="positive")
    assert _config_diff(old, new) == ["inbatch_same_utt"]
    assert "(inbatch_same_utt: mask -> positive)" in _other_options_message("exp/m", "a model", old, new,
                                                                          ["inbatch_same_utt"])


def test_inbatch_softmax_hand_computed():
    from utils_py.model import objectives as obj
    labels, mask = obj.inbatch_targets(np.array([7, 8]), 2)
    loss, acc, chance = obj.inbatch_loss(T_EMB, C_EMB, labels, mask, "softmax")
    # per context: -log softmax over the two targets of its own target's logit
    expected = (softplus(0 - 2) + softplus(0.5 - 1) + softplus(0 - 1) + softplus(1 - 0)) / 4
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(acc) == 0.75          # context 3 prefers target 0
    assert float(chance) == 0.5
    labels, mask = obj.inbatch_targets(np.array([7, 7]), 2)
    loss, acc, chance = obj.inbatch_loss(T_EMB, C_EMB, labels, mask, "softmax")
    assert float(loss) == pytest.approx(0.0, abs=1e-6) and float(chance) == 1.0  # only the own target left


def test_inbatch_sigmoid_hand_computed():
    from utils_py.model import objectives as obj
    labels, mask = obj.inbatch_targets(np.array([7, 8]), 2)
    loss, acc, chance = obj.inbatch_loss(T_EMB, C_EMB, labels, mask, "sigmoid")
    pos = [2, 1, 1, 0]       # own pairs: CE = softplus(-x)
    neg = [0, 1, 0, 0.5]     # other pairs: CE = softplus(x)
    expected = 0.5 * np.mean([softplus(-x) for x in pos]) + 0.5 * np.mean([softplus(x) for x in neg])
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(acc) == pytest.approx(0.5 * 3 / 4 + 0.5 * 2 / 4)   # logit > 0: 3 of 4 positives, 2 of 4 negatives
    assert float(chance) == 0.5


# ---------------------------------------------------------------- data
@pytest.fixture(scope="module")
def feats_dir(tmp_path_factory):
    """12 utterances of 3 'speakers', 16-dim smooth features with a speaker offset."""
    d = tmp_path_factory.mktemp("feats")
    rng = np.random.default_rng(0)
    with tables.MatrixWriter(str(d / "feats.ark"), str(d / "feats.scp")) as w:
        for u in range(12):
            walk = np.cumsum(rng.normal(0, 0.3, (90 + 5 * u, 16)), axis=0)
            w.write(f"spk{u % 3}-utt{u:02d}", (walk + 4.0 * (u % 3) + 10).astype(np.float32))
    with open(d / "spk2utt", "w") as f:
        for s in range(3):
            f.write(f"spk{s} " + " ".join(f"spk{s}-utt{u:02d}" for u in range(s, 12, 3)) + "\n")
    return d


def train_cmd(feats_dir, model_dir, *extra, script=TRAIN_PY):
    return [script, "--filelist", str(feats_dir / "feats.scp"), *TINY, *extra, str(model_dir)]


# ---------------------------------------------------------------- end to end
def test_train_outputs_rerun_and_extend(feats_dir, tmp_path):
    model_dir = tmp_path / "model"
    p = run_cmd(train_cmd(feats_dir, model_dir, "--steps", "6", script=TRAIN_SH))
    assert p.returncode == 0, p.stderr
    for f in ("final.weights.npz", "config.json", "metrics.json", "training_curves.png", "log/train.log",
              "checkpoints/last.npz"):
        assert (model_dir / f).is_file(), f
    assert any(n.startswith("events.") for n in os.listdir(model_dir / "tb"))
    cfg = json.loads((model_dir / "config.json").read_text())
    from utils_py.train.loop import OPTIONS
    assert cfg["feature_dim"] == 16 and all(name in cfg for name, *_ in OPTIONS)
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["step"] == 6 and 0.0 <= metrics["val_accuracy"] <= 1.0
    assert metrics["train_utterances"] + metrics["val_utterances"] == 12 and metrics["val_utterances"] == 2
    assert metrics["pairs_per_second"] > 0 and metrics["model_id"] == load_model_dir(str(model_dir)).model_id
    log = (model_dir / "log" / "train.log").read_text()
    assert "step 6/6" in log and "held-out context acc" in log and "pairs/s" in log
    assert "dropped 0 shorter than one positive sample (48 frames)" in log

    mtime = os.path.getmtime(model_dir / WEIGHTS_FILE)
    p = run_cmd(train_cmd(feats_dir, model_dir, "--steps", "6", script=TRAIN_SH))
    assert p.returncode == 0 and "already trained" in p.stderr
    assert os.path.getmtime(model_dir / WEIGHTS_FILE) == mtime

    p = run_cmd(train_cmd(feats_dir, model_dir, "--steps", "9"))
    assert p.returncode == 0, p.stderr
    assert "resuming from" in p.stderr and "at step 6" in p.stderr
    assert json.loads((model_dir / "metrics.json").read_text())["step"] == 9

    p = run_cmd(train_cmd(feats_dir, model_dir, "--steps", "9", "--learn-rate", "0.1"))
    assert p.returncode != 0 and "learn_rate: 0.0003 -> 0.1" in p.stderr.strip().splitlines()[-1]


def test_resume_after_sigkill(feats_dir, tmp_path):
    model_dir = tmp_path / "model"
    cmd = train_cmd(feats_dir, model_dir, "--steps", "400", "--checkpoint-every", "10", "--log-every", "100",
                    "--dropout-keep-prob", "1.0")
    proc = subprocess.Popen(cmd, env=step_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = model_dir / "checkpoints" / "last.npz"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (model_dir / "metrics.json").exists(), "killed after a checkpoint, before the end"

    p = run_cmd(cmd)
    assert p.returncode == 0, p.stderr
    resumed_at = int(p.stderr.split("at step ")[1].split()[0])
    assert 0 < resumed_at < 400 and resumed_at % 10 == 0
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["step"] == 400
    assert [h["step"] for h in metrics["history"]] == [100, 200, 300, 400]


def test_inbatch_objective_same_model_class(feats_dir, tmp_path):
    """Also: an ark as --filelist, a memmap --cache-dir, --spk2utt, --final-model best."""
    model_dir = tmp_path / "model"
    cmd = train_cmd(feats_dir, model_dir, "--steps", "9", "--objective", "inbatch", "--spk2utt",
                    str(feats_dir / "spk2utt"), "--final-model", "best", "--cache-dir", str(tmp_path / "cache"))
    cmd[cmd.index("--filelist") + 1] = str(feats_dir / "feats.ark")
    p = run_cmd(cmd)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "cache" / "data.f32").is_file()
    m = load_model_dir(str(model_dir))
    assert isinstance(m, UnspeechModel) and m.config["objective"] == "inbatch"
    assert m.embed(np.zeros((2, 16, 16), np.float32)).shape == (2, 8)
    metrics = json.loads((model_dir / "metrics.json").read_text())
    best = max(metrics["history"], key=lambda h: h["val_accuracy"])   # first of equals, as training keeps it
    assert metrics["final_model_step"] == metrics["best_val_step"] == best["step"]
    assert metrics["val_accuracy"] == best["val_accuracy"] and metrics["step"] == 9
    best_weights = np.load(model_dir / "checkpoints" / "best.npz")  # final model = best checkpoint
    for path, w in m.get_weights().items():
        np.testing.assert_array_equal(w, best_weights["model/" + path])


def test_help_lists_every_option():
    from utils_py.train.loop import OPTIONS
    p = run_cmd([TRAIN_SH, "--help"])
    assert p.returncode == 0
    for name, _, default, _ in OPTIONS:
        assert "--" + name.replace("_", "-") in p.stdout
    assert "--filelist" in p.stdout and "(default: Vgg16big)" in p.stdout


# ---------------------------------------------------------------- bad input
def write_feats(d, mats):
    with tables.MatrixWriter(str(d / "feats.ark"), str(d / "feats.scp")) as w:
        for key, m in mats:
            w.write(key, np.asarray(m, np.float32))
    return d / "feats.scp"


def bad_inputs(tmp_path):
    ok = np.ones((60, 16))
    nan = ok.copy()
    nan[7, 3] = np.nan
    cases = {
        "dim": (write_feats(tmp_path / "dim", [("a", ok), ("b", np.ones((60, 17)))]), [],
                "utterance b has feature dim 17"),
        "nan": (write_feats(tmp_path / "nan", [("a", ok), ("b", nan)]), [], "utterance b has NaN/Inf"),
        "short": (write_feats(tmp_path / "short", [("a", ok[:40]), ("b", ok[:47])]), [],
                  "every utterance is shorter than one positive sample (48 frames"),
        "unreadable": (tmp_path / "missing.scp", [], "not found"),
        "window": (write_feats(tmp_path / "window", [("a", ok), ("b", ok)]),
                   ["--window-length", "8"], "--window-length=8 is smaller than the 16 frames VggCpu needs"),
    }
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "feats.scp").write_text("a /nonexistent/x.ark:12\n")
    cases["garbage"] = (tmp_path / "garbage" / "feats.scp", [], "cannot read matrix of utterance a")
    return cases


@pytest.mark.parametrize("case", ["dim", "nan", "short", "unreadable", "window", "garbage"])
def test_bad_input_one_line_error(tmp_path, case):
    for d in ("dim", "nan", "short", "window"):
        (tmp_path / d).mkdir()
    scp, extra, message = bad_inputs(tmp_path)[case]
    p = run_cmd([TRAIN_PY, "--filelist", str(scp), *TINY, *extra, "--steps", "2", str(tmp_path / "model")])
    assert p.returncode != 0
    err = [line for line in p.stderr.splitlines() if line.startswith("ERROR")]
    assert len(err) == 1 and err[0].startswith("ERROR (train_unspeech): ") and message in err[0], p.stderr
    assert not (tmp_path / "model" / "metrics.json").exists()


def test_data_dir_without_feats_is_an_error(tmp_path):
    p = run_cmd([TRAIN_SH, str(tmp_path), str(tmp_path / "model")])
    assert p.returncode != 0 and "no feats.scp in data dir" in p.stderr


def test_mirrored_strategy_code_path(feats_dir, tmp_path):
    """Two logical CPU devices stand in for two GPUs: the MirroredStrategy step runs and learns."""
    script = f"""
import json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from utils_py.train import loop
cfg = loop.default_options()
cfg.update(embedding_transformation="VggCpu", window_length=16, window_neg_length=16, left_contexts=1,
           right_contexts=1, negative_samples=2, fc_size=16, embedding_size=8, batch_size=4, steps=4,
           log_every=2, checkpoint_every=2, val_pairs=20, val_fraction=0.2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
m = loop.run(cfg, {str(feats_dir / 'feats.scp')!r}, {str(tmp_path / 'model')!r}, strategy=strategy)
print(json.dumps({{"step": m["step"], "loss": m["loss"]}}))
"""
    p = subprocess.run([sys.executable, "-c", script], env=step_env(), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["step"] == 4 and math.isfinite(out["loss"])


# ------------------------------------------- README's promises: TF log lines, resume
def run_env(cmd, **env):
    e = step_env()
    e.pop("TF_CPP_MIN_LOG_LEVEL", None)
    e.update(env)
    return subprocess.run(cmd, env=e, capture_output=True)


def test_tensorflow_log_lines_only_when_asked(feats_dir, tmp_path):
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


def test_resumed_training_ends_with_the_uninterrupted_weights(feats_dir, tmp_path):
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
