"""Speed perturbation of a data directory, by Kaldi's conventions (``perturb_data_dir_speed_3way.sh``).

For every factor f other than 1.0 a copy of each utterance is added whose
utterance, speaker (and, with ``segments``, recording) ids get the prefix
``sp<f>-``; its audio is a sox pipe in ``wav.scp``::

    sp0.9-spk1-utt1 sox -t wav /data/spk1-utt1.wav -t wav - speed 0.9 |
    sp0.9-spk1-utt2 gunzip -c x.wav.gz | sox -t wav - -t wav - speed 0.9 |

Factor 1.0 keeps the original ids and entries.  Segment times and durations
(``utt2dur``, ``reco2dur``) are divided by f; ``text``/``utt2lang`` are
re-keyed; ``utt2uniq`` maps every copy to its original utterance (or to the
source's ``utt2uniq`` value); ``utt2spk.gold`` is re-keyed and its gold
speaker prefixed too; ``spk2gender`` and ``reco2file_and_channel`` follow the
speaker / recording ids.  Feature tables (``feats.scp``, ``cmvn.scp``,
``utt2num_frames`` ...) are not copied: compute features of the result.

Usage::

    from utils_py.kaldi.speed_perturb import perturb_data_dir
    perturb_data_dir("data/train", "data/train_sp", factors=["0.9", "1.0", "1.1"])

Rerunning with the same source is a no-op (existing features of the result are
kept); a changed result is rewritten and its stale feature tables removed.
"""
import os
import shlex
import shutil

from utils_py.features import audio
from utils_py.kaldi import datadir
from utils_py.fileio import ensure_dir, open_text, refuse_overwrite, remove_stale_temps, temp_name
from utils_py.log import UnspeechError, get_logger

UTT_KEYED = ("text", "utt2lang")  # re-keyed, values unchanged
SEGMENT_FORMAT = ".3f"  # Kaldi writes %.2f; we keep milliseconds, finer than one 10 ms frame
FEATURE_TABLES = ("feats.scp", "cmvn.scp", "utt2num_frames", "frame_shift", "ivector_online.scp")
MANAGED = ("utt2spk", "spk2utt", "wav.scp", "segments", "text", "utt2lang", "utt2uniq", "utt2spk.gold",
           "utt2dur", "reco2dur", "spk2gender", "reco2file_and_channel")


def parse_factors(factors) -> list:
    """``"0.9 1.0 1.1"`` or a list -> the factor strings (as written; they become id prefixes)."""
    if isinstance(factors, str):
        factors = factors.split()
    out, seen = [], {}
    for f in factors:
        try:
            value = float(f)
        except ValueError:
            raise UnspeechError(f"bad speed factor {f!r} (need a number like 0.9)") from None
        if not value > 0:
            raise UnspeechError(f"speed factor must be > 0, got {f}")
        if value in seen:
            raise UnspeechError(f"speed factor {f} given twice (also as {seen[value]})")
        seen[value] = f
        out.append(f)
    if not out:
        raise UnspeechError("no speed factors given")
    return out


def speed_pipe(rxfile: str, factor: str) -> str:
    """The ``wav.scp`` value of ``rxfile`` played at ``factor`` times the speed (a sox pipe)."""
    if audio.is_pipe(rxfile):
        return f"{rxfile.rstrip()[:-1].rstrip()} | sox -t wav - -t wav - speed {factor} |"
    return f"sox -t wav {shlex.quote(rxfile.strip())} -t wav - speed {factor} |"


def _scaled(seconds, factor: float, what: str, fmt: str = ".6g") -> str:
    """``seconds / factor`` (durations like Kaldi's awk: %.6g); -1 ("to the end") stays -1."""
    try:
        value = float(seconds)
    except ValueError:
        raise UnspeechError(f"bad time {seconds!r} in {what}") from None
    return "-1" if value == -1 else format(value / factor, fmt)


def _perturbed_tables(src: str, factor: str) -> dict:
    """All tables of the copy of ``src`` at speed ``factor``: ``{name: {key: value}}``."""
    f = float(factor)
    prefix = "" if f == 1.0 else f"sp{factor}-"
    path = lambda name: os.path.join(src, name)  # noqa: E731
    has = lambda name: os.path.isfile(path(name))  # noqa: E731
    utt2spk = datadir.read_table(path("utt2spk"))
    out = {"utt2spk": {prefix + u: prefix + s for u, s in utt2spk.items()}}
    uniq = datadir.read_table(path("utt2uniq")) if has("utt2uniq") else {u: u for u in utt2spk}
    out["utt2uniq"] = {prefix + u: uniq[u] for u in utt2spk}
    for name in UTT_KEYED:
        if has(name):
            out[name] = {prefix + u: v for u, v in datadir.read_table(path(name)).items()}
    if has("utt2spk.gold"):
        out["utt2spk.gold"] = {prefix + u: prefix + s for u, s in datadir.read_table(path("utt2spk.gold")).items()}
    dur = (lambda d, what: d) if f == 1.0 else (lambda d, what: _scaled(d, f, what))  # noqa: E731
    if has("utt2dur"):
        out["utt2dur"] = {prefix + u: dur(d, path("utt2dur")) for u, d in datadir.read_table(path("utt2dur")).items()}
    if has("spk2gender"):
        out["spk2gender"] = {prefix + s: g for s, g in datadir.read_table(path("spk2gender")).items()}
    wav_scp = datadir.read_table(path("wav.scp"))
    for key, rx in wav_scp.items():
        if not audio.is_pipe(rx) and audio.is_ark_offset(rx.strip()):
            raise UnspeechError(
                f"cannot speed-perturb an ark offset (needs Kaldi's wav-copy): {key} in {path('wav.scp')}")
    # Keyed by recording with segments, by utterance without: the prefix goes on either.
    out["wav.scp"] = {prefix + k: (rx if f == 1.0 else speed_pipe(rx, factor)) for k, rx in wav_scp.items()}
    if has("segments"):
        raw = datadir.read_table(path("segments"))
        out["segments"] = {
            prefix + u: raw[u] if f == 1.0 else
            f"{prefix + reco} {_scaled(start, f, path('segments'), SEGMENT_FORMAT)} "
            f"{_scaled(end, f, path('segments'), SEGMENT_FORMAT)}"
            for u, (reco, start, end) in audio.read_segments(path("segments")).items()}
        if has("reco2file_and_channel"):
            out["reco2file_and_channel"] = {prefix + r: v for r, v in
                                            datadir.read_table(path("reco2file_and_channel")).items()}
    if has("reco2dur"):
        reco2dur = datadir.read_table(path("reco2dur"))
        out["reco2dur"] = {prefix + r: dur(d, path("reco2dur")) for r, d in reco2dur.items()}
    return out


def perturb_data_dir(src: str, dst: str, factors=("0.9", "1.0", "1.1"), log=None) -> bool:
    """Write the speed-perturbed union of ``src`` into ``dst``; True if ``dst`` changed."""
    log = log or get_logger("perturb_data_dir_speed")
    factors = parse_factors(factors)
    refuse_overwrite(dst, [src], "destination data dir")
    datadir.validate(src, need=("wav.scp",))
    if any(float(f) != 1.0 for f in factors) and shutil.which("sox") is None:
        raise UnspeechError("sox not found on PATH (needed by the speed-perturbed wav.scp pipes)")
    merged = {}
    for factor in factors:
        for name, table in _perturbed_tables(src, factor).items():
            target = merged.setdefault(name, {})
            clash = next((k for k in table if k in target), None)
            if clash is not None:
                raise UnspeechError(
                    f"id {clash} would appear twice in {name} (source already speed-perturbed?): {src}")
            target.update(table)
    merged["spk2utt"] = datadir.spk2utt_from_utt2spk(merged["utt2spk"])
    skipped = sorted(n for n in os.listdir(src) if os.path.isfile(os.path.join(src, n))
                     and not n.startswith(".") and n not in MANAGED)
    if skipped:
        log.info(f"not copied (recompute them on {dst}): {' '.join(skipped)}")

    ensure_dir(dst)
    if _up_to_date(dst, merged):
        log.info(f"{dst} is up to date ({len(merged['utt2spk'])} utterances, factors {' '.join(factors)})")
        return False
    for name in FEATURE_TABLES + tuple(n for n in MANAGED if n not in merged):
        stale = os.path.join(dst, name)
        if os.path.isfile(stale):
            os.remove(stale)
            log.info(f"removed stale {stale}")
    for entry in os.listdir(dst):
        if entry.startswith("split") and os.path.isdir(os.path.join(dst, entry)):
            shutil.rmtree(os.path.join(dst, entry))
    # Validate in a temp dir first; then move the tables in, spk2utt last (the "complete"
    # marker of a data dir for split() and friends).
    remove_stale_temps(os.path.join(dst, "perturb"))      # of a killed earlier run
    tmp = temp_name(os.path.join(dst, "perturb"))
    try:
        for name in merged:
            datadir.write_table(os.path.join(tmp, name), merged[name])
        try:
            datadir.validate(tmp, need=("wav.scp",))
        except UnspeechError as e:
            raise UnspeechError(f"result would not be a valid data dir: {str(e).replace(tmp, dst)}") from None
        for name in sorted(merged, key=lambda n: n == "spk2utt"):
            os.replace(os.path.join(tmp, name), os.path.join(dst, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(f"wrote {dst}: {len(merged['utt2spk'])} utterances (factors {' '.join(factors)}) from {src}")
    return True


def _up_to_date(dst: str, tables: dict) -> bool:
    for name in MANAGED:
        path = os.path.join(dst, name)
        if name not in tables:
            if os.path.exists(path):
                return False
            continue
        if not os.path.isfile(path):
            return False
        want = "".join(f"{k} {tables[name][k]}\n" for k in datadir.c_sorted(tables[name]))
        with open_text(path) as f:
            if f.read() != want:
                return False
    return True
