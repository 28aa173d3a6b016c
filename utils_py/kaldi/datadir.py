"""Kaldi data directories: read, write, sort, validate and split them by Kaldi's rules.

The rules (as Kaldi's ``utils/validate_data_dir.sh`` enforces them):

- every table is ``<key> <value>`` lines, keys unique and sorted in ``LC_ALL=C``
  (byte) order;
- ``spk2utt`` is exactly ``utt2spk`` inverted, utterances in sorted order;
- speaker ids are prefixes of utterance ids, i.e. sorting ``utt2spk`` by speaker
  gives the same order as sorting it by utterance;
- every per-utterance file covers exactly the utterances of ``utt2spk``;
  ``wav.scp`` is keyed by utterance, or by recording when ``segments`` exists.

Usage::

    from utils_py.kaldi import datadir

    utt2spk = datadir.read_table("data/train/utt2spk")     # ordered dict
    datadir.write_table("data/new/utt2spk", utt2spk)       # sorted, atomic
    datadir.write_spk2utt("data/new")                      # from utt2spk
    datadir.validate("data/new", need=("feats.scp",))      # raises UnspeechError
    parts = datadir.split("data/train", 4)                 # data/train/split4/{1..4}
"""
import os
import shutil

from utils_py import stamp
from utils_py.fileio import atomic_write, ensure_dir, kaldi_bytes, open_text
from utils_py.log import UnspeechError

# Files keyed by utterance id that a data dir may hold (wav.scp only without segments).
PER_UTT_FILES = (
    "text", "segments", "feats.scp", "utt2num_frames", "utt2dur", "utt2uniq",
    "utt2lang", "utt2spk.gold", "ivector_online.scp",
)
PER_SPK_FILES = ("cmvn.scp", "spk2gender")


def c_key(s: str) -> bytes:
    """Sort key equal to ``LC_ALL=C sort``: byte order of the id's bytes (see ``fileio.open_text``)."""
    return kaldi_bytes(s)


def c_sorted(keys):
    return sorted(keys, key=c_key)


def read_table(path: str, check_sorted: bool = True, allow_empty: bool = False) -> dict:
    """Read a ``<key> <value>`` table into an insertion-ordered dict.

    Raises UnspeechError (naming file and line) on a missing/empty file, a line
    without a value, a duplicate key, or keys out of ``LC_ALL=C`` order.
    """
    if not os.path.isfile(path):
        raise UnspeechError(f"file not found: {path}")
    table = {}
    prev = None
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.strip().split(maxsplit=1)
            if len(parts) != 2:
                raise UnspeechError(f"bad line {n} (need '<key> <value>'): {path}")
            key, value = parts
            if key in table:
                raise UnspeechError(f"duplicate key {key} on line {n}: {path}")
            if check_sorted and prev is not None and c_key(key) < c_key(prev):
                raise UnspeechError(
                    f"not sorted (LC_ALL=C) at line {n}, key {key} after {prev}: {path}")
            table[key] = value
            prev = key
    if not table and not allow_empty:
        raise UnspeechError(f"file is empty: {path}")
    return table


def write_table(path: str, table: dict) -> None:
    """Write ``{key: value}`` sorted in ``LC_ALL=C`` order, atomically."""
    with atomic_write(path) as f:
        for key in c_sorted(table):
            f.write(f"{key} {table[key]}\n")


def spk2utt_from_utt2spk(utt2spk: dict) -> dict:
    """``{spk: "utt1 utt2 ..."}`` with speakers and utterances in C order."""
    spk2utts = {}
    for utt in c_sorted(utt2spk):
        spk2utts.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(spk2utts[spk]) for spk in c_sorted(spk2utts)}


def write_spk2utt(data_dir: str) -> None:
    """(Re)write ``spk2utt`` from ``utt2spk`` (``utils/utt2spk_to_spk2utt.pl``)."""
    utt2spk = read_table(os.path.join(data_dir, "utt2spk"))
    write_table(os.path.join(data_dir, "spk2utt"), spk2utt_from_utt2spk(utt2spk))


def validate(data_dir: str, need=(), speaker_prefix: bool = True) -> dict:
    """Check ``data_dir`` against Kaldi's rules; return its ``utt2spk``.

    ``need`` names files that must exist beyond ``utt2spk``/``spk2utt``
    (e.g. ``("wav.scp",)`` or ``("feats.scp",)``).  The first problem found
    raises UnspeechError naming the file and the offending key.
    """
    if not os.path.isdir(data_dir):
        raise UnspeechError(f"data directory not found: {data_dir}")
    path = lambda name: os.path.join(data_dir, name)  # noqa: E731
    for name in ("utt2spk", "spk2utt") + tuple(need):
        if not os.path.isfile(path(name)):
            raise UnspeechError(f"missing {name} in data directory: {data_dir}")
    utt2spk = read_table(path("utt2spk"))
    spk2utt = read_table(path("spk2utt"))
    for utt, spk in utt2spk.items():
        if len(spk.split()) != 1:
            raise UnspeechError(f"utterance {utt} has no single speaker id: {path('utt2spk')}")
    expected = spk2utt_from_utt2spk(utt2spk)
    if expected != spk2utt:
        bad = next((s for s in set(expected) | set(spk2utt) if expected.get(s) != spk2utt.get(s)))
        raise UnspeechError(f"spk2utt does not match utt2spk for speaker {bad}: {path('spk2utt')}")
    if speaker_prefix:
        by_spk = [u for s in expected for u in expected[s].split()]
        if by_spk != list(utt2spk):
            first = next(u for u, v in zip(by_spk, utt2spk) if u != v)
            raise UnspeechError(
                f"speaker ids are not prefixes of utterance ids (utt2spk sorts differently "
                f"by speaker), first at utterance {first}: {path('utt2spk')}")
    has_segments = os.path.isfile(path("segments"))
    utts = set(utt2spk)
    for name in PER_UTT_FILES + (() if has_segments else ("wav.scp",)):
        if os.path.isfile(path(name)):
            _check_same_keys(read_table(path(name)), utts, path(name), "utt2spk")
    if has_segments and os.path.isfile(path("wav.scp")):
        recos = set(read_table(path("wav.scp")))
        for utt, value in read_table(path("segments")).items():
            fields = value.split()
            if len(fields) != 3:
                raise UnspeechError(f"segments line of {utt} needs '<reco> <start> <end>': {path('segments')}")
            if fields[0] not in recos:
                raise UnspeechError(f"recording {fields[0]} of utterance {utt} not in wav.scp: {path('segments')}")
            try:
                start, end = float(fields[1]), float(fields[2])
            except ValueError:
                raise UnspeechError(f"bad times for utterance {utt}: {path('segments')}") from None
            if not (0 <= start and (start < end or end == -1)):  # end -1: to the end (Kaldi)
                raise UnspeechError(f"segment of {utt} has start >= end: {path('segments')}")
    spks = set(spk2utt)
    for name in PER_SPK_FILES:
        if os.path.isfile(path(name)):
            _check_same_keys(read_table(path(name)), spks, path(name), "spk2utt")
    return utt2spk


def _check_same_keys(table: dict, expected: set, file: str, ref: str) -> None:
    keys = set(table)
    if keys != expected:
        missing = c_sorted(expected - keys)
        extra = c_sorted(keys - expected)
        if missing:
            raise UnspeechError(f"{len(missing)} key(s) of {ref} missing, first {missing[0]}: {file}")
        raise UnspeechError(f"{len(extra)} key(s) not in {ref}, first {extra[0]}: {file}")


def filter_dir(src: str, dst: str, utts) -> None:
    """Copy data dir ``src`` to ``dst`` keeping only utterances ``utts``.

    Per-utterance and per-speaker tables are filtered; ``wav.scp`` keeps the
    recordings still referenced; other plain files (e.g. ``frame_shift``) are copied.
    """
    keep = set(utts)
    ensure_dir(dst)
    utt2spk = {u: s for u, s in read_table(os.path.join(src, "utt2spk")).items() if u in keep}
    if not utt2spk:
        raise UnspeechError(f"no utterances left after filtering: {src}")
    spks = set(utt2spk.values())
    write_table(os.path.join(dst, "utt2spk"), utt2spk)
    has_segments = os.path.isfile(os.path.join(src, "segments"))
    recos = None
    for name in sorted(os.listdir(src)):
        sp, dp = os.path.join(src, name), os.path.join(dst, name)
        if not os.path.isfile(sp) or name in ("utt2spk", "spk2utt"):
            continue
        if name in PER_UTT_FILES or (name == "wav.scp" and not has_segments):
            write_table(dp, {k: v for k, v in read_table(sp).items() if k in keep})
        elif name in PER_SPK_FILES:
            write_table(dp, {k: v for k, v in read_table(sp).items() if k in spks})
        elif name == "wav.scp":
            if recos is None:
                segs = read_table(os.path.join(src, "segments"))
                recos = {segs[u].split()[0] for u in utt2spk}
            write_table(dp, {k: v for k, v in read_table(sp).items() if k in recos})
        elif not name.startswith("."):
            with open(sp, "rb") as f, atomic_write(dp, "wb") as g:
                g.write(f.read())
    # spk2utt last: a part without it is incomplete.
    write_table(os.path.join(dst, "spk2utt"), spk2utt_from_utt2spk(utt2spk))


def split(data_dir: str, nj: int, per_utt: bool = False) -> list:
    """Split like Kaldi's ``utils/split_data.sh``: ``<dir>/split<nj>[utt]/{1..nj}``.

    By default whole speakers go to one part (contiguous in sorted order,
    balanced by utterance count); ``per_utt=True`` splits utterances evenly.
    Parts are reused while their stamp (``<split-dir>/.done``, utils_py.stamp) matches the
    data dir's files (size + mtime); otherwise the split dir is rebuilt.  Returns their paths.
    """
    utt2spk = read_table(os.path.join(data_dir, "utt2spk"))
    units = ([[u] for u in utt2spk] if per_utt else
             [v.split() for v in spk2utt_from_utt2spk(utt2spk).values()])
    if nj < 1:
        raise UnspeechError(f"number of jobs must be >= 1, got {nj}")
    if nj > len(units):
        raise UnspeechError(
            f"cannot split into {nj} jobs: only {len(units)} {'utterances' if per_utt else 'speakers'}: {data_dir}")
    root = os.path.join(data_dir, f"split{nj}{'utt' if per_utt else ''}")
    parts = [os.path.join(root, str(j + 1)) for j in range(nj)]
    sources = sorted(os.path.join(data_dir, n) for n in os.listdir(data_dir)
                     if not n.startswith(".") and os.path.isfile(os.path.join(data_dir, n)))
    split_stamp = os.path.join(root, ".done")
    sig = stamp.signature(files=sources, options={"nj": nj, "per_utt": per_utt})
    if stamp.is_current(split_stamp, sig, outputs=[os.path.join(p, "spk2utt") for p in parts]):
        return parts
    if os.path.isdir(root):   # parts of other data or another split: none of their files may survive
        shutil.rmtree(root)
    total = len(utt2spk)
    groups, current, done = [], [], 0
    for i, unit in enumerate(units):
        current += unit
        done += len(unit)
        remaining_units = len(units) - i - 1
        remaining_jobs = nj - len(groups) - 1
        if remaining_jobs > 0 and (done >= total * (len(groups) + 1) / nj or remaining_units == remaining_jobs):
            groups.append(current)
            current = []
    groups.append(current)
    for p, utts in zip(parts, groups):
        filter_dir(data_dir, p, utts)
    stamp.write(split_stamp, sig)
    return parts
