"""Common Voice data prep: text normalisation, split rules, a tiny generated release, errors, the Persian sample."""
import collections
import os
import shutil
import stat
import subprocess
import sys

import pytest

from conftest import REPO, need_cv_fa, need_tools, run_cmd, step_env
from utils_py.features import audio
from utils_py.corpora import common_voice
from utils_py.corpora import prep
from utils_py.kaldi import datadir
from utils_py.log import UnspeechError

PREPARE = os.path.join(REPO, "local", "prepare_common_voice.py")
TABLES = ("wav.scp", "utt2spk", "spk2utt", "text", "utt2dur", "utt2spk.gold")
HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment\n"


def tables(d):
    return {n: datadir.read_table(os.path.join(d, n)) for n in TABLES}


def last_line(p):
    return p.stderr.strip().splitlines()[-1]


# ------------------------------------------------------------------ text normalisation

@pytest.mark.parametrize("raw, expected", [
    ("نفس با عقل در كشمكش اند", "نفس با عقل در کشمکش اند"),                    # Arabic kaf -> keheh
    ("علي و موسى", "علی و موسی"),                                               # Arabic yeh, alef maksura
    ("کِتابٌ مُفيدّ", "کتاب مفید"),                                               # harakat, shadda
    ("صفحهٔ رویداد", "صفحه رویداد"),                                            # ezafe hamza on heh
    ("مدرسۀ عالی", "مدرسه عالی"),                                               # ۀ
    ("پاييز", "پاییز"),
    ("جامعهٔ طرفداران، چیزهای «خودمیزبان».", "جامعه طرفداران چیزهای خودمیزبان"),
    ("حاضری؟ بله! (نه) - شاید; نه: \"آری\" 'باشد'", "حاضری بله نه شاید نه آری باشد"),
    ("نرم\u200cافزار و می\u200cتواند", "نرم\u200cافزار و می\u200cتواند"),      # ZWNJ kept inside words
    ("\u200cمی\u200c\u200cرود\u200c .", "می\u200cرود"),                         # edges stripped, runs collapsed
    ("سال ۱۴۰۲ و ٢٠٢٣ و 1999", "سال 1402 و 2023 و 1999"),                        # digits: ASCII
    ("خــــوب", "خوب"),                                                         # tatweel
    ("\ufedf\ufe8e \u200fسلام\u200e", "لا سلام"),                                # presentation forms, RLM/LRM
    ("Hello,   WORLD!", "hello world"),
    ("  ؟!.،  ", ""),
])
def test_normalise_text(raw, expected):
    assert common_voice.normalise_text(raw) == expected


def test_normalise_text_is_idempotent_on_the_sample_alphabet():
    s = "آن قضیه را به کمیسیون ویژه\u200cای ارجاع کردند ئ أ ء"
    assert common_voice.normalise_text(s) == s
    assert common_voice.normalise_text(common_voice.normalise_text(s)) == s


# ------------------------------------------------------------------ speaker ids

def test_speaker_ids_short_stable_and_checked():
    a, b = "53e9ae98" + "1" * 120, "54db74ed" + "2" * 120
    assert common_voice.speaker_ids([b, a, a]) == {a: "cv53e9ae98", b: "cv54db74ed"}
    assert common_voice.speaker_ids([a], chars=12)[a] == "cv53e9ae981111"
    assert common_voice.speaker_ids(["Not-Hex"])["Not-Hex"].startswith("cv") and \
        len(common_voice.speaker_ids(["Not-Hex"])["Not-Hex"]) == 10
    c = "53e9ae98" + "3" * 120
    with pytest.raises(UnspeechError, match="same speaker id cv53e9ae98.*--speaker-id-chars"):
        common_voice.speaker_ids([a, c])
    assert len(set(common_voice.speaker_ids([a, c], chars=9).values())) == 2


# ------------------------------------------------------------------ split rules (no audio)

def utts_of(spec):
    """spec: {spk: [sentence, ...]} -> Utterances <spk>-<nnnn>."""
    return [prep.Utterance(f"{spk}-{i:04d}", spk, f"/x/{spk}{i}.mp3", text, 1.0)
            for spk, texts in spec.items() for i, text in enumerate(texts)]


def check_split(utts, parts):
    train, test, dropped = parts["train"], parts["test"], parts["dropped"]
    assert len(train) + len(test) + len(dropped) == len(utts)
    assert not {u.utt for u in train} & {u.utt for u in test}
    assert not {u.text for u in train} & {u.text for u in test}          # no test sentence in train
    assert {u.spk for u in test} <= {u.spk for u in train}               # test speakers are train speakers


def test_split_counts_per_speaker():
    spec = {"cva": [f"a{i}" for i in range(200)], "cvb": [f"b{i}" for i in range(40)],
            "cvc": [f"c{i}" for i in range(10)], "cvd": [f"d{i}" for i in range(5)],
            "cve": [f"e{i}" for i in range(4)], "cvf": ["f0"]}
    utts = utts_of(spec)
    parts = common_voice.split_utterances(utts, 0.15, 20, 5, seed=1)
    check_split(utts, parts)
    n_test = collections.Counter(u.spk for u in parts["test"])
    assert n_test == {"cva": 20, "cvb": 6, "cvc": 2, "cvd": 1}          # cap, 15 %, round, at least 1
    assert {u.spk for u in parts["train"]} == set(spec)                 # < 5 clips: train only
    assert not parts["dropped"] and not parts["train_only"]
    assert [u.utt for u in parts["train"]] == datadir.c_sorted(u.utt for u in parts["train"])
    # seeded: the same seed gives the same split, another one another split
    again = common_voice.split_utterances(utts, 0.15, 20, 5, seed=1)
    assert again == parts
    other = common_voice.split_utterances(utts, 0.15, 20, 5, seed=2)
    assert {u.utt for u in other["test"]} != {u.utt for u in parts["test"]}
    assert common_voice.n_test_clips(5, 0.9, 20, 5) == 4                 # always >= 1 train clip left
    assert common_voice.n_test_clips(30, 0.15, 3, 5) == 3
    assert common_voice.n_test_clips(4, 0.15, 20, 5) == 0


def test_split_prefers_unshared_sentences_and_drops_train_copies():
    # cva's sentences s0..s3 are also read by others, s4 by nobody else: s4 goes to test
    utts = utts_of({"cva": ["s0", "s1", "s2", "s3", "s4"], "cvb": ["s0", "s1", "s2", "s3"]})
    parts = common_voice.split_utterances(utts, 0.15, 20, 5, seed=1)
    check_split(utts, parts)
    assert [u.text for u in parts["test"]] == ["s4"] and not parts["dropped"]
    # every sentence shared: the train copies of the test sentence are dropped, not moved
    utts = utts_of({"cva": ["s0", "s1", "s2", "s3", "s4"], "cvb": ["s0", "s1", "s2", "s3"], "cvc": ["s4"]})
    parts = common_voice.split_utterances(utts, 0.15, 20, 5, seed=1)
    check_split(utts, parts)
    assert len(parts["test"]) == 1 and len(parts["dropped"]) == 1
    assert parts["dropped"][0].text == parts["test"][0].text and parts["dropped"][0].spk != "cva"


def test_split_speaker_left_without_train_clips_is_train_only():
    utts = utts_of({"cva": ["same"] * 5, "cvb": [f"b{i}" for i in range(10)]})
    parts = common_voice.split_utterances(utts, 0.15, 20, 5, seed=1)
    check_split(utts, parts)
    assert parts["train_only"] == ["cva"]
    assert sum(u.spk == "cva" for u in parts["train"]) == 5
    assert {u.spk for u in parts["test"]} == {"cvb"}


# ------------------------------------------------------------------ a tiny generated release

SPEAKERS = {   # client id -> sentences (one clip each)
    "aaaa0001" + "0" * 56: [f"جمله شماره {i} است." for i in range(10)],
    "bbbb0002" + "0" * 56: ["علي كتاب خواند", "صفحهٔ اول", "جمله شماره 0 است", "یک", "دو", "سه"],
    "cccc0003" + "0" * 56: ["چهار", "پنج", "شش", "هفت", "هشت"],
    "dddd0004" + "0" * 56: ["نه", "ده"],
    "eeee0005" + "0" * 56: ["؟!"],          # nothing left after normalisation: dropped
}


def make_release(root, mp3=True):
    """A Common Voice-like release: 24 clips of 5 speakers (+ 1 invalidated, 1 duplicate row)."""
    clips = root / "clips"
    clips.mkdir(parents=True)
    rows, n = [], 0
    for s, (cid, sentences) in enumerate(SPEAKERS.items()):
        for sentence in sentences:
            n += 1
            name = f"common_voice_xx_{n:04d}.mp3"
            rows.append(f"{cid}\t{name}\t{sentence}\t2\t0\t\t\t\t\txx\t\n")
    validated, other = rows[:8], rows[8:]
    other.append(validated[0])                                      # listed twice, the same: used once
    bad = "ffff0006" + "0" * 56
    invalid = [f"{bad}\tcommon_voice_xx_9999.mp3\tنامعتبر\t0\t2\t\t\t\t\txx\t\n",
               rows[9].replace("\t2\t0\t", "\t0\t2\t")]               # also in other.tsv: left out
    (root / "validated.tsv").write_text(HEADER + "".join(validated), encoding="utf-8")
    (root / "other.tsv").write_text(HEADER + "".join(other), encoding="utf-8")
    (root / "invalidated.tsv").write_text(HEADER + "".join(invalid), encoding="utf-8")
    names = [r.split("\t")[1] for r in rows] + ["common_voice_xx_9999.mp3"]
    for i, name in enumerate(names):
        subprocess.run(["sox", "-n", "-r", "32000", "-c", "1", str(clips / name), "synth", "0.3",
                        "sine", str(200 + 10 * i)], check=True)
    return root


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    need_tools("sox")
    p = subprocess.run(["sox", "-h"], capture_output=True, text=True)
    if " mp3" not in p.stdout:
        pytest.skip("sox cannot write mp3 here (apt-get install libsox-fmt-all)")
    return make_release(tmp_path_factory.mktemp("cv") / "xx")


@pytest.fixture(scope="module")
def prepared(release, tmp_path_factory):
    data = tmp_path_factory.mktemp("cvdata") / "data"
    p = run_cmd([PREPARE, "--seed", "3", "--test-fraction", "0.2", str(release), str(data)])
    assert p.returncode == 0, p.stderr
    return data, p.stderr


def test_tiny_release_data_dirs(release, prepared):
    data, log = prepared
    train, test = (tables(str(data / part)) for part in ("train", "test"))
    for part in ("train", "test"):
        datadir.validate(str(data / part), need=TABLES[:1] + TABLES[3:])
        assert os.path.isfile(data / part / ".done")
    for t in (train, test):
        assert t["utt2spk.gold"] == t["utt2spk"]
        for utt, spk in t["utt2spk"].items():
            assert utt.startswith(spk + "-common_voice_xx_") and len(spk) == 10 and spk.startswith("cv")
            assert t["wav.scp"][utt].startswith("sox ") and t["wav.scp"][utt].endswith(" -r 16000 -b 16 -c 1 - |")
            assert abs(float(t["utt2dur"][utt]) - 0.3) < 0.1
    # 24 listed clips: 1 invalidated (also in other.tsv), 1 empty text; 22 in train/test/dropped
    assert "23 clips used (1 rows also in invalidated.tsv left out, 1 duplicate rows), 5 speakers" in log
    assert "dropped 1 clips with no text left" in log
    spks = {s[:6] for s in train["spk2utt"]}
    assert spks == {"cvaaaa", "cvbbbb", "cvcccc", "cvdddd"}
    assert {s[:6] for s in test["spk2utt"]} == {"cvaaaa", "cvbbbb", "cvcccc"}       # >= 5 clips
    n_test = collections.Counter(s[:6] for s in test["utt2spk"].values())
    assert n_test == {"cvaaaa": 2, "cvbbbb": 1, "cvcccc": 1}
    assert not set(train["text"].values()) & set(test["text"].values())
    dropped = int(log.split(" train clips whose sentence is read in test")[0].rsplit(" ", 1)[1])
    assert len(train["utt2spk"]) + len(test["utt2spk"]) + dropped == 22
    assert "کتاب" in " ".join([*train["text"].values(), *test["text"].values()])      # ك -> ک
    assert "نامعتبر" not in " ".join(train["text"].values())


def test_tiny_release_pipe_decodes_to_16k_the_same_bytes(prepared):
    data, _ = prepared
    wav = datadir.read_table(str(data / "test" / "wav.scp"))
    utt, cmd = next(iter(wav.items()))
    samples, rate = audio.read_audio(cmd, utt=utt)
    assert rate == 16000 and 0.25 < len(samples) / rate < 0.35
    run = lambda: subprocess.run(["bash", "-o", "pipefail", "-c", cmd[:-1]], capture_output=True)  # noqa: E731
    a, b = run(), run()
    assert a.returncode == 0 and a.stdout == b.stdout and not a.stderr       # -R: no random dither; -V1: quiet


def test_tiny_release_rerun_and_other_settings(release, prepared):
    data, _ = prepared
    stamp = os.path.getmtime(data / "train" / "wav.scp")
    p = run_cmd([PREPARE, "--seed", "3", "--test-fraction", "0.2", str(release), str(data)])
    assert p.returncode == 0 and "nothing to do" in p.stderr
    assert os.path.getmtime(data / "train" / "wav.scp") == stamp
    p = run_cmd([PREPARE, "--seed", "4", "--test-fraction", "0.2", str(release), str(data)])
    assert p.returncode == 1 and last_line(p).startswith("ERROR (prepare_common_voice): ")
    assert "other settings" in p.stderr


def test_help_lists_the_options():
    p = run_cmd([PREPARE, "--help"])
    assert p.returncode == 0
    for opt in ("--test-fraction", "--max-test-per-speaker", "--min-clips-for-test", "--seed", "--sample-rate",
                "--speaker-id-chars", "local/prepare_common_voice.py"):
        assert opt in p.stdout


# ------------------------------------------------------------------ bad input: one ERROR line, nothing complete

def copy_release(release, dst):
    shutil.copytree(release, dst)
    return dst


def fails(root, data, *needles, env=None):
    p = subprocess.run([sys.executable, PREPARE, str(root), str(data)], env=env or step_env(),
                       capture_output=True, text=True)
    assert p.returncode == 1, p.stderr
    line = last_line(p)
    assert line.startswith("ERROR (prepare_common_voice): ") and len(p.stderr.strip().splitlines()) == 1, p.stderr
    for needle in needles:
        assert needle in line, line
    assert not os.path.exists(data / "train" / ".done") and not os.path.exists(data / "test" / ".done")
    assert not os.path.exists(data / "train" / "wav.scp")
    return line


def test_missing_tsv(release, tmp_path):
    root = copy_release(release, tmp_path / "xx")
    os.remove(root / "other.tsv")
    fails(root, tmp_path / "data", "metadata not found", str(root / "other.tsv"))
    fails(tmp_path / "nothing", tmp_path / "data", str(tmp_path / "nothing" / "validated.tsv"))


def test_missing_clip(release, tmp_path):
    root = copy_release(release, tmp_path / "xx")
    os.remove(root / "clips" / "common_voice_xx_0012.mp3")
    fails(root, tmp_path / "data", "other.tsv line", "not found", str(root / "clips" / "common_voice_xx_0012.mp3"))


def test_unreadable_clip(release, tmp_path):
    root = copy_release(release, tmp_path / "xx")
    (root / "clips" / "common_voice_xx_0015.mp3").write_bytes(b"not an mp3 at all" * 10)
    fails(root, tmp_path / "data", "cannot read audio clip", str(root / "clips" / "common_voice_xx_0015.mp3"))


def test_clip_listed_with_two_sentences(release, tmp_path):
    root = copy_release(release, tmp_path / "xx")
    with open(root / "other.tsv", "a", encoding="utf-8") as f:
        f.write(f"{'aaaa0001' + '0' * 56}\tcommon_voice_xx_0001.mp3\tجمله دیگر\t0\t0\t\t\t\t\txx\t\n")
    fails(root, tmp_path / "data", "listed twice", "validated.tsv line 2", "other.tsv line")


def test_tsv_without_needed_columns(release, tmp_path):
    root = copy_release(release, tmp_path / "xx")
    (root / "validated.tsv").write_text("client_id\tfile\tsentence\n", encoding="utf-8")
    fails(root, tmp_path / "data", "lacks column(s) path", str(root / "validated.tsv"))


def test_colliding_speaker_ids(release, tmp_path):
    root = copy_release(release, tmp_path / "xx")
    with open(root / "other.tsv", "a", encoding="utf-8") as f:
        f.write(f"{'aaaa0001' + '9' * 56}\tcommon_voice_xx_9999.mp3\tجمله\t0\t0\t\t\t\t\txx\t\n")
    (root / "invalidated.tsv").write_text(HEADER, encoding="utf-8")
    fails(root, tmp_path / "data", "same speaker id cvaaaa0001", "--speaker-id-chars")


def fake_sox(tmp_path, help_formats):
    """A PATH holding python and a `sox` whose -h lists only help_formats (and that decodes nothing)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sox = bin_dir / "sox"
    sox.write_text(f"#!/bin/sh\necho 'AUDIO FILE FORMATS: {help_formats}'\nexit 1\n")
    sox.chmod(sox.stat().st_mode | stat.S_IEXEC)
    env = step_env()
    env["PATH"] = f"{bin_dir}:{os.path.dirname(sys.executable)}:/usr/bin:/bin"
    return env


def test_sox_without_mp3_says_how_to_install(release, tmp_path):
    line = fails(release, tmp_path / "data", "cannot read mp3", "apt-get install sox libsox-fmt-all",
                 env=fake_sox(tmp_path, "wav flac"))
    assert "libsox-fmt-mp3" in line


def test_no_sox_says_how_to_install(release, tmp_path):
    env = step_env()
    env["PATH"] = os.path.dirname(sys.executable)   # the venv only: no sox
    fails(release, tmp_path / "data", "sox not found", "apt-get install sox libsox-fmt-all", env=env)


def test_bad_options(release, tmp_path):
    for opt, value, needle in (("--test-fraction", "1.5", "--test-fraction"),
                               ("--min-clips-for-test", "1", "--min-clips-for-test"),
                               ("--max-test-per-speaker", "0", "--max-test-per-speaker")):
        p = run_cmd([PREPARE, opt, value, str(release), str(tmp_path / "data")])
        assert p.returncode == 1 and needle in last_line(p)


# ------------------------------------------------------------------ the Persian sample (2,188 clips)

def test_prepare_cv_fa_sample(tmp_path):
    root = need_cv_fa()
    need_tools("sox")
    data = tmp_path / "data"
    numbers = common_voice.prepare(root, str(data), seed=1)
    assert numbers["rows"] == {"validated.tsv": 83, "other.tsv": 2102}
    assert numbers["clips"] == 2185 and numbers["invalidated"] == 0 and numbers["duplicates"] == 0
    kept = numbers["train"]["utterances"] + numbers["test"]["utterances"]
    dropped = numbers["dropped_empty_text"] + numbers["dropped_empty_audio"] + numbers["dropped_sentence_in_test"]
    assert kept + dropped == 2185
    assert numbers["train"]["speakers"] == 42 and numbers["test"]["speakers"] == 34
    assert 1.7 < numbers["train"]["hours"] + numbers["test"]["hours"] < 2.1
    train, test = (tables(str(data / part)) for part in ("train", "test"))
    for part in ("train", "test"):
        datadir.validate(str(data / part), need=TABLES[:1] + TABLES[3:])
    assert set(test["spk2utt"]) <= set(train["spk2utt"])
    assert max(len(v.split()) for v in test["spk2utt"].values()) == 20
    assert not set(train["text"].values()) & set(test["text"].values())
    assert all("\u0643" not in t and "\u064a" not in t for t in train["text"].values())
    utt, cmd = next(iter(train["wav.scp"].items()))
    samples, rate = audio.read_audio(cmd, utt=utt)
    assert rate == 16000
    assert abs(len(samples) / rate - float(train["utt2dur"][utt])) < 0.05     # header length: 1 mp3 frame more
    assert numbers["wall_seconds"] < 30
