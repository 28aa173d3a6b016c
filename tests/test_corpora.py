"""Corpus preparation: the synthetic demo corpus, FSDD and TED-LIUM (a fake release made here)."""
import filecmp
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, need_fsdd, need_tools, run_cmd, step_env
from utils_py.kaldi import datadir
from utils_py.corpora import demo
from utils_py.corpora import fsdd
from utils_py.corpora import tedlium

MAKE_DEMO = os.path.join(REPO, "local", "make_demo_corpus.py")
PREPARE_FSDD = os.path.join(REPO, "local", "prepare_fsdd.py")
PREPARE_TEDLIUM = os.path.join(REPO, "local", "prepare_tedlium.sh")


def tables(d, names=("wav.scp", "utt2spk", "spk2utt", "text", "utt2dur", "utt2spk.gold")):
    return {n: datadir.read_table(os.path.join(d, n)) for n in names}


# ------------------------------------------------------------------ demo corpus: plan (no tools needed)

ACCENTS = ("en-us", "en-gb", "en-gb-scotland")
VARIANTS = ("m1", "m2", "f1", "f2", "klatt", "m3", "f3", "m4", "f4", "m5")


def test_sentences_are_varied_and_use_the_word_list():
    words = demo.load_words()
    vocab = {w.lower() for ws in words.values() for entry in ws for w in entry.split("/")}
    maker = demo.SentenceMaker(words, np.random.default_rng(3))
    sentences = [maker.sentence() for _ in range(300)]
    assert len(set(sentences)) > 290
    assert all(s[0].isupper() and s[-1] in ".?" for s in sentences)
    function_words = {"the", "a", "an", "my", "your", "our", "this", "that", "her", "his", "will", "did", "said",
                      "was", "very", "and", "why", "does", "every", "there", "is", "please", "before"}
    text_words = set(demo.kaldi_text(sentences).split())
    assert text_words <= vocab | function_words, text_words - vocab - function_words
    assert len(text_words & vocab) > 200     # the grammar reaches most of the list


def test_kaldi_text_normalisation():
    assert demo.kaldi_text(["Yesterday, Anna found a key.", "Did it work?"]) == \
        "yesterday anna found a key did it work"


def test_load_words_rejects_bad_lists(tmp_path):
    bad = tmp_path / "words.txt"
    bad.write_text("noun cat dog\n")
    with pytest.raises(demo.UnspeechError, match="bad line 1"):
        demo.load_words(str(bad))
    bad.write_text("noun cat\nnoun dog\n")
    with pytest.raises(demo.UnspeechError, match="at least 2 words"):
        demo.load_words(str(bad))


@pytest.mark.parametrize("size", sorted(demo.SIZES))
def test_plan_speakers_utterances_and_split(size):
    accents, variants = ACCENTS, VARIANTS
    if size in ("medium", "large"):  # more speakers than 3 x 10 voices (the plan runs no espeak-ng)
        variants = tuple(f"v{i}" for i in range(40))
    cfg = demo.SIZES[size]
    speakers, plans = demo.make_plan(size, 1, accents, variants, demo.load_words())
    assert len(speakers) == cfg.speakers
    assert len({s.voice for s in speakers}) == len(speakers)               # distinct voices
    assert len({s.effects for s in speakers}) == len(speakers)             # each its own channel
    assert len({s.voice.split("+")[1] for s in speakers}) == min(len(variants), len(speakers))
    for part, count in (("train", cfg.train_utts), ("test", cfg.test_utts)):
        per_spk = {}
        for p in plans[part]:
            assert p.utt.startswith(p.speaker.id + "-")
            per_spk[p.speaker.id] = per_spk.get(p.speaker.id, 0) + 1
        assert per_spk == {s.id: count for s in speakers}
    train = {s for p in plans["train"] for s in p.sentences}
    test = {s for p in plans["test"] for s in p.sentences}
    assert not train & test
    assert len({p.utt for part in plans.values() for p in part}) == sum(len(v) for v in plans.values())
    # determinism and seed dependence
    again = demo.make_plan(size, 1, accents, variants, demo.load_words())
    assert again == (speakers, plans)
    other = demo.make_plan(size, 2, accents, variants, demo.load_words())
    assert other[1]["train"][0].sentences != plans["train"][0].sentences


def test_small_plan_amount_of_audio():
    """`small` must train in minutes: 15-25 min of train audio (estimated), >= 6 test utts a speaker."""
    speakers, plans = demo.make_plan("small", 1, ACCENTS, VARIANTS, demo.load_words())
    assert len(speakers) >= 24
    est = sum(demo.estimated_seconds(p.sentences, p.rate) + sum(p.pad_seconds) for p in plans["train"])
    assert 15 * 60 <= est <= 25 * 60, est / 60
    assert demo.SIZES["small"].test_utts >= 6


def test_noise_kinds_are_unit_rms_and_seeded():
    for kind in demo.NOISE_KINDS:
        a = demo.make_noise(kind, 22050, 22050, np.random.default_rng([1, 2]))
        b = demo.make_noise(kind, 22050, 22050, np.random.default_rng([1, 2]))
        assert np.array_equal(a, b)
        assert abs(np.sqrt(np.mean(a ** 2)) - 1) < 1e-6
    spec = np.abs(np.fft.rfft(demo.make_noise("brown", 22050, 22050, np.random.default_rng(0))))
    assert spec[50:500].mean() > 10 * spec[5000:10000].mean()   # low frequencies dominate


# ------------------------------------------------------------------ demo corpus: end to end

@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    need_tools("espeak-ng", "sox")
    root = tmp_path_factory.mktemp("demo")
    p = run_cmd([MAKE_DEMO, "--size", "tiny", "--nj", "2", str(root / "wav"), str(root / "data")])
    assert p.returncode == 0, p.stderr
    return root


def test_tiny_corpus_data_dirs(tiny_corpus):
    cfg = demo.SIZES["tiny"]
    train, test = (tables(str(tiny_corpus / "data" / part)) for part in ("train", "test"))
    for part, t, count in (("train", train, cfg.train_utts), ("test", test, cfg.test_utts)):
        datadir.validate(str(tiny_corpus / "data" / part), need=("wav.scp",))
        assert len(t["spk2utt"]) == cfg.speakers
        assert all(len(v.split()) == count for v in t["spk2utt"].values())
        assert t["utt2spk.gold"] == t["utt2spk"]
        for utt, wav in t["wav.scp"].items():
            assert os.path.isabs(wav) and wav.endswith(f"/{t['utt2spk'][utt]}/{utt}.wav")
            info = sf.info(wav)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            seconds = info.frames / 16000
            assert demo.MIN_UTT_SECONDS <= seconds <= demo.MAX_UTT_SECONDS
            assert abs(float(t["utt2dur"][utt]) - seconds) < 1e-3
            assert len(t["text"][utt].split()) >= 3
    assert set(train["spk2utt"]) == set(test["spk2utt"])            # same speakers
    assert not set(train["text"].values()) & set(test["text"].values())
    assert not set(train["utt2spk"]) & set(test["utt2spk"])
    with open(tiny_corpus / "wav" / "speakers.txt") as f:
        assert len(f.read().splitlines()) == cfg.speakers


def test_tiny_corpus_speakers_differ_in_audio(tiny_corpus):
    """Utterances of one speaker are closer in long-term spectrum than those of different speakers."""
    t = tables(str(tiny_corpus / "data" / "train"), ("wav.scp", "utt2spk"))
    spectra = {}
    for utt, wav in t["wav.scp"].items():
        x, _ = sf.read(wav)
        frames = np.lib.stride_tricks.sliding_window_view(x, 512)[::256]
        spectra[utt] = np.log(np.mean(np.abs(np.fft.rfft(frames * np.hanning(512))) ** 2, axis=0) + 1e-10)
    utts = list(spectra)
    same, diff = [], []
    for i, a in enumerate(utts):
        for b in utts[i + 1:]:
            d = np.mean((spectra[a] - spectra[b]) ** 2)
            (same if t["utt2spk"][a] == t["utt2spk"][b] else diff).append(d)
    assert np.mean(same) < 0.5 * np.mean(diff)


def test_tiny_corpus_is_deterministic_and_resumable(tiny_corpus, tmp_path):
    # a second corpus with another job count: identical ids, texts and wav bytes
    p = run_cmd([MAKE_DEMO, "--size", "tiny", "--nj", "1", str(tmp_path / "wav"), str(tmp_path / "data")])
    assert p.returncode == 0, p.stderr
    for part in ("train", "test"):
        a, b = tables(str(tiny_corpus / "data" / part)), tables(str(tmp_path / "data" / part))
        for name in a:
            if name != "wav.scp":
                assert a[name] == b[name], name
        for utt in a["wav.scp"]:
            assert filecmp.cmp(a["wav.scp"][utt], b["wav.scp"][utt], shallow=False), utt
    # complete: a rerun does nothing
    stamp = os.path.getmtime(tmp_path / "data" / "train" / "wav.scp")
    p = run_cmd([MAKE_DEMO, "--size", "tiny", str(tmp_path / "wav"), str(tmp_path / "data")])
    assert p.returncode == 0 and "nothing to do" in p.stderr
    assert os.path.getmtime(tmp_path / "data" / "train" / "wav.scp") == stamp
    # interrupted: a lost wav and an unfinished data dir are redone, the same bytes again
    wav = b["wav.scp"][next(iter(b["wav.scp"]))]
    os.remove(wav)
    os.remove(tmp_path / "data" / "test" / ".done")
    p = run_cmd([MAKE_DEMO, "--size", "tiny", str(tmp_path / "wav"), str(tmp_path / "data")])
    assert p.returncode == 0, p.stderr
    original = tables(str(tiny_corpus / "data" / "test"))["wav.scp"]
    assert filecmp.cmp(wav, original[os.path.basename(wav)[:-4]], shallow=False)
    # other settings on the same dirs: refused, nothing changed
    p = run_cmd([MAKE_DEMO, "--size", "tiny", "--seed", "2", str(tmp_path / "wav"), str(tmp_path / "data")])
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1].startswith("ERROR (make_demo_corpus): ")
    assert "other settings" in p.stderr


def test_demo_corpus_other_seed_differs(tiny_corpus, tmp_path):
    need_tools("espeak-ng", "sox")
    speakers, plans = demo.make_plan("tiny", 2, *demo.available_voices(), demo.load_words())
    plan = plans["train"][0]
    text, n = demo.synthesize(plan, str(tmp_path / "x.wav"))
    first = tables(str(tiny_corpus / "data" / "train"))
    assert text != first["text"][plan.utt]
    assert n > 3 * 16000


def test_demo_corpus_without_tools_says_how_to_install(tmp_path):
    env = step_env()
    env["PATH"] = os.path.dirname(sys.executable)  # the venv only: no sox, no espeak-ng
    p = subprocess.run([sys.executable, MAKE_DEMO, "--size", "tiny",
                        str(tmp_path / "w"), str(tmp_path / "d")], env=env, capture_output=True, text=True)
    assert p.returncode == 1
    assert "apt-get install espeak-ng sox" in p.stderr


# ------------------------------------------------------------------ FSDD

def test_group_recordings_meets_count_and_duration():
    recs = [(d, i, f"{d}_{i}.wav", 3200, 8000) for i in range(3) for d in range(10)]   # 0.4 s each
    groups = fsdd.group_recordings(recs, 10, 4.0, 0.0)       # 10 x 0.4 s = 4.0 s: exactly enough
    assert [len(g) for g in groups] == [10, 10, 10]
    groups = fsdd.group_recordings(recs, 5, 4.0, 0.1)         # duration needs 10 digits + gaps
    assert all(sum(r[3] for r in g) / 8000 + 0.1 * (len(g) - 1) >= 4.0 for g in groups)
    assert sum(len(g) for g in groups) == len(recs)           # a short remainder joins the last one
    assert [r for g in groups for r in g] == recs
    assert [len(g) for g in fsdd.group_recordings(recs[:25], 10, 2.0, 0.0)] == [10, 10, 5]   # long enough
    assert [len(g) for g in fsdd.group_recordings(recs[:25], 10, 4.0, 0.0)] == [10, 15]      # too short


def make_fake_fsdd(root, speakers=("alice", "bob"), indexes=range(6), rate=8000):
    rec = root / "recordings"
    rec.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for s, spk in enumerate(speakers):
        for d in range(10):
            for i in indexes:
                t = np.arange(int(rate * rng.uniform(0.3, 0.5))) / rate
                sf.write(rec / f"{d}_{spk}_{i}.wav", 0.3 * np.sin(2 * np.pi * (200 + 50 * s + 20 * d) * t), rate,
                         subtype="PCM_16")
    (rec / "README.txt").write_text("not a recording\n")
    return root


def check_fsdd_output(fsdd_root, data, digits_per_utt, min_seconds):
    by_spk = fsdd.find_recordings(str(fsdd_root))
    train, test = (tables(os.path.join(data, p)) for p in ("train", "test"))
    for t in (train, test):
        assert set(t["spk2utt"]) == set(by_spk)
        short = []   # utterances of fewer digits: at most the last of each speaker
        for utt, text in t["text"].items():
            assert utt.startswith(t["utt2spk"][utt] + "-")
            words = text.split()
            assert set(words) <= set(fsdd.DIGIT_WORDS)
            if len(words) < digits_per_utt:
                short.append(t["utt2spk"][utt])
            assert float(t["utt2dur"][utt]) >= min_seconds
            assert sf.info(t["wav.scp"][utt]).samplerate == 8000
        assert len(short) == len(set(short))
    digits = sum(len(v.split()) for t in (train, test) for v in t["text"].values())
    assert digits == sum(len(r) for r in by_spk.values())        # every recording used once
    return train, test


def test_prepare_fsdd_on_a_fake_corpus(tmp_path):
    root = make_fake_fsdd(tmp_path / "fsdd")
    data = str(tmp_path / "data")
    p = run_cmd([PREPARE_FSDD, "--digits-per-utt", "4", "--min-seconds", "2", "--test-fraction", "0.3",
                 str(root), data])
    assert p.returncode == 0, p.stderr
    for part in ("train", "test"):
        datadir.validate(os.path.join(data, part), need=("wav.scp",))
    train, test = check_fsdd_output(root, data, 4, 2.0)
    assert os.path.dirname(next(iter(train["wav.scp"].values()))) == str(tmp_path / "db" / "fsdd")
    # recordings of train and test are disjoint and each utterance is its recordings + gaps
    parts = fsdd.plan(fsdd.find_recordings(str(root)), 4, 0.3, 2.0, 0.1, 1)
    used = [[r[2] for r in g] for part in parts.values() for _, _, g in part]
    assert len({r for g in used for r in g}) == sum(len(g) for g in used) == 120
    utt, spk, group = parts["test"][0]
    audio, sr = sf.read(test["wav.scp"][utt], dtype="int16")
    first, _ = sf.read(group[0][2], dtype="int16")
    second, _ = sf.read(group[1][2], dtype="int16")
    gap = int(0.1 * sr)
    assert np.array_equal(audio[:len(first)], first)
    assert np.abs(audio[len(first):len(first) + gap]).max() < 30          # a quiet gap, not digital zeros
    assert np.abs(audio[len(first):len(first) + gap]).max() > 0
    assert np.array_equal(audio[len(first) + gap:len(first) + gap + len(second)], second)
    assert test["text"][utt].split()[:2] == [fsdd.DIGIT_WORDS[group[0][0]], fsdd.DIGIT_WORDS[group[1][0]]]
    # rerun: nothing to do
    p = run_cmd([PREPARE_FSDD, "--digits-per-utt", "4", "--min-seconds", "2", "--test-fraction", "0.3",
                 str(root), data])
    assert p.returncode == 0 and "nothing to do" in p.stderr


def test_prepare_fsdd_real_corpus(tmp_path):
    root = need_fsdd()
    data = str(tmp_path / "data")
    p = run_cmd([PREPARE_FSDD, "--wav-dir", str(tmp_path / "wavs"), root, data])
    assert p.returncode == 0, p.stderr
    train, test = check_fsdd_output(root, data, 10, 4.0)
    assert len(train["spk2utt"]) == 6
    assert min(len(v.split()) for v in test["spk2utt"].values()) >= 6   # enough to cluster the test set


def test_prepare_fsdd_missing_dir(tmp_path):
    p = run_cmd([PREPARE_FSDD, str(tmp_path / "nothing"), str(tmp_path / "data")])
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1].startswith("ERROR (prepare_fsdd): FSDD recordings not found")
    assert not os.path.exists(tmp_path / "data" / "train")


# ------------------------------------------------------------------ TED-LIUM

def test_tedlium_text_normalisation():
    words = "i 'm here the(2) <sil> {NOISE} we 've seen it (AaronHuey_2010X-17.82-28.81)".split()
    assert tedlium.normalise_words(words) == ["i'm", "here", "the", "[NOISE]", "we've", "seen", "it"]


TALKS = {  # talk -> [(start, end, label, words)] ; the second talk's id extends the first one's
    "AlGore_2009": [(0.0, 1.2, "<o,f0,male>", "ignore_time_segment_in_scoring"),
                    (1.2, 3.05, "<F0_M>", "last year i showed these two slides (2)"),
                    (3.05, 5.5, "<o,f0,male>", "so that it 's {NOISE} clear <sil>"),
                    (5.5, 5.9, "<o,f0,male>", "<sil>")],
    "AlGore_2009X": [(0.5, 2.25, "<o,f0,female>", "the(2) arctic ice cap (AlGore_2009X-0.50-2.25)"),
                     (2.25, 4.0, "<o,f0,female>", "has shrunk")],
}


def make_fake_tedlium(root, layout):
    """A fake release: stm files and sph audio (made with sox) of two talks in each of train/dev/test."""
    base = {"r2": root, "r3": root / "legacy"}[layout]
    rng = np.random.default_rng(0)
    for s in ("train", "dev", "test"):
        (base / s / "stm").mkdir(parents=True)
        (base / s / "sph").mkdir(parents=True)
        for talk, rows in TALKS.items():
            with open(base / s / "stm" / f"{talk}.stm", "w") as f:
                for start, end, label, words in rows:
                    f.write(f"{talk} 1 {talk} {start:.2f} {end:.2f} {label} {words}\n")
            wav = root / f"{s}-{talk}.wav"
            sf.write(wav, 0.1 * rng.standard_normal(16000 * 6), 16000, subtype="PCM_16")
            subprocess.run(["sox", str(wav), str(base / s / "sph" / f"{talk}.sph")], check=True)
    return root


@pytest.mark.parametrize("layout", ["r2", "r3"])
def test_prepare_tedlium_fake_release(tmp_path, layout):
    need_tools("sox")
    root = make_fake_tedlium(tmp_path / "TEDLIUM", layout)
    data = tmp_path / "data"
    if any(os.path.exists(os.path.join(d, "sph2pipe")) for d in step_env()["PATH"].split(os.pathsep)):
        pytest.skip("sph2pipe on PATH: this test checks the sox fallback")
    p = run_cmd([PREPARE_TEDLIUM, str(root), str(data)])
    assert p.returncode == 0, p.stderr
    assert f"release {layout[1]}" in p.stdout
    for s in ("train", "dev", "test"):
        d = str(data / s)
        datadir.validate(d, need=("wav.scp", "segments", "text"))
        t = {n: datadir.read_table(os.path.join(d, n))
             for n in ("text", "segments", "utt2spk", "wav.scp", "reco2file_and_channel", "utt2spk.gold")}
        assert t["text"] == {
            "AlGore_2009-0000120-0000305": "last year i showed these two slides",
            "AlGore_2009-0000305-0000550": "so that it's [NOISE] clear",
            "AlGore_2009X-0000050-0000225": "the arctic ice cap",
            "AlGore_2009X-0000225-0000400": "has shrunk",
        }
        assert t["segments"]["AlGore_2009-0000120-0000305"] == "AlGore_2009 1.20 3.05"
        assert t["utt2spk"] == t["utt2spk.gold"] == {u: u.rsplit("-", 2)[0] for u in t["text"]}
        assert t["reco2file_and_channel"] == {"AlGore_2009": "AlGore_2009 A", "AlGore_2009X": "AlGore_2009X A"}
        with open(os.path.join(d, "stm")) as f:
            stm = f.read()
        assert "AlGore_2009 A AlGore_2009 0.00 1.20 <o,f0,male> ignore_time_segment_in_scoring" in stm
        assert "<o,f0,male> last year" in stm                      # dev label mapped as Kaldi does
        for talk, cmd in t["wav.scp"].items():
            assert cmd.startswith("sox /") and cmd.endswith(f"/{s}/sph/{talk}.sph -t wav - |")
            out = subprocess.run(["bash", "-o", "pipefail", "-c", cmd[:-1]], capture_output=True, check=True).stdout
            audio, sr = sf.read(io.BytesIO(out), dtype="int16")
            original, _ = sf.read(root / f"{s}-{talk}.wav", dtype="int16")
            assert sr == 16000 and np.array_equal(audio, original)
    p = run_cmd([PREPARE_TEDLIUM, str(root), str(data)])
    assert p.returncode == 0 and "nothing to do" in p.stderr


def test_prepare_tedlium_release3_full_training_set(tmp_path):
    """Release 3's data/ (all talks) as train: only with --train-source data."""
    need_tools("sox")
    root = make_fake_tedlium(tmp_path / "T3", "r3")
    os.rename(root / "legacy" / "train", root / "data")
    p = run_cmd([PREPARE_TEDLIUM, str(root), str(tmp_path / "data")])
    assert p.returncode == 1 and "use --train-source data" in p.stderr
    p = run_cmd([PREPARE_TEDLIUM, "--train-source", "data", str(root), str(tmp_path / "data")])
    assert p.returncode == 0, p.stderr
    wav_scp = datadir.read_table(str(tmp_path / "data" / "train" / "wav.scp"))
    assert wav_scp["AlGore_2009"] == f"sox {root}/data/sph/AlGore_2009.sph -t wav - |"


def test_prepare_tedlium_errors(tmp_path):
    p = run_cmd([PREPARE_TEDLIUM, str(tmp_path / "none"), str(tmp_path / "data")])
    assert p.returncode == 1 and "ERROR (prepare_tedlium): TED-LIUM directory not found" in p.stderr
    (tmp_path / "empty").mkdir()
    p = run_cmd([PREPARE_TEDLIUM, str(tmp_path / "empty"), str(tmp_path / "data")])
    assert p.returncode == 1 and "no TED-LIUM layout" in p.stderr
    root = make_fake_tedlium(tmp_path / "T", "r2")
    os.remove(root / "dev" / "sph" / "AlGore_2009X.sph")
    p = run_cmd([PREPARE_TEDLIUM, str(root), str(tmp_path / "data")])
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1] == (
        f"ERROR (prepare_tedlium): audio of talk AlGore_2009X not found: {root}/dev/sph/AlGore_2009X.sph")
    assert not os.path.exists(tmp_path / "data" / "dev" / ".done")
