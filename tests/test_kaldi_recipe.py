"""The recipe end to end with a real Kaldi (run.sh stages 0-9, 11, 12): a tiny demo corpus
(6 speakers, 3 train + 3 test utterances each), a short unspeech training, a mono GMM and a
one-epoch tiny chain TDNN with unspeech features and clustered speakers (unspeech:clustered,
the condition with relabelled data dirs and renamed lattices). Asserts that Kaldi's egs carry
OUR online-ivector input (dim, final.ie.id, period, the very rows), that decoding used it and
produced a WER that the stage-12 table lists, and that Kaldi accepts our relabelled data dir.

Kaldi: $KALDI_ROOT, else ../shared/tools/kaldi installed by the test run (conftest.kaldi_root);
skipped with the reason where there is none. About 3 minutes on 2 cores (stage 0-6: ~1 min,
mono GMM: ~0.5 min, chain lattices/tree/egs/training/decoding: ~1 min)."""
import glob
import json
import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import kaldi_env, tiny_demo_recipe
from utils_py.kaldi import datadir
from utils_py.kaldi import tables

CONDITION = "unspeech:clustered"
EXP = "exp/chain_unspeech_clustered"
DIR = f"{EXP}/tdnn1a"
EGS = f"{DIR}/egs"
IVECTORS_TRAIN = "exp/unspeech/ivectors_train_sp_unspk"
IVECTORS_TEST = "exp/unspeech/ivectors_test_unspk"
TRAIN_DATA = "data/train_sp_hires_unspk"
TIME_LIMIT = 600       # seconds for the whole recipe run (the limit); it takes ~3 min on 2 cores
# local/chain/run_tdnn.sh options (sourced bash): a tiny TDNN-F, one epoch, egs kept for inspection.
CHAIN_CONF = """\
use_gpu=false
num_leaves=100
num_epochs=1
num_jobs_initial=1
num_jobs_final=1
tdnn_dim=64
bottleneck_dim=32
prefinal_dim=32
tdnnf_strides="1 3"
chunk_width=150          # one chunk size: the held-out egs of 12 utterances fill whole minibatches
num_chunk_per_minibatch=8
frames_per_iter=100000   # ~23k frames of train_sp: one archive
num_utts_subset=6        # 2 source utterances x 3 speeds held out (utt2uniq), as many for the train subset
initial_lrate=0.002
final_lrate=0.0002
remove_egs=false
decode_opts="--beam 10 --lattice-beam 4 --max-active 2000"   # a barely trained model: keep lattices small
"""
BEST_WER = re.compile(r"^%WER (\d+(?:\.\d+)?) \[ (\d+) / (\d+), \d+ ins, \d+ del, \d+ sub \] \S+$")


def _run_recipe(recipe, env, args, what, deadline):
    """./run.sh <args> in its own process group, killed with all its jobs at the deadline."""
    started = time.time()
    p = subprocess.Popen(["./run.sh"] + args, cwd=recipe, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=max(1.0, deadline - started))
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"{what}: the recipe run took more than {TIME_LIMIT} s: ./run.sh {' '.join(args)}\n"
                    f"--- stdout (tail)\n{out[-3000:]}")
    if p.returncode != 0:
        pytest.fail(f"{what} failed ({p.returncode}): ./run.sh {' '.join(args)}\n"
                    f"--- stdout (tail)\n{out[-3000:]}\n--- stderr (tail)\n{err[-3000:]}")
    return time.time() - started


@pytest.fixture(scope="module")
def run(kaldi_root, tmp_path_factory):
    """The recipe, run once: a linked copy of egs/tedlium/s5_unspeech in a temp dir."""
    root, recipe, train_conf = tiny_demo_recipe(tmp_path_factory, "kaldi_recipe")
    chain_conf = root / "chain_tiny.conf"
    chain_conf.write_text(CHAIN_CONF)
    env = kaldi_env(kaldi_root)
    deadline = time.time() + TIME_LIMIT
    common = ["--corpus", "demo", "--demo-size", "tiny", "--nj", "2", "--gmm", "mono"]
    times = {
        "stages 0-9": _run_recipe(recipe, env, common + [
            "--stop-stage", "9", "--train-config", str(train_conf), "--gmm-opts", "--mono-gauss 300"],
            "run.sh stages 0-9 (data, unspeech, Kaldi lang/MFCC/mono GMM)", deadline),
        "stages 11-12": _run_recipe(recipe, env, common + [
            "--stage", "11", "--stop-stage", "12", "--chain-config", str(chain_conf),
            "--chain-conditions", CONDITION], f"run.sh stages 11-12 (chain TDNN {CONDITION}, WER table)", deadline),
    }
    print(f"\nrecipe run times: {', '.join(f'{k} {v:.0f} s' for k, v in times.items())}")
    return {"recipe": str(recipe), "env": env, "times": times}


def path(run, rel):
    return os.path.join(run["recipe"], rel)


def read(run, rel):
    with open(path(run, rel)) as f:
        return f.read().strip()


def kaldi(run, command):
    """A shell command with the recipe's path.sh (Kaldi's binaries), in the recipe dir; stdout."""
    p = subprocess.run(["bash", "-c", f". ./path.sh && {command}"], cwd=run["recipe"], env=run["env"],
                       capture_output=True, text=True)
    assert p.returncode == 0, f"{command} failed:\n{p.stderr[-2000:]}"
    return p.stdout


def ivector_dim(run, ivector_dir):
    dims = {cols for _, cols in tables.scp_shapes(path(run, f"{ivector_dir}/ivector_online.scp")).values()}
    assert len(dims) == 1, dims
    return dims.pop()


def lengths(run, scp):
    """{utt: rows} as Kaldi's feat-to-len reads them."""
    return {k: int(n) for k, n in (line.split() for line in kaldi(run, f"feat-to-len scp:{scp} ark,t:-").splitlines())}


def egs_logs(run):
    logs = sorted(glob.glob(path(run, f"{EGS}/log/get_egs.*.log")))
    assert logs, f"no get_egs logs under {EGS}/log"
    return {os.path.basename(f): open(f).read() for f in logs}


def read_egs(run):
    """{eg key: 1 x dim ivector row} of the training archives, read back with nnet3-chain-copy-egs."""
    archives = sorted(glob.glob(path(run, f"{EGS}/cegs.[0-9]*.ark")))
    assert archives, f"no training egs archives cegs.N.ark in {EGS}"
    text = kaldi(run, "nnet3-chain-copy-egs " + " ".join(
        f"ark:{os.path.relpath(a, run['recipe'])}" for a in archives) + " ark,t:-")
    ivector_io = re.compile(r"<NnetIo> ivector <I1V> (\d+) .*?\[(.*?)\]", re.S)
    egs = {}
    for piece in text.split("</Nnet3ChainEg>"):
        if not piece.strip():
            continue
        key = piece.split(None, 1)[0]
        m = ivector_io.search(piece)
        assert m, f"eg {key} has no 'ivector' input"
        rows = int(m.group(1))
        egs[key] = np.array(m.group(2).split(), dtype=np.float32).reshape(rows, -1)
    assert len(egs) == text.count("<Nnet3ChainEg>"), "unparsed egs"
    return egs


# ----------------------------------------------------------------------------- the egs
def test_egs_ivector_dim_and_extractor_id_are_ours(run):
    ours = ivector_dim(run, IVECTORS_TRAIN)
    assert ours == 100                                             # --embedding-size of conf/train_demo.conf
    assert int(kaldi(run, f"feat-to-dim scp:{IVECTORS_TRAIN}/ivector_online.scp -")) == ours
    assert int(read(run, f"{EGS}/info/ivector_dim")) == ours
    assert read(run, f"{EGS}/info/final.ie.id") == read(run, f"{IVECTORS_TRAIN}/final.ie.id")
    assert int(read(run, f"{EGS}/info/feat_dim")) == 40           # hires MFCC


def test_egs_made_from_our_ivector_dir_with_our_period(run):
    period = int(read(run, f"{IVECTORS_TRAIN}/ivector_period"))
    assert period == 10                                            # run.sh --period
    want = f"--online-ivectors=scp:{IVECTORS_TRAIN}/ivector_online.scp --online-ivector-period={period} "
    for name, log in egs_logs(run).items():
        assert want in log.splitlines()[0], f"{name} does not read our ivectors with period {period}:\n{log[:1500]}"
        # what nnet3-chain-get-egs says when an utterance has no rows or rows * period is off by > 100 frames
        for bad in ("No iVectors for utterance", "Length difference between feats"):
            assert bad not in log, f"{name}: {bad}"


def test_every_eg_carries_a_row_of_our_ivectors(run):
    """nnet3-chain-get-egs puts row (t / period) of the utterance's matrix, t a random frame from the
    chunk's first input frame on, into each eg: that row must be one of ours, of that utterance."""
    period = int(read(run, f"{IVECTORS_TRAIN}/ivector_period"))
    left_context = int(read(run, f"{EGS}/info/left_context"))
    ours = dict(tables.iter_matrices(path(run, f"{IVECTORS_TRAIN}/ivector_online.scp")))
    egs = read_egs(run)
    assert len(egs) > 20
    for key, row in egs.items():
        utt, first_frame = key.rsplit("-", 1)
        assert utt in ours, f"eg {key}: utterance not in {IVECTORS_TRAIN}"
        assert row.shape == (1, ours[utt].shape[1]), f"eg {key}: ivector input {row.shape}"
        mat = ours[utt]
        diff = np.abs(mat - row).max(axis=1)
        best = int(np.argmin(diff))
        assert diff[best] <= 1e-3 * max(1.0, float(np.abs(mat).max())), \
            f"eg {key}: its ivector is no row of ours (closest: row {best}, max diff {diff[best]})"
        lowest = min(max(0, int((int(first_frame) - left_context) / period)), len(mat) - 1)
        assert best >= lowest or np.allclose(mat[best], mat[lowest]), \
            f"eg {key}: row {best} precedes the chunk (first row {lowest} with period {period})"
    # the egs' keys are the clustered utterance ids: the renamed lattices met our relabelled data and
    # ivectors; only utterances the (tiny) mono GMM could not align have no egs
    train = set(datadir.read_table(path(run, f"{EXP}/data/train_sp/utt2spk")))
    held_out = set(read(run, f"{EGS}/valid_uttlist").split())
    with_egs = {k.rsplit("-", 1)[0] for k in egs}
    assert with_egs <= train - held_out
    logs = "\n".join(open(f).read() for f in glob.glob(path(run, f"{EGS}/log/*.log")))
    # nnet3-chain-get-egs / nnet3-chain-normalize-egs: "For utterance <u>, feature frames ..." /
    # "For example <u>-<t>, FST was empty after composing with normalization FST" (an unaligned utterance)
    unexplained = [u for u in sorted(train - held_out - with_egs)
                   if f"For utterance {u}, " not in logs and f"For example {u}-" not in logs]
    assert not unexplained, f"training utterances without egs and without a reason from Kaldi: {unexplained}"
    assert len(with_egs) >= 0.8 * len(train - held_out)


# ----------------------------------------------------------------------------- decoding, WER table
def test_decoding_used_our_test_ivectors_and_gave_a_wer(run):
    period = int(read(run, f"{IVECTORS_TEST}/ivector_period"))
    logs = sorted(glob.glob(path(run, f"{DIR}/decode_test/log/decode.*.log")))
    assert logs
    want = f"--online-ivectors=scp:{IVECTORS_TEST}/ivector_online.scp --online-ivector-period={period} "
    for log in logs:
        assert want in open(log).readline(), log
    # decode.sh refuses test ivectors of another extractor (steps/nnet2/check_ivectors_compatible.sh)
    assert read(run, f"{DIR}/final.ie.id") == read(run, f"{IVECTORS_TEST}/final.ie.id") == \
        read(run, f"{IVECTORS_TRAIN}/final.ie.id")
    line = read(run, f"{DIR}/decode_test/scoring_kaldi/best_wer")
    m = BEST_WER.match(line)
    assert m, f"not a Kaldi %WER line: {line}"
    assert int(m.group(3)) > 0                                     # words in the reference


def test_wer_table_lists_the_condition_and_the_gmm(run):
    wer = float(BEST_WER.match(read(run, f"{DIR}/decode_test/scoring_kaldi/best_wer")).group(1))
    with open(path(run, "exp/chain_results.json")) as f:
        table = json.load(f)
    rows = {r["condition"]: r for r in table["rows"]}
    assert rows[CONDITION]["wer"]["test"]["wer"] == wer
    assert rows[CONDITION]["times"]["train"] > 0 and rows[CONDITION]["times"]["decode_test"] > 0
    assert rows["gmm:original"]["label"] == "mono GMM"             # run.sh --gmm mono
    md = read(run, "exp/chain_results.md")
    assert any(line.startswith("| unspeech + clustered speakers |") and f"| {wer:.2f} |" in line
               for line in md.splitlines()), md
    assert not os.path.exists(path(run, "exp/tri1"))              # --gmm mono: no later GMM trained


# ----------------------------------------------------------------------------- data dirs
def test_kaldi_accepts_the_relabelled_data_dir_and_our_ivectors_cover_it(run):
    for d in (TRAIN_DATA, f"{EXP}/data/train_sp"):
        out = kaldi(run, f"utils/validate_data_dir.sh {d}")
        assert "Successfully validated" in out, out
    period = int(read(run, f"{IVECTORS_TRAIN}/ivector_period"))
    frames = lengths(run, f"{TRAIN_DATA}/feats.scp")
    rows = lengths(run, f"{IVECTORS_TRAIN}/ivector_online.scp")
    assert set(rows) == set(frames)
    off = {u: (frames[u], rows[u]) for u in frames if abs(frames[u] - rows[u] * period) > period}
    assert not off, f"frames vs rows x {period} differ by more than a period: {off}"
    # clustered speakers: ids are <cluster>-<original utt> (Kaldi's speaker-prefix convention)
    spk = datadir.read_table(path(run, f"{TRAIN_DATA}/utt2spk"))
    assert all(u.startswith(s + "-") for u, s in spk.items())
