"""Kaldi-compatible fbank: accuracy vs real Kaldi and vs an independent NumPy reference,
option handling, audio reading, and make_fbank.sh end to end incl. every bad-input case."""
import os
import re
import shlex
import shutil
import subprocess

import kaldiio
import numpy as np
import pytest
import soundfile as sf

from conftest import KALDI_REF, REPO, kaldi_compression_bound, need_kaldi_ref, need_tools, run_cmd
from kaldi_fbank_reference import kaldi_options_to_kwargs, reference_fbank
from utils_py.features import audio
from utils_py.kaldi import datadir
from utils_py.kaldi import tables
from utils_py.features.fbank import FbankConfig, FbankExtractor
from utils_py.log import UnspeechError

MAKE_FBANK = os.path.join(REPO, "steps_unspeech", "make_fbank.sh")
FBANK_CONF = os.path.join(REPO, "egs", "tedlium", "s5_unspeech", "conf", "fbank.conf")
MEAN_TOL, MAX_TOL = 1e-3, 0.05


def kaldi_option_sets():
    """``(name, [--opt=value ...])`` from kaldi-reference/fbank/options.txt (empty if absent)."""
    path = os.path.join(KALDI_REF, "fbank", "options.txt")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [(name.strip(), shlex.split(opts)) for name, opts in (line.split(":", 1) for line in f if ":" in line)]


def kaldi_cases():
    return [pytest.param(name, opts, rate, id=f"{name}_{rate}")
            for name, opts in kaldi_option_sets() for rate in ("16k", "8k")] or \
        [pytest.param(None, None, None, id="no-kaldi-reference")]


def load_kaldi_case(name, rate):
    ref_dir = need_kaldi_ref()
    if name is None:
        pytest.skip("kaldi-reference/fbank/options.txt not found")
    expected = {k: np.asarray(v) for k, v in kaldiio.load_ark(os.path.join(ref_dir, "fbank", f"{name}_{rate}.txt"))}
    wavs = {}
    with open(os.path.join(ref_dir, f"wav_{rate}.scp")) as f:
        for line in f:
            utt, rel = line.split()
            wavs[utt] = audio.read_audio(os.path.join(ref_dir, rel), utt)
    assert set(wavs) == set(expected)
    return wavs, expected


def assert_close(got, want, what):
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    diff = np.abs(got.astype(np.float64) - want)
    assert diff.mean() <= MEAN_TOL and diff.max() <= MAX_TOL, \
        f"{what}: mean |d| {diff.mean():.2e}, max |d| {diff.max():.2e}"


@pytest.mark.parametrize("name,opts,rate", kaldi_cases())
def test_matches_kaldi_compute_fbank_feats(name, opts, rate):
    wavs, expected = load_kaldi_case(name, rate)
    hz = "16000" if rate == "16k" else "8000"
    extract = FbankExtractor(FbankConfig.from_tokens(opts + [f"--sample-frequency={hz}"]))
    for utt, (samples, sr) in wavs.items():
        assert_close(extract(samples, sr, utt), expected[utt], f"{name} {utt}")


@pytest.mark.parametrize("name,opts,rate", kaldi_cases())
def test_numpy_reference_matches_kaldi(name, opts, rate):
    """Validates tests/kaldi_fbank_reference.py itself against real Kaldi output."""
    wavs, expected = load_kaldi_case(name, rate)
    for utt, (samples, sr) in wavs.items():
        assert_close(reference_fbank(samples, sr, **kaldi_options_to_kwargs(opts)), expected[utt], f"{name} {utt}")


def speechlike(seconds=1.3, rate=16000, seed=0):
    """Deterministic int16-scale test signal: gliding harmonics + noise + silence at the start."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 60 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    x = 6000 * x + 300 * rng.standard_normal(len(t)) + 150
    x[: rate // 20] = rng.standard_normal(rate // 20) * 3
    return np.round(np.clip(x, -32768, 32767)).astype(np.float32)


OPTION_VARIANTS = [
    [],
    ["--window-type=hanning"], ["--window-type=hamming"], ["--window-type=rectangular"],
    ["--window-type=blackman", "--blackman-coeff=0.4"], ["--window-type=sine"],
    ["--snip-edges=false"], ["--snip-edges=false", "--frame-shift=12.5", "--frame-length=30"],
    ["--use-energy=true"], ["--use-energy=true", "--raw-energy=false"],
    ["--use-energy=true", "--htk-compat=true"], ["--use-energy=true", "--energy-floor=1e9"],
    ["--remove-dc-offset=false"], ["--preemphasis-coefficient=0"], ["--round-to-power-of-two=false"],
    ["--low-freq=64", "--high-freq=3800"], ["--low-freq=0", "--high-freq=-200", "--num-mel-bins=30"],
    ["--use-power=false"],
]


@pytest.mark.parametrize("rate", [16000, 8000])
@pytest.mark.parametrize("opts", OPTION_VARIANTS, ids=lambda o: " ".join(o) or "defaults")
def test_matches_numpy_reference(opts, rate):
    samples = speechlike(rate=rate, seed=len(opts))
    tokens = ["--num-mel-bins=40", "--dither=0"] + opts
    got = FbankExtractor(FbankConfig.from_tokens(tokens))(samples, rate)
    want = reference_fbank(samples, rate, **kaldi_options_to_kwargs(tokens))
    assert_close(got, want, " ".join(opts))


def test_without_log_matches_reference_relatively():
    samples = speechlike()
    tokens = ["--num-mel-bins=40", "--dither=0", "--use-log-fbank=false"]
    got = FbankExtractor(FbankConfig.from_tokens(tokens))(samples, 16000)
    want = reference_fbank(samples, 16000, **kaldi_options_to_kwargs(tokens))
    assert got.shape == want.shape
    assert np.allclose(got, want, rtol=1e-3, atol=1e-2 * want.max())


def test_subtract_mean_and_dither():
    samples = speechlike()
    plain = FbankExtractor(FbankConfig.from_tokens(["--dither=0"]))(samples, 16000)
    centred = FbankExtractor(FbankConfig.from_tokens(["--dither=0", "--subtract-mean=true"]))(samples, 16000)
    assert np.allclose(centred, plain - plain.mean(axis=0), atol=1e-4)
    dithered = FbankExtractor(FbankConfig.from_tokens(["--dither=1"]))(samples, 16000)
    assert dithered.shape == plain.shape and not np.array_equal(dithered, plain)
    assert np.abs(dithered - plain).mean() < 0.05  # dither 1 on the int16 scale is tiny noise


def test_config_file_and_errors(tmp_path):
    conf = tmp_path / "fbank.conf"
    conf.write_text("# comment\n--num-mel-bins=40   # bins\n--dither=0\n--snip_edges=false\n--use-energy\n")
    cfg = FbankConfig.from_file(str(conf))
    assert (cfg["num-mel-bins"], cfg["dither"], cfg["snip-edges"], cfg["use-energy"]) == (40, 0.0, False, True)
    assert cfg.dim == 41 and cfg.frame_shift_seconds == 0.01
    assert FbankConfig.from_file(str(conf), overrides=["--num-mel-bins=23"])["num-mel-bins"] == 23
    assert FbankConfig.from_file(FBANK_CONF).dim == 40
    bad = {
        "--num-mel-bin=40": "unknown fbank option --num-mel-bin",
        "--dither=abc": "bad value for --dither",
        "--snip-edges=maybe": "bad value for --snip-edges",
        "--window-type=gauss": "bad --window-type=gauss",
        "--vtln-warp=0.9": "--vtln-warp=0.9 is not supported",
        "--allow-downsample=true": "not supported",
        "--num-mel-bins": "needs a value",
        "--utt2spk=ark:x": "not supported",
    }
    for line, message in bad.items():
        conf.write_text(line + "\n")
        with pytest.raises(UnspeechError, match=message) as e:
            FbankConfig.from_file(str(conf))
        assert str(conf) in str(e.value)


def test_bad_mel_options_and_wrong_rate():
    extract = FbankExtractor(FbankConfig.from_tokens(["--high-freq=5000", "--dither=0"]))
    with pytest.raises(UnspeechError, match="bad fbank options for 8000 Hz"):
        extract(speechlike(rate=8000), 8000, "u1")
    extract = FbankExtractor(FbankConfig.from_tokens(["--sample-frequency=16000", "--dither=0"]))
    with pytest.raises(UnspeechError, match="wrong sample rate vs config: utterance u8 is 8000 Hz.*x.wav"):
        extract(speechlike(rate=8000), 8000, "u8", "x.wav")
    with pytest.raises(UnspeechError, match="utterance short is too short for one frame"):
        extract(np.zeros(100, np.float32), 16000, "short")


# --------------------------------------------------------------------------- audio reading

def write_wav(path, samples, rate=16000, subtype="PCM_16"):
    sf.write(str(path), np.asarray(samples) / 32768.0, rate, subtype=subtype)
    return str(path)


def test_read_audio_files_pipes_channels(tmp_path):
    x = speechlike(0.5)
    mono = write_wav(tmp_path / "m.wav", x)
    got, rate = audio.read_audio(mono, "u")
    assert rate == 16000 and got.dtype == np.float32 and np.array_equal(got, x)
    got, _ = audio.read_audio(f"cat {shlex.quote(mono)} |", "u")
    assert np.array_equal(got, x)
    got24, _ = audio.read_audio(write_wav(tmp_path / "m24.wav", x, subtype="PCM_24"), "u")
    assert np.allclose(got24, x, atol=1e-3)
    stereo = write_wav(tmp_path / "s.wav", np.stack([x, -x], axis=1))
    with pytest.raises(UnspeechError, match="2 channels for utterance u.*s.wav"):
        audio.read_audio(stereo, "u")
    assert np.array_equal(audio.read_audio(stereo, "u", channel=1)[0], -x)
    with pytest.raises(UnspeechError, match="command failed \\(exit 1\\) for utterance u: cat /no/such.wav "
                                            "\\| cat: .*No such file"):
        audio.read_audio("cat /no/such.wav | cat |", "u")  # pipefail: a failing first stage counts
    with pytest.raises(UnspeechError, match="unsupported wav.scp entry.*a.ark:12"):
        audio.read_audio("a.ark:12", "u")


def test_segments_cutting():
    x = np.arange(16000 * 3, dtype=np.float32)
    assert len(audio.cut_segment(x, 16000, 0.5, 1.0)) == 8000
    assert audio.cut_segment(x, 16000, 2.0, -1)[0] == 32000 and len(audio.cut_segment(x, 16000, 2.0, -1)) == 16000
    assert len(audio.cut_segment(x, 16000, 2.5, 3.3)) == 8000  # small overshoot: cut to the end
    with pytest.raises(UnspeechError, match="utterance u ends at 4.0 s"):
        audio.cut_segment(x, 16000, 2.5, 4.0, "u")
    with pytest.raises(UnspeechError, match="utterance u starts at 3.5 s"):
        audio.cut_segment(x, 16000, 3.5, 4.0, "u")


# --------------------------------------------------------------------------- make_fbank.sh

def make_data_dir(root, spk_utts=(("spka", 2), ("spkb", 2), ("spkc", 1)), rate=16000, seconds=1.1):
    """Data dir of numpy-generated wavs: wav.scp, utt2spk, spk2utt."""
    d = os.path.join(root, "data", "train")
    os.makedirs(d, exist_ok=True)
    wav_dir = os.path.join(root, "wav")
    os.makedirs(wav_dir, exist_ok=True)
    wav_scp, utt2spk = {}, {}
    for s, (spk, n) in enumerate(spk_utts):
        for i in range(n):
            utt = f"{spk}-u{i}"
            wav_scp[utt] = write_wav(os.path.join(wav_dir, utt + ".wav"),
                                     speechlike(seconds + 0.1 * i, rate, seed=10 * s + i), rate)
            utt2spk[utt] = spk
    datadir.write_table(os.path.join(d, "wav.scp"), wav_scp)
    datadir.write_table(os.path.join(d, "utt2spk"), utt2spk)
    datadir.write_spk2utt(d)
    return d


def make_fbank(data, *extra, nj=2, conf=FBANK_CONF):
    return run_cmd(["bash", MAKE_FBANK, "--nj", str(nj), "--fbank-config", conf, data, *extra])


def test_make_fbank_end_to_end_and_rerun(tmp_path):
    data = make_data_dir(str(tmp_path))
    fbank_dir = str(tmp_path / "fbank")
    p = make_fbank(data, str(tmp_path / "log"), fbank_dir)
    assert p.returncode == 0, p.stderr
    datadir.validate(data, need=("feats.scp",))
    lines = open(os.path.join(data, "feats.scp")).read().splitlines()
    keys = [line.split()[0] for line in lines]
    assert keys == datadir.c_sorted(keys) and len(keys) == 5
    assert all(os.path.isabs(line.split()[1].rsplit(":", 1)[0]) for line in lines)
    assert open(os.path.join(data, "frame_shift")).read() == "0.01\n"
    num_frames = datadir.read_table(os.path.join(data, "utt2num_frames"))
    extract = FbankExtractor(FbankConfig.from_file(FBANK_CONF))
    wav_scp = datadir.read_table(os.path.join(data, "wav.scp"))
    for utt, feats in tables.iter_matrices(os.path.join(data, "feats.scp")):
        samples, rate = audio.read_audio(wav_scp[utt], utt)
        want = extract(samples, rate, utt)
        # Default --compress true: Kaldi's compression, exact up to its quantisation error (the
        # float32 arithmetic itself is checked exactly with --compress false below and in
        # test_make_fbank_compress_false_exact_and_kaldi_reads).
        err = np.abs(feats.astype(np.float64) - want)
        assert feats.shape == want.shape and (err <= kaldi_compression_bound(want)).all()
        assert int(num_frames[utt]) == len(want) and feats.shape[1] == 40
        assert len(want) == 1 + (len(samples) - 400) // 160
    outputs = sorted(os.listdir(fbank_dir))
    assert outputs == sorted(f"raw_fbank_train.{j}.{ext}" for j in (1, 2)
                             for ext in ("ark", "scp", "done", "num_frames"))

    def snapshot():
        return {f: open(os.path.join(d, f), "rb").read() for d in (data, fbank_dir)
                for f in os.listdir(d) if os.path.isfile(os.path.join(d, f))}

    before = snapshot()
    p = make_fbank(data, str(tmp_path / "log"), fbank_dir)
    assert p.returncode == 0, p.stderr
    assert snapshot() == before
    logs = "".join(open(tmp_path / "log" / f"make_fbank_train.{j}.log").read() for j in (1, 2))
    assert logs.count("already done, skipping") == 2
    os.remove(os.path.join(fbank_dir, "raw_fbank_train.2.done"))  # an unfinished job is redone, same bytes
    assert make_fbank(data, str(tmp_path / "log"), fbank_dir).returncode == 0
    assert snapshot() == before
    assert "already done" not in open(tmp_path / "log" / "make_fbank_train.2.log").read()


def test_make_fbank_segments_defaults_and_capped_nj(tmp_path):
    need_tools("sox")
    root = str(tmp_path)
    x = speechlike(3.0, 8000)
    reco = write_wav(tmp_path / "talk.wav", x, 8000)
    d = os.path.join(root, "seg")
    os.makedirs(d)
    datadir.write_table(os.path.join(d, "wav.scp"), {"talk1": reco, "talk2": f"sox {reco} -t wav - |"})
    segs = {"spk1-a": "talk1 0.00 1.20", "spk1-b": "talk1 1.20 -1", "spk2-a": "talk2 0.5 2.0"}
    datadir.write_table(os.path.join(d, "segments"), segs)
    datadir.write_table(os.path.join(d, "utt2spk"), {u: u.split("-")[0] for u in segs})
    datadir.write_spk2utt(d)
    # 3 utts: 3 jobs; --compress false: the cuts are checked with exact float equality.
    p = run_cmd(["bash", MAKE_FBANK, "--nj", "5", "--compress", "false", "--fbank-config", FBANK_CONF, d])
    assert p.returncode == 0, p.stderr
    assert "using 3 jobs" in p.stderr
    assert os.path.isfile(os.path.join(d, "data", "raw_fbank_seg.3.scp")) and os.path.isdir(os.path.join(d, "log"))
    extract = FbankExtractor(FbankConfig.from_file(FBANK_CONF))
    feats = dict(tables.iter_matrices(os.path.join(d, "feats.scp")))
    assert np.array_equal(feats["spk1-a"], extract(x[:9600], 8000))
    assert np.array_equal(feats["spk1-b"], extract(x[9600:], 8000))
    assert np.array_equal(feats["spk2-a"], extract(x[4000:16000], 8000))


def write_text(path, text):
    with open(path, "w") as f:
        f.write(text)


def _missing_wav(d, wavs):
    os.remove(wavs["spkb-u1"])
    return "wav file not found for utterance spkb-u1"


def _corrupt_wav(d, wavs):
    write_text(wavs["spka-u0"], "RIFF this is not really a wav file at all")
    return "cannot read audio of utterance spka-u0 .*spka-u0.wav"


def _truncated_wav(d, wavs):
    data = open(wavs["spkc-u0"], "rb").read()
    with open(wavs["spkc-u0"], "wb") as f:
        f.write(data[:30])
    return "utterance spkc-u0"


def _wrong_rate(d, wavs):
    write_wav(wavs["spkb-u0"], speechlike(1.0, 8000), 8000)
    return "wrong sample rate vs config: utterance spkb-u0 is 8000 Hz.*spkb-u0.wav"


def _duplicate_utt(d, wavs):
    with open(os.path.join(d, "wav.scp"), "a") as f:
        f.write(f"spkc-u0 {wavs['spkc-u0']}\n")
    return "duplicate key spkc-u0 .*wav.scp"


def _unsorted(d, wavs):
    lines = open(os.path.join(d, "utt2spk")).read().splitlines()
    write_text(os.path.join(d, "utt2spk"), "\n".join([lines[1], lines[0]] + lines[2:]) + "\n")
    return "not sorted .*key spka-u0 .*utt2spk"


def _utt_mismatch(d, wavs):
    table = datadir.read_table(os.path.join(d, "wav.scp"))
    del table["spkb-u0"]
    datadir.write_table(os.path.join(d, "wav.scp"), table)
    return "missing, first spkb-u0: .*wav.scp"


def _empty_wav(d, wavs):
    write_text(wavs["spka-u1"], "")
    return "wav file is empty for utterance spka-u1"


def _empty_wav_scp(d, wavs):
    write_text(os.path.join(d, "wav.scp"), "")
    return "file is empty: .*wav.scp"


def _failing_pipe(d, wavs):
    table = datadir.read_table(os.path.join(d, "wav.scp"))
    table["spkb-u1"] = f"sox {table['spkb-u1']} -t wav - trim 0 nonsense |"
    datadir.write_table(os.path.join(d, "wav.scp"), table)
    return "command failed \\(exit [0-9]+\\) for utterance spkb-u1: sox"


def _stereo(d, wavs):
    x = speechlike(1.0)
    write_wav(wavs["spka-u0"], np.stack([x, x], axis=1))
    return "2 channels for utterance spka-u0"


BAD_INPUTS = [_missing_wav, _corrupt_wav, _truncated_wav, _wrong_rate, _duplicate_utt, _unsorted, _utt_mismatch,
              _empty_wav, _empty_wav_scp, _failing_pipe, _stereo]


@pytest.mark.parametrize("breaker", BAD_INPUTS, ids=lambda f: f.__name__.strip("_"))
def test_make_fbank_bad_input(tmp_path, breaker):
    if breaker is _failing_pipe:
        need_tools("sox")
    data = make_data_dir(str(tmp_path))
    wavs = datadir.read_table(os.path.join(data, "wav.scp"))
    conf = tmp_path / "fbank16k.conf"
    shutil.copy(FBANK_CONF, conf)
    with open(conf, "a") as f:
        f.write("--sample-frequency=16000\n")
    assert make_fbank(data, conf=str(conf)).returncode == 0  # an old feats.scp must not survive a failure
    expected = breaker(data, wavs)
    p = make_fbank(data, conf=str(conf))
    assert p.returncode != 0
    errors = [line for line in p.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, p.stderr
    assert errors[0].startswith("ERROR (make_fbank): ") and re.search(expected, errors[0]), errors[0]
    assert not os.path.exists(os.path.join(data, "feats.scp"))


def test_chunked_feeding_gives_identical_features():
    samples = speechlike(5.3)
    for opts in ([], ["--snip-edges=false"]):
        extract = FbankExtractor(FbankConfig.from_tokens(["--dither=0"] + opts))
        whole = extract(samples, 16000)
        extract.CHUNK_SECONDS = 0.0173  # chunks smaller than a frame, not a multiple of the shift
        assert np.array_equal(extract(samples, 16000), whole)


def test_compute_fbank_cli_overrides_and_unknown_option(tmp_path):
    data = make_data_dir(str(tmp_path), spk_utts=(("spka", 1),))
    script = os.path.join(REPO, "steps_unspeech", "compute_fbank.py")
    ark, scp = str(tmp_path / "f.ark"), str(tmp_path / "f.scp")
    p = run_cmd([script, "--fbank-config", FBANK_CONF, "--num-mel-bins=23", "--use-energy=true",
                 "--write-num-frames", "ark,t:" + str(tmp_path / "n"), data, ark, scp])
    assert p.returncode == 0, p.stderr
    (utt, feats), = tables.iter_matrices(scp)
    assert utt == "spka-u0" and feats.shape[1] == 24
    assert open(tmp_path / "n").read() == f"spka-u0 {len(feats)}\n"
    p = run_cmd([script, "--fbank-config", FBANK_CONF, "--num-mel-bin=23", data, ark, str(tmp_path / "g.scp")])
    assert p.returncode == 1 and not os.path.exists(tmp_path / "g.scp")
    assert p.stderr.strip() == f"ERROR (compute_fbank): unknown fbank option --num-mel-bin: {FBANK_CONF} + command line"


def test_make_fbank_compress_false_exact_and_kaldi_reads(tmp_path, kaldi_root):
    """Default: Kaldi compressed matrices ("CM": every utterance has > 8 frames), ~4x smaller, within
    Kaldi's compression error; --compress false: float32, bit-exact.  Kaldi's copy-feats reads
    both feats.scp (keys, frames, dim, values).  Switching the option redoes the jobs."""
    from test_extract import ark_headers
    from test_kaldi_io import read_text_ark
    data = make_data_dir(str(tmp_path))
    fbank_dir = str(tmp_path / "fbank")
    extract = FbankExtractor(FbankConfig.from_file(FBANK_CONF))
    wav_scp = datadir.read_table(os.path.join(data, "wav.scp"))
    want = {u: extract(*audio.read_audio(rx, u), u) for u, rx in wav_scp.items()}
    copy_feats = os.path.join(kaldi_root, "src", "featbin", "copy-feats")
    got, sizes = {}, {}
    for compress in ("true", "false"):
        p = run_cmd(["bash", MAKE_FBANK, "--nj", "2", "--compress", compress, "--fbank-config", FBANK_CONF,
                     data, str(tmp_path / "log"), fbank_dir])
        assert p.returncode == 0, p.stderr
        logs = "".join(open(tmp_path / "log" / f"make_fbank_train.{j}.log").read() for j in (1, 2))
        assert "already done" not in logs   # the second run redoes both jobs
        heads = ark_headers(os.path.join(data, "feats.scp"))
        assert all(h[:5] == (b"\0BCM " if compress == "true" else b"\0BFM ") for h in heads.values()), heads
        sizes[compress] = sum(os.path.getsize(os.path.join(fbank_dir, f"raw_fbank_train.{j}.ark")) for j in (1, 2))
        got[compress] = dict(tables.iter_matrices(os.path.join(data, "feats.scp")))
        text = str(tmp_path / f"kaldi_{compress}.txt")
        k = subprocess.run([copy_feats, f"scp:{data}/feats.scp", f"ark,t:{text}"], capture_output=True, text=True)
        assert k.returncode == 0, k.stderr
        kaldi = read_text_ark(text)
        assert sorted(kaldi) == sorted(want)
        for u in want:
            assert kaldi[u].shape == want[u].shape == (len(want[u]), 40)
            np.testing.assert_allclose(kaldi[u], got[compress][u], rtol=1e-5, atol=1e-4)  # text: 7 digits
    assert sizes["true"] < 0.3 * sizes["false"]
    worst = 0.0
    for u, w in want.items():
        assert np.array_equal(got["false"][u], w)
        err = np.abs(got["true"][u].astype(np.float64) - w)
        assert (err <= kaldi_compression_bound(w)).all(), u
        worst = max(worst, float(err.max()))
    assert 0 < worst < 0.01 * max(float(np.ptp(w)) for w in want.values())
