"""Kaldi table I/O (ark/scp) on top of kaldiio; our own thin ``kaldi_io``.

Reading handles every Kaldi matrix kind kaldiio knows, compressed CM/CM2/CM3
included.  Writing produces a binary ark plus an scp with *absolute* paths; the
scp is written under a temp name and renamed at the end, so a crashed writer
never leaves a complete-looking scp behind.

Usage::

    from utils_py.kaldi import tables

    for utt, mat in tables.iter_matrices("data/train/feats.scp"):   # or .ark
        ...
    feats = tables.open_scp("data/train/feats.scp")    # lazy dict
    with tables.MatrixWriter("fbank/raw.1.ark", "fbank/raw.1.scp") as w:
        w.write("utt1", np.zeros((10, 40), np.float32))
"""
import codecs
import contextlib
import os
import re
import struct

import kaldiio
import numpy as np
from kaldiio.compression_header import kAutomaticMethod
from kaldiio.matio import write_array

from utils_py.fileio import atomic_write, ensure_dir, kaldi_bytes, open_text, require_file, with_filename
from utils_py.log import UnspeechError


def _kaldi_codec(name):
    """UTF-8 that keeps any other byte as a surrogate (``fileio.open_text``), whatever ``errors`` asks."""
    if name != "utf_8_kaldi_ids":
        return None
    utf8 = codecs.lookup("utf-8")

    class Decoder(utf8.incrementaldecoder):
        def __init__(self, errors="strict"):
            super().__init__("surrogateescape")

    class Encoder(utf8.incrementalencoder):
        def __init__(self, errors="strict"):
            super().__init__("surrogateescape")

    return codecs.CodecInfo(name="utf_8_kaldi_ids", encode=lambda s, errors="strict": utf8.encode(s, "surrogateescape"),
                            decode=lambda b, errors="strict": utf8.decode(b, "surrogateescape"),
                            incrementalencoder=Encoder, incrementaldecoder=Decoder)


# kaldiio decodes keys (of arks, and scps it opens) strictly as UTF-8: let it keep Kaldi's byte
# strings as our own readers do, so that an id with a non-UTF-8 byte reads the same everywhere.
codecs.register(_kaldi_codec)
kaldiio.utils.default_encoding = kaldiio.matio.default_encoding = "utf_8_kaldi_ids"


def _strip_spec(spec: str):
    """``scp:x`` / ``ark:x`` / ``x.scp`` / ``x.ark`` -> (kind, path)."""
    if spec.startswith(("scp:", "ark:")):
        return spec[:3], spec[4:]
    if spec.endswith(".scp"):
        return "scp", spec
    return "ark", spec


def open_scp(path: str):
    """Lazy ``{key: matrix}`` view of an scp file (kaldiio's ``load_scp``)."""
    require_file(path, "scp file")
    try:
        return kaldiio.load_scp(path)
    except Exception as e:
        raise UnspeechError(f"cannot parse scp file: {path} ({e})") from None


def scp_keys(path: str):
    """Keys of an scp file in file order, without reading any matrix."""
    require_file(path, "scp file")
    keys = []
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise UnspeechError(f"bad line {n} (need '<key> <rxfilename>'): {path}")
            keys.append(parts[0])
    return keys


def read_matrix(rxspec: str, what: str = "matrix") -> np.ndarray:
    """Read one matrix from an rxspecifier like ``foo.ark:1234``."""
    try:
        return np.asarray(kaldiio.load_mat(rxspec))
    except Exception as e:
        raise UnspeechError(f"cannot read {what}: {rxspec} ({type(e).__name__}: {e})") from None


_RX_OFFSET = re.compile(r"^(?P<path>.+):(?P<offset>[0-9]+)$")


def _header_shape(f, offset: int):
    """``(rows, cols)`` from a binary matrix/vector header at ``offset`` of open file ``f``, or None."""
    f.seek(offset)
    head = f.read(32)
    if head[:2] != b"\0B" or b" " not in head[2:]:
        return None
    token, rest = head[2:].split(b" ", 1)
    if token in (b"CM", b"CM2", b"CM3") and len(rest) >= 16:
        rows, cols = struct.unpack("<ii", rest[8:16])
        return int(rows), int(cols)
    if token in (b"FM", b"DM") and len(rest) >= 10 and rest[0] == 4 and rest[5] == 4:
        return struct.unpack("<i", rest[1:5])[0], struct.unpack("<i", rest[6:10])[0]
    if token in (b"FV", b"DV") and len(rest) >= 5 and rest[0] == 4:
        return 1, struct.unpack("<i", rest[1:5])[0]
    return None


def matrix_shape(rxspec: str, what: str = "matrix", _files: dict = None) -> tuple:
    """``(rows, cols)`` of the matrix at an rxspecifier, reading only its header.

    Binary ``path:offset`` entries (``FM``/``DM`` and compressed ``CM``/``CM2``/``CM3``)
    are answered from the header; anything else (text, pipes, ranges) is read in full.
    A vector gives ``(1, dim)``.
    """
    rxspec = rxspec.strip()
    m = _RX_OFFSET.match(rxspec)
    if m and not rxspec.endswith("|"):
        path = m.group("path")
        try:
            if _files is None:
                with open(path, "rb") as f:
                    shape = _header_shape(f, int(m.group("offset")))
            else:
                if path not in _files:
                    _files[path] = open(path, "rb")
                shape = _header_shape(_files[path], int(m.group("offset")))
        except OSError as e:
            raise UnspeechError(f"cannot read {what}: {rxspec} ({e.strerror})") from None
        if shape is not None:
            return shape
    mat = read_matrix(rxspec, what)
    return (1, int(mat.shape[0])) if mat.ndim == 1 else (int(mat.shape[0]), int(mat.shape[1]))


def scp_shapes(scp_path: str) -> dict:
    """``{key: (rows, cols)}`` of every entry of an scp, from the headers only (fast)."""
    require_file(scp_path, "scp file")
    shapes, files = {}, {}
    try:
        with open_text(scp_path) as f:
            for n, line in enumerate(f, 1):
                parts = line.split(maxsplit=1)
                if len(parts) != 2:
                    raise UnspeechError(f"bad line {n} (need '<key> <rxfilename>'): {scp_path}")
                shapes[parts[0]] = matrix_shape(parts[1], f"matrix of utterance {parts[0]} in {scp_path}", files)
    finally:
        for handle in files.values():
            handle.close()
    return shapes


def iter_matrices(spec: str):
    """Yield ``(key, float32 matrix)`` from an scp or ark (``scp:``/``ark:`` prefixes allowed).

    Unreadable entries raise :class:`UnspeechError` naming the key and file.
    """
    kind, path = _strip_spec(spec)
    require_file(path, f"{kind} file")
    if kind == "scp":
        with open_text(path) as f:
            for n, line in enumerate(f, 1):
                parts = line.split(maxsplit=1)
                if len(parts) != 2:
                    raise UnspeechError(f"bad line {n} (need '<key> <rxfilename>'): {path}")
                key, rx = parts[0], parts[1].strip()
                yield key, read_matrix(rx, f"matrix of utterance {key} in {path}").astype(np.float32, copy=False)
    else:
        key = None
        try:
            for key, mat in kaldiio.load_ark(path):
                yield key, np.asarray(mat, dtype=np.float32)
        except UnspeechError:
            raise
        except Exception as e:
            after = f" after utterance {key}" if key else ""
            raise UnspeechError(f"cannot read ark (truncated or corrupt?){after}: {path} ({e})") from None


# Kaldi's default compression (copy-feats --compress=true, CompressedMatrix's kAutomaticMethod):
# matrices of more than 8 rows as "CM" (per-column 8-bit, kSpeechFeature), others as "CM2"
# (16-bit, kTwoByteAuto).  kaldiio uses Kaldi's numbering of the enum.
COMPRESSION_METHOD = kAutomaticMethod


class MatrixWriter:
    """Write float32 matrices (or vectors) to ``ark_path`` and an scp of absolute paths.

    ``compress=True`` writes matrices with Kaldi's compression (:data:`COMPRESSION_METHOD`,
    what ``copy-feats --compress=true`` does); vectors and empty matrices, which Kaldi cannot
    compress, stay float32.  The scp appears under its final name only after :meth:`close`
    (or the end of the ``with`` block) succeeds.
    """

    def __init__(self, ark_path: str, scp_path: str, compress: bool = False):
        self.compress = bool(compress)
        ensure_dir(os.path.dirname(os.path.abspath(ark_path)))
        self.ark_path = os.path.abspath(ark_path)
        self.scp_path = scp_path
        self._ark = open(self.ark_path, "wb")
        self._scp_ctx = atomic_write(scp_path)
        self._scp = self._scp_ctx.__enter__()
        self.count = 0

    def write(self, key: str, array: np.ndarray) -> None:
        if not key or any(c.isspace() for c in key):
            raise UnspeechError(f"invalid key (empty or with whitespace): {key!r}")
        try:
            self._ark.write(kaldi_bytes(key + " "))
            offset = self._ark.tell()
            array = np.ascontiguousarray(array, dtype=np.float32)
            method = COMPRESSION_METHOD if self.compress and array.ndim == 2 and array.size else None
            write_array(self._ark, array, compression_method=method)
        except OSError as e:  # disk full: name the ark
            raise with_filename(e, self.ark_path) from e
        try:
            self._scp.write(f"{key} {self.ark_path}:{offset}\n")
        except OSError as e:
            raise with_filename(e, self.scp_path) from e
        self.count += 1

    def close(self) -> None:
        try:
            self._ark.flush()
            os.fsync(self._ark.fileno())
            self._ark.close()
        except OSError as e:
            error = with_filename(e, self.ark_path)
            self.abort(error)  # no scp, no temp file
            raise error from e
        self._scp_ctx.__exit__(None, None, None)

    def abort(self, exc=None) -> None:
        with contextlib.suppress(OSError):  # a full disk fails the final flush too
            self._ark.close()
        self._scp_ctx.__exit__(type(exc) if exc else RuntimeError, exc, None)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            try:
                self.abort(exc or exc_type())
            except BaseException:
                pass
        return False


def merge_scps(parts, out_path: str) -> int:
    """Concatenate scp files into ``out_path`` sorted by key (C order), atomically."""
    lines = {}
    for p in parts:
        require_file(p, "scp file")
        with open_text(p) as f:
            for line in f:
                key = line.split(maxsplit=1)[0]
                if key in lines:
                    raise UnspeechError(f"duplicate key {key} when merging: {p}")
                lines[key] = line if line.endswith("\n") else line + "\n"
    with atomic_write(out_path) as f:
        for key in sorted(lines, key=kaldi_bytes):
            f.write(lines[key])
    return len(lines)
