"""The synthetic demo corpus: many espeak-ng "speakers", each behind its own channel.

A speaker is an espeak-ng voice variant (m3, f2, klatt, ...) with an English
accent (en-us, en-gb-scotland, en-029, ...), a pitch, a speaking rate and a word
gap.  Each speaker also has its own simulated channel made with sox (band limits
or a telephone band, equaliser bands, bass/treble, reverb, overdrive) plus a
background noise (white, pink, brown, mains hum, modulated "cafe" noise) at its
own SNR and a recording level.  So the "context" that unspeech should find is
speaker + channel, like a talk recorded in one room with one microphone.
Every utterance jitters pitch, rate, SNR and level a little around its
speaker's values and reads 1-5 sentences from a tiny grammar over
``local/demo_words.txt``; train and test share the speakers, never a sentence.

Everything is drawn from one seeded generator, sox runs with dither off
(``-D``) and in repeatable mode (``-R``): the same seed gives the same ids,
texts and wav bytes.  Usage::

    from utils_py.corpora import demo
    demo.make_corpus("db/demo", "data", size="small", seed=1, nj=2)
    # -> db/demo/<spk>/<utt>.wav (16 kHz, 16 bit), data/{train,test}/{wav.scp,text,...}
"""
import concurrent.futures
import dataclasses
import io
import math
import os
import re
import shutil
import subprocess
import time

import numpy as np
import soundfile as sf

from utils_py.corpora import prep
from utils_py.fileio import atomic_write_text, dir_lock, ensure_dir, temp_name
from utils_py.log import UnspeechError, get_logger

SAMPLE_RATE = 16000
MIN_UTT_SECONDS = 3.0
MAX_UTT_SECONDS = 15.0
# Bump when a change of this module changes the audio or the texts it makes.
GENERATOR_VERSION = 1
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_WORDS = os.path.join(_REPO, "local", "demo_words.txt")
INSTALL_HINT = "install with: apt-get install espeak-ng sox"

# English accents of espeak-ng (those missing from an installation are skipped).
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
           "en-029", "en-us-nyc")
# Voice variants that sound like people (whisper, croak, robots, ... left out), in order of preference.
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
            "klatt", "klatt2", "klatt3", "klatt4", "adam", "Alex", "Alicia", "Andy", "Annie", "aunty",
            "belinda", "benjamin", "caleb", "david", "ed", "edward", "grandma", "grandpa", "iven",
            "iven2", "iven3", "john", "Lee", "linda", "max", "Michael", "Mike", "norbert", "paul",
            "quincy", "rob", "robert", "shelby", "steph", "steph2", "travis", "victor", "zac")
NOISE_KINDS = ("white", "pink", "brown", "hum50", "hum60", "cafe")


@dataclasses.dataclass(frozen=True)
class CorpusSize:
    speakers: int
    train_utts: int      # utterances per speaker in train
    test_utts: int       # utterances per speaker in test
    min_seconds: float   # target duration of an utterance, drawn uniformly
    max_seconds: float


SIZES = {
    "tiny": CorpusSize(6, 3, 3, 3.5, 5.0),
    "small": CorpusSize(24, 8, 8, 4.0, 10.0),
    "medium": CorpusSize(48, 12, 8, 4.0, 12.0),
    "large": CorpusSize(100, 24, 10, 4.0, 12.0),
}


@dataclasses.dataclass(frozen=True)
class Speaker:
    id: str
    voice: str            # espeak-ng -v, e.g. en-gb-scotland+m3
    pitch: int            # espeak-ng -p (0-99)
    rate: int             # espeak-ng -s (words per minute)
    word_gap: int         # espeak-ng -g (units of 10 ms)
    effects: tuple        # sox effects of the channel (before resampling to 16 kHz)
    noise: str            # one of NOISE_KINDS
    snr_db: float
    level_db: float       # peak level of the recording (dBFS)

    def describe(self) -> str:
        return (f"{self.id} voice={self.voice} pitch={self.pitch} rate={self.rate} gap={self.word_gap} "
                f"noise={self.noise} snr={self.snr_db:.0f}dB level={self.level_db:.0f}dB "
                f"channel='{' '.join(self.effects)}'")


@dataclasses.dataclass(frozen=True)
class UttPlan:
    utt: str
    speaker: Speaker
    sentences: tuple
    pitch: int
    rate: int
    snr_db: float
    level_db: float
    pad_seconds: tuple    # silence (with the noise) before and after the speech
    seed: tuple           # seeds the noise of this utterance


# ---------------------------------------------------------------- sentences

def load_words(path: str = DEFAULT_WORDS) -> dict:
    """``{category: [word, ...]}`` from a ``<category> <word>`` list (``#`` comments)."""
    if not os.path.isfile(path):
        raise UnspeechError(f"word list not found: {path}")
    words = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2:
                raise UnspeechError(f"bad line {n} (need '<category> <word>'): {path}")
            words.setdefault(parts[0], []).append(parts[1])
    missing = [c for c in SentenceMaker.CATEGORIES if len(words.get(c, ())) < 2]
    if missing:
        raise UnspeechError(f"word list needs at least 2 words of each of {', '.join(missing)}: {path}")
    return words


class SentenceMaker:
    """Random sentences from a tiny English grammar::

        maker = SentenceMaker(load_words(), np.random.default_rng(1))
        maker.sentence()   # 'Did my lazy cousin forget the rusty kettle?'
    """
    CATEGORIES = ("noun", "name", "adj", "verbt", "verbi", "adv", "when", "prep", "place", "period")

    def __init__(self, words: dict, rng: np.random.Generator):
        self.words = words
        self.rng = rng

    def _pick(self, category: str) -> str:
        options = self.words[category]
        return options[self.rng.integers(len(options))]

    def _verb(self, category: str, past: bool) -> str:
        base, _, past_form = self._pick(category).partition("/")
        return (past_form or base + "ed") if past else base

    def _np(self) -> str:
        """A noun phrase: a name, or a determiner + optional adjective + noun."""
        if self.rng.random() < 0.2:
            return self._pick("name")
        words = ([self._pick("adj")] if self.rng.random() < 0.5 else []) + [self._pick("noun")]
        det = ("the", "a", "my", "your", "our", "this", "that", "her", "his")[self.rng.integers(9)]
        if det == "a" and words[0][0] in "aeiou":
            det = "an"
        return " ".join([det] + words)

    def _place(self) -> str:
        return f"{self._pick('prep')} the {self._pick('place')}"

    def sentence(self) -> str:
        r = self.rng.integers(10)
        if r == 0:
            s = f"{self._np()} {self._verb('verbt', True)} {self._np()}."
        elif r == 1:
            s = f"{self._np()} {self._verb('verbi', True)} {self._place()}."
        elif r == 2:
            s = f"{self._pick('when')}, {self._np()} {self._verb('verbt', True)} {self._np()} {self._place()}."
        elif r == 3:
            s = f"{self._np()} will {self._verb('verbt', False)} {self._np()} {self._pick('adv')}."
        elif r == 4:
            s = f"did {self._np()} {self._verb('verbt', False)} {self._np()}?"
        elif r == 5:
            s = f"{self._pick('name')} said that {self._np()} was very {self._pick('adj')}."
        elif r == 6:
            s = (f"{self._np()} {self._verb('verbi', True)} {self._pick('adv')}, "
                 f"and {self._np()} {self._verb('verbt', True)} {self._np()}.")
        elif r == 7:
            s = (f"why does {self._np()} {self._verb('verbt', False)} {self._np()} "
                 f"every {self._pick('period')}?")
        elif r == 8:
            adj = self._pick("adj")
            s = f"there is {'an' if adj[0] in 'aeiou' else 'a'} {adj} {self._pick('noun')} {self._place()}."
        else:
            s = f"please {self._verb('verbt', False)} {self._np()} before the {self._pick('period')}."
        return s[0].upper() + s[1:]


def kaldi_text(sentences) -> str:
    """Transcript as Kaldi wants it: lower case, no punctuation except apostrophes."""
    return " ".join(re.sub(r"[^a-z' ]", " ", " ".join(sentences).lower()).split())


# ---------------------------------------------------------------- tools

def check_tools() -> None:
    missing = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
    if missing:
        raise UnspeechError(f"{' and '.join(missing)} not found on PATH; {INSTALL_HINT}")


def _run(cmd, what: str, stdin: bytes = None) -> bytes:
    try:
        p = subprocess.run(cmd, input=stdin, capture_output=True)
    except FileNotFoundError:
        raise UnspeechError(f"{cmd[0]} not found on PATH; {INSTALL_HINT}") from None
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip().splitlines()
        raise UnspeechError(f"{cmd[0]} failed for {what}: {err[-1] if err else 'exit ' + str(p.returncode)}")
    return p.stdout


def available_voices() -> tuple:
    """(accents, variants) of ACCENTS / VARIANTS that this espeak-ng installation has."""
    def files(arg):
        out = _run(["espeak-ng", f"--voices={arg}"], f"--voices={arg}").decode(errors="replace")
        rows = [line.split() for line in out.splitlines()[1:]]
        return rows
    languages = {row[1] for row in files("en") if len(row) > 1}
    variant_files = {row[4].split("/")[-1] for row in files("variant") if len(row) > 4}
    accents = tuple(a for a in ACCENTS if a in languages)
    variants = tuple(v for v in VARIANTS if v in variant_files)
    if not accents or not variants:
        raise UnspeechError(f"espeak-ng has no English voice or no voice variants "
                            f"(espeak-ng --voices=en / --voices=variant); {INSTALL_HINT}")
    return accents, variants


# ---------------------------------------------------------------- the plan

def _uniform(rng, lo, hi, ndigits=1):
    return round(float(rng.uniform(lo, hi)), ndigits)


def make_channel(rng: np.random.Generator) -> tuple:
    """sox effects of one simulated recording chain, in signal order.

    room (reverb) -> microphone (equaliser bands, bass/treble) -> preamp
    (overdrive) -> line (wide band, mid band, muffled, or telephone: 8 kHz, 300-3400 Hz).
    """
    room, mic, preamp, line = [], [], [], []
    if rng.random() < 0.5:  # reverberance, HF damping, room scale, stereo depth, pre-delay
        room = ["reverb", str(int(rng.integers(10, 80))), str(int(rng.integers(20, 80))),
                str(int(rng.integers(20, 100))), "100", str(int(rng.integers(0, 30)))]
    for _ in range(int(rng.integers(1, 4))):
        freq = int(round(math.exp(rng.uniform(math.log(150), math.log(5000)))))
        gain = _uniform(rng, 3, 10) * (1 if rng.random() < 0.5 else -1)
        mic += ["equalizer", str(freq), f"{_uniform(rng, 0.5, 2.0)}q", str(gain)]
    if rng.random() < 0.5:
        mic += ["bass", str(_uniform(rng, -8, 8))]
    if rng.random() < 0.5:
        mic += ["treble", str(_uniform(rng, -8, 8))]
    if rng.random() < 0.2:
        preamp = ["overdrive", str(_uniform(rng, 2, 8)), "20"]
    band = ("wide", "wide", "wide", "telephone", "midband", "muffled")[rng.integers(6)]
    if band == "wide":
        line = ["highpass", str(int(rng.integers(50, 160))), "lowpass", str(int(rng.integers(5500, 7900)))]
    elif band == "telephone":  # narrow band line: 8 kHz, 300-3400 Hz
        line = ["sinc", f"{int(rng.integers(250, 400))}-{int(rng.integers(3200, 3500))}", "rate", "8k"]
    elif band == "midband":
        line = ["sinc", f"{int(rng.integers(120, 250))}-{int(rng.integers(4000, 6000))}"]
    else:  # a muffled microphone, e.g. behind clothing
        line = ["highpass", str(int(rng.integers(60, 120))), "lowpass", str(int(rng.integers(2200, 3600)))]
    return tuple(room + mic + preamp + line)


def make_speakers(rng: np.random.Generator, n: int, accents, variants) -> list:
    """``n`` speakers, distinct (variant, accent) pairs; each variant used once before any twice."""
    if n > len(accents) * len(variants):
        raise UnspeechError(f"only {len(accents) * len(variants)} distinct voices available, {n} speakers asked for")
    width = max(3, len(str(n)))
    used = set()
    pairs = []
    while len(pairs) < n:
        for v in rng.permutation(len(variants)):
            free = [a for a in range(len(accents)) if (v, a) not in used]
            if not free or len(pairs) == n:
                continue
            a = free[rng.integers(len(free))]
            used.add((v, a))
            pairs.append((v, a))
    speakers = []
    for i, (v, a) in enumerate(pairs):
        speakers.append(Speaker(
            id=f"spk{i + 1:0{width}d}",
            voice=f"{accents[a]}+{variants[v]}",
            pitch=int(rng.integers(20, 81)),
            rate=int(rng.integers(130, 186)),
            word_gap=int(rng.integers(0, 3)),
            effects=make_channel(rng),
            noise=NOISE_KINDS[rng.integers(len(NOISE_KINDS))],
            snr_db=_uniform(rng, 12, 35),
            level_db=_uniform(rng, -12, -2),
        ))
    return speakers


def estimated_seconds(sentences, rate: int) -> float:
    """Rough espeak-ng duration: characters at ``rate`` words/minute (measured: ~6.3 chars a word)."""
    chars = sum(len(s) for s in sentences)
    return chars / 6.3 * 60.0 / rate + 0.35 * len(sentences)


def make_plan(size: str, seed: int, accents, variants, words: dict) -> tuple:
    """(speakers, {"train": [UttPlan], "test": [UttPlan]}) -- a pure function of its arguments."""
    if size not in SIZES:
        raise UnspeechError(f"unknown corpus size {size} (one of {', '.join(SIZES)})")
    cfg = SIZES[size]
    rng = np.random.default_rng(seed)
    speakers = make_speakers(rng, cfg.speakers, accents, variants)
    maker = SentenceMaker(words, rng)
    seen = set()

    def new_sentence():
        for _ in range(1000):
            s = maker.sentence()
            if s not in seen:
                seen.add(s)
                return s
        raise UnspeechError("the word list is too small to make enough distinct sentences")

    plans = {"train": [], "test": []}
    for si, spk in enumerate(speakers):
        k = 0
        for part, count in (("train", cfg.train_utts), ("test", cfg.test_utts)):
            for _ in range(count):
                k += 1
                rate = int(np.clip(spk.rate + rng.integers(-8, 9), 80, 450))
                target = float(rng.uniform(cfg.min_seconds, cfg.max_seconds))
                pad = (_uniform(rng, 0.1, 0.5, 2), _uniform(rng, 0.1, 0.5, 2))
                sentences = [new_sentence()]
                while estimated_seconds(sentences, rate) + sum(pad) < target:
                    more = sentences + [new_sentence()]
                    # stop at the number of sentences closest to the target
                    if estimated_seconds(more, rate) + sum(pad) - target > target - estimated_seconds(
                            sentences, rate) - sum(pad):
                        break
                    sentences = more
                plans[part].append(UttPlan(
                    utt=f"{spk.id}-{k:04d}", speaker=spk, sentences=tuple(sentences),
                    pitch=int(np.clip(spk.pitch + rng.integers(-4, 5), 0, 99)), rate=rate,
                    snr_db=round(spk.snr_db + float(rng.uniform(-3, 3)), 1),
                    level_db=round(min(-1.0, spk.level_db + float(rng.uniform(-2, 2))), 1),
                    pad_seconds=pad, seed=(seed, si, k)))
    return speakers, plans


# ---------------------------------------------------------------- audio

def make_noise(kind: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise of ``kind`` (see NOISE_KINDS), ``n`` samples."""
    white = rng.standard_normal(n)
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    if kind == "white":
        noise = white
    elif kind in ("pink", "brown", "cafe"):
        spec = np.fft.rfft(white) / np.maximum(freqs, 20.0) ** (0.5 if kind != "brown" else 1.0)
        noise = np.fft.irfft(spec, n)
        if kind == "cafe":  # slowly fluctuating pink noise
            t = np.arange(n) / sr
            noise *= 1.0 + 0.6 * np.sin(2 * np.pi * rng.uniform(0.2, 0.7) * t + rng.uniform(0, 2 * np.pi))
    elif kind in ("hum50", "hum60"):
        f0 = 50.0 if kind == "hum50" else 60.0
        t = np.arange(n) / sr
        noise = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) / h for h in range(1, 8))
        noise = noise / np.sqrt(np.mean(noise ** 2)) + 0.3 * white
    else:
        raise ValueError(f"unknown noise kind {kind}")
    return noise / max(float(np.sqrt(np.mean(noise ** 2))), 1e-12)


def espeak(plan: UttPlan, sentences) -> tuple:
    """Synthesize ``sentences`` with the plan's voice: (float samples, sample rate)."""
    spk = plan.speaker
    cmd = ["espeak-ng", "-v", spk.voice, "-p", str(plan.pitch), "-s", str(plan.rate), "-g", str(spk.word_gap),
           "--stdout", " ".join(sentences)]
    wav = _run(cmd, f"utterance {plan.utt}")
    try:
        audio, sr = sf.read(io.BytesIO(wav), dtype="float64")
    except RuntimeError as e:
        raise UnspeechError(f"espeak-ng gave no readable audio for utterance {plan.utt} ({e})") from None
    if audio.ndim != 1 or len(audio) == 0:
        raise UnspeechError(f"espeak-ng gave empty audio for utterance {plan.utt} (voice {spk.voice})")
    return audio, sr


def synthesize(plan: UttPlan, wav_path: str) -> tuple:
    """Make ``wav_path`` for ``plan`` unless it exists; return (text, num_samples).

    Sentences are dropped from the end while the utterance would be longer than
    MAX_UTT_SECONDS; a short one gets more trailing noise up to MIN_UTT_SECONDS.
    The file appears under its name only when complete (sox writes a temp file).
    """
    sentences = list(plan.sentences)
    while True:
        speech, sr = espeak(plan, sentences)
        total = len(speech) / sr + sum(plan.pad_seconds)
        if total <= MAX_UTT_SECONDS - 0.05 or len(sentences) == 1:
            break
        sentences.pop()
    text = kaldi_text(sentences)
    if os.path.isfile(wav_path):
        return text, sf.info(wav_path).frames
    rng = np.random.default_rng(list(plan.seed))
    head = int(plan.pad_seconds[0] * sr)
    tail = max(int(plan.pad_seconds[1] * sr), int(MIN_UTT_SECONDS * sr) + sr // 10 - head - len(speech))
    audio = np.concatenate([np.zeros(head), speech, np.zeros(tail)])
    voiced = speech[np.abs(speech) > 0.01 * np.max(np.abs(speech))]
    speech_rms = float(np.sqrt(np.mean(voiced ** 2)))
    audio += make_noise(plan.speaker.noise, len(audio), sr, rng) * speech_rms * 10 ** (-plan.snr_db / 20)
    buf = io.BytesIO()
    sf.write(buf, audio.astype(np.float32), sr, format="WAV", subtype="FLOAT")
    tmp = temp_name(wav_path)
    # gain -h: headroom for EQ/reverb, so nothing clips before the final peak normalisation
    cmd = (["sox", "-R", "-D", "-V1", "-t", "wav", "-", "-t", "wav", "-b", "16", "-e", "signed-integer",
            "-c", "1", tmp, "gain", "-h"] + list(plan.speaker.effects)
           + ["rate", str(SAMPLE_RATE), "gain", "-n", str(plan.level_db)])
    try:
        _run(cmd, f"utterance {plan.utt}", stdin=buf.getvalue())
        os.replace(tmp, wav_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return text, sf.info(wav_path).frames


# ---------------------------------------------------------------- the corpus

def settings_line(size: str, seed: int) -> str:
    """What ``.done`` of the data dirs and ``.settings`` of the wav dir hold."""
    return f"make_demo_corpus size={size} seed={seed} generator={GENERATOR_VERSION}"


def make_corpus(wav_dir: str, data_root: str, size: str = "small", seed: int = 1, nj: int = 2,
                words_path: str = DEFAULT_WORDS, logger=None) -> dict:
    """Make the wavs and the data dirs ``<data_root>/{train,test}``; returns some numbers.

    Idempotent: complete data dirs (``.done``) are left alone; existing wavs are
    reused, so an interrupted run continues where it stopped with identical output.
    """
    log = logger or get_logger("make_demo_corpus")
    settings = settings_line(size, seed)
    if prep.all_done([os.path.join(data_root, "train"), os.path.join(data_root, "test")], settings):
        log.info(f"{data_root}/train and {data_root}/test are complete ({settings}); nothing to do")
        return {"skipped": True}
    check_tools()
    if nj < 1:
        raise UnspeechError(f"--nj must be >= 1, got {nj}")
    start = time.time()
    accents, variants = available_voices()
    speakers, plans = make_plan(size, seed, accents, variants, load_words(words_path))
    wav_dir = os.path.abspath(wav_dir)
    ensure_dir(wav_dir)
    with dir_lock(wav_dir, "make_demo_corpus"):
        prep.claim_wav_dir(wav_dir, settings)
        atomic_write_text(os.path.join(wav_dir, "speakers.txt"), "".join(s.describe() + "\n" for s in speakers))
        for spk in speakers:
            ensure_dir(os.path.join(wav_dir, spk.id))
        jobs = [(part, p, os.path.join(wav_dir, p.speaker.id, p.utt + ".wav"))
                for part in ("train", "test") for p in plans[part]]
        log.info(f"synthesizing {len(jobs)} utterances of {len(speakers)} speakers ({size}, seed {seed}) "
                 f"with {nj} jobs into {wav_dir}")
        results = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=nj) as pool:
            futures = {pool.submit(synthesize, p, path): (part, p, path) for part, p, path in jobs}
            try:
                for n, fut in enumerate(concurrent.futures.as_completed(futures), 1):
                    part, p, path = futures[fut]
                    results[p.utt] = (part, p, path, *fut.result())
                    if n % 100 == 0:
                        log.info(f"  {n}/{len(jobs)} utterances")
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # the first error stops the rest
                raise
        seconds = {}  # still under the lock: a second run must not rewrite the data dirs meanwhile
        for part in ("train", "test"):
            utts = [prep.Utterance(p.utt, p.speaker.id, path, text, n / SAMPLE_RATE)
                    for part_, p, path, text, n in results.values() if part_ == part]
            d = os.path.join(data_root, part)
            prep.write_wav_data_dir(d, utts, settings)
            seconds[part] = sum(u.seconds for u in utts)
            log.info(f"{d}: {len(utts)} utterances, {len(speakers)} speakers, {seconds[part] / 60:.1f} min")
    took = time.time() - start
    log.info(f"demo corpus done in {took:.0f} s")
    return {"skipped": False, "speakers": len(speakers), "seconds": seconds, "wall_seconds": took}
