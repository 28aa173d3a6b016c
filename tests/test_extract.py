"""Extraction of unspeech embeddings as Kaldi online-ivector dirs
(utils_py/extract/extractor.py, steps_unspeech/extract_unspeech.{sh,py})."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import kaldiio
import numpy as np
import pytest

from conftest import REPO, kaldi_compression_bound, run_cmd, step_env
from utils_py.kaldi import datadir
from utils_py.kaldi import tables
from utils_py.extract.extractor import (Extractor, compare_fast, num_rows, pad_frames, utterance_windows,
                              window_starts)
from utils_py.kaldi.ivector_dir import check_ivector_dir
from utils_py.model.network import build_model, load_model_dir

SH = os.path.join(REPO, "steps_unspeech", "extract_unspeech.sh")
PY = os.path.join(REPO, "steps_unspeech", "extract_unspeech.py")
CONFIG = {"feature_dim": 40, "window_length": 32, "window_neg_length": 48, "embedding_transformation": "Vgg16",
          "embedding_size": 8, "fc_size": 32}
# Utterances shorter than, equal to and longer than a window; speakers s1..s3 (3 jobs possible).
FRAMES = {"s1-a": 1, "s1-b": 7, "s1-c": 31, "s2-a": 32, "s2-b": 33, "s2-c": 100, "s3-a": 171, "s3-b": 257}


def speechlike(frames, seed):
    """Smooth, piecewise-stationary 'log-mel' frames (segments of ~40 frames)."""
    rng = np.random.RandomState(seed)
    seg = rng.randn(frames // 40 + 1, 40) * 3
    return (np.repeat(seg, 40, axis=0)[:frames] + 0.3 * rng.randn(frames, 40)).astype(np.float32)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import keras
    keras.utils.set_random_seed(1)  # an untrained model: fix its weights
    d = str(tmp_path_factory.mktemp("model"))
    build_model(CONFIG).save(d)
    return d


@pytest.fixture(scope="module")
def model(model_dir):
    return load_model_dir(model_dir)


def make_data(path, frames=FRAMES, dim=40, bad=None):
    """Data dir with feats.scp; ``bad`` = {utt: matrix} replaces some utterances' features."""
    os.makedirs(path, exist_ok=True)
    datadir.write_table(os.path.join(path, "utt2spk"), {u: u.split("-")[0] for u in frames})
    datadir.write_spk2utt(path)
    with tables.MatrixWriter(os.path.join(path, "feats.ark"), os.path.join(path, "feats.scp")) as w:
        for i, u in enumerate(datadir.c_sorted(frames)):
            w.write(u, (bad or {}).get(u, speechlike(frames[u], i)[:, :dim] if dim <= 40 else
                                       np.zeros((frames[u], dim), np.float32)))
    return path


def direct_rows(model, feats, period, tower="target", padding="repeat"):
    """Reference: each row's window cut by hand, one forward pass of the Keras tower per window."""
    w = model.window_length_of(tower)
    t = len(feats)
    rows = []
    for i in range(-(-t // period)):
        start = i * period if padding != "last-window" else min(i * period, max(t - w, 0))
        fill = np.zeros_like(feats[-1:]) if padding == "zeros" else feats[-1:]
        padded = np.concatenate([feats] + [fill] * max(0, start + w - t))
        rows.append(np.asarray(model.tower(tower)(padded[None, start:start + w], training=False))[0])
    return np.stack(rows)


def assert_rows_close(got, want):
    """float32 equality up to summation order (batching): relative to the rows' scale."""
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(want).max())))


def assert_compressed_rows_close(got, want):
    """Rows read back from a Kaldi-compressed ark (the step's default): within Kaldi's
    compression error of ``want`` (conftest.kaldi_compression_bound), plus the float32
    tolerance of :func:`assert_rows_close`."""
    tol = kaldi_compression_bound(want) + 1e-4 * np.abs(want) + 1e-5 * max(1.0, float(np.abs(want).max()))
    err = np.abs(np.asarray(got, np.float64) - want)
    assert got.shape == want.shape and (err <= tol).all(), float((err - tol).max())


# ---------------------------------------------------------------- windows
def test_rows_and_window_starts():
    assert [num_rows(t, 10) for t in (1, 9, 10, 11, 100, 101)] == [1, 1, 1, 2, 10, 11]
    assert window_starts(35, 10, 32).tolist() == [0, 10, 20, 30]
    assert window_starts(35, 10, 32, "last-window").tolist() == [0, 3, 3, 3]
    assert window_starts(5, 10, 32, "last-window").tolist() == [0]


def test_windows_are_views_with_padding():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    view, starts = utterance_windows(x, 2, 4)
    assert starts.tolist() == [0, 2, 4] and not view.flags.writeable
    np.testing.assert_array_equal(view[starts[2]], [[8, 9], [10, 11], [10, 11], [10, 11]])
    view, starts = utterance_windows(x, 2, 4, "zeros")
    np.testing.assert_array_equal(view[starts[2]], [[8, 9], [10, 11], [0, 0], [0, 0]])
    view, starts = utterance_windows(x, 2, 4, "last-window")
    assert starts.tolist() == [0, 2, 2] and len(view) == 3
    assert pad_frames(x, 3) is x


# --------------------------------------------------------------- extractor
@pytest.mark.parametrize("padding", ["repeat", "zeros", "last-window"])
def test_rows_equal_direct_forward_pass(model, padding):
    utts = [(u, speechlike(t, i)) for i, (u, t) in enumerate(FRAMES.items())]
    ex = Extractor(model, period=10, padding=padding, chunk_windows=20)   # several utterances per pass
    got = dict(ex.extract(utts))
    for u, feats in utts:
        assert got[u].shape == (num_rows(len(feats), 10), 8) and got[u].dtype == np.float32
        assert_rows_close(got[u], direct_rows(model, feats, 10, padding=padding))


def test_combine_contexts_appends_context_tower(model):
    feats = speechlike(133, 5)
    rows = Extractor(model, period=7, combine_contexts=True).embed_utterance(feats)
    assert rows.shape == (19, 16)
    assert_rows_close(rows[:, :8], direct_rows(model, feats, 7))
    assert_rows_close(rows[:, 8:], direct_rows(model, feats, 7, tower="context"))


def test_fast_mode_takes_the_documented_feature_map_slice(model):
    feats = speechlike(150, 3)
    rows = Extractor(model, period=10, fast=True).embed_utterance(feats)
    assert rows.shape == (15, 8) and np.isfinite(rows).all()
    s = model.min_frames                                   # 16: time pooling of Vgg16
    padded = pad_frames(feats, 176)                        # last window end (140 + 32) rounded up to 16
    fmap = np.asarray(model.conv_stack()(padded[None]))
    for i in (0, 3, 14):
        j = min(int(np.rint(i * 10 / s)), fmap.shape[1] - 2)
        want = np.asarray(model.head()(fmap[:, j:j + 2]))[0]
        assert_rows_close(rows[i], want)


def test_fast_mode_rows_resemble_exact_rows_at_the_same_position(model):
    utts = [("a", speechlike(400, 1)), ("b", speechlike(257, 2))]
    dev = compare_fast(model, utts, period=10)
    assert dev["rows"] == 40 + 26
    exact = np.concatenate([r for _, r in Extractor(model, period=10).extract(utts)])
    fast = np.concatenate([r for _, r in Extractor(model, period=10, fast=True).extract(utts)])
    mu = exact.mean(axis=0)
    e = (exact - mu) / np.linalg.norm(exact - mu, axis=1, keepdims=True)
    f = (fast - mu) / np.linalg.norm(fast - mu, axis=1, keepdims=True)
    same = np.mean(np.sum(e * f, axis=1))
    shifted = np.mean(np.sum(e[8:] * f[:-8], axis=1))     # rows 80 frames apart
    assert same > shifted + 0.1, (same, shifted)


# ------------------------------------------------------------ the step
def run_sh(*args, **popen):
    return run_cmd(["bash", SH] + [str(a) for a in args], **popen)


def read_dir(out):
    return {k: np.asarray(v) for k, v in kaldiio.load_scp(os.path.join(out, "ivector_online.scp")).items()}


def dir_bytes(out):
    names = sorted(n for n in os.listdir(out) if n.startswith(("ivector_online", "utt_vectors", "final.ie.id",
                                                              "ivector_period", "config.json")))
    return {n: open(os.path.join(out, n), "rb").read() for n in names}


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, model_dir):
    base = tmp_path_factory.mktemp("ext")
    data = make_data(str(base / "data"))
    out = str(base / "iv")
    r = run_sh("--nj", 2, "--speaker-vectors", "true", data, model_dir, out)
    assert r.returncode == 0, r.stderr
    return data, out, dir_bytes(out)


def test_step_output_is_a_kaldi_online_ivector_dir(extracted, model, model_dir):
    data, out, _ = extracted
    got = read_dir(out)
    assert sorted(got) == sorted(FRAMES)
    feats = dict(tables.iter_matrices(os.path.join(data, "feats.scp")))
    want = {}
    for u, t in FRAMES.items():
        assert got[u].shape == (num_rows(t, 10), 8) and np.isfinite(got[u]).all(), u
        want[u] = direct_rows(model, feats[u], 10)
        assert_compressed_rows_close(got[u], want[u])   # ivector_online: compressed by default
    vectors = {k: np.asarray(v) for k, v in kaldiio.load_scp(os.path.join(out, "utt_vectors.scp")).items()}
    for u in FRAMES:
        # utt_vectors are Kaldi vectors (Kaldi has no compressed vectors): float32 means of the
        # rows before compression.
        assert vectors[u].shape == (8,) and vectors[u].dtype == np.float32
        assert_rows_close(vectors[u], want[u].mean(axis=0))
    assert open(os.path.join(out, "ivector_period")).read() == "10\n"
    assert open(os.path.join(out, "final.ie.id")).read().strip() == model.model_id
    assert open(os.path.join(out, "config.json")).read() == open(os.path.join(model_dir, "config.json")).read()
    for line in open(os.path.join(out, "ivector_online.scp")):
        assert os.path.isabs(line.split()[1].rsplit(":", 1)[0])
    assert check_ivector_dir(out, data).dim == 8


def test_rerun_after_a_killed_job_gives_identical_bytes(extracted, model_dir):
    data, out, first = extracted
    # Job 1 crashed after part of its ark (a stale temp scp of the dead process is left too) ...
    os.remove(os.path.join(out, ".extract.1.done"))
    os.remove(os.path.join(out, "ivector_online.1.scp"))
    with open(os.path.join(out, "ivector_online.1.ark"), "r+b") as f:
        f.truncate(100)
    stale = os.path.join(out, ".ivector_online.1.scp.tmp.99999")
    open(stale, "w").write("stale")
    # ... and the rerun is killed too (the whole step, SIGKILL) once job 1 is working again.
    p = subprocess.Popen(["bash", SH, "--nj", "2", "--speaker-vectors", "true", data, model_dir, out],
                         env=step_env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and os.path.exists(stale):
        time.sleep(0.01)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    while True:  # until every process of the step is gone (they hold the dir lock)
        try:
            os.killpg(p.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    assert not os.path.exists(os.path.join(out, "ivector_online.scp")), "killed run left a complete-looking scp"
    assert not os.path.exists(os.path.join(out, ".extract.1.done"))
    r = run_sh("--nj", 2, "--speaker-vectors", "true", data, model_dir, out)
    assert r.returncode == 0, r.stderr
    assert dir_bytes(out) == first
    assert "job 2: already done" in open(os.path.join(out, "log", "extract.2.log")).read()
    assert not [n for n in os.listdir(out) if ".tmp." in n]


def _dim_mismatch(tmp, model_dir):
    return make_data(tmp + "/data", dim=13), model_dir, "utterance s1-a has feature dim 13, the model expects 40"


def _no_model_dir(tmp, model_dir):
    return make_data(tmp + "/data"), tmp + "/nomodel", "model directory not found: " + tmp + "/nomodel"


def _no_config(tmp, model_dir):
    shutil.copytree(model_dir, tmp + "/m")
    os.remove(tmp + "/m/config.json")
    return make_data(tmp + "/data"), tmp + "/m", "model config not found: " + tmp + "/m/config.json"


def _unreadable_entry(tmp, model_dir):
    data = make_data(tmp + "/data")
    scp = os.path.join(data, "feats.scp")
    lines = open(scp).read().splitlines()
    lines[3] = lines[3].split()[0] + " " + tmp + "/missing.ark:17"
    open(scp, "w").write("\n".join(lines) + "\n")
    return data, model_dir, "utterance s2-a in"


def _empty_utterance(tmp, model_dir):
    return (make_data(tmp + "/data", bad={"s2-b": np.zeros((0, 40), np.float32)}), model_dir,
            "utterance s2-b has no frames")


@pytest.mark.parametrize("breakage", [_dim_mismatch, _no_model_dir, _no_config, _unreadable_entry, _empty_utterance])
def test_bad_input_one_line_error_and_no_scp(tmp_path, model_dir, breakage):
    data, mdir, message = breakage(str(tmp_path), model_dir)
    out = str(tmp_path / "iv")
    r = run_sh("--nj", 2, data, mdir, out)
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and message in errors[0], r.stderr
    assert not os.path.exists(os.path.join(out, "ivector_online.scp"))


def test_nan_in_a_job_fails_the_step_naming_it(tmp_path, model_dir):
    nan = speechlike(50, 0)
    nan[20, 3] = np.nan
    data = make_data(str(tmp_path / "data"), bad={"s3-a": nan})
    out = str(tmp_path / "iv")
    r = run_sh("--nj", 2, data, model_dir, out)
    assert r.returncode != 0
    assert "utterance s3-a has NaN/Inf values (frame 20)" in r.stderr
    assert not os.path.exists(os.path.join(out, "ivector_online.scp"))
    assert os.path.exists(os.path.join(out, ".extract.1.done"))   # the good job is kept for the rerun


def test_python_cli_help_lists_defaults():
    r = run_cmd([sys.executable, PY, "--help"])
    assert r.returncode == 0 and "--padding" in r.stdout and "(default: repeat)" in r.stdout
    r = run_cmd(["bash", SH, "--help"])   # the wrapper's job options, then the Python step's (passed through)
    assert r.returncode == 0 and "--nj <n>" in r.stdout and "--cmd <cmd>" in r.stdout
    assert "--combine-contexts" in r.stdout and "(default: 10)" in r.stdout


# ------------------------------------------------------------ --compress
def ark_headers(scp):
    """``{key: first bytes of its binary object}`` ("\\0BCM ", "\\0BFM ", ...) of every scp entry."""
    out = {}
    for line in open(scp):
        key, rx = line.split()
        path, offset = rx.rsplit(":", 1)
        with open(path, "rb") as f:
            f.seek(int(offset))
            out[key] = f.read(6)
    return out


def test_compress_default_vs_false_kaldi_reads_both(extracted, model_dir, tmp_path, kaldi_root):
    """Default: ivector_online rows are Kaldi compressed matrices (CM above 8 rows, CM2 up to 8:
    Kaldi's automatic method), within Kaldi's compression error of the float32 rows of
    --compress false; utt_vectors stay float32 vectors.  Kaldi's copy-feats reads both dirs.
    The option is part of each job's .done signature: switching it redoes the jobs."""
    from test_kaldi_io import read_text_ark
    data, out, _ = extracted
    plain = str(tmp_path / "plain")
    r = run_sh("--nj", 2, "--speaker-vectors", "true", "--compress", "false", data, model_dir, plain)
    assert r.returncode == 0, r.stderr
    for u, head in ark_headers(os.path.join(out, "ivector_online.scp")).items():
        assert head[:5] == (b"\0BCM2" if num_rows(FRAMES[u], 10) <= 8 else b"\0BCM "), (u, head)
    assert all(h[:5] == b"\0BFM " for h in ark_headers(os.path.join(plain, "ivector_online.scp")).values())
    for d in (out, plain):
        assert all(h[:5] == b"\0BFV " for h in ark_headers(os.path.join(d, "utt_vectors.scp")).values())
    assert json.load(open(os.path.join(out, "extract_opts.json")))["compress"] is True
    assert json.load(open(os.path.join(plain, "extract_opts.json")))["compress"] is False
    got, exact = read_dir(out), read_dir(plain)
    assert sum(os.path.getsize(os.path.join(out, f"ivector_online.{j}.ark")) for j in (1, 2)) < \
        0.5 * sum(os.path.getsize(os.path.join(plain, f"ivector_online.{j}.ark")) for j in (1, 2))
    worst = 0.0
    for u in FRAMES:
        err = np.abs(got[u].astype(np.float64) - exact[u])
        assert (err <= kaldi_compression_bound(exact[u])).all(), u   # same input, same rows: only compression
        worst = max(worst, float(err.max()))
    assert worst > 0   # lossy: really compressed
    # Kaldi's own copy-feats reads both online-ivector dirs: right keys, rows, dim and values.
    copy_feats = os.path.join(kaldi_root, "src", "featbin", "copy-feats")
    for d, rows in ((out, got), (plain, exact)):
        text = str(tmp_path / (os.path.basename(d) + ".txt"))
        p = subprocess.run([copy_feats, f"scp:{d}/ivector_online.scp", f"ark,t:{text}"], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        kaldi = read_text_ark(text)
        assert sorted(kaldi) == sorted(FRAMES)
        for u, t in FRAMES.items():
            assert kaldi[u].shape == (num_rows(t, 10), 8)
            np.testing.assert_allclose(kaldi[u], rows[u], rtol=1e-5, atol=1e-5)  # text output: 7 digits
    # Switching --compress redoes the jobs (the option is in their .done signature).
    r = run_sh("--nj", 2, "--speaker-vectors", "true", data, model_dir, plain)
    assert r.returncode == 0, r.stderr
    assert "already done" not in open(os.path.join(plain, "log", "extract.1.log")).read()
    assert all(h[:4] == b"\0BCM" for h in ark_headers(os.path.join(plain, "ivector_online.scp")).values())
    r = run_sh("--nj", 2, "--speaker-vectors", "true", data, model_dir, plain)
    assert r.returncode == 0 and "already done" in open(os.path.join(plain, "log", "extract.1.log")).read()
