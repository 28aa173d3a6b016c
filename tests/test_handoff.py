"""The Kaldi chain hand-off (run.sh stage 7, local/chain/run_tdnn.sh) against a FAKE
KALDI_ROOT whose scripts and programs only record how they were called: the right
ivector dirs, period, dimension, data dirs and stages reach Kaldi, and broken inputs
are caught before any Kaldi call."""
import os
import stat
import subprocess

import numpy as np
import pytest

from conftest import REPO, RECIPE, step_env
from utils_py import datadir, kaldi_io
from utils_py.handoff import (KALDI_BINARIES, KALDI_IVECTOR_BINARIES, KALDI_IVECTOR_SCRIPTS, KALDI_SCRIPTS,
                              Handoff, utterance_map)
from utils_py.log import UnspeechError

PERIOD = 10
DIM = 12          # deliberately not Kaldi's 100: the dim must be read from the features
FEAT_DIM = 40
NUM_PDFS = 321
SPEAKERS = {"train_sp": ["spkA", "spkB", "spkC", "sp0.9-spkA"], "test": ["spkT", "spkU"]}
CLUSTER_OF = {"spkA": "unspk0000001", "spkB": "unspk0000002", "spkC": "unspk0000001", "sp0.9-spkA": "unspk0000003",
              "spkT": "unspk0000001", "spkU": "unspk0000001"}

RECORDER = """#!/usr/bin/env bash
name=$0
case $name in */src/*) name=$(basename "$name") ;; esac
{ printf '%s' "$name"; for a in "$@"; do printf '\\t%s' "$a"; done; printf '\\n'; } >> "$FAKE_KALDI_CALLS"
"""
BEHAVIOUR = {  # what a few fakes must do besides recording, for run_tdnn.sh to go on
    "utils/copy_data_dir.sh": 'mkdir -p "$2" && cp "$1"/* "$2"/\n',
    "tree-info": f'echo "num-pdfs {NUM_PDFS}"\n',
}


# ----------------------------------------------------------------- fixtures
def write_exe(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def make_fake_kaldi(root):
    """KALDI_ROOT with egs/wsj/s5/{steps,utils}, src/*bin programs and tools/config/common_path.sh."""
    s5 = os.path.join(root, "egs", "wsj", "s5")
    for script in KALDI_SCRIPTS + KALDI_IVECTOR_SCRIPTS:
        write_exe(os.path.join(s5, script), RECORDER + BEHAVIOUR.get(script, ""))
    bindirs = set()
    for group in (KALDI_BINARIES, KALDI_IVECTOR_BINARIES):
        for sub, progs in group.items():
            bindirs.add(sub)
            for prog in progs:
                write_exe(os.path.join(root, "src", sub, prog), RECORDER + BEHAVIOUR.get(prog, ""))
    path = ":".join(f"$KALDI_ROOT/src/{d}" for d in sorted(bindirs))
    write_exe(os.path.join(root, "tools", "config", "common_path.sh"), f"export PATH={path}:$PATH\n")


def write_data_dir(path, utts, frames, rx=None):
    """Data dir with utt2spk/spk2utt/text and feats.scp (real matrices, or the given entries)."""
    os.makedirs(path, exist_ok=True)
    utt2spk = dict(utts)
    datadir.write_table(os.path.join(path, "utt2spk"), utt2spk)
    datadir.write_spk2utt(path)
    datadir.write_table(os.path.join(path, "text"), {u: "HELLO WORLD" for u in utt2spk})
    if rx is not None:
        datadir.write_table(os.path.join(path, "feats.scp"), rx)
        return
    rng = np.random.RandomState(len(utt2spk))
    with kaldi_io.MatrixWriter(os.path.join(path, "feats.ark"), os.path.join(path, "feats.scp.tmp")) as w:
        for u in datadir.c_sorted(utt2spk):
            w.write(u, rng.randn(frames[u], FEAT_DIM).astype(np.float32))
    os.replace(os.path.join(path, "feats.scp.tmp"), os.path.join(path, "feats.scp"))


def write_ivector_dir(path, frames, dim=DIM, period=PERIOD, ie_id="abc123", rows=None):
    os.makedirs(path, exist_ok=True)
    rng = np.random.RandomState(1)
    with kaldi_io.MatrixWriter(os.path.join(path, "ivector_online.ark"), os.path.join(path, "ivector_online.scp")) as w:
        for u in datadir.c_sorted(frames):
            n = (rows or {}).get(u, -(-frames[u] // period))
            w.write(u, rng.randn(n, dim).astype(np.float32))
    with open(os.path.join(path, "ivector_period"), "w") as f:
        f.write(f"{period}\n")
    with open(os.path.join(path, "final.ie.id"), "w") as f:
        f.write(f"{ie_id}\n")


@pytest.fixture
def setup(tmp_path):
    """A recipe dir (data/, exp/unspeech/ivectors_*) plus a fake Kaldi with a TED-LIUM GMM system."""
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    for name in ("local", "steps_unspeech"):
        os.symlink(os.path.join(REPO, name), recipe / name)
    kaldi = str(tmp_path / "kaldi")
    make_fake_kaldi(kaldi)
    k = os.path.join(kaldi, "egs", "tedlium", "s5_r3")
    sets = {}
    for x, spks in SPEAKERS.items():
        utts = [(f"{s}-utt{i}", s) for s in spks for i in range(3)]
        frames = {u: 37 + 23 * i for i, (u, _) in enumerate(utts)}
        write_data_dir(str(recipe / "data" / x), utts, frames)
        feats = datadir.read_table(str(recipe / "data" / x / "feats.scp"))
        new = [(f"{CLUSTER_OF[s]}-{u}", CLUSTER_OF[s]) for u, s in utts]
        new_frames = {f"{CLUSTER_OF[s]}-{u}": frames[u] for u, s in utts}
        write_data_dir(str(recipe / "data" / f"{x}_unspk"), new, new_frames,
                       rx={f"{CLUSTER_OF[s]}-{u}": feats[u] for u, s in utts})
        write_ivector_dir(str(recipe / "exp" / "unspeech" / f"ivectors_{x}"), frames)
        write_ivector_dir(str(recipe / "exp" / "unspeech" / f"ivectors_{x}_unspk"), new_frames)
        sets[x] = (utts, frames)
    utts, frames = sets["train_sp"]
    write_data_dir(os.path.join(k, "data", "train_sp"), [(u, "kaldispk-" + s) for u, s in utts], frames)
    for rel in ("exp/tri3/final.mdl", "exp/tri3/tree", "exp/tri3_ali_train_sp/final.mdl",
                "exp/tri3_ali_train_sp/ali.1.gz", "exp/tri3_ali_train_sp/num_jobs", "data/lang/L.fst",
                "data/lang/G.fst", "data/lang/words.txt", "data/lang/phones.txt", "data/lang/topo",
                "data/lang/phones/silence.csl", "data/lang/phones/nonsilence.csl"):
        os.makedirs(os.path.dirname(os.path.join(k, rel)), exist_ok=True)
        with open(os.path.join(k, rel), "w") as f:
            f.write("1:2\n")
    calls = str(tmp_path / "calls.tsv")
    return {"recipe": str(recipe), "kaldi": kaldi, "k": k, "calls": calls, "sets": sets}


def run_env(args, cwd, **extra):
    env = step_env()
    env.update(extra)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)


def run_tdnn(setup, *opts, kaldi=True):
    env = {"FAKE_KALDI_CALLS": setup["calls"], "KALDI_ROOT": setup["kaldi"] if kaldi else ""}
    args = ["local/chain/run_tdnn.sh", "--nj", "2", "--decode-nj", "2", "--train-set", "train_sp",
            "--test-sets", "test", "--ivector-root", "exp/unspeech"] + list(opts)
    return run_env(args, setup["recipe"], **env)


def calls_of(setup):
    """Recorded calls as lists [name, arg1, ...]."""
    if not os.path.isfile(setup["calls"]):
        return []
    with open(setup["calls"]) as f:
        return [line.rstrip("\n").split("\t") for line in f]


def call(calls, name):
    found = [c for c in calls if c[0] == name]
    assert found, f"{name} not called; calls: {[c[0] for c in calls]}"
    return found


def opt(args, name):
    return args[args.index(name) + 1]


# ------------------------------------------------------------------ tests
def test_stage7_without_kaldi_says_what_is_missing(setup):
    r = run_tdnn(setup, kaldi=False)
    assert r.returncode != 0
    assert "KALDI_ROOT is not set" in r.stderr and "export KALDI_ROOT=" in r.stderr
    assert "nothing of Kaldi's was run" in r.stderr
    assert calls_of(setup) == []
    assert not os.path.exists(os.path.join(setup["recipe"], "exp", "chain_unspeech_clustered"))


def test_run_sh_stage7_without_kaldi_fails_clearly_and_alone():
    r = run_env(["./run.sh", "--stage", "7", "--stop-stage", "7"], RECIPE, KALDI_ROOT="")
    assert r.returncode != 0
    assert "KALDI_ROOT is not set" in r.stderr
    assert "stage 7 failed" in r.stderr
    assert not os.path.exists(os.path.join(RECIPE, "exp", "chain_unspeech_clustered", "utt_map"))


def test_clustered_unspeech_full_run_passes_the_right_things_to_kaldi(setup):
    r = run_tdnn(setup)
    assert r.returncode == 0, r.stderr
    assert f"dim {DIM}" in r.stdout and f"period {PERIOD}" in r.stdout
    calls = calls_of(setup)
    exp = "exp/chain_unspeech_clustered"
    # our data dirs of the clustered speakers are copied, CMVN'd and split per speaker
    copies = {c[1]: c[2] for c in call(calls, "utils/copy_data_dir.sh")}
    assert copies == {"data/train_sp_unspk": f"{exp}/data/train_sp", "data/test_unspk": f"{exp}/data/test"}
    assert [c[1] for c in call(calls, "steps/compute_cmvn_stats.sh")] == [f"{exp}/data/train_sp", f"{exp}/data/test"]
    splits = {c[1]: c[2] for c in call(calls, "utils/split_data.sh")}
    assert splits[f"{exp}/data/test"] == "1"      # capped at the test set's single clustered speaker
    # supervision from Kaldi's GMM on Kaldi's data, renamed to the clustered ids
    align = call(calls, "steps/align_fmllr_lats.sh")[0]
    assert align[-4:] == [f"{setup['k']}/data/train_sp", f"{setup['k']}/data/lang", f"{setup['k']}/exp/tri3",
                          "exp/chain_common/lats_train_sp"]
    utt_map = datadir.read_table(os.path.join(setup["recipe"], exp, "utt_map"), check_sorted=False)
    utts, _ = setup["sets"]["train_sp"]
    assert utt_map == {u: f"{CLUSTER_OF[s]}-{u}" for u, s in utts}
    assert call(calls, "lattice-copy")
    tree = call(calls, "steps/nnet3/chain/build_tree.sh")[0]
    assert tree[-4:] == [f"{setup['k']}/data/train_sp", "exp/chain_common/lang_chain",
                         f"{setup['k']}/exp/tri3_ali_train_sp", "exp/chain_common/tree_train_sp"]
    # network: dims read from the features, not hard-coded
    xconfig = open(os.path.join(setup["recipe"], exp, "tdnn1a", "configs", "network.xconfig")).read()
    assert f"input dim={DIM} name=ivector" in xconfig and f"input dim={FEAT_DIM} name=input" in xconfig
    assert f"dim={NUM_PDFS}" in xconfig
    # training and decoding get our online-ivector dirs
    train = call(calls, "steps/nnet3/chain/train.py")[0]
    iv_train = opt(train, "--feat.online-ivector-dir")
    assert iv_train == "exp/unspeech/ivectors_train_sp_unspk"
    assert open(os.path.join(setup["recipe"], iv_train, "ivector_period")).read().strip() == str(PERIOD)
    assert opt(train, "--feat-dir") == f"{exp}/data/train_sp"
    assert opt(train, "--lat-dir") == f"{exp}/lats_train_sp"
    assert opt(train, "--tree-dir") == "exp/chain_common/tree_train_sp"
    assert opt(train, "--stage") == "-10"
    assert "--norm-means=true" in opt(train, "--feat.cmvn-opts")
    decode = call(calls, "steps/nnet3/decode.sh")[0]
    assert opt(decode, "--online-ivector-dir") == "exp/unspeech/ivectors_test_unspk"
    assert decode[-3:] == [f"{exp}/tdnn1a/graph", f"{exp}/data/test", f"{exp}/tdnn1a/decode_test"]
    assert call(calls, "steps/score_kaldi.sh")[0][-3:] == [f"{exp}/data/test", f"{exp}/tdnn1a/graph",
                                                          f"{exp}/tdnn1a/decode_test"]
    # Kaldi's scripts are reachable from the recipe dir
    assert os.path.islink(os.path.join(setup["recipe"], "steps"))


def test_stage_passes_through_and_original_speakers(setup):
    r = run_tdnn(setup, "--speakers", "original", "--stage", "7", "--train-stage", "5")
    assert r.returncode == 0, r.stderr
    calls = calls_of(setup)
    names = [c[0] for c in calls]
    for early in ("utils/copy_data_dir.sh", "steps/align_fmllr_lats.sh", "steps/nnet3/chain/build_tree.sh",
                  "steps/nnet3/xconfig_to_configs.py", "lattice-copy"):
        assert early not in names
    train = call(calls, "steps/nnet3/chain/train.py")[0]
    assert opt(train, "--stage") == "5"
    assert opt(train, "--feat.online-ivector-dir") == "exp/unspeech/ivectors_train_sp"
    assert opt(train, "--feat-dir") == "exp/chain_unspeech_original/data/train_sp"
    assert opt(train, "--lat-dir") == "exp/chain_common/lats_train_sp"   # no renaming needed
    decode = call(calls, "steps/nnet3/decode.sh")[0]
    assert opt(decode, "--online-ivector-dir") == "exp/unspeech/ivectors_test"
    assert names.index("steps/nnet3/chain/train.py") < names.index("utils/mkgraph.sh") < \
        names.index("steps/nnet3/decode.sh")


def test_ivector_baseline_uses_kaldi_ivector_dirs(setup):
    # --features ivector from stage 3 on: Kaldi's i-vectors (made in stage 2) must already be there
    r = run_tdnn(setup, "--features", "ivector", "--stage", "3")
    assert r.returncode != 0 and "ivector features not usable" in r.stderr
    assert calls_of(setup) == []
    for x, (utts, frames) in setup["sets"].items():
        new_frames = {f"{CLUSTER_OF[s]}-{u}": frames[u] for u, s in utts}
        write_ivector_dir(os.path.join(setup["recipe"], "exp", "nnet3_ivector", f"ivectors_{x}_unspk"),
                          new_frames, dim=100, ie_id="kaldi-ie")
    r = run_tdnn(setup, "--features", "ivector", "--stage", "3")
    assert r.returncode == 0, r.stderr
    calls = calls_of(setup)
    train = call(calls, "steps/nnet3/chain/train.py")[0]
    assert opt(train, "--feat.online-ivector-dir") == "exp/nnet3_ivector/ivectors_train_sp_unspk"
    xconfig = open(os.path.join(setup["recipe"], "exp/chain_ivector_clustered/tdnn1a/configs/network.xconfig")).read()
    assert "input dim=100 name=ivector" in xconfig


def test_ivector_baseline_stage2_extracts_then_checks(setup):
    r = run_tdnn(setup, "--features", "ivector", "--speakers", "original", "--stage", "2")
    # the fake extractor writes nothing, so the check after extraction must stop the run
    assert r.returncode != 0 and "ivector features not usable" in r.stderr
    calls = calls_of(setup)
    extracted = [c[-3:] for c in call(calls, "steps/online/nnet2/extract_ivectors_online.sh")]
    assert extracted == [["data/train_sp", "exp/nnet3_ivector/extractor", "exp/nnet3_ivector/ivectors_train_sp"],
                         ["data/test", "exp/nnet3_ivector/extractor", "exp/nnet3_ivector/ivectors_test"]]
    assert "steps/nnet3/chain/train.py" not in [c[0] for c in calls]


def _drop_utt(s):
    scp = os.path.join(s["recipe"], "exp/unspeech/ivectors_train_sp_unspk/ivector_online.scp")
    lines = open(scp).read().splitlines()
    open(scp, "w").write("\n".join(lines[1:]) + "\n")
    return "utterance(s) of data/train_sp_unspk have no row", lines[0].split()[0]


def _wrong_rows(s):
    utts, frames = s["sets"]["test"]
    new = {f"{CLUSTER_OF[sp]}-{u}": frames[u] for u, sp in utts}
    bad = sorted(new)[2]
    write_ivector_dir(os.path.join(s["recipe"], "exp/unspeech/ivectors_test_unspk"), new, rows={bad: 50})
    return "rows for", bad


def _wrong_dim(s):
    utts, frames = s["sets"]["test"]
    new = {f"{CLUSTER_OF[sp]}-{u}": frames[u] for u, sp in utts}
    write_ivector_dir(os.path.join(s["recipe"], "exp/unspeech/ivectors_test_unspk"), new, dim=DIM + 1)
    return f"embedding dim is {DIM + 1}, expected {DIM}", "ivectors_test_unspk"


def _mixed_dims(s):
    d = os.path.join(s["recipe"], "exp/unspeech/ivectors_train_sp_unspk")
    scp = os.path.join(d, "ivector_online.scp")
    keys = kaldi_io.scp_keys(scp)
    with kaldi_io.MatrixWriter(os.path.join(d, "x.ark"), os.path.join(d, "x.scp")) as w:
        w.write(keys[-1], np.zeros((3, DIM + 2), np.float32))
    lines = open(scp).read().splitlines()[:-1] + open(os.path.join(d, "x.scp")).read().splitlines()
    open(scp, "w").write("\n".join(lines) + "\n")
    return f"has dim {DIM + 2}", keys[-1]


def _other_model(s):
    utts, frames = s["sets"]["test"]
    new = {f"{CLUSTER_OF[sp]}-{u}": frames[u] for u, sp in utts}
    write_ivector_dir(os.path.join(s["recipe"], "exp/unspeech/ivectors_test_unspk"), new, ie_id="other")
    return "different models", "final.ie.id"


def _missing_binary(s):
    os.remove(os.path.join(s["kaldi"], "src", "chainbin", "nnet3-chain-train"))
    return "not found under", "nnet3-chain-train"


def _missing_alignments(s):
    os.remove(os.path.join(s["k"], "exp", "tri3_ali_train_sp", "ali.1.gz"))
    return "GMM alignment dir has no ali.1.gz", "exp/tri3_ali_train_sp"


def _missing_ivector_dir(s):
    import shutil
    shutil.rmtree(os.path.join(s["recipe"], "exp/unspeech/ivectors_test_unspk"))
    return "online-ivector dir not found", "run stages 4 and 6"


@pytest.mark.parametrize("breakage", [_drop_utt, _wrong_rows, _wrong_dim, _mixed_dims, _other_model,
                                      _missing_binary, _missing_alignments, _missing_ivector_dir])
def test_broken_inputs_caught_before_any_kaldi_call(setup, breakage):
    fragments = breakage(setup)
    r = run_tdnn(setup)
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("ERROR (check_handoff)")]
    assert any(all(f in line for f in fragments) for line in errors), r.stderr
    assert calls_of(setup) == [], "a Kaldi script or program ran before the pre-flight passed"


# ------------------------------------------------------------ unit level
def test_utterance_map_from_relabel_step_file(tmp_path):
    write_data_dir(str(tmp_path / "orig"), [("spkA-u1", "spkA")], {"spkA-u1": 20})
    write_data_dir(str(tmp_path / "new"), [("x7-whatever", "x7")], {"x7-whatever": 20})
    (tmp_path / "new" / "utt_map").write_text("x7-whatever spkA-u1\n")
    assert utterance_map(str(tmp_path / "new"), str(tmp_path / "orig")) == {"x7-whatever": "spkA-u1"}
    (tmp_path / "new" / "utt_map").write_text("x7-whatever spkZ-u9\n")
    with pytest.raises(UnspeechError, match="x7-whatever"):
        utterance_map(str(tmp_path / "new"), str(tmp_path / "orig"))


def test_utterance_map_by_feature_entry_and_by_suffix(tmp_path):
    utts = [("spkA-u1", "spkA"), ("spkB-u2", "spkB")]
    write_data_dir(str(tmp_path / "orig"), utts, {"spkA-u1": 20, "spkB-u2": 30})
    feats = datadir.read_table(str(tmp_path / "orig" / "feats.scp"))
    write_data_dir(str(tmp_path / "new"), [("c1-spkA-u1", "c1"), ("c1-spkB-u2", "c1")], None,
                   rx={"c1-spkA-u1": feats["spkA-u1"], "c1-spkB-u2": feats["spkB-u2"]})
    assert utterance_map(str(tmp_path / "new"), str(tmp_path / "orig")) == \
        {"c1-spkA-u1": "spkA-u1", "c1-spkB-u2": "spkB-u2"}
    # re-made features (other entries): falls back to the id suffix
    write_data_dir(str(tmp_path / "new2"), [("c1-spkA-u1", "c1")], None, rx={"c1-spkA-u1": "/x.ark:5"})
    assert utterance_map(str(tmp_path / "new2"), str(tmp_path / "orig")) == {"c1-spkA-u1": "spkA-u1"}
    write_data_dir(str(tmp_path / "new3"), [("c1-zzz", "c1")], None, rx={"c1-zzz": "/x.ark:5"})
    with pytest.raises(UnspeechError, match="c1-zzz"):
        utterance_map(str(tmp_path / "new3"), str(tmp_path / "orig"))


def test_frame_count_mismatch_with_gmm_data_is_reported(tmp_path):
    utts = [("spkA-u1", "spkA")]
    write_data_dir(str(tmp_path / "ours"), utts, {"spkA-u1": 100})
    write_data_dir(str(tmp_path / "kaldi"), utts, {"spkA-u1": 90})
    h = Handoff("/nonexistent")
    assert h.check_alignment_coverage(str(tmp_path / "ours"), str(tmp_path / "kaldi")) == {}
    assert "spkA-u1 has 100 frames" in h.problems[0]
