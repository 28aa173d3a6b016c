"""Inputs as users give them: ids that are not UTF-8 go through every step byte for byte, and no
step writes over its own input (one clear error line, nothing changed)."""
import hashlib
import os
import shutil
import wave

import numpy as np
import pytest

from conftest import REPO, is_kaldi_root, run_cmd

STEPS = os.path.join(REPO, "steps_unspeech")
RUNNER = os.path.join(STEPS, "run_local.sh")
TINY_TRAIN = ["--embedding-transformation", "VggCpu", "--window-length", "16", "--window-neg-length", "16",
              "--left-contexts", "1", "--right-contexts", "1", "--negative-samples", "2", "--fc-size", "16",
              "--embedding-size", "8", "--batch-size", "4", "--val-fraction", "0.2", "--val-pairs", "20",
              "--steps", "3"]
# Kaldi's ids are byte strings: a speaker and an utterance with a Latin-1 byte (0xe9, not UTF-8).
UTTS = [(b"spk1-utt0", b"spk1"), (b"spk1-utt1", b"spk1"), (b"spk1-utt\xe92", b"spk1"),
        (b"spk\xe9-utt0", b"spk\xe9"), (b"spk\xe9-utt1", b"spk\xe9"), (b"spk\xe9-utt\xe92", b"spk\xe9")]


def write_table(path, rows):
    with open(path, "wb") as f:
        f.writelines(k + b" " + v + b"\n" for k, v in sorted(rows))


def keys_of(path):
    with open(path, "rb") as f:
        return [line.split(b" ", 1)[0] for line in f]


def make_data_dir(root):
    """A data dir of 2 s tones whose ids and wav file names hold the byte 0xe9."""
    os.makedirs(os.path.join(root, "wav"))
    rng = np.random.default_rng(0)
    for i, (utt, _) in enumerate(UTTS):
        t = np.arange(32000) / 16000
        x = 0.3 * np.sin(2 * np.pi * (150 + 20 * i) * t) + 0.05 * rng.standard_normal(len(t))
        with wave.open(open(os.path.join(os.fsencode(root), b"wav", utt + b".wav"), "wb"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes((x * 20000).astype("<i2").tobytes())
    data = os.path.join(root, "data")
    os.makedirs(data)
    write_table(os.path.join(data, "wav.scp"),
                [(u, os.path.join(os.fsencode(root), b"wav", u + b".wav")) for u, _ in UTTS])
    write_table(os.path.join(data, "utt2spk"), UTTS)
    write_table(os.path.join(data, "utt2spk.gold"), UTTS)
    write_table(os.path.join(data, "text"), [(u, b"hello") for u, _ in UTTS])
    spks = sorted({s for _, s in UTTS})
    write_table(os.path.join(data, "spk2utt"), [(s, b" ".join(u for u, s2 in UTTS if s2 == s)) for s in spks])
    return data


def step(name, *args, cwd):
    p = run_cmd([os.path.join(STEPS, name), *args], cwd=cwd)
    assert p.returncode == 0, f"{name} failed:\n{p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Perturb, fbank, train, extract, cluster and relabel a data dir with non-UTF-8 ids."""
    root = str(tmp_path_factory.mktemp("ids"))
    make_data_dir(root)
    conf = os.path.join(REPO, "egs", "tedlium", "s5_unspeech", "conf", "fbank.conf")
    step("perturb_data_dir_speed.sh", "--factors", "0.9 1.0", "data", "data_sp", cwd=root)
    step("make_fbank.sh", "--nj", "2", "--cmd", RUNNER, "--fbank-config", conf, "data", "exp/make_fbank", "fbank",
         cwd=root)
    step("train_unspeech.sh", *TINY_TRAIN, "data", "exp/model", cwd=root)
    step("extract_unspeech.sh", "--nj", "2", "--cmd", RUNNER, "--speaker-vectors", "true", "data", "exp/model",
         "exp/ivectors", cwd=root)
    step("cluster_utts.sh", "--utt2spk", "data/utt2spk.gold", "exp/ivectors", "exp/cluster", cwd=root)
    step("relabel_data_dir.sh", "--ivector-dir", "exp/ivectors", "--ivector-out-dir", "exp/ivectors_unspk",
         "data", "exp/cluster/utt2spk", "data_unspk", cwd=root)
    return root


def test_non_utf8_ids_survive_every_step(chain):
    utts = [u for u, _ in UTTS]
    path = lambda *p: os.path.join(chain, *p)  # noqa: E731
    for table in ("data/feats.scp", "data/utt2num_frames", "exp/ivectors/ivector_online.scp",
                  "exp/ivectors/utt_vectors.scp", "exp/cluster/utt2spk"):
        assert keys_of(path(table)) == utts, table       # the same bytes, in LC_ALL=C (byte) order
    sp = keys_of(path("data_sp", "utt2spk"))
    assert sp == sorted(utts + [b"sp0.9-" + u for u in utts]) and b"sp0.9-spk\xe9-utt\xe92" in sp
    with open(path("data_unspk", "utt_map"), "rb") as f:
        old = sorted(line.split()[1] for line in f)
    assert old == utts
    new = keys_of(path("data_unspk", "utt2spk"))
    assert new == sorted(new) and keys_of(path("exp/ivectors_unspk/ivector_online.scp")) == new
    from utils_py.kaldi import tables
    mats = dict(tables.iter_matrices(path("exp/ivectors/ivector_online.scp")))
    assert "spk\udce9-utt\udce92" in mats and mats["spk\udce9-utt\udce92"].shape[1] == 8


def test_kaldi_accepts_the_non_utf8_data_dirs(chain, kaldi_root):
    """Kaldi's validate_data_dir.sh accepts the input, so it must accept what the steps made of it.
    (--no-text: Kaldi rejects text lines with non-printable bytes, ids included.)"""
    assert is_kaldi_root(kaldi_root)
    utils = os.path.join(kaldi_root, "egs", "wsj", "s5", "utils")
    if not os.path.lexists(os.path.join(chain, "utils")):
        os.symlink(utils, os.path.join(chain, "utils"))
    for d, opts in (("data", ["--no-text"]), ("data_sp", ["--no-text", "--no-feats"]), ("data_unspk", ["--no-text"])):
        p = run_cmd([os.path.join(utils, "validate_data_dir.sh"), *opts, d], cwd=chain)
        assert p.returncode == 0, f"{d}: {p.stdout}{p.stderr}"


def tree_digest(root):
    """Hash of every file's path and bytes under ``root`` (what a refused step must leave alone)."""
    h = hashlib.sha256()
    for d, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            if name == ".lock":   # a step's lock file is emptied, never removed
                continue
            p = os.path.join(d, name)
            h.update(os.fsencode(os.path.relpath(p, root)))
            with open(p, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


REFUSED = {
    # the case: the clustered utt2spk as the output, and the cluster dir that holds it
    "relabel-out-is-clustered-utt2spk": ("relabel_data_dir.sh", ["data", "exp/cluster/utt2spk", "exp/cluster/utt2spk"],
                                         "exp/cluster/utt2spk"),
    "relabel-out-holds-clustered-utt2spk": ("relabel_data_dir.sh", ["data", "exp/cluster/utt2spk", "exp/cluster"],
                                            "exp/cluster/utt2spk"),
    "relabel-out-is-data": ("relabel_data_dir.sh", ["data", "exp/cluster/utt2spk", "data"], "data"),
    "relabel-ivector-out-is-ivector-dir": ("relabel_data_dir.sh", [
        "--ivector-dir", "exp/ivectors", "--ivector-out-dir", "exp/ivectors", "data", "exp/cluster/utt2spk",
        "data_new"], "exp/ivectors"),
    "relabel-ivector-out-is-out-data": ("relabel_data_dir.sh", [
        "--ivector-dir", "exp/ivectors", "--ivector-out-dir", "data_new", "data", "exp/cluster/utt2spk",
        "data_new"], "data_new"),
    "perturb-dst-is-src": ("perturb_data_dir_speed.sh", ["data", "data"], "data"),
    "perturb-dst-holds-src": ("perturb_data_dir_speed.sh", ["data", "."], "data"),
    "cluster-out-is-vectors": ("cluster_utts.py", ["exp/ivectors", "exp/ivectors"], "exp/ivectors"),
    "cluster-out-holds-gold": ("cluster_utts.py", ["--utt2spk", "data/utt2spk.gold", "exp/ivectors", "data"],
                               "data/utt2spk.gold"),
    "extract-out-is-model": ("extract_unspeech.py", ["data", "exp/model", "exp/model"], "exp/model"),
    "extract-out-is-data": ("extract_unspeech.py", ["data", "exp/model", "data"], "data"),
    "train-model-dir-is-data": ("train_unspeech.py", ["data", "data"], "data"),
    "train-model-dir-holds-filelist": ("train_unspeech.py", ["--filelist", "data/feats.scp", "data"],
                                       "data/feats.scp"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_no_step_writes_over_its_input(chain, tmp_path, case):
    script, args, victim = REFUSED[case]
    work = str(tmp_path / "w")
    shutil.copytree(chain, work, symlinks=True)
    before = tree_digest(work)
    p = run_cmd([os.path.join(STEPS, script), *args], cwd=work)
    assert p.returncode != 0
    errors = [line for line in p.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and f"refusing to write over input {victim}: " in errors[0], p.stderr
    assert tree_digest(work) == before
