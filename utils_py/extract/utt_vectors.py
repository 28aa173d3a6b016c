"""One vector per utterance, read from an extraction (online-ivector) directory.

An extraction dir (``steps_unspeech/extract_unspeech.sh``) holds
``ivector_online.scp`` (one ``ceil(T/period) x dim`` matrix per utterance) and,
with ``--speaker-vectors true``, ``utt_vectors.scp`` (one mean vector per
utterance).  :func:`read_utt_vectors` prefers ``utt_vectors.scp`` and otherwise
averages the rows of each ``ivector_online.scp`` matrix.  An scp or ark file
may be given instead of a directory.

Usage::

    from utils_py.extract.utt_vectors import read_utt_vectors, write_utt_vectors

    keys, X, source = read_utt_vectors("exp/unspeech/ivectors_test")    # X: (n, dim) float32
    keys, X, _ = read_utt_vectors("exp/unspeech/ivectors_test", half_index=100)  # first 100 dims
    write_utt_vectors("exp/baseline/vectors", keys, X)   # utt_vectors.{ark,scp}

Every vector is checked: same dim as the first, finite values, a matrix with
at least one row; a violation raises UnspeechError naming the utterance.
"""
import os

import numpy as np

from utils_py.kaldi.datadir import c_sorted
from utils_py.fileio import ensure_dir
from utils_py.kaldi.tables import MatrixWriter, iter_matrices
from utils_py.log import UnspeechError

UTT_VECTORS = "utt_vectors.scp"
IVECTOR_ONLINE = "ivector_online.scp"


def vector_source(src: str) -> str:
    """The scp/ark to read for ``src``: a file as is, a dir's utt_vectors.scp or ivector_online.scp."""
    if os.path.isdir(src):
        for name in (UTT_VECTORS, IVECTOR_ONLINE):
            path = os.path.join(src, name)
            if os.path.isfile(path):
                return path
        raise UnspeechError(f"neither {UTT_VECTORS} nor {IVECTOR_ONLINE} in directory: {src}")
    if not os.path.exists(src.split(":", 1)[1] if src.startswith(("scp:", "ark:")) else src):
        raise UnspeechError(f"vector directory or file not found: {src}")
    return src


def utterance_vector(key: str, mat: np.ndarray, source: str) -> np.ndarray:
    """A 1-D vector for one utterance: the vector itself, or the mean of a matrix's rows."""
    if mat.ndim == 1:
        vec = mat
    elif mat.ndim == 2:
        if mat.shape[0] == 0:
            raise UnspeechError(f"utterance {key} has a matrix with no rows: {source}")
        vec = mat.mean(axis=0, dtype=np.float64)
    else:
        raise UnspeechError(f"utterance {key} is neither vector nor matrix (shape {mat.shape}): {source}")
    if vec.shape[0] == 0:
        raise UnspeechError(f"utterance {key} has an empty vector: {source}")
    if not np.isfinite(vec).all():
        raise UnspeechError(f"utterance {key} has NaN/Inf values: {source}")
    return vec.astype(np.float32, copy=False)


def read_utt_vectors(src: str, half_index: int = 0):
    """``(keys, X, source)``: utterance ids in file order, ``(n, dim)`` float32, the file read.

    ``half_index`` > 0 keeps only the first ``half_index`` dims (the target part
    of target+context features); it must not exceed the vector dim.
    """
    source = vector_source(src)
    keys, rows, dim, seen = [], [], None, set()
    for key, mat in iter_matrices(source):
        vec = utterance_vector(key, mat, source)
        if dim is None:
            dim = vec.shape[0]
        elif vec.shape[0] != dim:
            raise UnspeechError(
                f"utterance {key} has dim {vec.shape[0]}, expected {dim} like the first utterance: {source}")
        if key in seen:
            raise UnspeechError(f"duplicate utterance {key}: {source}")
        seen.add(key)
        keys.append(key)
        rows.append(vec)
    if not keys:
        raise UnspeechError(f"no utterances in: {source}")
    X = np.vstack(rows)
    if half_index:
        if not 0 < half_index <= dim:
            raise UnspeechError(f"--half-index {half_index} outside 1..{dim} (the vector dim): {source}")
        X = X[:, :half_index]
    return keys, np.ascontiguousarray(X, dtype=np.float32), source


def write_utt_vectors(out_dir: str, keys, X) -> str:
    """Write ``out_dir/utt_vectors.{ark,scp}`` in LC_ALL=C key order (scp last); return the scp path."""
    ensure_dir(out_dir)
    scp = os.path.join(out_dir, UTT_VECTORS)
    row = {key: i for i, key in enumerate(keys)}
    with MatrixWriter(os.path.join(out_dir, "utt_vectors.ark"), scp) as w:
        for key in c_sorted(row):
            w.write(key, np.asarray(X[row[key]], dtype=np.float32))
    return scp
