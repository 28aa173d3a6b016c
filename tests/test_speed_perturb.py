"""Speed perturbation (run.sh stage 1): Kaldi id/pipe conventions, idempotence, and fbank on the result."""
import os
import subprocess

import pytest
import soundfile as sf

from conftest import REPO, need_tools, run_cmd
from utils_py.kaldi import datadir
from utils_py.log import UnspeechError
from utils_py.kaldi.speed_perturb import parse_factors, perturb_data_dir, speed_pipe

PERTURB = os.path.join(REPO, "steps_unspeech", "perturb_data_dir_speed.sh")
MAKE_FBANK = os.path.join(REPO, "steps_unspeech", "make_fbank.sh")
FBANK_CONF = os.path.join(REPO, "egs", "tedlium", "s5_unspeech", "conf", "fbank.conf")
SENTENCES = {("alice", 0): "the cat sat on the mat", ("alice", 1): "seven green apples",
             ("bob", 0): "a quick brown fox", ("bob", 1): "speed perturbation works"}


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """Four 16 kHz espeak-ng utterances of two voices: {(spk, i): wav path}."""
    need_tools("sox", "espeak-ng")
    root = tmp_path_factory.mktemp("speech")
    wavs = {}
    for (spk, i), text in SENTENCES.items():
        raw, wav = root / f"{spk}{i}.raw.wav", root / f"{spk}-u{i}.wav"
        voice = "en-us+m3" if spk == "alice" else "en-gb+f2"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True, capture_output=True)
        subprocess.run(["sox", str(raw), "-r", "16000", "-b", "16", str(wav)], check=True, capture_output=True)
        wavs[spk, i] = str(wav)
    return wavs


def plain_dir(root, speech):
    d = os.path.join(root, "train")
    os.makedirs(d)
    utts = {f"{spk}-u{i}": (spk, path) for (spk, i), path in speech.items()}
    datadir.write_table(os.path.join(d, "wav.scp"), {u: p for u, (_, p) in utts.items()})
    datadir.write_table(os.path.join(d, "utt2spk"), {u: s for u, (s, _) in utts.items()})
    datadir.write_table(os.path.join(d, "utt2spk.gold"), {u: "gold_" + s for u, (s, _) in utts.items()})
    datadir.write_table(os.path.join(d, "text"), {f"{s}-u{i}": t for (s, i), t in SENTENCES.items()})
    datadir.write_table(os.path.join(d, "utt2dur"), {u: f"{sf.info(p).duration:.3f}" for u, (_, p) in utts.items()})
    datadir.write_spk2utt(d)
    return d


def perturb(src, dst, factors="0.9 1.0 1.1"):
    return run_cmd(["bash", PERTURB, "--factors", factors, src, dst])


def test_ids_pipes_and_tables(tmp_path, speech):
    src = plain_dir(str(tmp_path), speech)
    dst = str(tmp_path / "train_sp")
    p = perturb(src, dst)
    assert p.returncode == 0, p.stderr
    datadir.validate(dst, need=("wav.scp",))
    utt2spk = datadir.read_table(os.path.join(dst, "utt2spk"))
    assert len(utt2spk) == 12
    assert utt2spk["alice-u0"] == "alice" and utt2spk["sp0.9-alice-u0"] == "sp0.9-alice"
    assert utt2spk["sp1.1-bob-u1"] == "sp1.1-bob"
    wav = datadir.read_table(os.path.join(dst, "wav.scp"))
    assert wav["bob-u0"] == speech["bob", 0]
    assert wav["sp0.9-bob-u0"] == f"sox -t wav {speech['bob', 0]} -t wav - speed 0.9 |"
    uniq = datadir.read_table(os.path.join(dst, "utt2uniq"))
    assert uniq["sp1.1-alice-u1"] == "alice-u1" and uniq["alice-u1"] == "alice-u1"
    gold = datadir.read_table(os.path.join(dst, "utt2spk.gold"))
    assert gold["sp0.9-alice-u0"] == "sp0.9-gold_alice" and gold["alice-u0"] == "gold_alice"
    text = datadir.read_table(os.path.join(dst, "text"))
    assert text["sp1.1-bob-u0"] == text["bob-u0"] == "a quick brown fox"
    dur_src = datadir.read_table(os.path.join(src, "utt2dur"))
    dur = datadir.read_table(os.path.join(dst, "utt2dur"))
    assert dur["alice-u0"] == dur_src["alice-u0"]
    assert float(dur["sp0.9-alice-u0"]) == pytest.approx(float(dur_src["alice-u0"]) / 0.9, abs=1e-3)
    assert not any(os.path.exists(os.path.join(dst, f)) for f in ("feats.scp", "utt2num_frames", "cmvn.scp"))


def test_idempotent_and_fbank_on_pipes(tmp_path, speech):
    src = plain_dir(str(tmp_path), speech)
    dst = str(tmp_path / "train_sp")
    assert perturb(src, dst).returncode == 0
    p = run_cmd(["bash", MAKE_FBANK, "--nj", "2", "--fbank-config", FBANK_CONF, dst, str(tmp_path / "log"),
                 str(tmp_path / "fbank")])
    assert p.returncode == 0, p.stderr
    before = {f: open(os.path.join(dst, f), "rb").read() for f in os.listdir(dst)
              if os.path.isfile(os.path.join(dst, f))}
    p = perturb(src, dst)  # rerun: nothing changes, the features stay valid
    assert p.returncode == 0 and "up to date" in p.stderr
    after = {f: open(os.path.join(dst, f), "rb").read() for f in os.listdir(dst)
             if os.path.isfile(os.path.join(dst, f))}
    assert after == before and "feats.scp" in after
    frames = {u: int(n) for u, n in datadir.read_table(os.path.join(dst, "utt2num_frames")).items()}
    for utt in datadir.read_table(os.path.join(src, "utt2spk")):
        for factor in (0.9, 1.1):
            samples = round(sf.info(speech[utt.split("-")[0], int(utt[-1])]).frames / factor)
            expected = 1 + (samples - 400) // 160
            assert abs(frames[f"sp{factor}-{utt}"] - expected) <= 1, (utt, factor)
        assert frames[f"sp0.9-{utt}"] > frames[utt] > frames[f"sp1.1-{utt}"]
    # a changed source rewrites the result and drops its now stale feature tables
    datadir.write_table(os.path.join(src, "text"), {**datadir.read_table(os.path.join(src, "text")),
                                                    "bob-u1": "changed words"})
    p = perturb(src, dst)
    assert p.returncode == 0, p.stderr
    assert datadir.read_table(os.path.join(dst, "text"))["sp0.9-bob-u1"] == "changed words"
    assert not os.path.exists(os.path.join(dst, "feats.scp"))
    datadir.validate(dst, need=("wav.scp",))


def test_segments_and_pipe_sources(tmp_path, speech):
    src = str(tmp_path / "seg")
    os.makedirs(src)
    long_wav = str(tmp_path / "long.wav")
    subprocess.run(["sox", speech["alice", 0], speech["bob", 0], long_wav], check=True)
    total = sf.info(long_wav).duration
    first = sf.info(speech["alice", 0]).duration
    datadir.write_table(os.path.join(src, "wav.scp"), {"recA": long_wav, "recB": f"cat {long_wav} |"})
    segs = {"alice-s1": f"recA 0.00 {first:.2f}", "bob-s1": f"recA {first:.2f} -1", "bob-s2": "recB 0.25 1.5"}
    datadir.write_table(os.path.join(src, "segments"), segs)
    datadir.write_table(os.path.join(src, "utt2spk"), {u: u.split("-")[0] for u in segs})
    datadir.write_table(os.path.join(src, "reco2dur"), {"recA": f"{total:.3f}", "recB": f"{total:.3f}"})
    datadir.write_spk2utt(src)
    dst = str(tmp_path / "seg_sp")
    p = perturb(src, dst, "1.0 1.25")
    assert p.returncode == 0, p.stderr
    seg = datadir.read_table(os.path.join(dst, "segments"))
    assert seg["alice-s1"] == segs["alice-s1"]
    assert seg["sp1.25-bob-s1"] == f"sp1.25-recA {round(first, 2) / 1.25:.3f} -1"
    assert seg["sp1.25-bob-s2"] == "sp1.25-recB 0.200 1.200"
    wav = datadir.read_table(os.path.join(dst, "wav.scp"))
    assert set(wav) == {"recA", "recB", "sp1.25-recA", "sp1.25-recB"}
    assert wav["sp1.25-recB"] == f"cat {long_wav} | sox -t wav - -t wav - speed 1.25 |"
    assert float(datadir.read_table(os.path.join(dst, "reco2dur"))["sp1.25-recA"]) == \
        pytest.approx(total / 1.25, abs=1e-3)
    p = run_cmd(["bash", MAKE_FBANK, "--nj", "2", "--fbank-config", FBANK_CONF, dst])
    assert p.returncode == 0, p.stderr
    frames = {u: int(n) for u, n in datadir.read_table(os.path.join(dst, "utt2num_frames")).items()}
    for utt in segs:
        assert abs(frames[f"sp1.25-{utt}"] - frames[utt] / 1.25) <= 2, utt


def test_bad_arguments(tmp_path, speech):
    src = plain_dir(str(tmp_path), speech)
    for factors, message in (("0.9 abc", "bad speed factor 'abc'"), ("0.9 0.90", "given twice"),
                             ("-1", "must be > 0"), ("", "no speed factors")):
        with pytest.raises(UnspeechError, match=message):
            parse_factors(factors)
    p = perturb(src, src)
    assert p.returncode != 0 and p.stderr.strip().startswith("ERROR (perturb_data_dir_speed): refusing to write over input")
    sp = str(tmp_path / "sp")
    assert perturb(src, sp, "0.9 1.0").returncode == 0
    p = perturb(sp, str(tmp_path / "sp2"), "0.9 1.0")  # sp0.9-alice-u0 would come from two sources
    assert p.returncode != 0 and "id sp0.9-alice-u0 would appear twice" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert speed_pipe("a b.wav", "0.9") == "sox -t wav 'a b.wav' -t wav - speed 0.9 |"
    assert speed_pipe("gunzip -c x.gz |", "1.1") == "gunzip -c x.gz | sox -t wav - -t wav - speed 1.1 |"
    bad = str(tmp_path / "ark")
    os.makedirs(bad)
    datadir.write_table(os.path.join(bad, "wav.scp"), {"bob-u0": "x.ark:123"})
    datadir.write_table(os.path.join(bad, "utt2spk"), {"bob-u0": "bob"})
    datadir.write_spk2utt(bad)
    with pytest.raises(UnspeechError, match="cannot speed-perturb an ark offset.*bob-u0"):
        perturb_data_dir(bad, str(tmp_path / "ark_sp"), "0.9")


def test_temp_dir_of_a_killed_run_is_removed(tmp_path, speech):
    """A SIGKILLed run leaves dst/.perturb.tmp.<pid>; the next run removes it (fileio's one cleaner)."""
    src = plain_dir(str(tmp_path), speech)
    dst = tmp_path / "train_sp"
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = dst / f".perturb.tmp.{dead.pid}"
    os.makedirs(stale)
    (stale / "utt2spk").write_text("half-written\n")
    assert perturb(src, str(dst)).returncode == 0
    assert not stale.exists()
    assert not [n for n in os.listdir(dst) if ".tmp." in n]
