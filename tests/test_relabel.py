"""Relabelling data dirs and online-ivector dirs with clustered speakers (steps_unspeech/relabel_data_dir.*)."""
import os

import numpy as np
import pytest
from conftest import REPO, run_cmd

from utils_py.kaldi import datadir
from utils_py.kaldi import tables
from utils_py.kaldi.tables import MatrixWriter
from utils_py.log import UnspeechError
from utils_py.kaldi.relabel import relabel_data_dir, relabel_ivector_dir

SH = os.path.join(REPO, "steps_unspeech", "relabel_data_dir.sh")
UTTS = ["spkA-rec1-0001", "spkA-rec1-0002", "spkB-rec2-0001", "spkB-rec2-0002", "spkB-rec2-0003"]
CLUSTERED = {"spkA-rec1-0001": "unspk0000002", "spkA-rec1-0002": "unspk0000001",
             "spkB-rec2-0001": "unspk0000001", "spkB-rec2-0002": "unspk0000001", "spkB-rec2-0003": "unspk0000003"}
PERIOD = 10


def make_data_dir(root, segments=True):
    """A small but complete Kaldi data dir with real feats/ivector arks."""
    d = root / "data"
    spk = {u: u.split("-")[0] for u in UTTS}
    frames = {u: 40 + 7 * i for i, u in enumerate(UTTS)}
    datadir.write_table(str(d / "utt2spk"), spk)
    datadir.write_table(str(d / "utt2spk.gold"), spk)
    datadir.write_spk2utt(str(d))
    datadir.write_table(str(d / "text"), {u: f"words of {u}" for u in UTTS})
    datadir.write_table(str(d / "utt2num_frames"), {u: str(t) for u, t in frames.items()})
    datadir.write_table(str(d / "utt2dur"), {u: f"{t / 100:.2f}" for u, t in frames.items()})
    datadir.write_table(str(d / "utt2uniq"), {u: u for u in UTTS})
    datadir.write_table(str(d / "utt2warp"), {u: "1.0" for u in UTTS})          # an unknown utt2* file
    datadir.write_table(str(d / "cmvn.scp"), {"spkA": "/x/cmvn.ark:10", "spkB": "/x/cmvn.ark:90"})
    datadir.write_table(str(d / "spk2gender"), {"spkA": "m", "spkB": "f"})
    (d / "frame_shift").write_text("0.01\n")
    if segments:
        datadir.write_table(str(d / "wav.scp"), {"rec1": "/w/rec1.wav", "rec2": "sox /w/rec2.flac -t wav - |"})
        datadir.write_table(str(d / "segments"), {u: f"{u.split('-')[1]} {i}.0 {i + 1}.5" for i, u in enumerate(UTTS)})
        datadir.write_table(str(d / "reco2file_and_channel"), {"rec1": "rec1 A", "rec2": "rec2 A"})
    else:
        datadir.write_table(str(d / "wav.scp"), {u: f"/w/{u}.wav" for u in UTTS})
    rng = np.random.default_rng(0)
    with MatrixWriter(str(root / "fbank" / "raw.ark"), str(d / "feats.scp")) as w:
        for u in UTTS:
            w.write(u, rng.normal(size=(frames[u], 4)).astype(np.float32))
    iv = root / "ivec"
    with MatrixWriter(str(iv / "ivector_online.1.ark"), str(iv / "ivector_online.scp")) as w, \
            MatrixWriter(str(iv / "utt_vectors.1.ark"), str(iv / "utt_vectors.scp")) as v:
        for u in UTTS:
            m = rng.normal(size=(-(-frames[u] // PERIOD), 6)).astype(np.float32)
            w.write(u, m)
            v.write(u, m.mean(axis=0))
    for name in ("ivector_online.1.scp", "utt_vectors.1.scp"):
        (iv / name).write_text((iv / name.replace(".1", "")).read_text())
    (iv / "ivector_period").write_text(f"{PERIOD}\n")
    (iv / "final.ie.id").write_text("abc123\n")
    (iv / "config.json").write_text("{}\n")
    (iv / "log").mkdir()
    (iv / "log" / "extract.1.log").write_text("log\n")
    (iv / ".extract.1.done").write_text("{}\n")
    datadir.write_table(str(root / "clustered"), CLUSTERED)
    return str(d), str(iv), str(root / "clustered")


def relabel(root, **kw):
    d, iv, clustered = make_data_dir(root, **kw)
    out, iv_out = str(root / "out"), str(root / "ivec_out")
    p = run_cmd([SH, "--ivector-dir", iv, "--ivector-out-dir", iv_out, d, clustered, out])
    assert p.returncode == 0, p.stderr
    return d, iv, out, iv_out, p


@pytest.mark.parametrize("segments", [True, False])
def test_round_trip_every_file_consistent(tmp_path, segments):
    d, iv, out, iv_out, p = relabel(tmp_path, segments=segments)
    utt_map = datadir.read_table(os.path.join(out, "utt_map"))
    assert sorted(utt_map.values()) == sorted(UTTS)
    for new, old in utt_map.items():
        assert new == f"{CLUSTERED[old]}-{old}"
    utt2spk = datadir.validate(out, need=("feats.scp",))
    assert utt2spk == {new: CLUSTERED[old] for new, old in utt_map.items()}
    per_utt = ["text", "utt2num_frames", "utt2dur", "utt2uniq", "utt2warp", "utt2spk.gold", "feats.scp"]
    per_utt += ["segments"] if segments else ["wav.scp"]
    for name in per_utt:
        new_table = datadir.read_table(os.path.join(out, name))           # sorted, or read_table raises
        assert {utt_map[k]: v for k, v in new_table.items()} == datadir.read_table(os.path.join(d, name)), name
    copied = ["frame_shift"] + (["wav.scp", "reco2file_and_channel"] if segments else [])
    for name in copied:
        assert open(os.path.join(out, name)).read() == open(os.path.join(d, name)).read(), name
    assert not os.path.exists(os.path.join(out, "cmvn.scp")) and not os.path.exists(os.path.join(out, "spk2gender"))
    assert "dropped cmvn.scp" in p.stderr and "dropped spk2gender" in p.stderr
    # features read back under the new ids are the old ones
    new_feats = dict(tables.iter_matrices(os.path.join(out, "feats.scp")))
    for key, mat in tables.iter_matrices(os.path.join(d, "feats.scp")):
        np.testing.assert_array_equal(new_feats[f"{CLUSTERED[key]}-{key}"], mat)


def test_ivector_dir_rekeyed_same_arks(tmp_path):
    d, iv, out, iv_out, _ = relabel(tmp_path)
    utt_map = datadir.read_table(os.path.join(out, "utt_map"))
    for name in ("ivector_online.scp", "utt_vectors.scp"):
        old = datadir.read_table(os.path.join(iv, name))
        new = datadir.read_table(os.path.join(iv_out, name))
        assert {utt_map[k]: v for k, v in new.items()} == old        # same ark:offset, new keys
    assert sorted(os.listdir(iv_out)) == ["config.json", "final.ie.id", "ivector_online.scp",
                                          "ivector_period", "utt_vectors.scp"]
    assert open(os.path.join(iv_out, "final.ie.id")).read() == "abc123\n"
    for key, mat in tables.iter_matrices(os.path.join(iv_out, "ivector_online.scp")):
        np.testing.assert_array_equal(mat, tables.read_matrix(datadir.read_table(
            os.path.join(iv, "ivector_online.scp"))[utt_map[key]]))


def test_rerun_gives_identical_bytes(tmp_path):
    d, iv, out, iv_out, _ = relabel(tmp_path)
    before = {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out)}
    p = run_cmd([SH, "--ivector-dir", iv, "--ivector-out-dir", iv_out, d, str(tmp_path / "clustered"), out])
    assert p.returncode == 0, p.stderr
    assert {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out)} == before


def test_clustered_utt2spk_covering_other_utts_is_an_error(tmp_path):
    d, iv, _ = make_data_dir(tmp_path)
    bad = dict(CLUSTERED)
    del bad[UTTS[2]]
    bad["spkZ-rec9-0001"] = "unspk0000009"
    datadir.write_table(str(tmp_path / "bad"), bad)
    out = tmp_path / "out"
    p = run_cmd([SH, d, str(tmp_path / "bad"), str(out)])
    err = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode != 0 and len(err) == 1 and err[0].startswith("ERROR (relabel_data_dir)")
    assert UTTS[2] in err[0]
    assert not out.exists()
    datadir.write_table(str(tmp_path / "bad2"), {**CLUSTERED, "spkZ-rec9-0001": "unspk0000009"})
    with pytest.raises(UnspeechError, match="spkZ-rec9-0001"):
        relabel_data_dir(d, str(tmp_path / "bad2"), str(out))


def test_ivector_dir_missing_an_utterance_is_an_error(tmp_path):
    d, iv, clustered = make_data_dir(tmp_path)
    scp = os.path.join(iv, "ivector_online.scp")
    lines = open(scp).read().splitlines(keepends=True)
    open(scp, "w").write("".join(lines[1:]))
    old2new = relabel_data_dir(d, clustered, str(tmp_path / "out"))
    with pytest.raises(UnspeechError, match=UTTS[0]):
        relabel_ivector_dir(iv, str(tmp_path / "ivec_out"), old2new)
    assert not (tmp_path / "ivec_out").exists()


def test_bad_per_utterance_file_names_file_and_utt(tmp_path):
    d, iv, clustered = make_data_dir(tmp_path)
    text = datadir.read_table(os.path.join(d, "text"))
    del text[UTTS[3]]
    datadir.write_table(os.path.join(d, "text"), text)
    with pytest.raises(UnspeechError, match=f"{UTTS[3]}.*text"):
        relabel_data_dir(d, clustered, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
