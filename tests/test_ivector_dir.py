"""Reading Kaldi online-ivector dirs and checking them against data dirs
(utils_py/kaldi/ivector_dir.py, steps_unspeech/check_ivector_dir.py, tables.matrix_shape)."""
import glob
import os
import sys

import kaldiio
import numpy as np
import pytest

from conftest import REPO, need_kaldi_ref, run_cmd
from utils_py.kaldi import datadir
from utils_py.kaldi import tables
from utils_py.kaldi.ivector_dir import check_ivector_dir, read_ivector_dir
from utils_py.log import UnspeechError

CHECK = os.path.join(REPO, "steps_unspeech", "check_ivector_dir.py")
FRAMES = {"s1-a": 1, "s1-b": 10, "s1-c": 11, "s2-a": 95, "s2-b": 300}


def make_data(path, frames=FRAMES, dim=40):
    os.makedirs(path, exist_ok=True)
    datadir.write_table(os.path.join(path, "utt2spk"), {u: u.split("-")[0] for u in frames})
    datadir.write_spk2utt(path)
    with tables.MatrixWriter(os.path.join(path, "feats.ark"), os.path.join(path, "feats.scp")) as w:
        for u in datadir.c_sorted(frames):
            w.write(u, np.ones((frames[u], dim), np.float32))
    return path


def make_ivectors(path, frames=FRAMES, dim=8, period=10, rows=None, dims=None, skip=()):
    os.makedirs(path, exist_ok=True)
    with tables.MatrixWriter(os.path.join(path, "ivector_online.ark"),
                               os.path.join(path, "ivector_online.scp")) as w:
        for u in datadir.c_sorted(frames):
            if u not in skip:
                n = (rows or {}).get(u, -(-frames[u] // period))
                w.write(u, np.zeros((n, (dims or {}).get(u, dim)), np.float32))
    with open(os.path.join(path, "ivector_period"), "w") as f:
        f.write(f"{period}\n")
    with open(os.path.join(path, "final.ie.id"), "w") as f:
        f.write("deadbeef\n")
    return path


def test_good_dir_passes_and_reports_shape(tmp_path):
    data = make_data(str(tmp_path / "data"))
    iv = check_ivector_dir(make_ivectors(str(tmp_path / "iv")), data)
    assert (iv.dim, iv.period, iv.ie_id, len(iv)) == (8, 10, "deadbeef", 5)
    assert iv.shapes["s2-b"] == (30, 8)


def test_rows_within_one_period_are_accepted(tmp_path):
    # Kaldi's own extractor may give floor(T/period) rows; |T - rows*period| <= period is the rule
    data = make_data(str(tmp_path / "data"))
    check_ivector_dir(make_ivectors(str(tmp_path / "iv"), rows={"s1-c": 1, "s2-b": 31}), data)


@pytest.mark.parametrize("kwargs, match", [
    ({"skip": ("s2-a",)}, "1 of 5 utterance.*no row.*first s2-a"),
    ({"rows": {"s2-b": 28}}, "utterance s2-b has 28 rows for 300 frames"),
    ({"rows": {"s1-a": 2}}, "utterance s1-a has 2 rows for 1 frames"),
    ({"dims": {"s1-c": 9}}, "utterance s1-c has dim 9, but s1-a has 8"),
])
def test_broken_dir_is_rejected_naming_the_utterance(tmp_path, kwargs, match):
    data = make_data(str(tmp_path / "data"))
    with pytest.raises(UnspeechError, match=match):
        check_ivector_dir(make_ivectors(str(tmp_path / "iv"), **kwargs), data)


def test_expected_dim_and_period(tmp_path):
    data = make_data(str(tmp_path / "data"))
    iv = make_ivectors(str(tmp_path / "iv"))
    with pytest.raises(UnspeechError, match="embedding dim is 8, expected 100"):
        check_ivector_dir(iv, data, dim=100)
    with pytest.raises(UnspeechError, match="ivector_period is 10, expected 3"):
        check_ivector_dir(iv, data, period=3)


def test_missing_or_bad_files(tmp_path):
    data = make_data(str(tmp_path / "data"))
    with pytest.raises(UnspeechError, match="online-ivector dir not found"):
        read_ivector_dir(str(tmp_path / "nope"))
    iv = make_ivectors(str(tmp_path / "iv"))
    with open(os.path.join(iv, "ivector_period"), "w") as f:
        f.write("ten\n")
    with pytest.raises(UnspeechError, match="ivector_period must be a positive integer"):
        check_ivector_dir(iv, data)
    os.remove(os.path.join(iv, "ivector_online.scp"))
    with pytest.raises(UnspeechError, match="no ivector_online.scp"):
        read_ivector_dir(iv)


def test_matrix_shape_reads_kaldi_written_headers():
    """Headers of Kaldi's own (compressed) archives give the same shapes as reading them in full."""
    ref = need_kaldi_ref()
    arks = sorted(glob.glob(os.path.join(ref, "compressed", "*.ark")))
    assert arks
    for ark in arks:
        with open(ark, "rb") as f:
            data = f.read()
        for key, mat in kaldiio.load_ark(ark):
            offset = data.index(key.encode() + b" ") + len(key) + 1
            assert tables.matrix_shape(f"{ark}:{offset}") == mat.shape, ark


def test_kaldi_compressed_ivector_matrix_is_read(tmp_path):
    """A Kaldi-written CM2 matrix (what short ivector_online entries look like) in an ivector dir."""
    ref = need_kaldi_ref()
    ark = os.path.join(ref, "compressed", "short7rows.auto.ark")
    key = next(iter(kaldiio.load_ark(ark)))[0]
    iv = tmp_path / "iv"
    iv.mkdir()
    (iv / "ivector_online.scp").write_text(f"s1-a {ark}:{len(key) + 1}\n")
    (iv / "ivector_period").write_text("10\n")
    data = make_data(str(tmp_path / "data"), frames={"s1-a": 55})
    got = check_ivector_dir(str(iv), data)
    assert got.shapes["s1-a"] == (6, 40)


def test_cli_prints_dim_or_one_line_error(tmp_path):
    data = make_data(str(tmp_path / "data"))
    iv = make_ivectors(str(tmp_path / "iv"))
    r = run_cmd([sys.executable, CHECK, "--print", "dim", iv, data])
    assert r.returncode == 0 and r.stdout.strip() == "8"
    r = run_cmd([sys.executable, CHECK, iv, data])
    assert r.returncode == 0 and "5 utterances, dim 8, period 10" in r.stdout
    r = run_cmd([sys.executable, CHECK, "--dim", "100", iv, data])
    assert r.returncode == 1
    assert r.stderr.strip() == f"ERROR (check_ivector_dir): embedding dim is 8, expected 100: {iv}/ivector_online.scp"
