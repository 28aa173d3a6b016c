"""run.sh stages 0-6 on the tiny demo corpus with the raw-waveform conf (conf/train_demo_e2e.conf,
shortened): the end-to-end model goes through the recipe's own stages -- extraction onto the
fbank dirs' frame grid, clustering, relabelling -- like an fbank model. About 2-3 minutes on 2 cores."""
import json
import os
import subprocess

from conftest import ivector_dir_dim, step_env, tiny_demo_recipe
from utils_py.kaldi import datadir, tables


def test_stages_0_to_6_with_an_end_to_end_model(tmp_path_factory):
    _, recipe, conf = tiny_demo_recipe(tmp_path_factory, "recipe_e2e", base_conf="train_demo_e2e.conf")
    env = step_env()
    env.pop("KALDI_ROOT", None)
    p = subprocess.run(["./run.sh", "--corpus", "demo", "--demo-size", "tiny", "--nj", "2", "--stop-stage", "6",
                        "--train-config", str(conf)], cwd=recipe, env=env, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, f"run.sh failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    at = lambda *a: os.path.join(str(recipe), *a)  # noqa: E731
    config = json.load(open(at("exp", "unspeech", "config.json")))
    assert config["end_to_end"] is True and config["sample_rate"] == 16000 and config["feature_dim"] == 1
    assert json.load(open(at("exp", "unspeech", "metrics.json")))["finished"]
    for s in ("train_sp", "test"):
        # rows on the frame grid of the set's fbank (checked per utterance by the extraction too)
        frames = {k: rows for k, (rows, _) in tables.scp_shapes(at("data", s, "feats.scp")).items()}
        rows = tables.scp_shapes(at("exp", "unspeech", f"ivectors_{s}", "ivector_online.scp"))
        assert {k: r for k, (r, _) in rows.items()} == {k: -(-t // 10) for k, t in frames.items()}, s
        assert ivector_dir_dim(str(recipe), f"exp/unspeech/ivectors_{s}", f"data/{s}") == config["embedding_size"]
        utts = set(datadir.read_table(at("data", s, "utt2spk")))
        assert set(datadir.read_table(at("exp", "unspeech", f"cluster_{s}", "utt2spk"))) == utts
        assert ivector_dir_dim(str(recipe), f"exp/unspeech/ivectors_{s}_unspk", f"data/{s}_unspk") == \
            config["embedding_size"]
