"""Kaldi table I/O: round trips, and reading Kaldi's own compressed archives."""
import glob
import os

import numpy as np
import pytest

from conftest import need_kaldi_ref
from utils_py.kaldi import tables
from utils_py.log import UnspeechError


def read_text_ark(path):
    """Parse a Kaldi text archive ``key [ rows ]`` (as written by copy-feats ark,t:)."""
    out, key, rows = {}, None, []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if key is None:
                key = parts[0]
                parts = parts[2:]  # skip "["
            end = parts and parts[-1] == "]"
            if end:
                parts = parts[:-1]
            if parts:
                rows.append([float(x) for x in parts])
            if end:
                out[key] = np.array(rows, dtype=np.float64)
                key, rows = None, []
    return out


def test_round_trip_scp_and_ark(tmp_path):
    mats = {"b-utt": np.random.RandomState(0).randn(7, 3).astype(np.float32),
            "a-utt": np.arange(6, dtype=np.float32).reshape(2, 3)}
    with tables.MatrixWriter(tmp_path / "x.ark", tmp_path / "x.scp") as w:
        for k, m in mats.items():
            w.write(k, m)
    lines = (tmp_path / "x.scp").read_text().splitlines()
    assert lines[0].split()[1].startswith(str(tmp_path)), "scp must hold absolute paths"
    got = dict(tables.iter_matrices(str(tmp_path / "x.scp")))
    assert got.keys() == mats.keys()
    for k in mats:
        np.testing.assert_array_equal(got[k], mats[k])
    got_ark = dict(tables.iter_matrices(str(tmp_path / "x.ark")))
    np.testing.assert_array_equal(got_ark["b-utt"], mats["b-utt"])


def test_writer_failure_leaves_no_scp(tmp_path):
    with pytest.raises(RuntimeError):
        with tables.MatrixWriter(tmp_path / "x.ark", tmp_path / "x.scp") as w:
            w.write("u1", np.zeros((2, 2)))
            raise RuntimeError("boom")
    assert not (tmp_path / "x.scp").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".x.scp")]


def test_bad_key_rejected(tmp_path):
    with pytest.raises(UnspeechError, match="invalid key"):
        with tables.MatrixWriter(tmp_path / "x.ark", tmp_path / "x.scp") as w:
            w.write("has space", np.zeros((1, 1)))


def test_truncated_ark_names_file(tmp_path):
    with tables.MatrixWriter(tmp_path / "x.ark", tmp_path / "x.scp") as w:
        w.write("u1", np.ones((50, 40)))
        w.write("u2", np.ones((50, 40)))
    data = (tmp_path / "x.ark").read_bytes()
    (tmp_path / "t.ark").write_bytes(data[: len(data) - 100])
    with pytest.raises(UnspeechError, match="t.ark"):
        list(tables.iter_matrices(str(tmp_path / "t.ark")))


def test_missing_scp_target_names_utterance(tmp_path):
    (tmp_path / "x.scp").write_text(f"u1 {tmp_path}/nope.ark:5\n")
    with pytest.raises(UnspeechError, match="u1"):
        list(tables.iter_matrices(str(tmp_path / "x.scp")))


def test_merge_scps_sorted_and_rejects_duplicates(tmp_path):
    (tmp_path / "1.scp").write_text("b /x.ark:1\n")
    (tmp_path / "2.scp").write_text("a /x.ark:2\nB /x.ark:3\n")
    assert tables.merge_scps([tmp_path / "1.scp", tmp_path / "2.scp"], tmp_path / "all.scp") == 3
    assert [l.split()[0] for l in (tmp_path / "all.scp").read_text().splitlines()] == ["B", "a", "b"]
    (tmp_path / "3.scp").write_text("a /y.ark:2\n")
    with pytest.raises(UnspeechError, match="duplicate key a"):
        tables.merge_scps([tmp_path / "2.scp", tmp_path / "3.scp"], tmp_path / "bad.scp")


@pytest.mark.parametrize("name", [os.path.basename(p)[: -len(".decoded.txt")] for p in
                                  sorted(glob.glob("/work/shared/data/kaldi-reference/compressed/*.decoded.txt"))]
                         or ["fbank40_16k.cm1"])
def test_reads_kaldi_compressed_like_kaldi(name):
    """Every compression method (CM, CM2, CM3) decodes to what Kaldi's copy-feats prints."""
    ref = need_kaldi_ref()
    ark = os.path.join(ref, "compressed", name + ".ark")
    expected = read_text_ark(os.path.join(ref, "compressed", name + ".decoded.txt"))
    got = dict(tables.iter_matrices(ark))
    assert got.keys() == expected.keys()
    for key, mat in expected.items():
        assert got[key].shape == mat.shape
        # text archives keep ~7 significant digits
        np.testing.assert_allclose(got[key], mat, rtol=2e-6, atol=2e-5)


def test_reads_kaldi_uncompressed_archive():
    ref = need_kaldi_ref()
    got = dict(tables.iter_matrices(os.path.join(ref, "compressed", "fbank40_16k.uncompressed.ark")))
    expected = read_text_ark(os.path.join(ref, "fbank", "fbank40_16k.txt"))
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=2e-6, atol=2e-5)


def test_matrix_writer_compress_uses_kaldis_automatic_method(tmp_path):
    """compress=True: > 8 rows -> "CM", <= 8 rows -> "CM2" (Kaldi's kAutomaticMethod); vectors and
    empty matrices, which Kaldi cannot compress, stay float32; read back within the bound."""
    from conftest import kaldi_compression_bound
    rs = np.random.RandomState(1)
    mats = {"big": rs.randn(50, 40).astype(np.float32) * 3 + 10, "small": rs.randn(8, 5).astype(np.float32),
            "vec": rs.randn(7).astype(np.float32), "empty": np.zeros((0, 4), np.float32)}
    with tables.MatrixWriter(tmp_path / "x.ark", tmp_path / "x.scp", compress=True) as w:
        for k, m in mats.items():
            w.write(k, m)
    heads = {}
    for line in open(tmp_path / "x.scp"):
        key, rx = line.split()
        with open(tmp_path / "x.ark", "rb") as f:
            f.seek(int(rx.rsplit(":", 1)[1]))
            heads[key] = f.read(5)
    assert heads == {"big": b"\0BCM ", "small": b"\0BCM2", "vec": b"\0BFV ", "empty": b"\0BFM "}
    got = dict(tables.iter_matrices(str(tmp_path / "x.scp")))
    for k in ("big", "small"):
        err = np.abs(got[k].astype(np.float64) - mats[k])
        assert (err <= kaldi_compression_bound(mats[k])).all() and err.max() > 0, k
    assert np.array_equal(got["vec"], mats["vec"]) and got["empty"].shape == (0, 4)
