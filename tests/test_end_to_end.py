"""Raw-waveform (end-to-end) mode: front-end shapes, Kaldi's frame grid, train -> extract -> cluster
on generated audio, and the errors for what cannot work."""
import json
import math
import os
import subprocess

import kaldiio
import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, kaldi_env, run_cmd
from utils_py.features.fbank import FbankExtractor, FbankConfig
from utils_py.features.feature_set import FeatureSet
from utils_py.features.waveform import FrameGrid, load_waveforms
from utils_py.kaldi import datadir, tables
from utils_py.kaldi.ivector_dir import check_ivector_dir
from utils_py.log import UnspeechError
from utils_py.model.network import build_model, min_window, stack_rows, time_stride
from utils_py.model.sampler import ContextSampler

TRAIN = os.path.join(REPO, "steps_unspeech", "train_unspeech.py")
TRAIN_SH = os.path.join(REPO, "steps_unspeech", "train_unspeech.sh")
EXTRACT = os.path.join(REPO, "steps_unspeech", "extract_unspeech.py")
CLUSTER = os.path.join(REPO, "steps_unspeech", "cluster_utts.py")
RATE = 8000
# A tiny end-to-end model: 0.2 s windows, 64-tap filters, one image row per 16 samples (2 ms).
E2E = ["--end-to-end", "true", "--window-length", "1600", "--window-neg-length", "1600",
       "--frontend-filter-size", "64", "--frontend-filters", "32", "--frontend-pool", "8",
       "--embedding-transformation", "VggCpu", "--fc-size", "32", "--embedding-size", "8",
       "--batch-size", "8", "--log-every", "10", "--checkpoint-every", "20", "--learn-rate", "1e-3"]
TINY = dict(feature_dim=1, end_to_end=True, window_length=1600, window_neg_length=1600, frontend_filter_size=64,
            frontend_filters=32, frontend_pool=8, embedding_transformation="VggCpu", fc_size=32, embedding_size=8)


def voice(rng, f0, tilt, seconds, rate=RATE):
    """A buzzy harmonic source with a speaker's pitch and a coloured-noise 'channel'."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    x = sum(np.sin(2 * np.pi * f0 * k * t * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / k for k in range(1, 6))
    noise = rng.standard_normal(n)
    for i in range(1, n):
        noise[i] += tilt * noise[i - 1]
    x = (0.3 * x + 0.05 * noise) * (0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 2 * t)))
    return (x / np.abs(x).max() * 12000).astype(np.int16)


def make_audio_dir(path, speakers=3, utts=4, seed=0, rates=None, lengths=None):
    """A data dir of generated speakers (wav.scp, utt2spk, spk2utt); ``rates``/``lengths``: per-utt overrides."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(path, "wav"), exist_ok=True)
    wav, utt2spk = {}, {}
    for s in range(speakers):
        f0, tilt = 100 + 70 * s, rng.uniform(0.1, 0.95)
        for u in range(utts):
            key = f"s{s}-u{u}"
            seconds = (lengths or {}).get(key, rng.uniform(1.0, 2.0))
            file = os.path.join(path, "wav", key + ".wav")
            sf.write(file, voice(rng, f0, tilt, seconds), (rates or {}).get(key, RATE))
            wav[key], utt2spk[key] = file, f"s{s}"
    datadir.write_table(os.path.join(path, "wav.scp"), wav)
    datadir.write_table(os.path.join(path, "utt2spk"), utt2spk)
    datadir.write_spk2utt(path)
    return path


def one_line_error(p, *needles):
    assert p.returncode != 0
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.startswith("ERROR")]
    assert len(lines) == 1, p.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


# ---------------------------------------------------------------- pure parts
def test_frame_grid_counts_frames_like_kaldi_native_fbank():
    for rate in (8000, 16000):
        for snip in (True, False):
            config = FbankConfig.from_tokens([f"--snip-edges={str(snip).lower()}", "--dither=0"])
            fbank, grid = FbankExtractor(config), FrameGrid(rate, snip_edges=snip)
            for n in (grid.length, grid.length + grid.shift - 1, grid.length + grid.shift, 12345, 3 * rate):
                x = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 1000
                assert len(fbank(x, rate)) == grid.num_frames(n), (rate, snip, n)
    assert FrameGrid(16000).num_frames(399) == 0 and FrameGrid(16000).num_frames(400) == 1


def test_frame_grid_counts_frames_like_kaldi_mfcc(tmp_path, kaldi_root):
    data = make_audio_dir(str(tmp_path / "d"), speakers=1, utts=4, lengths={"s0-u0": 0.0253, "s0-u1": 1.0})
    for snip in ("true", "false"):
        cmd = (f"{kaldi_root}/src/featbin/compute-mfcc-feats --sample-frequency={RATE} --snip-edges={snip} "
               f"scp:{data}/wav.scp ark:- | {kaldi_root}/src/featbin/feat-to-len ark:- ark,t:-")
        out = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, check=True).stdout
        grid = FrameGrid(RATE, snip_edges=snip == "true")
        for line in out.strip().splitlines():
            utt, frames = line.split()
            n = len(sf.read(os.path.join(data, "wav", utt + ".wav"))[0])
            assert grid.num_frames(n) == int(frames), (utt, n, snip)


def test_frontend_shapes_follow_stack_rows_and_time_stride():
    m = build_model(TINY)
    cfg = m.config
    assert m.time_stride == time_stride(cfg) == 2 * 8 * 16
    for samples in (min_window(cfg), 1600, 5000, 16001):
        fmap = m.conv_stack()(np.zeros((1, samples, 1), np.float32))
        assert fmap.shape[1] == stack_rows(cfg, samples) // 16 >= 1, samples
        assert fmap.shape[2] == 32 // 16
    emb = m.embed(np.random.default_rng(0).standard_normal((3, 1600, 1)).astype(np.float32))
    assert emb.shape == (3, 8) and np.isfinite(emb).all()


@pytest.mark.parametrize("change, needle", [
    (dict(window_length=300), "receptive field"),            # < 64 + 2 * (16 * 8 - 1) = 318 samples
    (dict(frontend_filters=8), "--frontend-filters=8"),     # VggCpu pools the image width 16x
    (dict(feature_dim=40), "reads samples"),
])
def test_impossible_end_to_end_configs_are_refused(change, needle):
    with pytest.raises(UnspeechError, match=needle.replace("-", r"\-")):
        build_model(dict(TINY, **change))
    assert min_window(TINY) == 318


def test_sampler_level_jitter_is_a_gain_on_samples():
    wavs = np.random.default_rng(0).standard_normal((4000, 1)).astype(np.float32) + 5
    fs = FeatureSet(["a", "b"], [2000, 2000], wavs)
    plain = ContextSampler(fs, [0, 1], 200, 200, 1, 1, batch_size=4, seed=3)
    gain = ContextSampler(fs, [0, 1], 200, 200, 1, 1, batch_size=4, seed=3, level_jitter_db=6, samples=True)
    (t0, _, _), (t1, _, _) = plain.chunk_batch(0), gain.chunk_batch(0)
    ratio = t1 / t0                                           # one factor per window, within +-6 dB
    assert np.allclose(ratio, ratio[:, :1], rtol=1e-5)
    assert (np.abs(20 * np.log10(ratio)) <= 6 + 1e-4).all() and ratio.std() > 0.01


def test_waveform_set_cached_equals_in_memory_and_rejects_mixed_rates(tmp_path):
    data = make_audio_dir(str(tmp_path / "d"), speakers=2, utts=2)
    mem = load_waveforms(data)
    cached = load_waveforms(data, cache_dir=str(tmp_path / "cache"))
    again = load_waveforms(data, cache_dir=str(tmp_path / "cache"))     # from the cache: meta kept
    assert mem.dim == 1 and mem.meta == cached.meta == again.meta == {"sample_rate": RATE}
    assert mem.keys == again.keys and np.array_equal(mem.data, np.asarray(again.data))
    x, rate = sf.read(os.path.join(data, "wav", "s0-u0.wav"), dtype="int16")
    assert rate == RATE and np.array_equal(mem["s0-u0"][:, 0], x.astype(np.float32))
    mixed = make_audio_dir(str(tmp_path / "m"), speakers=2, utts=2, rates={"s1-u0": 16000})
    with pytest.raises(UnspeechError, match="utterance s1-u0 has sample rate 16000 Hz, not 8000"):
        load_waveforms(mixed)


# ---------------------------------------------------------------- train -> extract -> cluster
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A data dir of generated audio and end-to-end models trained on it, with each objective."""
    base = tmp_path_factory.mktemp("e2e")
    data = make_audio_dir(str(base / "data"), speakers=3, utts=4)
    models = {}
    for objective, step in (("original", ["bash", TRAIN_SH]), ("inbatch", ["python", TRAIN])):
        model = str(base / f"model_{objective}")   # the wrapper needs no feats.scp in an end-to-end data dir
        p = run_cmd(step + E2E + ["--objective", objective, "--steps", "40", data, model])
        assert p.returncode == 0, p.stderr
        models[objective] = model
    return data, models


def test_trained_model_records_the_mode_and_the_rate(trained):
    _, models = trained
    for objective, model in models.items():
        cfg = json.load(open(os.path.join(model, "config.json")))
        assert cfg["end_to_end"] is True and cfg["sample_rate"] == RATE and cfg["feature_dim"] == 1
        assert cfg["objective"] == objective and cfg["window_length"] == 1600
        metrics = json.load(open(os.path.join(model, "metrics.json")))
        assert metrics["finished"] and metrics["step"] == 40 and math.isfinite(metrics["loss"])


def test_extract_gives_kaldis_frame_grid_and_clusters(trained, tmp_path, kaldi_root):
    data, models = trained
    env = kaldi_env(kaldi_root)
    # Kaldi's own hires-style MFCCs of the same data dir: the frames the chain model would see.
    conf = tmp_path / "mfcc.conf"
    conf.write_text(f"--sample-frequency={RATE}\n--use-energy=false\n")
    mfcc = subprocess.run(
        ["bash", "-c", f"cd {kaldi_root}/egs/wsj/s5 && steps/make_mfcc.sh --nj 1 --mfcc-config {conf} "
         f"{data} {tmp_path}/log {tmp_path}/mfcc"], capture_output=True, text=True, env=env)
    assert mfcc.returncode == 0, mfcc.stderr + mfcc.stdout
    frames = {k: rows for k, (rows, _) in tables.scp_shapes(os.path.join(data, "feats.scp")).items()}
    out = str(tmp_path / "iv")
    p = run_cmd(["python", EXTRACT, "--nj", "2", "--period", "10", "--speaker-vectors", "true",
                 data, models["inbatch"], out])
    assert p.returncode == 0, p.stderr
    rows = {k: np.asarray(v) for k, v in kaldiio.load_scp(os.path.join(out, "ivector_online.scp")).items()}
    assert sorted(rows) == sorted(frames)
    for utt, t in frames.items():
        assert rows[utt].shape == (math.ceil(t / 10), 8) and np.isfinite(rows[utt]).all(), utt
    check_ivector_dir(out, data, dim=8, period=10)
    assert open(os.path.join(out, "ivector_period")).read() == "10\n"
    # Kaldi reads the archive (compressed rows) as it is.
    copy = subprocess.run(["bash", "-c", f"{kaldi_root}/src/bin/copy-matrix scp:{out}/ivector_online.scp ark,t:- "
                           "| grep -c '\\['"], capture_output=True, text=True, env=env)
    assert copy.stdout.strip() == str(len(frames)), copy.stderr
    # --fast: the conv stack once per utterance, same rows
    fast = str(tmp_path / "iv_fast")
    p = run_cmd(["python", EXTRACT, "--fast", "true", data, models["inbatch"], fast])
    assert p.returncode == 0, p.stderr
    fast_rows = {k: np.asarray(v) for k, v in kaldiio.load_scp(os.path.join(fast, "ivector_online.scp")).items()}
    assert {k: v.shape for k, v in fast_rows.items()} == {k: v.shape for k, v in rows.items()}
    # clustering of the utterance vectors: every utterance labelled
    cl = str(tmp_path / "cl")
    p = run_cmd(["python", CLUSTER, "--utt2spk", os.path.join(data, "utt2spk"), out, cl])
    assert p.returncode == 0, p.stderr
    labels = datadir.read_table(os.path.join(cl, "utt2spk"))
    assert sorted(labels) == sorted(frames)
    # wrong frame options for these features: one line naming the utterance
    bad = run_cmd(["python", EXTRACT, "--frame-shift", "20", data, models["inbatch"], str(tmp_path / "bad")])
    one_line_error(bad, "frames in", "--frame-shift 20")
    assert not os.path.exists(os.path.join(tmp_path, "bad", "ivector_online.scp"))


def test_extract_rejects_other_rates_and_missing_audio(trained, tmp_path):
    _, models = trained
    other = make_audio_dir(str(tmp_path / "r"), speakers=1, utts=2, rates={"s0-u1": 16000})
    p = run_cmd(["python", EXTRACT, other, models["original"], str(tmp_path / "o1")])
    one_line_error(p, "utterance s0-u1 has sample rate 16000 Hz, not 8000")
    no_wav = str(tmp_path / "nowav")
    os.makedirs(no_wav)
    for name in ("utt2spk", "spk2utt"):
        os.symlink(os.path.join(other, name), os.path.join(no_wav, name))
    datadir.write_table(os.path.join(no_wav, "feats.scp"), {"s0-u0": "x.ark:1", "s0-u1": "x.ark:2"})
    p = run_cmd(["python", EXTRACT, no_wav, models["original"], str(tmp_path / "o2")])
    one_line_error(p, "wav.scp")
    assert not os.path.exists(os.path.join(tmp_path, "o2", "ivector_online.scp"))


def test_train_errors_are_one_line(tmp_path):
    data = make_audio_dir(str(tmp_path / "d"), speakers=2, utts=2, rates={"s1-u1": 16000})
    p = run_cmd(["python", TRAIN] + E2E + ["--steps", "2", data, str(tmp_path / "m1")])
    one_line_error(p, "utterance s1-u1 has sample rate 16000 Hz")
    p = run_cmd(["python", TRAIN] + E2E + ["--window-length", "200", data, str(tmp_path / "m2")])
    one_line_error(p, "--window-length=200", "receptive field")
    p = run_cmd(["python", TRAIN] + E2E + ["--filelist", os.path.join(data, "wav.scp"), str(tmp_path / "m3")])
    one_line_error(p, "--end-to-end true reads the audio")
    assert not any(os.path.exists(tmp_path / m / "final.weights.npz") for m in ("m1", "m2", "m3"))
