"""The Free Spoken Digit Dataset (FSDD) as a Kaldi corpus with real speakers.

FSDD has ``recordings/{digit}_{speaker}_{index}.wav``: single digits, 8 kHz,
0.15-2 s each.  Utterances of useful length are made by concatenating the
recordings of ONE speaker, separated by short gaps (``gap_seconds`` of very
quiet seeded noise, about -80 dBFS, rather than digital zeros that would give
log(0) filterbank frames).  An utterance takes ``digits_per_utt`` recordings
and keeps adding recordings until it is at least ``min_seconds`` long (the
last one of a speaker may have fewer recordings if it is long enough).
Each speaker's recordings are shuffled (seeded) and split into disjoint
train and test sets; utterances are ``<speaker>-<nnnn>``, their text the digit
words, e.g. ``seven three zero ...``.  The wavs keep FSDD's 8 kHz (16 bit)::

    from utils_py.corpora import fsdd
    fsdd.prepare("/data/fsdd", "data", wav_dir="db/fsdd", digits_per_utt=10, test_fraction=0.2)
"""
import os
import re

import numpy as np
import soundfile as sf

from utils_py.corpora import prep
from utils_py.fileio import atomic_write, dir_lock, ensure_dir
from utils_py.log import UnspeechError, get_logger

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
RECORDING_RE = re.compile(r"^([0-9])_([A-Za-z0-9]+)_([0-9]+)\.wav$")
GAP_NOISE_RMS = 1e-4   # of full scale: about -80 dBFS, a few LSB of 16-bit audio
FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset"


def find_recordings(fsdd_root: str) -> dict:
    """``{speaker: [(digit, index, path, num_samples, sample_rate)]}`` sorted by digit and index."""
    rec_dir = os.path.join(fsdd_root, "recordings")
    if not os.path.isdir(rec_dir):
        raise UnspeechError(f"FSDD recordings not found: {rec_dir} (need <fsdd-root>/recordings/"
                            f"{{digit}}_{{speaker}}_{{index}}.wav; get FSDD from {FSDD_URL})")
    by_spk = {}
    for name in sorted(os.listdir(rec_dir)):
        m = RECORDING_RE.match(name)
        if not m:
            continue
        path = os.path.join(os.path.abspath(rec_dir), name)
        try:
            info = sf.info(path)
        except RuntimeError as e:
            raise UnspeechError(f"cannot read FSDD recording: {path} ({e})") from None
        if info.channels != 1 or info.frames == 0:
            raise UnspeechError(f"FSDD recording is not mono or is empty: {path}")
        by_spk.setdefault(m.group(2), []).append((int(m.group(1)), int(m.group(3)), path, info.frames,
                                                   info.samplerate))
    if not by_spk:
        raise UnspeechError(f"no {{digit}}_{{speaker}}_{{index}}.wav files in {rec_dir}")
    for spk, recs in by_spk.items():
        recs.sort()
        rates = {r[4] for r in recs}
        if len(rates) != 1:
            raise UnspeechError(f"recordings of speaker {spk} have different sample rates {sorted(rates)}: {rec_dir}")
    return by_spk


def group_recordings(recs, digits_per_utt: int, min_seconds: float, gap_seconds: float) -> list:
    """Consecutive groups of ``recs``: >= ``digits_per_utt`` recordings and >= ``min_seconds`` each.

    A remainder of fewer recordings is an utterance of its own when it lasts
    ``min_seconds``, else it joins the last group.
    """
    def seconds(group):
        return sum(r[3] / r[4] for r in group) + gap_seconds * (len(group) - 1)

    groups, current = [], []
    for rec in recs:
        current.append(rec)
        if len(current) >= digits_per_utt and seconds(current) >= min_seconds - 1e-6:
            groups.append(current)
            current = []
    if current:
        if groups and seconds(current) < min_seconds - 1e-6:
            groups[-1] = groups[-1] + current
        else:
            groups.append(current)
    return groups


def plan(by_spk: dict, digits_per_utt: int, test_fraction: float, min_seconds: float, gap_seconds: float,
         seed: int) -> dict:
    """``{"train"|"test": [(utt, speaker, [recordings])]}``: disjoint recordings, seeded shuffle."""
    parts = {"train": [], "test": []}
    for si, spk in enumerate(sorted(by_spk)):
        recs = list(by_spk[spk])
        order = np.random.default_rng([seed, si]).permutation(len(recs))
        recs = [recs[i] for i in order]
        n_test = int(round(len(recs) * test_fraction))
        if n_test < digits_per_utt or len(recs) - n_test < digits_per_utt:
            raise UnspeechError(f"speaker {spk} has only {len(recs)} recordings: too few for a train/test split "
                                f"with --test-fraction {test_fraction} and --digits-per-utt {digits_per_utt}")
        k = 0
        for part, chunk in (("train", recs[n_test:]), ("test", recs[:n_test])):
            for group in group_recordings(chunk, digits_per_utt, min_seconds, gap_seconds):
                k += 1
                parts[part].append((f"{spk}-{k:04d}", spk, group))
    return parts


def write_utterance(path: str, group, gap_seconds: float, seed) -> int:
    """Concatenate the recordings of ``group`` with gaps into ``path`` (unless it exists); return samples."""
    if os.path.isfile(path):
        return sf.info(path).frames
    rng = np.random.default_rng(list(seed))
    sr = group[0][4]
    pieces = []
    for i, rec in enumerate(group):
        if i:
            pieces.append(rng.standard_normal(int(round(gap_seconds * sr))) * GAP_NOISE_RMS)
        audio, _ = sf.read(rec[2], dtype="float64")
        pieces.append(audio)
    audio = np.clip(np.concatenate(pieces), -1.0, 1.0)
    with atomic_write(path, "wb") as f:
        sf.write(f, audio, sr, format="WAV", subtype="PCM_16")
    return len(audio)


def prepare(fsdd_root: str, data_root: str, wav_dir: str = None, digits_per_utt: int = 10,
            test_fraction: float = 0.2, min_seconds: float = 4.0, gap_seconds: float = 0.1, seed: int = 1,
            logger=None) -> dict:
    """Write the wavs under ``wav_dir`` and ``<data_root>/{train,test}``; idempotent (``.done``)."""
    log = logger or get_logger("prepare_fsdd")
    if digits_per_utt < 1:
        raise UnspeechError(f"--digits-per-utt must be >= 1, got {digits_per_utt}")
    if not 0.0 < test_fraction < 1.0:
        raise UnspeechError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    if gap_seconds < 0:
        raise UnspeechError(f"--gap must be >= 0, got {gap_seconds}")
    wav_dir = os.path.abspath(wav_dir or os.path.join(data_root, "..", "db", "fsdd"))
    settings = (f"prepare_fsdd root={os.path.abspath(fsdd_root)} digits-per-utt={digits_per_utt} "
                f"test-fraction={test_fraction} min-seconds={min_seconds} gap={gap_seconds} seed={seed}")
    dirs = [os.path.join(data_root, "train"), os.path.join(data_root, "test")]
    if prep.all_done(dirs, settings):
        log.info(f"{dirs[0]} and {dirs[1]} are complete ({settings}); nothing to do")
        return {"skipped": True}
    by_spk = find_recordings(fsdd_root)
    parts = plan(by_spk, digits_per_utt, test_fraction, min_seconds, gap_seconds, seed)
    ensure_dir(wav_dir)
    numbers = {"skipped": False}
    with dir_lock(wav_dir, "prepare_fsdd"):
        prep.claim_wav_dir(wav_dir, settings)
        speakers = sorted(by_spk)
        for part, d in zip(("train", "test"), dirs):
            utts = []
            for utt, spk, group in parts[part]:
                path = os.path.join(wav_dir, utt + ".wav")
                seed_of_utt = (seed, speakers.index(spk), int(utt.rsplit("-", 1)[1]))
                n = write_utterance(path, group, gap_seconds, seed_of_utt)
                text = " ".join(DIGIT_WORDS[rec[0]] for rec in group)
                utts.append(prep.Utterance(utt, spk, path, text, n / group[0][4]))
            prep.write_wav_data_dir(d, utts, settings)
            hours = sum(u.seconds for u in utts) / 3600
            digits = sum(len(g) for _, _, g in parts[part])
            log.info(f"{d}: {len(utts)} utterances ({digits} digits), {len(speakers)} speakers, {hours:.2f} h")
            numbers[part] = {"utterances": len(utts), "digits": digits, "hours": hours}
    return numbers
