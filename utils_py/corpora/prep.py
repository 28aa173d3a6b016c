"""What the corpus preparation scripts (demo, FSDD, TED-LIUM, Common Voice) share: data dirs with a ``.done`` marker.

A prepared data dir ends with ``<dir>/.done``, a stamp (utils_py.stamp) of its settings
line (what made it and with which options), written last.  A rerun with the same settings
finds it and does nothing; other settings give a clear error instead of mixing two corpora::

    from utils_py.corpora import prep

    settings = "prepare_fsdd digits-per-utt=10 seed=1"
    if prep.all_done(["data/train", "data/test"], settings):
        return                                       # nothing to do
    prep.write_wav_data_dir("data/train", utterances, settings)
"""
import dataclasses
import os

from utils_py.kaldi import datadir
from utils_py import stamp
from utils_py.fileio import ensure_dir
from utils_py.log import UnspeechError

DONE = ".done"


@dataclasses.dataclass(frozen=True)
class Utterance:
    utt: str        # <spk>-<nnnn>
    spk: str        # the true speaker (utt2spk and utt2spk.gold)
    wav: str        # absolute path of a wav file, or a ``command |`` pipe that writes one
    text: str
    seconds: float


def _signature(settings: str) -> dict:
    return stamp.signature(options={"settings": settings.strip()})


def _settings_of(path: str):
    """The settings line a stamp was made with; a plain line of an older version counts too."""
    data = stamp.read(path)
    if data is not None:
        return (data["signature"].get("options") or {}).get("settings")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    return None


def _check_settings(path: str, settings: str, what: str, fix: str) -> bool:
    """True if the stamp at ``path`` has ``settings``, False if absent; UnspeechError if other settings."""
    have = _settings_of(path)
    if have is not None and have != settings.strip():
        raise UnspeechError(f"{what} made with other settings ({have}; now {settings.strip()}); {fix}")
    return have is not None


def all_done(data_dirs, settings: str) -> bool:
    """True if every dir has a ``.done`` stamp of ``settings``.

    Raises UnspeechError if one was made with other settings.
    """
    done = [_check_settings(os.path.join(d, DONE), settings, f"{d} was",
                            "remove it (and what was made from it under exp/) or use another data root")
            for d in data_dirs]
    return all(done)


def clear_done(data_dir: str) -> None:
    """Remove the stamp before rewriting a dir, so a crash never leaves it looking complete."""
    stamp.clear(os.path.join(data_dir, DONE))


def mark_done(data_dir: str, settings: str) -> None:
    stamp.write(os.path.join(data_dir, DONE), _signature(settings))


def claim_wav_dir(wav_dir: str, settings: str) -> None:
    """Stamp ``<wav_dir>/.settings`` with what makes its wavs; refuse a dir made with other settings.

    Existing wavs are reused by a rerun, so they must come from the same settings.
    """
    ensure_dir(wav_dir)
    path = os.path.join(wav_dir, ".settings")
    if not _check_settings(path, settings, f"{wav_dir} holds wavs", "remove it or give another wav dir"):
        stamp.write(path, _signature(settings))


def format_seconds(seconds: float) -> str:
    """Duration as Kaldi's ``wav-to-duration`` prints it (6 significant digits)."""
    return f"{seconds:g}"


def write_wav_data_dir(data_dir: str, utterances, settings: str) -> dict:
    """Write a Kaldi data dir of whole-file utterances and mark it done; returns ``utt2spk``.

    Files: ``wav.scp`` (absolute paths or ``command |`` pipes), ``utt2spk``, ``spk2utt``, ``text``,
    ``utt2dur`` and ``utt2spk.gold`` (the true speaker), LC_ALL=C sorted,
    validated, ``.done`` last.
    """
    utterances = list(utterances)
    if not utterances:
        raise UnspeechError(f"no utterances for data dir {data_dir}")
    ensure_dir(data_dir)
    clear_done(data_dir)
    for u in utterances:
        if not (os.path.isabs(u.wav) or u.wav.endswith("|")):
            raise ValueError(f"wav must be an absolute path or a 'command |' pipe: {u.wav}")
    datadir.write_table(os.path.join(data_dir, "wav.scp"), {u.utt: u.wav for u in utterances})
    datadir.write_table(os.path.join(data_dir, "text"), {u.utt: u.text for u in utterances})
    datadir.write_table(os.path.join(data_dir, "utt2dur"), {u.utt: format_seconds(u.seconds) for u in utterances})
    utt2spk = {u.utt: u.spk for u in utterances}
    datadir.write_table(os.path.join(data_dir, "utt2spk.gold"), utt2spk)
    datadir.write_table(os.path.join(data_dir, "utt2spk"), utt2spk)
    datadir.write_spk2utt(data_dir)
    datadir.validate(data_dir, need=("wav.scp", "text", "utt2dur", "utt2spk.gold"))
    mark_done(data_dir, settings)
    return utt2spk
