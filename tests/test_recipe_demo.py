"""run.sh stages 0-6 on the tiny demo corpus without Kaldi (what README's quick start promises for
a machine without Kaldi), in a linked copy of the recipe; every stage's outputs checked.
About 1-2 minutes on 2 cores."""
import glob
import json
import os
import subprocess

import pytest

from conftest import ivector_dir_dim, step_env, tiny_demo_recipe
from utils_py.kaldi import datadir, tables
from utils_py.tflog import is_tf_line

SETS = ("train_sp", "test")


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    _, recipe, conf = tiny_demo_recipe(tmp_path_factory, "recipe_demo")
    env = step_env()
    env.pop("KALDI_ROOT", None)   # stages 0-6 need no Kaldi: cmd.sh falls back to run_local.sh
    p = subprocess.run(["./run.sh", "--corpus", "demo", "--demo-size", "tiny", "--nj", "2", "--stop-stage", "6",
                        "--train-config", str(conf)], cwd=recipe, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, f"run.sh failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return str(recipe), p


def test_stages_0_to_6_outputs(recipe):
    recipe, run = recipe
    at = lambda *p: os.path.join(recipe, *p)  # noqa: E731
    # stages 0-2: data dirs by Kaldi's rules, 40-dim fbank readable for every utterance
    for d in ("train", "test", "train_sp"):
        utt2spk = datadir.validate(at("data", d), need=("wav.scp", "feats.scp", "utt2num_frames"))
        shapes = tables.scp_shapes(at("data", d, "feats.scp"))
        assert set(shapes) == set(utt2spk) and {cols for _, cols in shapes.values()} == {40}, d
        assert next(tables.iter_matrices(at("data", d, "feats.scp")))[1].shape[1] == 40
    assert len(datadir.read_table(at("data", "train_sp", "utt2spk"))) == 3 * len(
        datadir.read_table(at("data", "train", "utt2spk")))                     # speeds 0.9, 1.0, 1.1
    # stage 3: the model
    metrics = json.load(open(at("exp", "unspeech", "metrics.json")))
    config = json.load(open(at("exp", "unspeech", "config.json")))
    assert metrics["finished"] and metrics["step"] >= 1 and config["feature_dim"] == 40
    assert os.path.isfile(at("exp", "unspeech", "final.weights.npz"))
    for s in SETS:
        # stage 4: online-ivector dirs that cover their data dir (rows vs frames, one dim)
        assert ivector_dir_dim(recipe, f"exp/unspeech/ivectors_{s}", f"data/{s}") == config["embedding_size"]
        # stage 5: every utterance clustered, scored against the true speakers
        utts = set(datadir.read_table(at("data", s, "utt2spk")))
        assert set(datadir.read_table(at("exp", "unspeech", f"cluster_{s}", "utt2spk"))) == utts
        scores = json.load(open(at("exp", "unspeech", f"cluster_{s}", "scores.json")))
        assert -1.0 <= scores["ari"] <= 1.0 and scores["num_utts"] == len(utts)
        # stage 6: relabelled data dir (valid, same utterances under new ids) and its ivector dir
        relabelled = datadir.validate(at("data", f"{s}_unspk"), need=("feats.scp",))
        utt_map = datadir.read_table(at("data", f"{s}_unspk", "utt_map"))
        assert set(utt_map) == set(relabelled) and set(utt_map.values()) == utts
        assert ivector_dir_dim(recipe, f"exp/unspeech/ivectors_{s}_unspk", f"data/{s}_unspk") == \
            config["embedding_size"]
    # no TensorFlow C++ lines (I0000 ..., E0000 ... remapper failed) on the terminal or in a job log
    logs = [run.stdout, run.stderr] + [open(f, errors="replace").read() for f in glob.glob(at("exp", "**", "*.log"),
                                                                                        recursive=True)]
    assert not [line for text in logs for line in text.splitlines() if is_tf_line(line.encode())]
