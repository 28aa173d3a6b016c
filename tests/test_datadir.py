"""Kaldi data-dir rules: reading, writing, validation, filtering, splitting."""
import os

import pytest

from utils_py.kaldi import datadir
from utils_py.log import UnspeechError


def make_dir(root, utt2spk, extra=None):
    os.makedirs(root, exist_ok=True)
    datadir.write_table(os.path.join(root, "utt2spk"), utt2spk)
    datadir.write_spk2utt(root)
    for name, table in (extra or {}).items():
        datadir.write_table(os.path.join(root, name), table)
    return str(root)


UTT2SPK = {f"spk{s}-utt{u}": f"spk{s}" for s in range(1, 4) for u in range(1, 4)}


def test_write_sorts_in_c_order(tmp_path):
    datadir.write_table(tmp_path / "t", {"b": "1", "B": "2", "a_x": "3", "a-x": "4"})
    keys = [l.split()[0] for l in (tmp_path / "t").read_text().splitlines()]
    assert keys == ["B", "a-x", "a_x", "b"]  # byte order, like LC_ALL=C sort


def test_spk2utt_from_utt2spk():
    s2u = datadir.spk2utt_from_utt2spk({"s2-b": "s2", "s1-a": "s1", "s1-c": "s1"})
    assert s2u == {"s1": "s1-a s1-c", "s2": "s2-b"}


def test_valid_dir_passes(tmp_path):
    d = make_dir(tmp_path / "d", UTT2SPK, {"text": {u: "hello" for u in UTT2SPK},
                                          "wav.scp": {u: f"/{u}.wav" for u in UTT2SPK}})
    assert datadir.validate(d, need=("wav.scp",)) == dict(sorted(UTT2SPK.items()))


@pytest.mark.parametrize("content,match", [
    ("b s1\na s1\n", "not sorted"),
    ("a s1\na s1\n", "duplicate key a"),
    ("a\n", "bad line 1"),
    ("", "empty"),
])
def test_read_table_errors_name_file(tmp_path, content, match):
    (tmp_path / "utt2spk").write_text(content)
    with pytest.raises(UnspeechError, match=match) as e:
        datadir.read_table(str(tmp_path / "utt2spk"))
    assert "utt2spk" in str(e.value)


def test_speaker_prefix_rule(tmp_path):
    d = make_dir(tmp_path / "d", {"a-1": "zz", "b-1": "aa"})
    with pytest.raises(UnspeechError, match="prefixes"):
        datadir.validate(d)


def test_spk2utt_mismatch(tmp_path):
    d = make_dir(tmp_path / "d", UTT2SPK)
    (tmp_path / "d" / "spk2utt").write_text("spk1 spk1-utt1\n")
    with pytest.raises(UnspeechError, match="spk2utt does not match"):
        datadir.validate(d)


def test_wav_scp_mismatch_named(tmp_path):
    wav = {u: f"/{u}.wav" for u in list(UTT2SPK)[:-1]}
    d = make_dir(tmp_path / "d", UTT2SPK, {"wav.scp": wav})
    with pytest.raises(UnspeechError, match="spk3-utt3.*wav.scp"):
        datadir.validate(d, need=("wav.scp",))


def test_missing_required_file(tmp_path):
    d = make_dir(tmp_path / "d", UTT2SPK)
    with pytest.raises(UnspeechError, match="missing feats.scp"):
        datadir.validate(d, need=("feats.scp",))


def test_segments_checked_against_recordings(tmp_path):
    segs = {u: f"reco{u[3]} 0.0 1.5" for u in UTT2SPK}
    d = make_dir(tmp_path / "d", UTT2SPK, {"segments": segs, "wav.scp": {"reco1": "/a.wav", "reco2": "/b.wav"}})
    with pytest.raises(UnspeechError, match="reco3"):
        datadir.validate(d)


def test_filter_keeps_consistent_subset(tmp_path):
    d = make_dir(tmp_path / "d", UTT2SPK, {"text": {u: "x" for u in UTT2SPK}})
    (tmp_path / "d" / "frame_shift").write_text("0.01\n")
    keep = ["spk1-utt1", "spk2-utt2"]
    datadir.filter_dir(d, str(tmp_path / "f"), keep)
    assert list(datadir.validate(str(tmp_path / "f"))) == keep
    assert list(datadir.read_table(str(tmp_path / "f" / "text"))) == keep
    assert (tmp_path / "f" / "frame_shift").read_text() == "0.01\n"


@pytest.mark.parametrize("nj,per_utt", [(1, False), (2, False), (3, False), (4, True)])
def test_split_covers_everything_once(tmp_path, nj, per_utt):
    d = make_dir(tmp_path / "d", UTT2SPK)
    parts = datadir.split(d, nj, per_utt=per_utt)
    assert len(parts) == nj
    seen = []
    for p in parts:
        u2s = datadir.validate(p)
        seen += list(u2s)
        if not per_utt:  # a speaker never straddles two parts
            assert all(set(datadir.read_table(os.path.join(q, "spk2utt"))).isdisjoint(
                datadir.read_table(os.path.join(p, "spk2utt"))) for q in parts if q != p)
    assert sorted(seen) == sorted(UTT2SPK)


def test_split_too_many_jobs(tmp_path):
    d = make_dir(tmp_path / "d", UTT2SPK)
    with pytest.raises(UnspeechError, match="only 3 speakers"):
        datadir.split(d, 4)
