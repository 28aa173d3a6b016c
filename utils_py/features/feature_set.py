"""A whole feature table (feats.scp / ark) as one float32 array.

Training samples windows from every utterance at random, so the features are
kept as one ``(total_frames, dim)`` array plus per-utterance ``offsets`` and
``lengths`` -- in memory, or memory-mapped from a cache directory for corpora
larger than RAM.  Both give the same :class:`FeatureSet` API.

Usage::

    from utils_py.features.feature_set import load_features

    fs = load_features("data/train/feats.scp")                     # in memory
    fs = load_features("data/train/feats.scp", cache_dir="exp/cache")  # memmap, built once
    fs.dim, fs.num_utts, fs.keys[0], fs.lengths[0]
    x = fs["utt1"]                     # (T, dim) view
    fs.data[fs.offsets[i] + t]         # frame t of utterance i

Every utterance is checked on load: a key not seen before, same dim as the first,
at least one frame, finite values; a violation raises UnspeechError naming the utterance.
"""
import json
import os

import numpy as np

from utils_py import stamp
from utils_py.fileio import atomic_write, atomic_write_text, ensure_dir, remove_stale_temps, require_file
from utils_py.kaldi.tables import iter_matrices
from utils_py.log import UnspeechError

_CACHE_VERSION = 1


class FeatureSet:
    """Features of many utterances, concatenated: ``data[offsets[i]:offsets[i]+lengths[i]]``."""

    def __init__(self, keys, lengths, data, source="", meta=None):
        self.keys = list(keys)
        self.meta = dict(meta or {})   # e.g. {"sample_rate": 16000} of a waveform set
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.data = data
        self.source = source
        self._index = {k: i for i, k in enumerate(self.keys)}

    @property
    def dim(self) -> int:
        return int(self.data.shape[1])

    @property
    def num_utts(self) -> int:
        return len(self.keys)

    @property
    def num_frames(self) -> int:
        return int(self.lengths.sum())

    def index(self, key: str) -> int:
        return self._index[key]

    def __contains__(self, key):
        return key in self._index

    def __getitem__(self, key) -> np.ndarray:
        i = key if isinstance(key, (int, np.integer)) else self._index[key]
        o = self.offsets[i]
        return self.data[o:o + self.lengths[i]]

    def __len__(self):
        return len(self.keys)

    def subset(self, keys) -> "FeatureSet":
        """A new in-memory FeatureSet with only ``keys`` (in the given order)."""
        mats = [np.asarray(self[k]) for k in keys]
        data = np.concatenate(mats) if mats else np.zeros((0, self.dim), np.float32)
        return FeatureSet(keys, [len(m) for m in mats], data, self.source, self.meta)


def _checked(key, mat, dim, source):
    if mat.ndim != 2:
        raise UnspeechError(f"utterance {key} is not a matrix (shape {mat.shape}): {source}")
    if mat.shape[0] == 0:
        raise UnspeechError(f"utterance {key} has no frames: {source}")
    if dim is not None and mat.shape[1] != dim:
        raise UnspeechError(
            f"utterance {key} has feature dim {mat.shape[1]}, expected {dim} like the first utterance: {source}")
    if not np.isfinite(mat).all():
        bad = int(np.argwhere(~np.isfinite(mat))[0][0])
        raise UnspeechError(f"utterance {key} has NaN/Inf values (frame {bad}): {source}")
    return mat


def check_utterance(key: str, mat: np.ndarray, dim: int = None, source: str = "") -> np.ndarray:
    """Return ``mat`` if it is a finite ``(T >= 1, dim)`` matrix, else raise UnspeechError naming ``key``.

    For code that streams utterances itself (e.g. extraction) instead of loading a FeatureSet.
    """
    return _checked(key, mat, dim, source)


def _unique(key, seen, source):
    if key in seen:
        raise UnspeechError(f"duplicate utterance {key}: {source}")
    seen.add(key)


def _collect(items, source):
    """Every ``(key, matrix)`` of ``items``, checked, as (keys, matrices)."""
    keys, mats, dim, seen = [], [], None, set()
    for key, mat in items:
        _unique(key, seen, source)
        mats.append(_checked(key, mat, dim, source))
        dim = mat.shape[1]
        keys.append(key)
    if not keys:
        raise UnspeechError(f"no utterances in: {source}")
    return keys, mats


def load_features(spec: str, cache_dir: str = None) -> FeatureSet:
    """Load an scp/ark as a FeatureSet; with ``cache_dir`` build/reuse a memmap cache.

    The cache (``data.f32`` + ``index.json``) is rebuilt when the source file is
    newer than it or has changed size.  Building streams one utterance at a
    time, so it never needs the whole corpus in memory.
    """
    signature = _source_stamp(spec) if cache_dir is not None else None
    return build_feature_set(lambda: iter_matrices(spec), spec, cache_dir, signature)


def build_feature_set(make_items, source: str, cache_dir: str = None, signature: dict = None,
                      meta: dict = None) -> FeatureSet:
    """A FeatureSet of the ``(key, (T, dim) matrix)`` pairs ``make_items()`` yields (each checked).

    In memory without ``cache_dir``; else memory-mapped from ``cache_dir``, built once and
    reused while its stamp equals ``signature`` (what the items depend on).  ``meta``: a dict
    ``make_items`` fills while it runs (e.g. the sample rate); kept in the cache and set as
    ``FeatureSet.meta``.
    """
    meta = {} if meta is None else meta
    if cache_dir is None:
        keys, mats = _collect(make_items(), source)
        data = np.concatenate(mats, dtype=np.float32)   # peak: the matrices + one copy (no astype copy)
        return FeatureSet(keys, [len(m) for m in mats], data, source, meta)
    return _load_cached(make_items, source, cache_dir, signature, meta)


def _source_stamp(spec):
    """What the cache depends on (utils_py.stamp signature): the source file (size + mtime), the format."""
    path = spec.split(":", 1)[1] if spec.startswith(("scp:", "ark:")) else spec
    require_file(path, "feature file")
    return stamp.signature(files=[path], options={"version": _CACHE_VERSION})


def _load_cached(make_items, source, cache_dir, signature, meta):
    index_path = os.path.join(cache_dir, "index.json")
    data_path = os.path.join(cache_dir, "data.f32")
    if os.path.isfile(index_path):
        with open(index_path) as f:
            index = json.load(f)
        if index.get("stamp") == signature and os.path.isfile(data_path):
            n = int(sum(index["lengths"]))
            data = np.memmap(data_path, dtype=np.float32, mode="r", shape=(n, index["dim"]))
            return FeatureSet(index["keys"], index["lengths"], data, source, index.get("meta", {}))
    ensure_dir(cache_dir)
    stamp.clear(index_path)   # index.json is the cache's stamp: gone while data.f32 is rewritten
    remove_stale_temps(data_path)
    keys, lengths, dim, seen = [], [], None, set()
    with atomic_write(data_path, "wb") as f:
        for key, mat in make_items():
            _unique(key, seen, source)
            _checked(key, mat, dim, source)
            dim = mat.shape[1]
            f.write(np.ascontiguousarray(mat, dtype=np.float32).tobytes())
            keys.append(key)
            lengths.append(int(mat.shape[0]))
        if not keys:
            raise UnspeechError(f"no utterances in: {source}")
    atomic_write_text(index_path, json.dumps({"stamp": signature, "dim": dim, "keys": keys, "lengths": lengths,
                                              "meta": meta}))
    data = np.memmap(data_path, dtype=np.float32, mode="r", shape=(int(sum(lengths)), dim))
    return FeatureSet(keys, lengths, data, source, meta)
