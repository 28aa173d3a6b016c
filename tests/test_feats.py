"""FeatureSet loading: in memory vs memory-mapped cache, and per-utterance checks."""
import os
import time

import numpy as np
import pytest

from utils_py.kaldi import tables
from utils_py.features.feature_set import load_features
from utils_py.log import UnspeechError


def write_feats(path, mats):
    with tables.MatrixWriter(str(path) + ".ark", str(path) + ".scp") as w:
        for k, m in mats.items():
            w.write(k, m)
    return str(path) + ".scp"


MATS = {f"u{i}": np.random.RandomState(i).randn(10 + i, 5).astype(np.float32) for i in range(4)}


def test_memory_and_cache_agree(tmp_path):
    scp = write_feats(tmp_path / "f", MATS)
    mem = load_features(scp)
    cached = load_features(scp, cache_dir=str(tmp_path / "cache"))
    assert isinstance(cached.data, np.memmap)
    assert mem.keys == cached.keys == list(MATS)
    assert mem.dim == cached.dim == 5
    assert mem.num_frames == sum(len(m) for m in MATS.values())
    for k, m in MATS.items():
        np.testing.assert_array_equal(mem[k], m)
        np.testing.assert_array_equal(cached[k], m)
        i = cached.index(k)
        np.testing.assert_array_equal(cached.data[cached.offsets[i]], m[0])
    sub = mem.subset(["u3", "u1"])
    np.testing.assert_array_equal(sub["u1"], MATS["u1"])


def test_cache_reused_then_rebuilt_when_source_changes(tmp_path):
    scp = write_feats(tmp_path / "f", MATS)
    cache = str(tmp_path / "cache")
    load_features(scp, cache_dir=cache)
    stamp = os.path.getmtime(os.path.join(cache, "data.f32"))
    load_features(scp, cache_dir=cache)
    assert os.path.getmtime(os.path.join(cache, "data.f32")) == stamp
    time.sleep(0.01)
    scp = write_feats(tmp_path / "f", {"only": np.ones((3, 5), np.float32)})
    fs = load_features(scp, cache_dir=cache)
    assert fs.keys == ["only"]


@pytest.mark.parametrize("bad,match", [
    ({"a": np.ones((3, 5)), "b": np.ones((3, 4))}, "utterance b has feature dim 4"),
    ({"a": np.ones((3, 5)), "b": np.full((3, 5), np.nan)}, "utterance b has NaN/Inf"),
    ({"a": np.ones((3, 5)), "b": np.array([[np.inf] * 5])}, "utterance b has NaN/Inf"),
    ({"a": np.ones((0, 5))}, "utterance a has no frames"),
])
@pytest.mark.parametrize("cached", [False, True])
def test_bad_features_named(tmp_path, bad, match, cached):
    scp = write_feats(tmp_path / "f", bad)
    with pytest.raises(UnspeechError, match=match):
        load_features(scp, cache_dir=str(tmp_path / "c") if cached else None)
    if cached:
        assert not os.path.exists(tmp_path / "c" / "index.json")
