"""TED-LIUM stm transcripts -> Kaldi data dirs (``segments``, ``text``, ``utt2spk``, ``wav.scp``, ...).

An stm line is ``<talk> <channel> <speaker> <start> <end> <label> word ...``.
Text is normalised the way Kaldi's ``egs/tedlium/s5_r2|s5_r3/local/prepare_data.sh``
does it: pronunciation variants ``(2)`` and ``<sil>`` removed, the trailing
``(utterance-name)`` of train lines removed, split contractions joined
(``it 's`` -> ``it's``), ``{NOISE}`` -> ``[NOISE]``, lines marked
``ignore_time_segment_in_scoring`` dropped.  The speaker is the talk, and an
utterance is ``<talk>-<start>-<end>`` in centiseconds, 7 digits each, so
speaker ids are prefixes of utterance ids.  Usage::

    from utils_py.corpora import tedlium
    tedlium.stm_to_data_dir("TEDLIUM_release2/dev/stm", "TEDLIUM_release2/dev/sph", "data/dev",
                            sph_reader="sox")
"""
import glob
import os
import re
import shutil

from utils_py.corpora import prep
from utils_py.kaldi import datadir
from utils_py.fileio import atomic_write, ensure_dir
from utils_py.log import UnspeechError, get_logger

IGNORE = "ignore_time_segment_in_scoring"
STM_HEADER = (';;\n;; LABEL "o" "Overall" "Overall results"\n;; LABEL "f0" "f0" "Wideband channel"\n'
              ';; LABEL "f2" "f2" "Telephone channel"\n;; LABEL "male" "Male" "Male Talkers"\n'
              ';; LABEL "female" "Female" "Female Talkers"\n;;\n')
EMPTY_GLM = ";; empty.glm\n  [FAKE]     =>  %HESITATION     / [ ] __ [ ] ;; hesitation token\n"


def normalise_words(words) -> list:
    """Kaldi's TED-LIUM text normalisation of the words of one stm line."""
    line = " ".join(words)
    line = re.sub(r"\([0-9]\)", "", line)      # pronunciation variants: the(2) -> the
    line = line.replace("<sil>", "")
    line = re.sub(r"\([^ ]*\)\s*$", "", line)   # trailing (utterance-name)
    out = []
    for w in line.split():
        if w.startswith("'") and out:          # it 's -> it's
            out[-1] += w
        else:
            out.append(w)
    return [w.replace("{", "[").replace("}", "]") for w in out]


def centiseconds(value: str, where: str) -> int:
    try:
        return int(round(float(value) * 100))
    except ValueError:
        raise UnspeechError(f"bad time {value!r}: {where}") from None


class StmLine:
    """One stm line: ``talk channel speaker start end [<label>] words``; times in centiseconds."""
    LABELS = {"<F0_M>": "<o,f0,male>", "<F0_F>": "<o,f0,female>"}   # dev labels as in train/test

    def __init__(self, line: str, where: str):
        fields = line.split()
        if len(fields) < 5:
            raise UnspeechError(f"bad stm line (need '<talk> <channel> <speaker> <start> <end> [<label>] "
                                f"words'): {where}")
        self.talk, self.speaker, self.times = fields[0], fields[2], fields[3:5]
        self.start, self.end = (centiseconds(t, where) for t in self.times)
        rest = fields[5:]
        self.label = self.LABELS.get(rest[0], rest[0]) if rest and rest[0].startswith("<") else None
        self.ignore = IGNORE in rest
        self.words = [] if self.ignore else normalise_words(rest[1:] if self.label else rest)

    def stm(self) -> str:
        """The normalised line for sclite (channel A, like Kaldi's data/<set>/stm)."""
        rest = [IGNORE] if self.ignore else self.words
        return " ".join([self.talk, "A", self.speaker] + self.times + ([self.label] if self.label else []) + rest)


def read_stm(path: str) -> list:
    """All :class:`StmLine` of one stm file (comments ``;;`` skipped)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return [StmLine(line, f"line {n} of {path}") for n, line in enumerate(f, 1)
                if line.strip() and not line.startswith(";;")]


def sph_command(sph: str, reader: str) -> str:
    """``wav.scp`` value that decodes ``sph`` to a wav on stdout."""
    if reader == "sox":
        return f"sox {sph} -t wav - |"
    return f"{reader} -f wav -p -c 1 {sph} |"   # reader = path of sph2pipe


def stm_to_data_dir(stm_dir: str, sph_dir: str, data_dir: str, sph_reader: str = "sox", logger=None) -> dict:
    """Make a Kaldi data dir from ``<stm_dir>/*.stm`` and ``<sph_dir>/<talk>.sph``.

    ``sph_reader`` is ``sox`` or the path of ``sph2pipe``.  Writes ``segments``,
    ``text``, ``utt2spk``, ``spk2utt``, ``utt2spk.gold`` (speaker = talk),
    ``wav.scp`` (keyed by talk), ``reco2file_and_channel``, and for scoring
    with sclite ``stm`` and ``glm``; validates and writes ``.done`` last.
    Returns numbers for the log.
    """
    log = logger or get_logger("prepare_tedlium")
    stms = sorted(glob.glob(os.path.join(stm_dir, "*.stm")))
    if not stms:
        raise UnspeechError(f"no .stm files in {stm_dir}")
    if sph_reader != "sox" and not os.access(sph_reader, os.X_OK):
        raise UnspeechError(f"sph2pipe not executable: {sph_reader}")
    if sph_reader == "sox" and shutil.which("sox") is None:
        raise UnspeechError("neither sph2pipe nor sox found on PATH; install sox (apt-get install sox) "
                            "or put Kaldi's tools/sph2pipe on PATH")
    settings = (f"prepare_tedlium stm={os.path.abspath(stm_dir)} sph={os.path.abspath(sph_dir)} "
                f"reader={sph_reader}")
    if prep.all_done([data_dir], settings):
        log.info(f"{data_dir} is complete; nothing to do")
        return {"skipped": True}
    rows = [row for stm in stms for row in read_stm(stm)]
    rows.sort(key=lambda r: (r.talk, r.start, r.end))
    text, segments, utt2spk = {}, {}, {}
    dropped = {"empty": 0, "duplicate": 0, "bad times": 0}
    for row in rows:
        utt = f"{row.talk}-{row.start:07d}-{row.end:07d}"
        if row.ignore:
            continue
        if row.end <= row.start or row.start < 0:
            dropped["bad times"] += 1
        elif not row.words:
            dropped["empty"] += 1
        elif utt in text:
            dropped["duplicate"] += 1
        else:
            text[utt] = " ".join(row.words)
            segments[utt] = f"{row.talk} {row.start / 100:.2f} {row.end / 100:.2f}"
            utt2spk[utt] = row.talk
    if not text:
        raise UnspeechError(f"no usable segments in the stm files of {stm_dir}")
    talks = datadir.c_sorted(set(utt2spk.values()))
    wav_scp = {}
    for talk in talks:
        sph = os.path.join(os.path.abspath(sph_dir), talk + ".sph")
        if not os.path.isfile(sph):
            raise UnspeechError(f"audio of talk {talk} not found: {sph}")
        wav_scp[talk] = sph_command(sph, sph_reader)
    ensure_dir(data_dir)
    prep.clear_done(data_dir)
    datadir.write_table(os.path.join(data_dir, "wav.scp"), wav_scp)
    datadir.write_table(os.path.join(data_dir, "reco2file_and_channel"), {t: f"{t} A" for t in talks})
    datadir.write_table(os.path.join(data_dir, "segments"), segments)
    datadir.write_table(os.path.join(data_dir, "text"), text)
    datadir.write_table(os.path.join(data_dir, "utt2spk.gold"), utt2spk)
    datadir.write_table(os.path.join(data_dir, "utt2spk"), utt2spk)
    datadir.write_spk2utt(data_dir)
    with atomic_write(os.path.join(data_dir, "stm")) as f:
        f.write(STM_HEADER + "".join(row.stm() + "\n" for row in rows))
    with atomic_write(os.path.join(data_dir, "glm")) as f:
        f.write(EMPTY_GLM)
    datadir.validate(data_dir, need=("wav.scp", "segments", "text"))
    prep.mark_done(data_dir, settings)
    hours = sum(float(v.split()[2]) - float(v.split()[1]) for v in segments.values()) / 3600
    skipped = ", ".join(f"{n} {why}" for why, n in dropped.items() if n)
    log.info(f"{data_dir}: {len(text)} segments, {len(talks)} talks, {hours:.2f} h"
             + (f" (dropped: {skipped})" if skipped else ""))
    return {"skipped": False, "segments": len(text), "talks": len(talks), "hours": hours, "dropped": dropped}
