"""Mozilla Common Voice releases as Kaldi data dirs for speech recognition and speaker clustering.

A release (one language, e.g. ``cv-corpus-17.0-2024-03-15/fa``) holds ``clips/*.mp3``
and tab-separated metadata with the columns ``client_id`` (the speaker, an anonymous
hash), ``path`` (the clip) and ``sentence`` (the transcript), among others.  The clips
of ``validated.tsv`` and ``other.tsv`` (not yet voted on) are used; those of
``invalidated.tsv`` are not, even when another tsv lists them too (counted in the log).
A clip listed twice with the same speaker and sentence is used once (counted); listed
twice with another speaker or sentence it is an error.

- **Speakers**: ``cv`` + the first ``speaker_id_chars`` (8) hex digits of the
  ``client_id`` (of its SHA-1 when the id is not hex), e.g. ``cv53e9ae98``; two client
  ids with the same short id are an error (use more characters).  Utterances are
  ``<spk>-<clip stem>``, e.g. ``cv53e9ae98-common_voice_fa_36611609``; all tables are
  LC_ALL=C sorted and ``utt2spk.gold`` (= ``utt2spk``) is the true speaker for scoring
  a clustering.
- **Audio**: ``wav.scp`` pipes ``sox -R -V1 --ignore-length <abs mp3> -t wav -r 16000
  -b 16 -c 1 - |``.  ``-R``: sox dithers when it resamples and seeds the dither
  randomly, so without it every read of a clip gives other bytes (other features);
  ``--ignore-length``: sox's mp3 length counts one frame more (the encoder's info frame)
  than it decodes, and the wav header would claim it, so Kaldi's wave reader would warn
  "Truncated file?" on every utterance; with it the header says "length unknown", read
  to the end (``-V1`` keeps sox's note about that out of the logs).  ``utt2dur`` holds
  the length sox reads from the mp3 headers (``sox --i -D``, fast), one mp3 frame
  (36 ms at 32 kHz) longer than the decoded audio.  Kaldi's ``wav-to-duration`` needs
  ``--read-entire-file true`` on these pipes.  sox must read mp3 (``libsox-fmt-mp3``,
  in ``libsox-fmt-all``); this is checked by decoding the first clip before anything is
  written.
- **Text**: :func:`normalise_text` (see there): NFKC, Arabic yeh/kaf/alef maksura ->
  Persian forms, harakat and tatweel removed, the ezafe hamza on heh removed, all
  punctuation and symbols removed, digits of every script as ASCII 0-9 (numbers are not
  spelled out), lower case, ZWNJ kept inside words, one space between words.  A clip
  whose text is empty after it is dropped (counted in the log).
- **Split** (:func:`split_utterances`): NOT speaker-disjoint, since the recipe trains ASR
  on train and scores the clustering of test by speaker; every test speaker also has
  train utterances.  Each speaker with >= ``min_clips_for_test`` clips gives
  ``max(1, round(test_fraction * n))`` of them (at most ``max_test_per_speaker`` and
  ``n - 1``) to test, seeded, preferring clips whose sentence nobody else read; speakers
  with fewer clips are train only.  No sentence is in both sets: train clips whose
  (normalised) sentence is read in test are DROPPED (counted in the log), not moved, so
  the test set keeps its per-speaker sizes; a speaker left without train clips by that is
  train only instead.

Usage::

    from utils_py.corpora import common_voice
    common_voice.prepare("/data/cv-corpus-17.0/fa", "data", test_fraction=0.15,
                         max_test_per_speaker=20, min_clips_for_test=5, seed=1)
    common_voice.normalise_text("كتابِ من، خوب است!")   # -> 'کتاب من خوب است'
"""
import collections
import concurrent.futures
import csv
import hashlib
import math
import os
import re
import shlex
import shutil
import struct
import subprocess
import time
import unicodedata
import zlib

import numpy as np

from utils_py.corpora import prep
from utils_py.kaldi import datadir
from utils_py.fileio import dir_lock, ensure_dir
from utils_py.log import UnspeechError, get_logger

USED_TSVS = ("validated.tsv", "other.tsv")
INVALIDATED_TSV = "invalidated.tsv"
COLUMNS = ("client_id", "path", "sentence")
TEXT_NORM_VERSION = 1            # in the .done settings: another normalisation redoes the dirs
SOX_INSTALL = "apt-get install sox libsox-fmt-all"
CV_URL = "https://commonvoice.mozilla.org/datasets"

# ------------------------------------------------------------------ text

ZWNJ = "\u200c"
_CHAR_MAP = str.maketrans({
    "\u064a": "\u06cc",   # ARABIC LETTER YEH -> FARSI YEH
    "\u0649": "\u06cc",   # ARABIC LETTER ALEF MAKSURA -> FARSI YEH
    "\u0643": "\u06a9",   # ARABIC LETTER KAF -> KEHEH
    "\u06c0": "\u0647",   # HEH WITH YEH ABOVE (written ezafe) -> HEH
    "\u06d5": "\u0647",   # AE -> HEH
    "\u0640": "",         # TATWEEL (kashida): stretching only
})
# Harakat and other Arabic marks: fathatan..sukun, maddah, hamza above/below (after NFKC
# composed what it can: آ أ ؤ ئ), the other small marks, superscript alef, Quranic marks.
_DIACRITICS = re.compile("[\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e8\u06ea-\u06ed]")
_APOSTROPHES = "'\u2019\u02bc"


def normalise_text(sentence: str) -> str:
    """A Common Voice sentence as words for a word-level LM (Persian/Arabic-script aware).

    NFKC (presentation forms, ligatures, full-width and compatibility characters become
    plain letters); Arabic yeh/alef maksura -> ی, kaf -> ک, ae -> ه; yeh + hamza above
    -> ئ; the ezafe marker (hamza above heh, ۀ) -> ه, as it is mostly left unwritten;
    harakat, tatweel and other Arabic marks removed; every other punctuation and symbol
    character (، ؛ ؟ « » . , ! ? " ' ( ) - ...) and control character becomes a space,
    invisible format characters (RLM, ZWJ, ...) are removed; digits of any script become
    ASCII 0-9 (not spelled out); lower case; ZWNJ (U+200C) kept inside words, removed at
    their edges, runs of it collapsed; words separated by one space.  May return "".
    """
    text = unicodedata.normalize("NFKC", sentence).translate(_CHAR_MAP)
    text = text.replace("\u06cc\u0654", "\u0626").replace("\u0647\u0654", "\u0647")
    text = _DIACRITICS.sub("", text)
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch == ZWNJ:
            out.append(ch)
        elif cat == "Nd":
            out.append(str(unicodedata.decimal(ch)))
        elif cat[0] in "LMN":
            out.append(ch)
        elif cat == "Cf":          # invisible: RLM/LRM, ZWJ, soft hyphen, BOM, bidi controls
            continue
        else:                      # punctuation, symbols, spaces, control characters
            out.append(" ")
    words = []
    for word in "".join(out).lower().split():
        word = re.sub(ZWNJ + "+", ZWNJ, word).strip(ZWNJ)
        if word:
            words.append(word)
    return " ".join(words)


# ------------------------------------------------------------------ the release

class Clip:
    """One row of a tsv: ``client_id``, absolute ``path`` of the audio, ``sentence``, ``where`` it was read."""
    __slots__ = ("client_id", "path", "sentence", "where")

    def __init__(self, client_id, path, sentence, where):
        self.client_id, self.path, self.sentence, self.where = client_id, path, sentence, where


def missing_tsv(path: str) -> UnspeechError:
    return UnspeechError(f"Common Voice metadata not found: {path} (a release has validated.tsv, other.tsv, "
                         f"invalidated.tsv and clips/; get one from {CV_URL})")


def read_tsv(path: str):
    """Yield ``(line_number, client_id, clip_name, sentence)`` of a Common Voice tsv."""
    if not os.path.isfile(path):
        raise missing_tsv(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader, None)
            if header is None:
                raise UnspeechError(f"empty tsv (no header line): {path}")
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise UnspeechError(f"tsv header lacks column(s) {', '.join(missing)} "
                                    f"(need {', '.join(COLUMNS)}): {path}")
            idx = [header.index(c) for c in COLUMNS]
            for row in reader:
                n = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) <= max(idx):
                    raise UnspeechError(f"line {n} has {len(row)} fields, the header {len(header)}: {path}")
                client_id, name, sentence = (row[i] for i in idx)
                yield n, client_id.strip(), name.strip(), sentence
    except UnicodeDecodeError as e:
        raise UnspeechError(f"not UTF-8 ({e.reason} at byte {e.start}): {path}") from None


def clip_path(clips_dir: str, name: str, where: str) -> str:
    """Absolute path of clip ``name`` (old releases list clips without ``.mp3``)."""
    if not name or "/" in name or name.startswith("."):
        raise UnspeechError(f"bad clip name {name!r}: {where}")
    path = os.path.join(clips_dir, name)
    if not os.path.isfile(path) and not os.path.splitext(name)[1] and os.path.isfile(path + ".mp3"):
        path += ".mp3"
    if not os.path.isfile(path):
        raise UnspeechError(f"clip listed in {where} not found: {path}")
    if shlex.quote(path) != path:
        raise UnspeechError(f"clip path has characters a wav.scp pipe cannot hold (space, quote, ...): {path}")
    return path


def read_release(cv_root: str):
    """The clips of ``validated.tsv`` + ``other.tsv`` not in ``invalidated.tsv``, and counts.

    Returns ``(clips, counts)``: clips sorted by path; counts ``rows`` (per tsv),
    ``duplicates`` (same clip, speaker and sentence listed again), ``invalidated``
    (listed in invalidated.tsv too).  Raises UnspeechError on a missing tsv or clip,
    or a clip listed twice with another speaker or sentence.
    """
    cv_root = os.path.abspath(cv_root)
    clips_dir = os.path.join(cv_root, "clips")
    for tsv in USED_TSVS:   # both must be there before anything else is looked at
        if not os.path.isfile(os.path.join(cv_root, tsv)):
            raise missing_tsv(os.path.join(cv_root, tsv))
    if not os.path.isdir(clips_dir):
        raise UnspeechError(f"Common Voice clips not found: {clips_dir} (need <cv-root>/clips/*.mp3)")
    invalid = set()
    inv_path = os.path.join(cv_root, INVALIDATED_TSV)
    if os.path.isfile(inv_path):
        invalid = {name for _, _, name, _ in read_tsv(inv_path)}
        invalid |= {os.path.splitext(n)[0] for n in invalid}
    by_path = {}
    counts = {"rows": {}, "duplicates": 0, "invalidated": 0}
    for tsv in USED_TSVS:
        path = os.path.join(cv_root, tsv)
        rows = 0
        for n, client_id, name, sentence in read_tsv(path):
            rows += 1
            where = f"{tsv} line {n}"
            if not client_id:
                raise UnspeechError(f"empty client_id on line {n}: {path}")
            if name in invalid or os.path.splitext(name)[0] in invalid:
                counts["invalidated"] += 1
                continue
            audio = clip_path(clips_dir, name, where)
            old = by_path.get(audio)
            if old is not None:
                if (old.client_id, old.sentence) != (client_id, sentence):
                    raise UnspeechError(f"clip {name} is listed twice with another speaker or sentence: "
                                        f"{old.where} and {where} of {cv_root}")
                counts["duplicates"] += 1
                continue
            by_path[audio] = Clip(client_id, audio, sentence, where)
        counts["rows"][tsv] = rows
    if not by_path:
        raise UnspeechError(f"no usable clips in {', '.join(USED_TSVS)} of {cv_root}")
    return [by_path[p] for p in sorted(by_path)], counts


def speaker_ids(client_ids, chars: int = 8) -> dict:
    """``{client_id: "cv" + first chars hex digits}``; UnspeechError if two collide."""
    if chars < 4:
        raise UnspeechError(f"--speaker-id-chars must be >= 4, got {chars}")
    out, owner = {}, {}
    for cid in sorted(set(client_ids)):
        hexid = cid.lower() if re.fullmatch(r"[0-9a-fA-F]+", cid) and len(cid) >= chars else \
            hashlib.sha1(cid.encode("utf-8")).hexdigest()
        spk = "cv" + hexid[:chars]
        if spk in owner:
            raise UnspeechError(f"client ids {owner[spk]} and {cid} give the same speaker id {spk}; "
                                f"use a larger --speaker-id-chars (now {chars})")
        owner[spk] = cid
        out[cid] = spk
    return out


# ------------------------------------------------------------------ audio

def wav_command(path: str, sample_rate: int) -> str:
    """The ``wav.scp`` pipe that decodes one clip to a mono 16-bit wav at ``sample_rate``."""
    return f"sox -R -V1 --ignore-length {path} -t wav -r {sample_rate} -b 16 -c 1 - |"


def check_sox(first_clip: str, sample_rate: int) -> None:
    """sox is there, reads this kind of clip, and the wav.scp pipe gives a mono 16-bit wav at the rate."""
    if shutil.which("sox") is None:
        raise UnspeechError(f"sox not found on PATH; it decodes the clips in wav.scp: {SOX_INSTALL}")
    ext = os.path.splitext(first_clip)[1].lstrip(".").lower()
    if ext == "mp3":
        help_text = subprocess.run(["sox", "-h"], capture_output=True, text=True).stdout
        formats = next((line.split(":", 1)[1].split() for line in help_text.splitlines()
                        if line.startswith("AUDIO FILE FORMATS:")), [])
        if "mp3" not in formats:
            raise UnspeechError(f"sox cannot read mp3 (libsox-fmt-mp3 is missing); install it: {SOX_INSTALL}")
    cmd = wav_command(first_clip, sample_rate)[:-1]
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True)
    out = p.stdout
    if p.returncode != 0 or len(out) < 44 or out[:4] != b"RIFF":
        why = (p.stderr.decode("utf-8", "replace").strip().splitlines() or ["no wav on stdout"])[-1]
        hint = f"; if sox lacks mp3 support: {SOX_INSTALL}" if ext == "mp3" else ""
        raise UnspeechError(f"sox cannot decode the first clip ({why}){hint}: {first_clip}")
    channels, rate = struct.unpack("<HI", out[22:28])
    bits = struct.unpack("<H", out[34:36])[0]
    if (channels, rate, bits) != (1, sample_rate, 16):
        raise UnspeechError(f"the wav.scp pipe gives {channels} channel(s), {rate} Hz, {bits} bit, not 1, "
                            f"{sample_rate}, 16: {cmd}")


def _durations_of(paths):
    p = subprocess.run(["sox", "--i", "-D", *paths], capture_output=True, text=True)
    values = p.stdout.split()
    if p.returncode == 0 and len(values) == len(paths):
        try:
            return [float(v) for v in values]
        except ValueError:
            pass
    out = []   # one of them failed: find which, one at a time
    for path in paths:
        q = subprocess.run(["sox", "--i", "-D", path], capture_output=True, text=True)
        try:
            if q.returncode != 0:
                raise ValueError
            out.append(float(q.stdout.strip()))
        except ValueError:
            why = (q.stderr.strip().splitlines() or ["no duration"])[-1]
            raise UnspeechError(f"cannot read audio clip ({why}): {path}") from None
    return out


def clip_durations(paths, nj: int = 2, batch: int = 250) -> list:
    """Seconds of each clip from its headers (``sox --i -D``, ``batch`` files per call, ``nj`` at once)."""
    paths = list(paths)
    chunks = [paths[i:i + batch] for i in range(0, len(paths), batch)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, nj)) as pool:
        return [d for part in pool.map(_durations_of, chunks) for d in part]


# ------------------------------------------------------------------ split

def n_test_clips(n: int, test_fraction: float, max_test: int, min_clips: int) -> int:
    """How many of a speaker's ``n`` clips go to test."""
    if n < min_clips:
        return 0
    return max(0, min(max(1, int(math.floor(test_fraction * n + 0.5))), max_test, n - 1))


def split_utterances(utts, test_fraction: float = 0.15, max_test_per_speaker: int = 20,
                     min_clips_for_test: int = 5, seed: int = 1) -> dict:
    """Split :class:`prep.Utterance` s into ``train`` and ``test`` (see the module doc).

    Returns ``{"train": [...], "test": [...], "dropped": [...] (train clips whose sentence
    is read in test), "train_only": [speakers left without train clips, made train only]}``.
    """
    by_spk = collections.defaultdict(list)
    for u in utts:
        by_spk[u.spk].append(u)
    readers = collections.Counter(u.text for u in utts)
    test = set()
    for spk in datadir.c_sorted(by_spk):
        mine = sorted(by_spk[spk], key=lambda u: datadir.c_key(u.utt))
        k = n_test_clips(len(mine), test_fraction, max_test_per_speaker, min_clips_for_test)
        if not k:
            continue
        order = np.random.default_rng([seed, zlib.crc32(spk.encode("utf-8"))]).permutation(len(mine))
        ranked = sorted((mine[i] for i in order), key=lambda u: readers[u.text] > 1)   # stable: unique first
        test.update(u.utt for u in ranked[:k])
    train_only = []
    while True:
        test_texts = {u.text for u in utts if u.utt in test}
        train = [u for u in utts if u.utt not in test and u.text not in test_texts]
        left = {u.spk for u in train}
        lost = datadir.c_sorted({u.spk for u in utts if u.utt in test} - left)
        if not lost:
            break
        train_only += lost
        test -= {u.utt for u in utts if u.spk in lost}
    key = lambda u: datadir.c_key(u.utt)  # noqa: E731
    return {"train": sorted(train, key=key),
            "test": sorted((u for u in utts if u.utt in test), key=key),
            "dropped": sorted((u for u in utts if u.utt not in test and u.text in test_texts), key=key),
            "train_only": datadir.c_sorted(train_only)}


# ------------------------------------------------------------------ prepare

def settings_line(cv_root, sample_rate, test_fraction, max_test, min_clips, seed, spk_chars) -> str:
    return (f"prepare_common_voice root={os.path.abspath(cv_root)} sample-rate={sample_rate} "
            f"test-fraction={test_fraction} max-test-per-speaker={max_test} min-clips-for-test={min_clips} "
            f"seed={seed} speaker-id-chars={spk_chars} text-norm={TEXT_NORM_VERSION}")


def prepare(cv_root: str, data_root: str, test_fraction: float = 0.15, max_test_per_speaker: int = 20,
            min_clips_for_test: int = 5, seed: int = 1, sample_rate: int = 16000, speaker_id_chars: int = 8,
            nj: int = 2, logger=None) -> dict:
    """Write ``<data_root>/{train,test}``; idempotent (``.done``).  Returns the numbers it logs.

    Everything is read and checked (tsvs, every clip's presence and header, sox on the
    first clip) before the first file is written; each data dir gets ``.done`` last.
    """
    log = logger or get_logger("prepare_common_voice")
    if not 0.0 < test_fraction < 1.0:
        raise UnspeechError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    if max_test_per_speaker < 1:
        raise UnspeechError(f"--max-test-per-speaker must be >= 1, got {max_test_per_speaker}")
    if min_clips_for_test < 2:
        raise UnspeechError(f"--min-clips-for-test must be >= 2 (a test speaker needs train clips too), "
                            f"got {min_clips_for_test}")
    if nj < 1:
        raise UnspeechError(f"--nj must be >= 1, got {nj}")
    if sample_rate < 1000:
        raise UnspeechError(f"--sample-rate must be >= 1000, got {sample_rate}")
    settings = settings_line(cv_root, sample_rate, test_fraction, max_test_per_speaker, min_clips_for_test,
                             seed, speaker_id_chars)
    dirs = {part: os.path.join(data_root, part) for part in ("train", "test")}
    if prep.all_done(dirs.values(), settings):
        log.info(f"{dirs['train']} and {dirs['test']} are complete ({settings}); nothing to do")
        return {"skipped": True}
    start = time.time()
    clips, counts = read_release(cv_root)
    spk_of = speaker_ids((c.client_id for c in clips), speaker_id_chars)
    check_sox(clips[0].path, sample_rate)
    seconds = clip_durations([c.path for c in clips], nj=nj)
    utts, empty_text, empty_audio, seen = [], 0, 0, {}
    for clip, secs in zip(clips, seconds):
        text = normalise_text(clip.sentence)
        if not text:
            empty_text += 1
            continue
        if secs <= 0:
            empty_audio += 1
            continue
        spk = spk_of[clip.client_id]
        utt = f"{spk}-{os.path.splitext(os.path.basename(clip.path))[0]}"
        if utt in seen:
            raise UnspeechError(f"two clips give utterance id {utt}: {seen[utt]} and {clip.path}")
        seen[utt] = clip.path
        utts.append(prep.Utterance(utt, spk, wav_command(clip.path, sample_rate), text, secs))
    if not utts:
        raise UnspeechError(f"no clip of {cv_root} has a transcript left after text normalisation")
    parts = split_utterances(utts, test_fraction, max_test_per_speaker, min_clips_for_test, seed)
    if not parts["test"]:
        raise UnspeechError(f"no speaker has >= {min_clips_for_test} clips (--min-clips-for-test): no test set "
                            f"from {cv_root}")
    numbers = {"skipped": False, "clips": len(clips), "rows": counts["rows"], "duplicates": counts["duplicates"],
               "invalidated": counts["invalidated"], "dropped_empty_text": empty_text,
               "dropped_empty_audio": empty_audio, "dropped_sentence_in_test": len(parts["dropped"]),
               "train_only_speakers": parts["train_only"]}
    ensure_dir(data_root)
    with dir_lock(data_root, "prepare_common_voice"):
        for part in ("train", "test"):
            prep.write_wav_data_dir(dirs[part], parts[part], settings)
            hours = sum(u.seconds for u in parts[part]) / 3600
            spks = {u.spk for u in parts[part]}
            numbers[part] = {"utterances": len(parts[part]), "speakers": len(spks), "hours": hours}
    took = time.time() - start
    numbers["wall_seconds"] = took
    rows = ", ".join(f"{n} in {t}" for t, n in counts["rows"].items())
    log.info(f"{cv_root}: {rows}; {len(clips)} clips used ({counts['invalidated']} rows also in "
             f"{INVALIDATED_TSV} left out, {counts['duplicates']} duplicate rows), {len(spk_of)} speakers")
    log.info(f"dropped {empty_text} clips with no text left after normalisation, {empty_audio} of zero length, "
             f"{len(parts['dropped'])} train clips whose sentence is read in test")
    if parts["train_only"]:
        log.info(f"speakers left without train clips by that, kept train only: {' '.join(parts['train_only'])}")
    for part in ("train", "test"):
        n = numbers[part]
        log.info(f"{dirs[part]}: {n['utterances']} utterances, {n['speakers']} speakers, {n['hours']:.2f} h")
    log.info(f"Common Voice data prep done in {took:.1f} s")
    return numbers
