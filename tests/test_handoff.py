"""The Kaldi chain hand-off (run.sh stage 11, local/chain/run_tdnn.sh) with a real Kaldi
(conftest.kaldi_root): its pre-flight (local/chain/check_handoff.py, utils_py/kaldi/handoff.py)
catches broken inputs with one clear ERROR line each before anything of Kaldi's runs, and
the network config Kaldi gets has the input dims of our features (no ivector input for
--features none). The end-to-end run with Kaldi training and decoding is
tests/test_kaldi_recipe.py.

The recipe dirs here hold our data dirs and online-ivector dirs in their real formats; the
GMM system (exp/tri3, exp/tri3_ali_train_sp, data/lang_test) is tiny placeholder files,
enough for the pre-flight, which only checks that they exist."""
import glob
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import RECIPE, REPO, linked_recipe, step_env
from utils_py.kaldi import datadir
from utils_py.kaldi import tables
from utils_py.kaldi.handoff import Handoff, utterance_map
from utils_py.log import UnspeechError

PERIOD = 10
DIM = 12          # deliberately not Kaldi's 100: the dim must be read from the features
FEAT_DIM = 40
SPEAKERS = {"train_sp": ["spkA", "spkB", "spkC", "sp0.9-spkA"], "test": ["spkT", "spkU"]}
CLUSTER_OF = {"spkA": "unspk0000001", "spkB": "unspk0000002", "spkC": "unspk0000001", "sp0.9-spkA": "unspk0000003",
              "spkT": "unspk0000001", "spkU": "unspk0000001"}
GMM = {"gmm_dir": "exp/tri3", "ali_dir": "exp/tri3_ali_train_sp", "lores_train_dir": "data/train_sp_mfcc",
       "lang_dir": "data/lang_test"}
PLACEHOLDERS = ["exp/tri3/final.mdl", "exp/tri3/tree", "exp/tri3_ali_train_sp/final.mdl",
                "exp/tri3_ali_train_sp/ali.1.gz", "exp/tri3_ali_train_sp/num_jobs", "data/lang_test/L.fst",
                "data/lang_test/G.fst", "data/lang_test/words.txt", "data/lang_test/phones.txt",
                "data/lang_test/topo", "data/lang_test/phones/silence.csl", "data/lang_test/phones/nonsilence.csl"]


# ----------------------------------------------------------------- fixtures
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
    with tables.MatrixWriter(os.path.join(path, "feats.ark"), os.path.join(path, "feats.scp.tmp")) as w:
        for u in datadir.c_sorted(utt2spk):
            w.write(u, rng.randn(frames[u], FEAT_DIM).astype(np.float32))
    os.replace(os.path.join(path, "feats.scp.tmp"), os.path.join(path, "feats.scp"))


def write_ivector_dir(path, frames, dim=DIM, period=PERIOD, ie_id="abc123", rows=None):
    os.makedirs(path, exist_ok=True)
    rng = np.random.RandomState(1)
    with tables.MatrixWriter(os.path.join(path, "ivector_online.ark"), os.path.join(path, "ivector_online.scp")) as w:
        for u in datadir.c_sorted(frames):
            n = (rows or {}).get(u, -(-frames[u] // period))
            w.write(u, rng.randn(n, dim).astype(np.float32))
    with open(os.path.join(path, "ivector_period"), "w") as f:
        f.write(f"{period}\n")
    with open(os.path.join(path, "final.ie.id"), "w") as f:
        f.write(f"{ie_id}\n")


def clustered(utts, frames):
    """Utterance ids and frame counts of the clustered-speaker copy of a set."""
    return ([(f"{CLUSTER_OF[s]}-{u}", CLUSTER_OF[s]) for u, s in utts],
            {f"{CLUSTER_OF[s]}-{u}": frames[u] for u, s in utts})


@pytest.fixture
def recipe_dir(tmp_path):
    """A recipe dir as run.sh stages 0-9 leave it (our data and ivector dirs real, the GMM system
    placeholder files) with links to the recipe's scripts; no Kaldi."""
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    for name in ("local", "steps_unspeech"):
        os.symlink(os.path.join(REPO, name), recipe / name)
    for name in ("path.sh", "cmd.sh"):
        os.symlink(os.path.join(RECIPE, name), recipe / name)
    sets = {}
    for x, spks in SPEAKERS.items():
        utts = [(f"{s}-utt{i}", s) for s in spks for i in range(3)]
        frames = {u: 37 + 23 * i for i, (u, _) in enumerate(utts)}
        write_data_dir(str(recipe / "data" / f"{x}_hires"), utts, frames)
        feats = datadir.read_table(str(recipe / "data" / f"{x}_hires" / "feats.scp"))
        new, new_frames = clustered(utts, frames)
        write_data_dir(str(recipe / "data" / f"{x}_hires_unspk"), new, new_frames,
                       rx={f"{CLUSTER_OF[s]}-{u}": feats[u] for u, s in utts})
        write_ivector_dir(str(recipe / "exp" / "unspeech" / f"ivectors_{x}"), frames)
        write_ivector_dir(str(recipe / "exp" / "unspeech" / f"ivectors_{x}_unspk"), new_frames)
        sets[x] = (utts, frames)
    utts, frames = sets["train_sp"]   # the GMM's MFCC data: same utterances, frames and ids, its own speakers
    write_data_dir(str(recipe / "data" / "train_sp_mfcc"), [(u, "kaldispk-" + s) for u, s in utts], frames)
    for rel in PLACEHOLDERS:
        os.makedirs(os.path.dirname(recipe / rel), exist_ok=True)
        (recipe / rel).write_text("1:2\n")
    return {"recipe": str(recipe), "kaldi": "", "sets": sets}


@pytest.fixture
def setup(recipe_dir, kaldi_root):
    """recipe_dir and the real Kaldi."""
    return dict(recipe_dir, kaldi=kaldi_root)


def run_env(args, cwd, **extra):
    env = step_env()
    env.update(extra)
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True)


def run_tdnn(setup, *opts, kaldi=True):
    """local/chain/run_tdnn.sh as run.sh stage 11 calls it (our GMM system's paths)."""
    args = ["local/chain/run_tdnn.sh", "--nj", "2", "--decode-nj", "2", "--train-set", "train_sp",
            "--test-sets", "test", "--unspeech-root", "exp/unspeech", "--use-gpu", "false"]
    for opt, value in GMM.items():
        args += ["--" + opt.replace("_", "-"), value]
    return run_env(args + list(opts), setup["recipe"], KALDI_ROOT=setup["kaldi"] if kaldi else "")


def check_handoff(setup, *opts):
    """local/chain/check_handoff.py with the GMM system of the setup."""
    args = [os.path.join(REPO, "local", "chain", "check_handoff.py"), "--kaldi-root", setup["kaldi"]]
    for opt, value in GMM.items():
        args += ["--" + opt.replace("_", "-"), value]
    return run_env(args + list(opts), setup["recipe"])


def kaldi_ran(setup):
    """What run_tdnn.sh leaves once it goes past the pre-flight (links to Kaldi's scripts, chain lang,
    data copies with Kaldi's CMVN, lattices)."""
    r = setup["recipe"]
    found = [p for p in ("steps", "utils", "exp/chain_common/lang_chain") if os.path.lexists(os.path.join(r, p))]
    for pattern in ("data", "lats_*"):
        found += glob.glob(os.path.join(r, "exp", "chain_*", pattern))
    return found


def put_mono_tree(setup, num_phones=3):
    """A real Kaldi tree in exp/chain_common/tree_train_sp (gmm-init-mono on a generated topology),
    so that run_tdnn.sh --stage 5 can read the number of pdfs from it. Returns that number."""
    tree_dir = os.path.join(setup["recipe"], "exp", "chain_common", "tree_train_sp")
    os.makedirs(tree_dir)
    s5 = os.path.join(setup["kaldi"], "egs", "wsj", "s5")
    nonsil = ":".join(str(p) for p in range(2, num_phones + 2))
    script = (f". ./path.sh && {s5}/utils/gen_topo.pl 3 5 {nonsil} 1 > {tree_dir}/topo && "
              f"gmm-init-mono {tree_dir}/topo 13 {tree_dir}/0.mdl {tree_dir}/tree && tree-info {tree_dir}/tree")
    p = run_env(["bash", "-c", script], setup["recipe"], KALDI_ROOT=setup["kaldi"])
    assert p.returncode == 0, p.stderr
    return int(next(line.split()[1] for line in p.stdout.splitlines() if line.startswith("num-pdfs")))


def read(setup, rel):
    with open(os.path.join(setup["recipe"], rel)) as f:
        return f.read()


# ------------------------------------------------------------- without Kaldi
def test_run_tdnn_without_kaldi_root_says_what_to_do(recipe_dir):
    r = run_tdnn(recipe_dir, kaldi=False)
    assert r.returncode != 0
    assert "KALDI_ROOT is not set" in r.stderr and "export KALDI_ROOT=" in r.stderr
    assert "nothing of Kaldi's was run" in r.stderr
    assert kaldi_ran(recipe_dir) == []
    assert not os.path.exists(os.path.join(recipe_dir["recipe"], "exp", "chain_unspeech_clustered"))


@pytest.mark.parametrize("stage", [7, 9, 11])
def test_run_sh_kaldi_stage_without_kaldi_fails_clearly_and_alone(tmp_path, stage):
    recipe = linked_recipe(tmp_path / "recipe")
    r = run_env(["./run.sh", "--stage", stage, "--stop-stage", stage], str(recipe), KALDI_ROOT="")
    assert r.returncode != 0
    assert f"stage {stage} needs Kaldi: KALDI_ROOT is not set" in r.stderr
    assert f"stage {stage} failed" in r.stderr and f"--stage {stage}" in r.stderr.splitlines()[-1]
    assert not os.path.exists(recipe / "exp") and not os.path.lexists(recipe / "steps")


def test_kaldi_root_without_compiled_programs_is_reported(setup, tmp_path):
    """A Kaldi checkout whose src/ was never compiled: its scripts are there, its programs are not."""
    checkout = tmp_path / "kaldi"
    (checkout / "egs" / "wsj").mkdir(parents=True)
    os.symlink(os.path.join(setup["kaldi"], "egs", "wsj", "s5"), checkout / "egs" / "wsj" / "s5")
    r = run_tdnn(dict(setup, kaldi=str(checkout)))
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("ERROR (check_handoff)")]
    assert any("compiled Kaldi program(s) not found" in line and "feat-to-dim" in line for line in errors), r.stderr
    assert kaldi_ran(setup) == []


# ------------------------------------------------------------- the pre-flight
def test_preflight_passes_and_maps_clustered_to_gmm_utterances(setup):
    r = check_handoff(setup, "--features", "unspeech",
                      "--train", "data/train_sp_hires_unspk,exp/unspeech/ivectors_train_sp_unspk",
                      "--test", "data/test_hires_unspk,exp/unspeech/ivectors_test_unspk",
                      "--original-train-data", "data/train_sp_hires", "--utt-map-out", "exp/x/utt_map")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [f"feat_dim={FEAT_DIM}", f"ivector_dim={DIM}", f"ivector_period={PERIOD}"]
    utts, _ = setup["sets"]["train_sp"]
    utt_map = datadir.read_table(os.path.join(setup["recipe"], "exp", "x", "utt_map"), check_sorted=False)
    assert utt_map == {u: f"{CLUSTER_OF[s]}-{u}" for u, s in utts}   # <GMM data utt> <training utt>


def _drop_utt(s):
    scp = os.path.join(s["recipe"], "exp/unspeech/ivectors_train_sp_unspk/ivector_online.scp")
    lines = open(scp).read().splitlines()
    open(scp, "w").write("\n".join(lines[1:]) + "\n")
    return "utterance(s) of data/train_sp_hires_unspk have no row", lines[0].split()[0]


def _wrong_rows(s):
    _, new = clustered(*s["sets"]["test"])
    bad = sorted(new)[2]
    write_ivector_dir(os.path.join(s["recipe"], "exp/unspeech/ivectors_test_unspk"), new, rows={bad: 50})
    return "rows for", bad


def _wrong_dim(s):
    _, new = clustered(*s["sets"]["test"])
    write_ivector_dir(os.path.join(s["recipe"], "exp/unspeech/ivectors_test_unspk"), new, dim=DIM + 1)
    return f"embedding dim is {DIM + 1}, expected {DIM}", "ivectors_test_unspk"


def _mixed_dims(s):
    d = os.path.join(s["recipe"], "exp/unspeech/ivectors_train_sp_unspk")
    scp = os.path.join(d, "ivector_online.scp")
    keys = tables.scp_keys(scp)
    with tables.MatrixWriter(os.path.join(d, "x.ark"), os.path.join(d, "x.scp")) as w:
        w.write(keys[-1], np.zeros((3, DIM + 2), np.float32))
    lines = open(scp).read().splitlines()[:-1] + open(os.path.join(d, "x.scp")).read().splitlines()
    open(scp, "w").write("\n".join(lines) + "\n")
    return f"has dim {DIM + 2}", keys[-1]


def _other_model(s):
    _, new = clustered(*s["sets"]["test"])
    write_ivector_dir(os.path.join(s["recipe"], "exp/unspeech/ivectors_test_unspk"), new, ie_id="other")
    return "different models", "final.ie.id"


def _missing_alignments(s):
    os.remove(os.path.join(s["recipe"], "exp", "tri3_ali_train_sp", "ali.1.gz"))
    return "GMM alignment dir has no ali.1.gz", "exp/tri3_ali_train_sp"


def _missing_ivector_dir(s):
    shutil.rmtree(os.path.join(s["recipe"], "exp/unspeech/ivectors_test_unspk"))
    return "online-ivector dir not found", "run stages 4 and 6"


def _unaligned_utterance(s):
    mfcc = os.path.join(s["recipe"], "data", "train_sp_mfcc")
    utt2spk = datadir.read_table(os.path.join(mfcc, "utt2spk"))
    gone = sorted(utt2spk)[0]
    write_data_dir(mfcc, [(u, spk) for u, spk in utt2spk.items() if u != gone], None,
                   rx={u: e for u, e in datadir.read_table(os.path.join(mfcc, "feats.scp")).items() if u != gone})
    return "not in the GMM's training data", gone


@pytest.mark.parametrize("breakage", [_drop_utt, _wrong_rows, _wrong_dim, _mixed_dims, _other_model,
                                      _missing_alignments, _missing_ivector_dir, _unaligned_utterance])
def test_broken_inputs_caught_before_kaldi_runs(setup, breakage):
    fragments = breakage(setup)
    r = run_tdnn(setup)
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("ERROR (check_handoff)")]
    assert any(all(f in line for f in fragments) for line in errors), r.stderr
    assert "pre-flight failed" in r.stderr and "nothing of Kaldi's was run" in r.stderr
    assert kaldi_ran(setup) == [], "run_tdnn.sh went on after a failed pre-flight"


# ------------------------------------------------------------- what Kaldi gets
def test_features_none_needs_no_ivectors_and_the_network_has_no_ivector_input(setup):
    shutil.rmtree(os.path.join(setup["recipe"], "exp", "unspeech"))
    r = check_handoff(setup, "--features", "none", "--train", "data/train_sp_hires,", "--test", "data/test_hires,")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [f"feat_dim={FEAT_DIM}"]
    num_pdfs = put_mono_tree(setup)
    r = run_tdnn(setup, "--features", "none", "--speakers", "original", "--stage", "5")
    assert "pre-flight ok: features none" in r.stdout, r.stderr
    exp = "exp/chain_none_original/tdnn1a/configs"
    xconfig = read(setup, f"{exp}/network.xconfig")
    assert "name=ivector" not in xconfig and "ReplaceIndex(ivector" not in xconfig
    assert f"input dim={FEAT_DIM} name=input" in xconfig and f"dim={num_pdfs} " in xconfig
    final = read(setup, f"{exp}/final.config")                  # written by Kaldi's xconfig_to_configs.py
    assert f"input-node name=input dim={FEAT_DIM}" in final and "name=ivector" not in final
    # stage 6 (training) then stops: there are no lattices in this setup
    assert "steps/nnet3/chain/train.py failed" in r.stderr.splitlines()[-1]
    assert "--feat.online-ivector-dir" not in r.stdout


def test_unspeech_network_input_dims_come_from_our_features(setup):
    num_pdfs = put_mono_tree(setup)
    r = run_tdnn(setup, "--features", "unspeech", "--speakers", "clustered", "--stage", "5")
    assert f"exp/unspeech/ivectors_train_sp_unspk, dim {DIM}, period {PERIOD}" in r.stdout, r.stderr
    exp = "exp/chain_unspeech_clustered/tdnn1a/configs"
    xconfig = read(setup, f"{exp}/network.xconfig")
    assert f"input dim={DIM} name=ivector" in xconfig and f"input dim={FEAT_DIM} name=input" in xconfig
    assert "output-layer name=output input=prefinal-chain" in xconfig and f"dim={num_pdfs} " in xconfig
    final = read(setup, f"{exp}/final.config")
    assert f"input-node name=ivector dim={DIM}" in final and f"input-node name=input dim={FEAT_DIM}" in final
    assert "with --feat.online-ivector-dir exp/unspeech/ivectors_train_sp_unspk" in r.stdout
    assert "steps/nnet3/chain/train.py failed" in r.stderr.splitlines()[-1]


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
