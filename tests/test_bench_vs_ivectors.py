"""bench/bench_vs_ivectors.py: the data-dir copies fed to Kaldi's i-vector extraction (fast, no Kaldi)."""
import os
import sys

import numpy as np
import pytest

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "bench"))
import bench_vs_ivectors as bvi  # noqa: E402
from utils_py.kaldi import datadir  # noqa: E402
from utils_py.kaldi.tables import MatrixWriter  # noqa: E402
from utils_py.extract.utt_vectors import read_utt_vectors  # noqa: E402


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


@pytest.fixture
def src(tmp_path):
    d = tmp_path / "recipe" / "data" / "test_hires"
    d.mkdir(parents=True)
    write(d / "utt2spk", "a-1 a\na-2 a\nb-1 b\n")
    write(d / "spk2utt", "a a-1 a-2\nb b-1\n")
    write(d / "utt2spk.gold", "a-1 a\na-2 a\nb-1 b\n")
    write(d / "feats.scp", "a-1 mfcc/raw.1.ark:12\na-2 /abs/raw.1.ark:99\nb-1 gunzip -c x.gz |\n")
    write(d / "cmvn.scp", "a mfcc/cmvn.ark:5\nb mfcc/cmvn.ark:50\n")
    write(d / "spk2gender", "a f\nb m\n")
    write(d / "utt2dur", "a-1 1.5\na-2 2.0\nb-1 0.5\n")
    write(d / "frame_shift", "0.01\n")
    (d / "split2" / "1").mkdir(parents=True)
    write(d / ".done", "")
    (d / "conf").mkdir()
    return str(d)


def test_absolute_rxfilename():
    assert bvi.absolute_rxfilename("mfcc/raw.1.ark:12", "/r") == "/r/mfcc/raw.1.ark:12"
    assert bvi.absolute_rxfilename("/abs/x.ark:3", "/r") == "/abs/x.ark:3"
    assert bvi.absolute_rxfilename("sox a.wav -t wav - |", "/r") == "sox a.wav -t wav - |"
    assert bvi.absolute_rxfilename("-", "/r") == "-"


def test_per_utterance_speakers(src, tmp_path):
    recipe = str(tmp_path / "recipe")
    dst = str(tmp_path / "work" / "per_utt")
    utt2spk = bvi.copy_data_dir(src, dst, recipe, per_utt_speakers=True)
    assert utt2spk == {"a-1": "a-1", "a-2": "a-2", "b-1": "b-1"}
    assert datadir.read_table(os.path.join(dst, "spk2utt")) == {"a-1": "a-1", "a-2": "a-2", "b-1": "b-1"}
    # gold labels untouched; per-speaker files dropped; no split dirs, hidden files or subdirs
    assert datadir.read_table(os.path.join(dst, "utt2spk.gold"))["a-2"] == "a"
    assert sorted(os.listdir(dst)) == ["feats.scp", "frame_shift", "spk2utt", "utt2dur", "utt2spk", "utt2spk.gold"]
    feats = datadir.read_table(os.path.join(dst, "feats.scp"))
    assert feats["a-1"] == os.path.join(recipe, "mfcc/raw.1.ark:12")
    assert feats["a-2"] == "/abs/raw.1.ark:99"
    assert feats["b-1"] == "gunzip -c x.gz |"
    assert bvi.audio_seconds(dst) == pytest.approx(4.0)


def test_keep_speakers(src, tmp_path):
    recipe = str(tmp_path / "recipe")
    dst = str(tmp_path / "work" / "per_spk")
    assert bvi.copy_data_dir(src, dst, recipe) == {"a-1": "a", "a-2": "a", "b-1": "b"}
    assert datadir.read_table(os.path.join(dst, "cmvn.scp"))["a"] == os.path.join(recipe, "mfcc/cmvn.ark:5")
    assert datadir.read_table(os.path.join(dst, "spk2gender")) == {"a": "f", "b": "m"}
    with pytest.raises(SystemExit):
        bvi.copy_data_dir(src, src, recipe)


def test_last_row_vectors_and_compare(tmp_path):
    d = tmp_path / "ivec"
    d.mkdir()
    mats = {"u1": np.arange(6, dtype=np.float32).reshape(3, 2), "u2": np.ones((1, 2), np.float32)}
    with MatrixWriter(str(d / "ivector_online.1.ark"), str(d / "ivector_online.scp")) as w:
        for k, m in mats.items():
            w.write(k, m)
    out = bvi.last_row_vectors(str(d), str(tmp_path / "last"))
    keys, X, _ = read_utt_vectors(out)
    assert keys == ["u1", "u2"]
    np.testing.assert_array_equal(X, [[4, 5], [1, 1]])
    assert bvi.compare_vectors(str(d), str(d))["max_abs_diff"] == 0.0
    assert bvi.compare_vectors(str(d), str(tmp_path / "nothing")) is None
