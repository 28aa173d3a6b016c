"""The one "complete and current" stamp (utils_py.stamp) and the one stale-temp cleaner."""
import os
import subprocess

from utils_py import stamp
from utils_py.fileio import remove_stale_temps


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_stamp_current_until_an_input_option_or_output_changes(tmp_path):
    a, b, out, st = tmp_path / "a.wav", tmp_path / "b.scp", tmp_path / "out.scp", str(tmp_path / ".done")
    a.write_bytes(b"RIFF1")
    b.write_text("u1 x\n")
    out.write_text("u1 y\n")

    def sig(**options):
        return stamp.signature(files=[a], contents=[b], options=dict({"compress": True}, **options))

    assert not stamp.is_current(st, sig(), outputs=[out])          # no stamp yet
    stamp.write(st, sig(), utterances=1)
    assert stamp.is_current(st, sig(), outputs=[out])
    assert stamp.read(st)["utterances"] == 1
    assert not stamp.is_current(st, sig(compress=False), outputs=[out])   # other options
    assert not stamp.is_current(st, sig(), outputs=[out, tmp_path / "missing"])   # an output gone
    st_a = os.stat(a)
    a.write_bytes(b"RIFF2")                                         # same size, other mtime
    os.utime(a, ns=(st_a.st_atime_ns, st_a.st_mtime_ns + 10 ** 9))
    assert not stamp.is_current(st, sig(), outputs=[out])
    stamp.write(st, sig())
    st_b = os.stat(b)
    b.write_text("u1 z\n")                                          # same size and mtime, other content
    os.utime(b, ns=(st_b.st_atime_ns, st_b.st_mtime_ns))
    assert not stamp.is_current(st, sig(), outputs=[out])


def test_a_file_that_is_not_a_stamp_counts_as_absent(tmp_path):
    st = tmp_path / ".done"
    sig = stamp.signature(options={"x": 1})
    for text in ("", "prepare_fsdd seed=1\n", '{"signature": ', "[1, 2]"):   # old formats, torn writes
        st.write_text(text)
        assert stamp.read(str(st)) is None and not stamp.is_current(str(st), sig)


def test_options_compare_after_a_json_round_trip(tmp_path):
    st = str(tmp_path / ".done")
    stamp.write(st, stamp.signature(options={"factors": (0.9, 1.0), "n": 2}))
    assert stamp.is_current(st, stamp.signature(options={"n": 2, "factors": [0.9, 1.0]}))


def test_clear_removes_the_stamp_and_temps_of_dead_writers_only(tmp_path):
    st = tmp_path / ".done"
    st.write_text("{}")
    dead, live = dead_pid(), os.getpid()
    (tmp_path / f"..done.tmp.{dead}").write_text("half")
    (tmp_path / f"..done.tmp.{live}").write_text("being written")
    stamp.clear(str(st))
    assert sorted(os.listdir(tmp_path)) == [f"..done.tmp.{live}"]
    stamp.clear(str(st))   # nothing there: no error


def test_stale_temp_cleaner_files_and_build_dirs(tmp_path):
    dead = dead_pid()
    (tmp_path / f".feats.scp.tmp.{dead}").write_text("half")
    (tmp_path / f".feats.scp.tmp.{dead}x").write_text("not a temp name")
    (tmp_path / f".other.scp.tmp.{dead}").write_text("another file's temp")
    (tmp_path / f".dict.tmp.{dead}").mkdir()
    (tmp_path / f".dict.tmp.{dead}" / "lexicon.txt").write_text("a a\n")
    (tmp_path / f".dict.tmp.{dead}.old").mkdir()
    remove_stale_temps(str(tmp_path / "feats.scp"))
    remove_stale_temps(str(tmp_path / "dict"))
    assert sorted(os.listdir(tmp_path)) == [f".feats.scp.tmp.{dead}x", f".other.scp.tmp.{dead}"]
    remove_stale_temps(str(tmp_path / "no_such_dir" / "x"))   # missing dir: nothing to do


def test_data_dir_split_is_reused_until_a_file_of_the_data_dir_changes(tmp_path):
    """datadir.split's stamp: a rewritten feats.scp re-splits (the old mtime check only looked at utt2spk)."""
    from utils_py.kaldi import datadir
    d = str(tmp_path / "data")
    utts = {f"s{i}-u{j}": f"s{i}" for i in range(3) for j in range(2)}
    datadir.write_table(os.path.join(d, "utt2spk"), utts)
    datadir.write_spk2utt(d)
    datadir.write_table(os.path.join(d, "feats.scp"), {u: f"/a.ark:{n}" for n, u in enumerate(utts)})
    parts = datadir.split(d, 2)
    stamp_path = os.path.join(d, "split2", ".done")
    before = os.stat(stamp_path).st_mtime_ns
    assert datadir.split(d, 2) == parts and os.stat(stamp_path).st_mtime_ns == before   # reused
    (tmp_path / "data" / "split2" / "1" / "stale_extra").write_text("x")
    datadir.write_table(os.path.join(d, "feats.scp"), {u: f"/b.ark:{n}" for n, u in enumerate(utts)})
    datadir.split(d, 2)
    assert datadir.read_table(os.path.join(parts[0], "feats.scp"))["s0-u0"] == "/b.ark:0"
    assert not os.path.exists(os.path.join(parts[0], "stale_extra"))   # rebuilt as a whole
