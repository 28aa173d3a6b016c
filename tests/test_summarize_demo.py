"""local/summarize_demo.py on a small fake recipe dir and on an empty one."""
import json
import os

import numpy as np

from conftest import REPO, run_cmd
from utils_py.kaldi import datadir
from utils_py.kaldi import tables

SUMMARIZE = os.path.join(REPO, "local", "summarize_demo.py")


def make_set(recipe, name, utts, durations=True):
    d = os.path.join(recipe, "data", name)
    os.makedirs(d)
    utt2spk = {u: u.split("-")[0] for u in utts}
    datadir.write_table(os.path.join(d, "utt2spk"), utt2spk)
    datadir.write_spk2utt(d)
    if durations:
        datadir.write_table(os.path.join(d, "utt2dur"), {u: "900" for u in utts})   # 0.25 h each
    return d


def make_fake_recipe(recipe):
    train = make_set(recipe, "train", ["a-1", "a-2", "b-1", "c-1"])
    test = make_set(recipe, "test", ["a-3", "b-2"], durations=False)
    datadir.write_table(os.path.join(test, "segments"), {"a-3": "talk 0.00 1800.00", "b-2": "talk 1800 3600"})
    with tables.MatrixWriter(os.path.join(recipe, "fbank", "raw.ark"), os.path.join(train, "feats.scp")) as w:
        for u in ["a-1", "a-2", "b-1", "c-1"]:
            w.write(u, np.zeros((7, 40), np.float32))
    datadir.write_table(os.path.join(train, "utt2num_frames"), {u: "90000" for u in ["a-1", "a-2", "b-1", "c-1"]})
    make_set(recipe, "train_unspk", ["0-a-1", "0-a-2", "1-b-1", "1-c-1"])
    model = os.path.join(recipe, "exp", "unspeech")
    os.makedirs(os.path.join(model, "cluster_train"))
    with open(os.path.join(model, "metrics.json"), "w") as f:
        json.dump({"val_accuracy": 0.91234, "step": 3000, "pairs_per_second": 1520.4, "elapsed_hours": 0.1,
                   "history": [{"step": 1}]}, f)
    with tables.MatrixWriter(os.path.join(model, "ivectors_train", "ivector_online.1.ark"),
                               os.path.join(model, "ivectors_train", "ivector_online.scp")) as w:
        w.write("a-1", np.zeros((3, 100), np.float32))
    with open(os.path.join(model, "ivectors_train", "ivector_period"), "w") as f:
        f.write("10\n")
    with open(os.path.join(model, "cluster_train", "scores.json"), "w") as f:
        json.dump({"ari": 0.8126, "nmi": 0.9, "num_clusters": 2, "num_outliers": 1}, f)
    os.makedirs(os.path.join(model, "cluster_test"))    # clustered without gold labels: no scores.json
    datadir.write_table(os.path.join(model, "cluster_test", "utt2spk"), {"a-3": "0", "b-2": "1"})
    with open(os.path.join(model, "cluster_train", "embedding_map.png"), "wb") as f:
        f.write(b"\x89PNG\r\n")


def summary(recipe):
    p = run_cmd([SUMMARIZE, str(recipe)])
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_summary_of_a_full_run(tmp_path):
    make_fake_recipe(str(tmp_path))
    out = summary(tmp_path)
    lines = out.splitlines()
    assert 10 <= len(lines) <= 25
    train = next(line for line in lines if line.strip().startswith("train "))
    assert "4 utts" in train and "3 spk" in train and "1.00 h" in train
    assert "40-dim" in train and "360,000 frames" in train
    test = next(line for line in lines if line.strip().startswith("test "))
    assert "2 utts" in test and "1.00 h" in test and "(stage 2 not run)" in test
    assert "val_accuracy 0.912, steps 3,000, pairs/s 1,520, 6.0 min  [" in out
    assert "100-dim, one row per 10 frames" in out
    assert "ARI 0.813" in out and "NMI 0.900" in out and "clusters 2" in out and "outliers 1" in out
    assert os.path.join(str(tmp_path), "exp", "unspeech", "cluster_train", "embedding_map.png") in out
    assert "2 speakers (no utt2spk.gold: not scored)" in out
    assert "train_unspk: 4 utts, 2 clustered speakers" in out
    # only test lacks features; the Kaldi stages (WER table of stage 12) are not part of this run
    assert "not run)" not in out.replace("(stage 2 not run)", "").replace("(stage 12 not run)", "")
    assert "train_unspk " not in out.split("Model")[0]              # relabelled dirs are not data sets


def test_summary_of_nothing_names_the_missing_stages(tmp_path):
    out = summary(tmp_path)
    for stage in (0, 3, 4, 5, 6):
        assert f"(stage {stage} not run)" in out


def test_summary_errors(tmp_path):
    p = run_cmd([SUMMARIZE, str(tmp_path / "missing")])
    assert p.returncode == 1 and p.stderr.strip() == f"ERROR (summarize_demo): recipe directory not found: " \
                                                      f"{tmp_path / 'missing'}"
    os.makedirs(tmp_path / "exp" / "unspeech")
    (tmp_path / "exp" / "unspeech" / "metrics.json").write_text("{not json")
    p = run_cmd([SUMMARIZE, str(tmp_path)])
    assert p.returncode == 1 and "ERROR (summarize_demo): cannot read" in p.stderr
