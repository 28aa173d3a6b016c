"""Reliability of the whole recipe (issue 7): on bad input every step fails with ONE line
``ERROR (step): what is wrong: file/utt`` as the last line of stderr, leaves nothing
half-written that looks complete, names the file when the disk fills up, resumes after
SIGKILL (same result as an uninterrupted run), and refuses a second run into the same
directory while one is running.

Where each case is tested (here, or elsewhere and not repeated; ".." = the same test as above):
  missing file      here: test_missing_input_one_line_each_step (fbank, extract, cluster, relabel, perturb);
                    test_fbank.py::test_make_fbank_bad_input[missing_wav],
                    test_train.py::test_bad_input_one_line_error[unreadable|garbage],
                    test_extract.py::test_bad_input_one_line_error_and_no_scp[_no_model_dir|_unreadable_entry]
  truncated ark     here: test_truncated_ark_train_and_cluster, test_truncated_ark_extract_fails_naming_utterance;
                    test_kaldi_io.py::test_truncated_ark_names_file, test_fbank.py::..[truncated_wav]
  compressed feats  here: test_compressed_kaldi_features_train_and_extract; readers: test_kaldi_io.py,
                    test_ivector_dir.py::test_kaldi_compressed_ivector_matrix_is_read
  dim mismatch      test_train.py::..[dim], test_extract.py::..[_dim_mismatch],
                    test_cluster.py::test_bad_input_mixed_dims
  NaN/Inf           here: test_bad_features_train[inf], test_bad_vectors_cluster[inf]; NaN: test_train.py::..[nan],
                    test_extract.py::test_nan_in_a_job_fails_the_step_naming_it,
                    test_cluster.py::test_bad_input_nan_vector_names_utterance, test_feats.py::test_bad_features_named
  empty utterance   here: test_bad_features_train[empty], test_bad_vectors_cluster[empty];
                    test_extract.py::..[_empty_utterance], test_fbank.py::..[empty_wav]
  all too short     here: test_all_utterances_too_short_for_fbank; test_train.py::..[short]
  duplicate keys    here: test_bad_features_train[duplicate], test_bad_vectors_cluster[duplicate],
                    test_bad_data_dir_extract[duplicate], test_bad_data_dir_relabel; test_fbank.py::..[duplicate_utt]
  unsorted data dir here: test_bad_data_dir_extract[unsorted], test_bad_data_dir_relabel (accepted, sorted
                    output); test_fbank.py::..[unsorted]
  wrong sample rate test_fbank.py::..[wrong_rate], test_fbank.py::test_bad_mel_options_and_wrong_rate
  utt2spk vs feats  here: test_bad_data_dir_extract[utt2spk_mismatch], test_bad_data_dir_relabel,
                    test_bad_features_train[spk2utt_mismatch]; test_fbank.py::..[utt_mismatch],
                    test_relabel.py::test_clustered_utt2spk_covering_other_utts_is_an_error,
                    test_cluster.py::test_bad_input_gold_covers_other_utterances
  unwritable dir    here: test_unwritable_output_dir_each_step; test_cluster.py::test_bad_input_unwritable_out_dir
  disk full         here: test_disk_full_* (fbank, extract, train, cluster, relabel)
  SIGKILL           here: test_sigkill_make_fbank_*, test_sigkill_train_* (bound on lost work);
                    test_extract.py::test_rerun_after_a_killed_job_gives_identical_bytes,
                    test_train.py::test_resume_after_sigkill
  second run        here: test_second_* (fbank, extract, train, cluster, perturb, demo corpus);
                    the lock itself: test_recipe_plumbing.py::test_dir_lock_refuses_second_run_python_and_bash
  wrappers          here: test_train_sh_failure_ends_with_the_error_line, test_run_sh_stops_at_the_failed_stage_*,
                    test_run_tdnn_names_the_failed_kaldi_command
"""
import json
import os
import re
import shutil

import numpy as np
import pytest

from conftest import RECIPE, REPO, need_kaldi_ref, need_tools
from reliability_helpers import (assert_one_error, blocked_dir, data_dir_of_scp, feats_data_dir,
                                 file_size_limited, finish, kaldi_compressed_feats, kaldi_decoded, kill_session,
                                 lock_holder, run, run_in_process, start, step, temp_files, tree_bytes,
                                 truncate_tail, wait_until, write_feats)
from utils_py.kaldi import datadir
from utils_py.kaldi import tables
from utils_py.fileio import dir_lock

MAKE_FBANK = step("make_fbank.sh")
EXTRACT_SH = step("extract_unspeech.sh")
EXTRACT_PY = step("extract_unspeech.py")
TRAIN_SH = step("train_unspeech.sh")
TRAIN_PY = step("train_unspeech.py")
CLUSTER_SH = step("cluster_utts.sh")
RELABEL_SH = step("relabel_data_dir.sh")
PERTURB_SH = step("perturb_data_dir_speed.sh")
FBANK_CONF = os.path.join(RECIPE, "conf", "fbank.conf")
# A tiny model (VggCpu, 8-dim embeddings): a few seconds to train.
TINY = ["--embedding-transformation", "VggCpu", "--window-length", "16", "--window-neg-length", "16",
        "--left-contexts", "1", "--right-contexts", "1", "--negative-samples", "2", "--fc-size", "16",
        "--embedding-size", "8", "--batch-size", "4", "--val-fraction", "0", "--log-every", "1"]
# Extraction model: 64-dim rows so that an ark outgrows the job logs (disk-full test).
EXTRACT_CONFIG = {"feature_dim": 40, "window_length": 16, "window_neg_length": 16,
                  "embedding_transformation": "VggCpu", "embedding_size": 64, "fc_size": 16}


def speechlike(frames, dim=40, seed=0):
    rng = np.random.default_rng(seed)
    return (np.cumsum(rng.normal(0, 0.3, (frames, dim)), axis=0) + 5.0).astype(np.float32)


@pytest.fixture(scope="module")
def train_scp(tmp_path_factory):
    """8 utterances of 90 x 16 frames: enough for the TINY model."""
    d = tmp_path_factory.mktemp("trainfeats")
    return write_feats(d, [(f"spk{u % 2}-utt{u:02d}", speechlike(90, 16, u)) for u in range(8)])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from utils_py.model.network import build_model
    d = str(tmp_path_factory.mktemp("model"))
    build_model(EXTRACT_CONFIG).save(d)
    return d


def extract_data(path, frames=(60, 75, 90, 120, 33, 200)):
    """Data dir of 40-dim features, speakers s1..s3."""
    return feats_data_dir(path, [(f"s{1 + i % 3}-u{i}", speechlike(t, 40, i)) for i, t in enumerate(frames)])


def train_py(scp, model, *extra):
    return [TRAIN_PY, "--filelist", scp, *TINY, *extra, model]


def fbank_data(tmp_path):
    """5 wavs of ~1.1 s (test_fbank.make_data_dir); with nj=2, job 2 has spkb-u1 and spkc-u0."""
    from test_fbank import make_data_dir
    return make_data_dir(str(tmp_path))


def stall_last_wav(data, flag):
    """Make reading spkc-u0 (the last utterance, job 2 of 2) wait while $STALL_UNTIL names a
    file that does not exist yet (no effect without $STALL_UNTIL)."""
    table = datadir.read_table(os.path.join(data, "wav.scp"))
    wav = table["spkc-u0"]
    table["spkc-u0"] = (f"""bash -c 'while [ -n "$STALL_UNTIL" ] && [ ! -e "$STALL_UNTIL" ]; do sleep 0.05; done; """
                        f"""cat {wav}' |""")
    datadir.write_table(os.path.join(data, "wav.scp"), table)
    return {"STALL_UNTIL": str(flag)}


def make_fbank_args(data, fbank_dir):
    """make_fbank.sh with 2 jobs; logs in <fbank-dir>/../log."""
    return ["bash", MAKE_FBANK, "--nj", "2", "--fbank-config", FBANK_CONF, data,
            os.path.join(os.path.dirname(fbank_dir), "log"), fbank_dir]


def make_fbank(data, fbank_dir, *pre, env=None):
    return run([*pre, *make_fbank_args(data, fbank_dir)], env=env)


def fbank_outputs(data, fbank_dir):
    """What make_fbank produced (the bytes a rerun must reproduce)."""
    out = {"fbank/" + k: v for k, v in tree_bytes(fbank_dir).items()}
    for name in ("feats.scp", "utt2num_frames", "frame_shift"):
        with open(os.path.join(data, name), "rb") as f:
            out[name] = f.read()
    return out


def remove_fbank_outputs(data, fbank_dir):
    shutil.rmtree(fbank_dir)
    for name in ("feats.scp", "utt2num_frames", "frame_shift"):
        os.remove(os.path.join(data, name))


# ============================================================== bad input: one clear line
def test_missing_input_one_line_each_step(tmp_path, model_dir):
    missing = str(tmp_path / "no-such")
    assert_one_error(run(["bash", MAKE_FBANK, missing]), "make_fbank", "data directory not found", missing)
    no_feats = str(tmp_path / "nofeats")
    os.makedirs(no_feats)
    datadir.write_table(os.path.join(no_feats, "utt2spk"), {"s1-a": "s1"})
    datadir.write_spk2utt(no_feats)
    assert_one_error(run([EXTRACT_SH, no_feats, model_dir, tmp_path / "iv"]), "extract_unspeech",
                     "missing feats.scp", no_feats)
    assert not os.path.exists(tmp_path / "iv" / "ivector_online.scp")
    assert_one_error(run([CLUSTER_SH, missing, tmp_path / "cl"]), "cluster_utts", "not found", missing)
    from test_relabel import make_data_dir as relabel_data
    d, _, _ = relabel_data(tmp_path / "rl")
    assert_one_error(run([RELABEL_SH, d, missing, tmp_path / "rl" / "out"]), "relabel_data_dir", "not found", missing)
    assert not os.path.exists(tmp_path / "rl" / "out")
    assert_one_error(run([PERTURB_SH, "--factors", "1.0", missing, tmp_path / "sp"]), "perturb_data_dir_speed",
                     missing)


def test_truncated_ark_train_and_cluster(tmp_path):
    ok = speechlike(60, 16)
    scp = write_feats(tmp_path / "t", [("a", ok), ("b", ok)])
    truncate_tail(str(tmp_path / "t" / "feats.ark"), 100)
    assert_one_error(run(train_py(tmp_path / "t" / "feats.ark", tmp_path / "m1")), "train_unspeech",
                     "truncated or corrupt", "after utterance a", "feats.ark")
    assert_one_error(run(train_py(scp, tmp_path / "m2")), "train_unspeech", "utterance b", "feats.ark")
    assert not os.path.exists(tmp_path / "m2" / "metrics.json")
    from test_cluster import blobs, vector_dir
    keys, X, _ = blobs(n_per=5, k=2)
    src = vector_dir(tmp_path, keys, X)
    truncate_tail(os.path.join(src, "utt_vectors.ark"), 10)
    assert_one_error(run([CLUSTER_SH, "--plot", "false", src, tmp_path / "cl"]), "cluster_utts", keys[-1])
    assert not os.path.exists(tmp_path / "cl" / "utt2spk")


def test_truncated_ark_extract_fails_naming_utterance(tmp_path, model_dir):
    """Found when the job reads it (headers are intact); how a failed job is reported by
    extract_unspeech.sh (one line + its log) is tested with a full disk below."""
    data = extract_data(tmp_path / "data")
    last = list(datadir.read_table(os.path.join(data, "feats.scp")))[-1]
    truncate_tail(str(tmp_path / "feats" / "data.ark"), 200)
    out = tmp_path / "iv"
    p = run_in_process(EXTRACT_PY, ["--task", "all", "--num-threads", "0", data, model_dir, out])
    assert_one_error(p, "extract_unspeech", f"utterance {last}", "data.ark")
    assert not os.path.exists(out / "ivector_online.scp") and not os.path.exists(out / ".extract.1.done")
    assert not os.path.exists(out / "ivector_online.1.scp") and not temp_files(str(out))


@pytest.mark.parametrize("case", ["inf", "empty", "duplicate", "spk2utt_mismatch"])
def test_bad_features_train(tmp_path, case):
    ok = speechlike(60, 16)
    inf = ok.copy()
    inf[5, 2] = -np.inf
    mats = {"inf": [("a", ok), ("b", inf)], "empty": [("a", ok), ("b", np.zeros((0, 16)))],
            "duplicate": [("a", ok), ("b", ok), ("a", ok)], "spk2utt_mismatch": [("a", ok), ("b", ok)]}[case]
    scp = write_feats(tmp_path, mats)
    needles = {"inf": ["utterance b has NaN/Inf values (frame 5)"],
               "empty": ["utterance b has no frames"],
               "duplicate": ["duplicate utterance a", scp],
               "spk2utt_mismatch": ["utterance b", "spk2utt"]}[case]
    extra = []
    if case == "spk2utt_mismatch":  # negatives from the same speaker: every utterance needs one
        (tmp_path / "spk2utt").write_text("s1 a\n")
        extra = ["--spk2utt", str(tmp_path / "spk2utt")]
    assert_one_error(run(train_py(scp, tmp_path / "m", *extra)), "train_unspeech", *needles)
    assert not os.path.exists(tmp_path / "m" / "metrics.json")


@pytest.mark.parametrize("case", ["inf", "empty", "duplicate"])
def test_bad_vectors_cluster(tmp_path, case):
    from test_cluster import blobs
    keys, X, _ = blobs(n_per=5, k=2)
    mats = [(k, x) for k, x in zip(keys, X)]
    if case == "inf":
        mats[3] = (keys[3], np.where(np.arange(X.shape[1]) == 2, np.inf, X[3]))
        needles = [keys[3], "NaN/Inf"]
    elif case == "empty":   # an online-ivector dir whose utterance has no rows
        mats[3] = (keys[3], np.zeros((0, X.shape[1])))
        needles = [keys[3], "no rows"]
    else:
        mats.append(mats[0])
        needles = ["duplicate", keys[0]]
    d = tmp_path / "vec"
    name = "ivector_online" if case == "empty" else "utt_vectors"
    write_feats(d, [(k, np.atleast_2d(m) if case == "empty" else m) for k, m in mats], f"{name}.ark", f"{name}.scp")
    assert_one_error(run([CLUSTER_SH, "--plot", "false", d, tmp_path / "out"]), "cluster_utts", *needles)
    assert not os.path.exists(tmp_path / "out" / "utt2spk") and not os.path.exists(tmp_path / "out" / ".done")


@pytest.mark.parametrize("case", ["duplicate", "unsorted", "utt2spk_mismatch"])
def test_bad_data_dir_extract(tmp_path, model_dir, case):
    data = extract_data(tmp_path / "data")
    scp = os.path.join(data, "feats.scp")
    lines = open(scp).read().splitlines()
    if case == "duplicate":
        lines.append(lines[1])
        needles = ["duplicate key", lines[1].split()[0], scp]
    elif case == "unsorted":
        lines[0], lines[1] = lines[1], lines[0]
        needles = ["not sorted", scp]
    else:
        dropped = lines.pop(2).split()[0]
        needles = [dropped, scp]
    with open(scp, "w") as f:
        f.write("\n".join(lines) + "\n")
    out = tmp_path / "iv"
    assert_one_error(run([EXTRACT_SH, "--nj", "2", data, model_dir, out]), "extract_unspeech", *needles)
    assert not os.path.exists(out / "ivector_online.scp") and not os.path.exists(out / "log" / "extract.1.log")


def test_bad_data_dir_relabel(tmp_path):
    from test_relabel import make_data_dir as relabel_data
    # duplicate key in a per-utterance table: error naming it
    d, _, clustered = relabel_data(tmp_path / "dup")
    with open(os.path.join(d, "utt2dur"), "a") as f:
        f.write("spkB-rec2-0003 1.0\n")
    assert_one_error(run([RELABEL_SH, d, clustered, tmp_path / "dup" / "out"]), "relabel_data_dir",
                     "duplicate key spkB-rec2-0003", "utt2dur")
    # feats.scp without an utterance of utt2spk
    d, _, clustered = relabel_data(tmp_path / "mis")
    feats = datadir.read_table(os.path.join(d, "feats.scp"))
    del feats["spkB-rec2-0001"]
    datadir.write_table(os.path.join(d, "feats.scp"), feats)
    assert_one_error(run([RELABEL_SH, d, clustered, tmp_path / "mis" / "out"]), "relabel_data_dir",
                     "spkB-rec2-0001", "feats.scp")
    for case in ("dup", "mis"):
        assert not os.path.exists(tmp_path / case / "out") and not temp_files(str(tmp_path / case))
    # an unsorted table is accepted and the result is the same, sorted data dir
    d, _, clustered = relabel_data(tmp_path / "sorted")
    assert run([RELABEL_SH, d, clustered, tmp_path / "sorted" / "out"]).returncode == 0
    d, _, clustered = relabel_data(tmp_path / "unsorted")
    text = open(os.path.join(d, "text")).read().splitlines()
    with open(os.path.join(d, "text"), "w") as f:
        f.write("\n".join(reversed(text)) + "\n")
    p = run([RELABEL_SH, d, clustered, tmp_path / "unsorted" / "out"])
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "unsorted" / "out" / "text").read_bytes() == (tmp_path / "sorted" / "out" / "text").read_bytes()
    datadir.validate(str(tmp_path / "unsorted" / "out"))


def test_all_utterances_too_short_for_fbank(tmp_path):
    from test_fbank import write_wav
    data = fbank_data(tmp_path)
    table = datadir.read_table(os.path.join(data, "wav.scp"))
    for utt, wav in table.items():
        write_wav(wav, np.zeros(200, np.float32))   # 12.5 ms < one 25 ms frame
    assert_one_error(make_fbank(data, str(tmp_path / "fbank")), "make_fbank", "too short for one frame",
                     "(log: ")
    assert not os.path.exists(os.path.join(data, "feats.scp"))


# ============================================================== Kaldi-compressed features
def test_compressed_kaldi_features_train_and_extract(tmp_path):
    """feats.scp into Kaldi's own CM / CM2 / CM3 archives: training reads them, extraction gives
    the rows of what Kaldi's copy-feats decodes them to."""
    need_kaldi_ref()
    from test_extract import assert_rows_close
    from test_kaldi_io import read_text_ark
    from utils_py.extract.extractor import Extractor
    from utils_py.kaldi.ivector_dir import check_ivector_dir
    from utils_py.model.network import load_model_dir
    data = data_dir_of_scp(tmp_path / "data", kaldi_compressed_feats())
    model = tmp_path / "model"
    p = run_in_process(TRAIN_PY, [*TINY, "--steps", "3", "--val-fraction", "0.2", "--val-pairs", "10", data, model])
    assert p.returncode == 0, p.stderr
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["step"] == 3 and metrics["dropped_utterances"] == 1            # the 6-row one
    assert metrics["train_utterances"] + metrics["val_utterances"] == 10
    assert json.loads((model / "config.json").read_text())["feature_dim"] == 40

    out = tmp_path / "iv"
    # --compress false: the rows are compared with float32 arithmetic on the decoded input.
    p = run_in_process(EXTRACT_PY, ["--task", "all", "--nj", "2", "--period", "10", "--num-threads", "0",  # TF is up
                                    "--compress", "false", data, model, out])
    assert p.returncode == 0, p.stderr
    iv = check_ivector_dir(str(out), data)
    assert len(iv) == 11 and iv.dim == 8
    got = dict(tables.iter_matrices(str(out / "ivector_online.scp")))
    ex = Extractor(load_model_dir(str(model)), 10, "repeat")
    utts = list(kaldi_compressed_feats())
    want = dict(ex.extract([(u, kaldi_decoded(u, read_text_ark)) for u in utts]))
    for u in utts:
        assert_rows_close(got[u], want[u])


# ============================================================== unwritable output dir
def test_unwritable_output_dir_each_step(tmp_path, model_dir, train_scp):
    blocked = blocked_dir(tmp_path)
    data = fbank_data(tmp_path)
    assert_one_error(run(["bash", MAKE_FBANK, "--fbank-config", FBANK_CONF, data, tmp_path / "log", blocked]),
                     "make_fbank", "cannot create", blocked)
    assert not os.path.exists(os.path.join(data, "feats.scp"))
    xdata = extract_data(tmp_path / "xdata")
    assert_one_error(run([EXTRACT_SH, xdata, model_dir, blocked]), "extract_unspeech", "cannot create", blocked)
    assert_one_error(run([TRAIN_SH, "--filelist", train_scp, *TINY, "--steps", "2", blocked]), "train_unspeech",
                     "cannot create", blocked)
    from test_relabel import make_data_dir as relabel_data
    d, _, clustered = relabel_data(tmp_path / "rl")
    assert_one_error(run([RELABEL_SH, d, clustered, blocked]), "relabel_data_dir", "cannot create",
                     os.path.dirname(blocked))
    assert_one_error(run([PERTURB_SH, "--factors", "1.0", data, blocked]), "perturb_data_dir_speed",
                     "cannot create", blocked)


# ============================================================== disk full (ulimit -f: EFBIG)
def test_disk_full_make_fbank_names_the_file_and_rerun_gives_identical_bytes(tmp_path):
    data = fbank_data(tmp_path)
    fbank_dir = str(tmp_path / "fbank")
    assert make_fbank(data, fbank_dir).returncode == 0
    clean = fbank_outputs(data, fbank_dir)
    remove_fbank_outputs(data, fbank_dir)
    # ~5 KiB of (Kaldi-compressed, the default) features per utterance, 2-3 utterances per job:
    # the second one does not fit
    p = make_fbank(data, fbank_dir, *file_size_limited([], 8))
    assert_one_error(p, "make_fbank", "File too large", f"{fbank_dir}/raw_fbank_train.", ".ark", "(log: ")
    assert not os.path.exists(os.path.join(data, "feats.scp"))
    assert not [n for n in os.listdir(fbank_dir) if n.endswith((".scp", ".done"))] and not temp_files(str(tmp_path))
    p = make_fbank(data, fbank_dir)
    assert p.returncode == 0, p.stderr
    assert fbank_outputs(data, fbank_dir) == clean


def test_disk_full_extract_names_the_file_and_rerun_completes(tmp_path, model_dir):
    from utils_py.kaldi.ivector_dir import check_ivector_dir
    data = extract_data(tmp_path / "data")
    out = str(tmp_path / "iv")
    # 578 rows x 64, Kaldi-compressed (the default) 1 byte each: 37 KB
    args = [EXTRACT_SH, "--nj", "1", "--period", "1", data, model_dir, out]
    assert_one_error(run(file_size_limited(args, 20)), "extract_unspeech", "job 1 failed", "File too large",
                     f"{out}/ivector_online.1.ark", f"(log: {out}/log/extract.1.log)")
    assert not os.path.exists(os.path.join(out, "ivector_online.scp"))
    assert not os.path.exists(os.path.join(out, ".extract.1.done")) and not temp_files(out)
    p = run_in_process(EXTRACT_PY, ["--task", "all", "--period", "1", "--num-threads", "0", data, model_dir, out])
    assert p.returncode == 0, p.stderr   # the rerun (here in this process: TensorFlow is loaded) completes
    assert check_ivector_dir(out, data).dim == 64


def test_disk_full_train_names_the_file(tmp_path, train_scp):
    model = tmp_path / "model"
    # a checkpoint of the TINY model is ~770 KB, its log and event files a few KB
    p = run(file_size_limited(train_py(train_scp, model, "--steps", "4", "--checkpoint-every", "2"), 200))
    assert_one_error(p, "train_unspeech", "File too large", f"{model}/checkpoints/last.npz")
    assert not os.path.exists(model / "metrics.json") and not temp_files(str(model))


def test_disk_full_cluster_and_relabel_name_the_file(tmp_path):
    from test_cluster import blobs, vector_dir
    keys, X, gold = blobs(n_per=8, k=2)
    src = vector_dir(tmp_path, keys, X, gold)
    out = tmp_path / "cl"
    # the embedding map (PNG, > 16 KB) does not fit
    p = run(file_size_limited([CLUSTER_SH, "--utt2spk", tmp_path / "gold", src, out], 16))
    assert_one_error(p, "cluster_utts", "File too large", f"{out}/embedding_map.png")
    assert not os.path.exists(out / "utt2spk") and not os.path.exists(out / ".done") and not temp_files(str(out))
    from test_relabel import make_data_dir as relabel_data
    d, _, clustered = relabel_data(tmp_path / "rl")
    p = run(file_size_limited([RELABEL_SH, d, clustered, tmp_path / "rl" / "out"], 0))
    assert_one_error(p, "relabel_data_dir", "File too large", str(tmp_path / "rl"))
    assert not os.path.exists(tmp_path / "rl" / "out") and not temp_files(str(tmp_path / "rl"))


# ============================================================== SIGKILL, then rerun
def test_sigkill_make_fbank_then_rerun_redoes_only_the_killed_job(tmp_path):
    data = fbank_data(tmp_path)
    fbank_dir = str(tmp_path / "fbank")
    stall = stall_last_wav(data, tmp_path / "never")
    assert make_fbank(data, fbank_dir).returncode == 0   # $STALL_UNTIL unset: no stall
    clean = fbank_outputs(data, fbank_dir)
    remove_fbank_outputs(data, fbank_dir)
    proc = start(make_fbank_args(data, fbank_dir), env=stall)
    job2_ark = os.path.join(fbank_dir, "raw_fbank_train.2.ark")
    wait_until(lambda: os.path.exists(os.path.join(fbank_dir, "raw_fbank_train.1.done"))
               and os.path.exists(job2_ark) and os.path.getsize(job2_ark) > 0,
               "job 1 done and job 2 half-way", proc=proc)
    kill_session(proc)
    assert not os.path.exists(os.path.join(data, "feats.scp")), "a killed run left a complete-looking feats.scp"
    assert not os.path.exists(os.path.join(fbank_dir, "raw_fbank_train.2.scp"))
    assert not os.path.exists(os.path.join(fbank_dir, "raw_fbank_train.2.done"))
    p = make_fbank(data, fbank_dir)
    assert p.returncode == 0, p.stderr
    assert "already done, skipping" in (tmp_path / "log" / "make_fbank_train.1.log").read_text()
    assert "already done" not in (tmp_path / "log" / "make_fbank_train.2.log").read_text()
    assert fbank_outputs(data, fbank_dir) == clean


def test_sigkill_train_then_rerun_loses_at_most_one_checkpoint_interval(tmp_path, train_scp):
    model = tmp_path / "model"
    every, steps = 5, 100
    args = train_py(train_scp, model, "--steps", steps, "--checkpoint-every", every, "--dropout-keep-prob", "1.0")
    log = model / "log" / "train.log"

    def last_logged_step():
        return max(map(int, re.findall(r" step (\d+)/\d+ \|", log.read_text() if log.exists() else "")), default=0)

    proc = start(args)
    wait_until(lambda: last_logged_step() >= 2 * every + 2, "a few checkpoints", proc=proc)
    kill_session(proc)
    killed_at = last_logged_step()
    assert killed_at < steps and not os.path.exists(model / "metrics.json"), "killed before the end"
    p = run(args)
    assert p.returncode == 0, p.stderr
    resumed_at = int(re.search(r"resuming from \S+ at step (\d+)", p.stderr).group(1))
    assert resumed_at % every == 0 and killed_at - resumed_at <= every, (killed_at, resumed_at)
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["step"] == steps
    assert [h["step"] for h in metrics["history"]] == list(range(1, steps + 1))   # no step lost or doubled


# ============================================================== a second run into the same dir
def test_second_make_fbank_on_the_same_data_dir_refuses(tmp_path):
    data = fbank_data(tmp_path)
    fbank_dir = str(tmp_path / "fbank")
    flag = tmp_path / "go"
    first = start(make_fbank_args(data, fbank_dir), env=stall_last_wav(data, flag))
    wait_until(lambda: os.path.exists(os.path.join(fbank_dir, "raw_fbank_train.1.done")), "the first run's job 1",
               proc=first)
    second = make_fbank(data, str(tmp_path / "fbank2"))
    assert_one_error(second, "make_fbank", f"{data} is in use by another run", "make_fbank.sh, pid")
    assert not os.path.exists(tmp_path / "fbank2")
    flag.write_text("")
    p = finish(first)
    assert p.returncode == 0, p.stderr
    datadir.validate(data, need=("feats.scp",))
    assert lock_holder(data) == "", "a finished run leaves an empty lock file (reruns give identical dirs)"


def test_second_extract_into_the_same_dir_refuses(tmp_path, model_dir):
    from utils_py.kaldi.ivector_dir import check_ivector_dir
    data = extract_data(tmp_path / "data")
    out = str(tmp_path / "iv")
    args = [EXTRACT_SH, "--nj", "1", data, model_dir, out]
    first = start(args)
    wait_until(lambda: lock_holder(out).startswith("extract_unspeech.sh"), "the first run's lock", proc=first)
    assert_one_error(run(args), "extract_unspeech", f"{out} is in use by another run")
    p = finish(first)
    assert p.returncode == 0, p.stderr
    assert check_ivector_dir(out, data).dim == 64


def test_second_train_into_the_same_model_dir_refuses(tmp_path, train_scp):
    model = tmp_path / "model"
    args = train_py(train_scp, model, "--steps", "100000", "--log-every", "20", "--checkpoint-every", "20")
    log = model / "log" / "train.log"
    first = start(args)
    try:
        wait_until(lambda: "step 20/100000" in (log.read_text() if log.exists() else ""), "the first run training",
                   proc=first)
        try:
            second = finish(start(args), timeout=30)
        except AssertionError:
            raise AssertionError("a second train_unspeech into the same model dir trained along for 30 s "
                                 "instead of refusing at once (no dir lock)") from None
        assert first.poll() is None, "the first run must still be running"
    finally:
        kill_session(first)
    assert_one_error(second, "train_unspeech", "in use by another run")
    with np.load(model / "checkpoints" / "last.npz") as ckpt:        # the first run's state is intact
        assert json.loads(ckpt["meta"].tobytes())["step"] % 20 == 0


def test_second_cluster_and_perturb_into_the_same_dir_refuse(tmp_path):
    from test_cluster import blobs, vector_dir
    keys, X, _ = blobs(n_per=10, k=2)
    src = vector_dir(tmp_path, keys, X)
    out = str(tmp_path / "cl")
    first = start([CLUSTER_SH, "--plot", "false", src, out])
    wait_until(lambda: lock_holder(out).startswith("cluster_utts.sh"), "the first run's lock", proc=first)
    assert_one_error(run([CLUSTER_SH, "--plot", "false", src, out]), "cluster_utts", f"{out} is in use by another run")
    p = finish(first)
    assert p.returncode == 0, p.stderr
    assert len(datadir.read_table(os.path.join(out, "utt2spk"))) == len(keys) and lock_holder(out) == ""

    data = fbank_data(tmp_path)
    dst = str(tmp_path / "data" / "train_sp")
    with dir_lock(dst, "another perturb_data_dir_speed.sh"):
        assert_one_error(run([PERTURB_SH, "--factors", "1.0", data, dst]), "perturb_data_dir_speed",
                         f"{dst} is in use by another run (another perturb_data_dir_speed.sh")
        assert os.listdir(dst) == [".lock"]
    assert run([PERTURB_SH, "--factors", "1.0", data, dst]).returncode == 0


def test_second_demo_corpus_refuses(tmp_path):
    need_tools("espeak-ng", "sox")
    wav_dir = str(tmp_path / "db")
    with dir_lock(wav_dir, "another make_demo_corpus"):
        p = run([os.path.join(REPO, "local", "make_demo_corpus.py"), "--size", "tiny", wav_dir, tmp_path / "data"])
        assert_one_error(p, "make_demo_corpus", f"{wav_dir} is in use by another run")
    assert not os.path.exists(tmp_path / "data" / "train")


# ============================================================== wrappers: stop at once, say where
def test_train_sh_failure_ends_with_the_error_line(tmp_path):
    ok = speechlike(60, 16)
    bad = ok.copy()
    bad[3, 3] = np.nan
    scp = write_feats(tmp_path, [("a", ok), ("b", bad)])
    assert_one_error(run([TRAIN_SH, "--filelist", scp, *TINY, "--steps", "2", tmp_path / "m"]), "train_unspeech",
                     "utterance b has NaN/Inf")


def test_run_sh_stops_at_the_failed_stage_and_names_its_log(tmp_path):
    recipe = tmp_path / "egs" / "tedlium" / "s5_unspeech"
    recipe.mkdir(parents=True)
    for name in ("run.sh", "cmd.sh", "path.sh"):
        shutil.copy(os.path.join(RECIPE, name), recipe / name)
    shutil.copytree(os.path.join(RECIPE, "conf"), recipe / "conf")
    for name in ("steps_unspeech", "local"):
        os.symlink(os.path.join(REPO, name), recipe / name)
    from test_fbank import make_data_dir
    data = make_data_dir(str(recipe))                         # recipe/data/train
    wav = datadir.read_table(os.path.join(data, "wav.scp"))["spkb-u0"]
    with open(wav, "wb") as f:
        f.write(b"RIFF this is not a wav file")
    p = run([recipe / "run.sh", "--stage", "2", "--stop-stage", "3", "--speed-perturb", "false", "--nj", "2"])
    assert p.returncode != 0
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("ERROR (run.sh): stage 2 failed (exit 1); failed job log: "
                           "exp/make_fbank/train/make_fbank_train.1.log;"), p.stderr
    assert "resume with --stage 2" in last
    assert "ERROR (make_fbank): job 1 failed: " in p.stderr and "spkb-u0" in p.stderr
    assert "Stage 3" not in p.stdout and not os.path.exists(recipe / "exp" / "unspeech")


def test_run_tdnn_names_the_failed_kaldi_command(setup):
    """A real Kaldi script failing after the pre-flight: run_tdnn.sh --stage 5 with a tree but none of
    the chain data dirs and lattices of its stages 1-3, so Kaldi's train.py stops."""
    from test_handoff import put_mono_tree, run_tdnn
    put_mono_tree(setup)
    p = run_tdnn(setup, "--stage", "5")
    assert_one_error(p, "run_tdnn.sh", "steps/nnet3/chain/train.py failed (exit 1", "--stage")
    assert os.path.isfile(os.path.join(setup["recipe"], "exp/chain_unspeech_clustered/tdnn1a/configs/final.config"))


from test_handoff import recipe_dir, setup  # noqa: E402,F401  (fixtures: recipe with our data/ivector dirs + real Kaldi)
