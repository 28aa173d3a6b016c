"""Audio of a Kaldi data directory: ``wav.scp`` entries (files or ``cmd |`` pipes) and ``segments``.

Samples come back as float32 on the int16 scale (what Kaldi's feature binaries
see), mono, with the file's sample rate.  A 16-bit PCM wav is exact; other
sample formats (8/24/32-bit, float) are scaled to the same range.

Usage::

    from utils_py.features import audio

    for utt, samples, rate, rx in audio.iter_utterances("data/train"):   # wav.scp (+ segments)
        ...
    samples, rate = audio.read_audio("sox a.wav -t wav - speed 0.9 |", utt="sp0.9-a")

``wav.scp`` values are either a file name or a shell command ending in ``|``
whose stdout is a wav (run with ``bash -o pipefail``; a non-zero exit is an
error).  ``segments`` lines are ``<utt> <reco> <start> <end>`` in seconds, end
``-1`` meaning "to the end of the recording"; like Kaldi's ``extract-segments``
an end up to 0.5 s beyond the recording is cut to its length, more is an error.
Multi-channel audio is an error unless ``channel`` (Kaldi's ``--channel``)
picks one (0 = first).  Every error is an :class:`UnspeechError` naming the
utterance and the file or command.
"""
import io
import os
import subprocess

import numpy as np
import soundfile as sf

from utils_py.kaldi import datadir
from utils_py.log import UnspeechError

INT16_SCALE = 32768.0
MAX_SEGMENT_OVERSHOOT = 0.5  # seconds past the end of a recording that a segment may claim


def is_pipe(rxfile: str) -> bool:
    """True for a ``wav.scp`` value that is a command (``... |``)."""
    return rxfile.rstrip().endswith("|")


def _pipe_command(rxfile: str) -> str:
    return rxfile.rstrip()[:-1].strip()


def _read_bytes_of_pipe(rxfile: str, utt: str) -> bytes:
    cmd = _pipe_command(rxfile)
    try:
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    except OSError as e:  # bash itself missing
        raise UnspeechError(f"cannot run command for utterance {utt}: {cmd} ({e})") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        why = f": {err[-1].strip()}" if err else ""
        raise UnspeechError(
            f"command failed (exit {proc.returncode}) for utterance {utt}: {cmd}{why}")
    if not proc.stdout:
        raise UnspeechError(f"command produced no audio for utterance {utt}: {cmd}")
    return proc.stdout


def _check_file(path: str, utt: str) -> None:
    if path == "-" or path.endswith(":") or is_ark_offset(path):
        raise UnspeechError(
            f"unsupported wav.scp entry for utterance {utt} (need a file or 'command |'): {path}")
    if not os.path.isfile(path):
        raise UnspeechError(f"wav file not found for utterance {utt}: {path}")
    if os.path.getsize(path) == 0:
        raise UnspeechError(f"wav file is empty for utterance {utt}: {path}")


def is_ark_offset(path: str) -> bool:
    """True for Kaldi's ``file.ark:1234`` (a wav inside an archive), which we cannot read."""
    head, sep, tail = path.rpartition(":")
    return bool(sep and head and tail.isdigit() and not os.path.exists(path))


def check_entry(rxfile: str, utt: str) -> None:
    """Cheap up-front check of one ``wav.scp`` value: a plain file must exist and be non-empty."""
    if not is_pipe(rxfile):
        _check_file(rxfile.strip(), utt)


def check_data_dir(data_dir: str) -> dict:
    """Validate a data dir with audio (``datadir.validate``) and :func:`check_entry` every recording
    it uses; return its ``utt2spk``."""
    utt2spk = datadir.validate(data_dir, need=("wav.scp",))
    wav_scp = datadir.read_table(os.path.join(data_dir, "wav.scp"))
    seg_path = os.path.join(data_dir, "segments")
    if os.path.isfile(seg_path):
        used = {}
        for utt, (reco, _, _) in read_segments(seg_path).items():
            used.setdefault(reco, utt)
        for reco, utt in used.items():
            check_entry(wav_scp[reco], f"{utt} (recording {reco})")
    else:
        for utt, rx in wav_scp.items():
            check_entry(rx, utt)
    return utt2spk


def read_audio(rxfile: str, utt: str = "?", channel: int = -1):
    """Read one ``wav.scp`` value; return ``(samples float32 int16-scale 1-D, sample_rate)``.

    ``channel=-1`` requires mono audio (Kaldi's default); ``0``, ``1``, ... pick a channel.
    """
    if is_pipe(rxfile):
        source = io.BytesIO(_read_bytes_of_pipe(rxfile, utt))
        where = f"output of '{_pipe_command(rxfile)}'"
    else:
        source = rxfile.strip()
        _check_file(source, utt)
        where = source
    try:
        with sf.SoundFile(source if is_pipe(rxfile) else os.fsencode(source)) as f:  # bytes: any file name
            rate = f.samplerate
            pcm16 = f.subtype == "PCM_16"
            data = f.read(dtype="int16" if pcm16 else "float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise UnspeechError(f"cannot read audio of utterance {utt} (corrupt or not a wav?): {where} ({e})") from None
    if data.shape[0] == 0:
        raise UnspeechError(f"audio has no samples for utterance {utt}: {where}")
    nch = data.shape[1]
    if channel < 0:
        if nch != 1:
            raise UnspeechError(
                f"audio has {nch} channels for utterance {utt} (need mono, or set --channel 0|1...): {where}")
        channel = 0
    elif channel >= nch:
        raise UnspeechError(f"--channel {channel} but audio has {nch} channel(s) for utterance {utt}: {where}")
    samples = data[:, channel].astype(np.float32)
    if not pcm16:
        samples *= INT16_SCALE
    return samples, rate


def read_segments(path: str) -> dict:
    """``segments`` as ``{utt: (reco, start, end)}`` (end ``-1`` = to the end); errors name the line's utt."""
    segments = {}
    for utt, value in datadir.read_table(path).items():
        fields = value.split()
        try:
            if len(fields) != 3:
                raise ValueError
            reco, start, end = fields[0], float(fields[1]), float(fields[2])
        except ValueError:
            raise UnspeechError(f"bad segments line of utterance {utt} (need '<reco> <start> <end>'): {path}") from None
        if start < 0 or (end != -1 and end <= start):
            raise UnspeechError(f"bad segment times {start} {end} of utterance {utt}: {path}")
        segments[utt] = (reco, start, end)
    return segments


def cut_segment(samples: np.ndarray, rate: int, start: float, end: float, utt: str = "?") -> np.ndarray:
    """Samples ``[start, end)`` seconds (``end == -1``: to the end), like Kaldi's extract-segments."""
    n = len(samples)
    first = int(round(start * rate))
    last = n if end == -1 else int(round(end * rate))
    if first >= n:
        raise UnspeechError(
            f"segment of utterance {utt} starts at {start} s, after the end of its recording ({n / rate:.3f} s)")
    if last > n:
        if (last - n) / rate > MAX_SEGMENT_OVERSHOOT:
            raise UnspeechError(
                f"segment of utterance {utt} ends at {end} s, more than {MAX_SEGMENT_OVERSHOOT} s after "
                f"the end of its recording ({n / rate:.3f} s)")
        last = n
    return samples[first:last]


def iter_utterances(data_dir: str, channel: int = -1):
    """Yield ``(utt, samples, sample_rate, wav_scp_value)`` for every utterance of ``data_dir``, sorted.

    Uses ``wav.scp`` (keyed by utterance), or ``segments`` + ``wav.scp`` keyed by
    recording; a recording is read once for consecutive segments of it.
    """
    wav_scp = datadir.read_table(os.path.join(data_dir, "wav.scp"))
    seg_path = os.path.join(data_dir, "segments")
    if not os.path.isfile(seg_path):
        for utt, rx in wav_scp.items():
            samples, rate = read_audio(rx, utt, channel)
            yield utt, samples, rate, rx
        return
    cached_reco, cached = None, None
    for utt, (reco, start, end) in read_segments(seg_path).items():
        if reco not in wav_scp:
            raise UnspeechError(f"recording {reco} of utterance {utt} not in {os.path.join(data_dir, 'wav.scp')}")
        if reco != cached_reco:
            cached_reco, cached = reco, read_audio(wav_scp[reco], f"{utt} (recording {reco})", channel)
        samples, rate = cached
        yield utt, cut_segment(samples, rate, start, end, utt), rate, wav_scp[reco]
