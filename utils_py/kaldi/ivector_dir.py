"""Kaldi online-ivector dirs: read them and check them against their data dirs.

An online-ivector dir (Kaldi's ``steps/online/nnet2/extract_ivectors_online.sh``,
or ours, ``steps_unspeech/extract_unspeech.sh``) holds ``ivector_online.scp``
(one ``rows x dim`` matrix per utterance), ``ivector_period`` (frames per row)
and usually ``final.ie.id`` (the extractor's id; Kaldi refuses to decode with
i-vectors whose id differs from the training ones).  Kaldi's nnet3 needs, for
every utterance of the data dir it trains or decodes on, a matrix with
``|T - rows * period| <= period`` (T: frames of the utterance) and one dim.

Usage::

    from utils_py.kaldi.ivector_dir import check_ivector_dir, read_ivector_dir

    iv = read_ivector_dir("exp/unspeech/ivectors_test")   # headers only, fast
    iv.period, iv.dim, iv.ie_id, iv.shapes["utt1"]         # (rows, dim)
    iv = check_ivector_dir("exp/unspeech/ivectors_test", "data/test")   # UnspeechError if not usable
"""
import os

from utils_py.kaldi import datadir
from utils_py.kaldi import tables
from utils_py.fileio import open_text, require_file
from utils_py.log import UnspeechError

SCP = "ivector_online.scp"
PERIOD = "ivector_period"
IE_ID = "final.ie.id"


class IvectorDir:
    """What an online-ivector dir holds, from its matrix headers."""

    def __init__(self, path: str, period: int, shapes: dict, ie_id: str = None):
        self.path = path
        self.period = period
        self.shapes = shapes
        self.ie_id = ie_id

    @property
    def scp(self) -> str:
        return os.path.join(self.path, SCP)

    @property
    def dim(self) -> int:
        """The dim of every row (checked to be one dim by :func:`read_ivector_dir`)."""
        return next(iter(self.shapes.values()))[1]

    def __len__(self):
        return len(self.shapes)


def read_period(path: str) -> int:
    """``ivector_period`` of dir ``path`` as an int >= 1."""
    file = require_file(os.path.join(path, PERIOD), "ivector_period")
    with open_text(file) as f:
        text = f.read().strip()
    if not text.isdigit() or int(text) < 1:
        raise UnspeechError(f"ivector_period must be a positive integer, found {text!r}: {file}")
    return int(text)


def read_ivector_dir(path: str) -> IvectorDir:
    """Read period, id and every matrix's shape; UnspeechError if malformed or of mixed dims."""
    if not os.path.isdir(path):
        raise UnspeechError(f"online-ivector dir not found: {path}")
    scp = os.path.join(path, SCP)
    if not os.path.isfile(scp):
        raise UnspeechError(f"no {SCP} (extraction not run or not finished?): {path}")
    period = read_period(path)
    shapes = tables.scp_shapes(scp)
    if not shapes:
        raise UnspeechError(f"{SCP} is empty: {scp}")
    first_key, (_, dim) = next(iter(shapes.items()))
    for key, (rows, cols) in shapes.items():
        if cols != dim:
            raise UnspeechError(f"utterance {key} has dim {cols}, but {first_key} has {dim}: {scp}")
        if rows < 1:
            raise UnspeechError(f"utterance {key} has no rows: {scp}")
    ie_id = None
    id_file = os.path.join(path, IE_ID)
    if os.path.isfile(id_file):
        with open(id_file, encoding="utf-8") as f:
            ie_id = f.read().strip() or None
    return IvectorDir(path, period, shapes, ie_id)


def data_dir_frames(data_dir: str) -> dict:
    """``{utt: frames}`` of a data dir, from the headers of its ``feats.scp``."""
    feats = os.path.join(data_dir, "feats.scp")
    if not os.path.isfile(feats):
        raise UnspeechError(f"no feats.scp in data dir (features not made?): {data_dir}")
    return {k: rows for k, (rows, _) in tables.scp_shapes(feats).items()}


def check_ivector_dir(ivector_dir: str, data_dir: str, dim: int = None, period: int = None) -> IvectorDir:
    """Check that ``ivector_dir`` can go with ``data_dir`` into Kaldi's nnet3.

    Every utterance of the data dir must have a matrix (extra ones are
    allowed, as in Kaldi), ``|T - rows * period| <= period``, one dim (``dim``
    if given) and, if given, the period ``period``.  Raises UnspeechError
    naming the first offending utterance; returns the IvectorDir.
    """
    iv = read_ivector_dir(ivector_dir)
    utts = datadir.read_table(os.path.join(data_dir, "utt2spk")) if os.path.isdir(data_dir) else None
    if utts is None:
        raise UnspeechError(f"data directory not found: {data_dir}")
    frames = data_dir_frames(data_dir)
    missing = [u for u in utts if u not in iv.shapes]
    if missing:
        raise UnspeechError(f"{len(missing)} of {len(utts)} utterance(s) of {data_dir} have no row in "
                            f"the online-ivector dir, first {missing[0]}: {iv.scp}")
    if period is not None and iv.period != int(period):
        raise UnspeechError(f"ivector_period is {iv.period}, expected {period}: {ivector_dir}")
    if dim is not None and iv.dim != int(dim):
        raise UnspeechError(f"embedding dim is {iv.dim}, expected {dim}: {iv.scp}")
    for utt in utts:
        if utt not in frames:
            raise UnspeechError(f"utterance {utt} has no features: {os.path.join(data_dir, 'feats.scp')}")
        rows, t = iv.shapes[utt][0], frames[utt]
        if abs(t - rows * iv.period) > iv.period:
            raise UnspeechError(
                f"utterance {utt} has {rows} rows for {t} frames (period {iv.period}; need "
                f"|T - rows*period| <= period, i.e. about {-(-t // iv.period)} rows): {iv.scp}")
    return iv
