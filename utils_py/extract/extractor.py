"""Unspeech embeddings of every utterance, written as a Kaldi online-ivector dir.

Row ``i`` of an utterance of ``T`` frames is the embedding of the window that
starts at frame ``i * period``; an utterance has exactly ``ceil(T / period)``
rows (what Kaldi's nnet3 expects of ``ivector_online.scp`` + ``ivector_period``).
Windows that would run past the last frame are completed by ``padding``:

``repeat`` (default)
    the utterance is extended by repeating its last frame, so every row gets a
    full window (the original unspeech's ``kaldi_normalize_to_input_length``).
``zeros``
    the utterance is extended by all-zero frames.
``last-window``
    rows whose window would run past the end reuse the last window that lies
    completely inside the utterance (start ``T - W``), i.e. the last embedding
    is repeated (the original's ``genfeat_interpolate_outputlength_padding``).
    An utterance shorter than one window is completed like ``repeat`` (the
    original filled it with zeros).

Usage::

    from utils_py.kaldi import tables
    from utils_py.extract.extractor import Extractor, finalize, run_job
    from utils_py.model.network import load_model_dir

    ex = Extractor(load_model_dir("exp/unspeech"), period=10)
    for key, rows in ex.extract(tables.iter_matrices("data/test/feats.scp")):
        ...                                   # rows: (ceil(T/10), 100) float32

    # what steps_unspeech/extract_unspeech.sh runs (after datadir.split(data, 2)):
    run_job("data/test/split2/1", "exp/unspeech", "exp/unspeech/ivectors_test", 1, period=10)
    finalize("data/test", "exp/unspeech", "exp/unspeech/ivectors_test", nj=2, period=10)

The output dir: ``ivector_online.JOB.{ark,scp}`` per job (``utt_vectors.JOB.*``
with ``speaker_vectors``), a ``.extract.JOB.done`` marker per finished job
(model files, options and input list it was made with), and from
:func:`finalize` ``ivector_period``, ``final.ie.id`` (the model id),
``config.json`` (the model's), ``extract_opts.json``, ``utt_vectors.scp`` and
last ``ivector_online.scp``.  With ``compress`` (the step's default, as Kaldi's
extract_ivectors_online.sh) the rows are Kaldi compressed matrices; ``utt_vectors`` are
float32 vectors either way.  A rerun redoes only jobs whose marker is missing
or stale; TensorFlow is not even loaded for the others.  A job whose work (rows x FLOPs of one
window) is at most ``NUMPY_MAX_FLOPS`` runs the NumPy towers (:mod:`utils_py.model.inference`, same
rows within float tolerance) and never imports TensorFlow: its start-up would cost more than it saves.

``fast=True`` runs the conv stack once over the whole (padded) utterance and
only the head per row, on the slice of the feature map nearest to the row's
window.  The conv stack pools time by ``s = 2 ** pools`` (16 for Vgg16, 32 for
Vgg16big), so a row's window is taken at frame ``s * round(i * period / s)``
instead of ``i * period`` (off by at most ``s / 2`` frames), and the conv
layers near a window's edges see the neighbouring frames instead of the
zero padding of a lone window.  ``compare_fast(...)`` measures the deviation
(mean cosine similarity of fast vs exact rows).

End-to-end models (``end_to_end`` in their config) read the audio of the data dir
(``wav.scp``, ``segments``) at the sample rate they were trained on.  Rows sit on Kaldi's
frame grid (:class:`~utils_py.features.waveform.FrameGrid`: ``frame_shift``,
``frame_length``, ``snip_edges``, the framing of the chain model's MFCCs): an utterance
of ``N`` samples has the ``T`` frames Kaldi's feature binaries give it and
``ceil(T / period)`` rows; row ``i``'s window starts at sample ``i * period * shift``.
Where the data dir also has ``feats.scp``, every utterance's ``T`` is checked against it.
"""
import functools
import hashlib
import itertools
import json
import os

import numpy as np

from utils_py.kaldi import datadir
from utils_py.kaldi import tables
from utils_py.features import audio
from utils_py.features.feature_set import check_utterance
from utils_py.features.waveform import FrameGrid, check_rate
from utils_py import stamp
from utils_py.fileio import atomic_write_text, ensure_dir, remove_stale_temps, require_file
from utils_py.log import UnspeechError, get_logger

_THREADS_SET = []
# Largest job (2 x multiply-adds of all its windows) run with NumPy instead of TensorFlow: NumPy has no
# start-up but is slower per window.  About the smaller crossover of bench/results/bench_startup.md (VggCpu,
# mixed precision: 79-91 GFLOP in two runs on a busy 2-core machine; Vgg16big: 383-625).
NUMPY_MAX_FLOPS = 80e9
PADDINGS = ("repeat", "zeros", "last-window")
SCP = "ivector_online.scp"
UTT_VECTORS = "utt_vectors.scp"


# ----------------------------------------------------------------- windows
def num_rows(num_frames: int, period: int) -> int:
    """Rows of an utterance of ``num_frames`` frames: ``ceil(num_frames / period)``."""
    return -(-int(num_frames) // int(period))


def window_starts(num_frames: int, period: int, window: int, padding: str = "repeat", hop: int = 1,
                  length: int = None) -> np.ndarray:
    """First input row (frame; end-to-end: sample, ``hop`` per frame) of each row's window, in the
    (padded) utterance of ``length`` input rows (default ``num_frames``)."""
    starts = np.arange(num_rows(num_frames, period), dtype=np.int64) * (int(period) * int(hop))
    if padding == "last-window":
        end = int(num_frames if length is None else length)
        np.minimum(starts, max(end - int(window), 0), out=starts)
    elif padding not in PADDINGS:
        raise UnspeechError(f"unknown --padding {padding} (choose from {', '.join(PADDINGS)})")
    return starts


def pad_frames(feats: np.ndarray, length: int, padding: str = "repeat") -> np.ndarray:
    """``feats`` extended at the end to ``length`` frames (repeat last frame, or zeros)."""
    extra = int(length) - len(feats)
    if extra <= 0:
        return feats
    if padding == "zeros":
        tail = np.zeros((extra, feats.shape[1]), feats.dtype)
    else:  # repeat; last-window only pads utterances shorter than a window, like repeat
        tail = np.broadcast_to(feats[-1:], (extra, feats.shape[1]))
    return np.concatenate([feats, tail])


def utterance_windows(feats: np.ndarray, period: int, window: int, padding: str = "repeat", hop: int = 1,
                      num_frames: int = None):
    """``(windows, starts)``: a read-only ``(L - window + 1, window, dim)`` view of all
    windows of the padded utterance, and the start of each row's window (index into it).
    ``feats``: frames, or samples ``(N, 1)`` with ``hop`` samples per frame and ``num_frames`` frames."""
    frames = len(feats) if num_frames is None else num_frames
    starts = window_starts(frames, period, window, padding, hop, len(feats))
    x = np.ascontiguousarray(pad_frames(feats, int(starts[-1]) + window, padding), dtype=np.float32)
    view = np.lib.stride_tricks.as_strided(
        x, shape=(len(x) - window + 1, window, x.shape[1]),
        strides=(x.strides[0],) + x.strides, writeable=False)
    return view, starts


# --------------------------------------------------------------- extractor
class Extractor:
    """Embeds utterances with a loaded model, many windows per forward pass.

    ``towers``: ("target",) by default; ``combine_contexts=True`` appends the
    context tower (rows of ``2 * embedding_size``).  An end-to-end model takes samples
    (1-D, at the model's ``sample_rate``) and puts rows on the Kaldi frame grid of
    ``frame_shift`` / ``frame_length`` ms and ``snip_edges``.
    """

    def __init__(self, model, period: int = 10, padding: str = "repeat", combine_contexts: bool = False,
                 fast: bool = False, batch_size: int = 512, chunk_windows: int = None,
                 frame_shift: float = 10.0, frame_length: float = 25.0, snip_edges: bool = True):
        if int(period) < 1:
            raise UnspeechError(f"--period must be >= 1, got {period}")
        if padding not in PADDINGS:
            raise UnspeechError(f"unknown --padding {padding} (choose from {', '.join(PADDINGS)})")
        if int(batch_size) < 1:
            raise UnspeechError(f"--batch-size must be >= 1, got {batch_size}")
        self.model = model
        self.period = int(period)
        self.padding = padding
        self.fast = bool(fast)
        self.batch_size = int(batch_size)
        self.towers = ("target", "context") if combine_contexts else ("target",)
        self.feature_dim = int(model.config["feature_dim"])
        self.dim = int(model.config["embedding_size"]) * len(self.towers)
        self.grid, self.hop = None, 1   # end-to-end: Kaldi's frames over the samples
        if model.config.get("end_to_end"):
            if not model.config.get("sample_rate"):
                raise UnspeechError("end-to-end model config has no sample_rate (retrain it)")
            self.grid = FrameGrid(int(model.config["sample_rate"]), frame_shift, frame_length, snip_edges)
            self.hop = self.grid.shift
        # Windows gathered from several utterances before one embed() call.
        self.chunk_windows = int(chunk_windows or 8 * self.batch_size)
        self._fast_fns = {}

    def extract(self, utterances, source: str = ""):
        """Yield ``(key, rows)`` for each ``(key, feats)`` (end-to-end: ``(key, samples)``), in input order.

        Each utterance is checked first (finite, >= 1 frame, the model's feature
        dim); a bad one raises UnspeechError naming it and ``source``.
        """
        pending, pending_rows = [], 0
        for key, feats in utterances:
            feats = np.asarray(feats)
            if self.grid is not None:
                feats = feats.reshape(-1, 1) if feats.ndim == 1 else feats
            if feats.ndim == 2 and feats.shape[0] > 0 and feats.shape[1] != self.feature_dim:
                raise UnspeechError(f"utterance {key} has feature dim {feats.shape[1]}, the model expects "
                                    f"{self.feature_dim}{' (samples)' if self.grid else ''}: {source}")
            check_utterance(key, feats, self.feature_dim, source)
            frames = self.num_frames(len(feats), key, source)
            pending.append((key, feats, frames))
            pending_rows += num_rows(frames, self.period)
            if pending_rows >= self.chunk_windows:
                yield from self._embed_group(pending)
                pending, pending_rows = [], 0
        if pending:
            yield from self._embed_group(pending)

    def embed_utterance(self, feats: np.ndarray) -> np.ndarray:
        """Rows of one utterance (convenience wrapper of :meth:`extract`)."""
        return next(self.extract([("utt", feats)]))[1]

    def num_frames(self, length: int, key: str = "?", source: str = "") -> int:
        """Frames of an utterance of ``length`` input rows: itself, or Kaldi's frames of that many samples."""
        if self.grid is None:
            return int(length)
        frames = self.grid.num_frames(length)
        if frames < 1:
            raise UnspeechError(f"utterance {key} has {length} samples, fewer than one {self.grid.frame_length_ms:g} "
                                f"ms frame ({self.grid.length} samples at {self.grid.sample_rate} Hz): {source}")
        return frames

    def _embed_group(self, group):
        per_tower = [self._fast_tower(group, t) if self.fast else self._exact_tower(group, t)
                     for t in self.towers]
        rows = np.concatenate(per_tower, axis=1) if len(per_tower) > 1 else per_tower[0]
        offset = 0
        for key, _, frames in group:
            n = num_rows(frames, self.period)
            yield key, rows[offset:offset + n]
            offset += n

    def _exact_tower(self, group, tower):
        window = self.model.window_length_of(tower)
        views = [utterance_windows(f, self.period, window, self.padding, self.hop, t) for _, f, t in group]
        batch = np.empty((sum(len(s) for _, s in views), window, self.feature_dim), np.float32)
        offset = 0
        for view, starts in views:
            batch[offset:offset + len(starts)] = view[starts]   # np.take would copy the whole strided view
            offset += len(starts)
        return self.model.embed(batch, tower=tower, batch_size=self.batch_size)

    # ---- fast mode: conv stack once per utterance, head per row
    def _fast_functions(self, tower):
        if tower not in self._fast_fns and getattr(self.model, "backend", "keras") == "numpy":
            self._fast_fns[tower] = (self.model.conv_stack(tower), self.model.head(tower),
                                     self.model.head_input_shape(tower)[0], self.model.time_stride)
        if tower not in self._fast_fns:
            import tensorflow as tf
            conv, head = self.model.conv_stack(tower), self.model.head(tower)
            conv_fn = tf.function(lambda x: conv(x, training=False), input_signature=[
                tf.TensorSpec((None, None, self.feature_dim), tf.float32)])
            head_in = tuple(int(v) for v in head.input_shape[1:])
            head_fn = tf.function(lambda x: head(x, training=False), input_signature=[
                tf.TensorSpec((None,) + head_in, tf.float32)])
            stride = self.model.time_stride  # input rows per feature-map row (2 ** pools; e2e: x front-end)
            self._fast_fns[tower] = (conv_fn, head_fn, head_in[0], stride)
        return self._fast_fns[tower]

    def _fast_tower(self, group, tower):
        conv_fn, head_fn, fmap_len, stride = self._fast_functions(tower)
        window = self.model.window_length_of(tower)
        slices = []
        for _, feats, frames in group:
            starts = window_starts(frames, self.period, window, self.padding, self.hop, len(feats))
            length = max(int(starts[-1]) + window, len(feats))
            length = -(-length // stride) * stride
            x = pad_frames(np.asarray(feats, np.float32), length, self.padding)
            fmap = np.asarray(conv_fn(x[None]))[0]                  # (T', F', C)
            pos = np.rint(starts / stride).astype(np.int64)
            np.clip(pos, 0, len(fmap) - fmap_len, out=pos)
            idx = pos[:, None] + np.arange(fmap_len)[None, :]
            slices.append(fmap[idx])                                # (rows, fmap_len, F', C)
        batch = np.concatenate(slices)
        out = [np.asarray(head_fn(batch[i:i + self.batch_size])) for i in range(0, len(batch), self.batch_size)]
        return np.concatenate(out).astype(np.float32, copy=False)


def compare_fast(model, utterances, period: int = 10, padding: str = "repeat", tower_opts=None) -> dict:
    """Deviation of ``fast`` from exact extraction: cosine similarity of matching rows.

    Returns ``{"mean_cosine", "min_cosine", "mean_cosine_centered", "rows"}`` over all rows
    of ``utterances``; "centered" first subtracts the mean exact row from both (the
    direction all rows share, large for untrained models, inflates the plain cosine).
    """
    opts = dict(tower_opts or {})
    utts = list(utterances)
    exact = np.concatenate([r for _, r in Extractor(model, period, padding, **opts).extract(utts)])
    fast = np.concatenate([r for _, r in Extractor(model, period, padding, fast=True, **opts).extract(utts)])

    def cosine(a, b):
        return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)

    cos = cosine(exact, fast)
    mean = exact.mean(axis=0)
    return {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()),
            "mean_cosine_centered": float(cosine(exact - mean, fast - mean).mean()), "rows": int(len(cos))}


# -------------------------------------------------------- output directory
def job_files(out_dir: str, job: int) -> dict:
    """Paths a job writes in ``out_dir`` (its ark/scp, utt-vector ark/scp, done marker)."""
    j = str(job)
    return {
        "ark": os.path.join(out_dir, f"ivector_online.{j}.ark"),
        "scp": os.path.join(out_dir, f"ivector_online.{j}.scp"),
        "vec_ark": os.path.join(out_dir, f"utt_vectors.{j}.ark"),
        "vec_scp": os.path.join(out_dir, f"utt_vectors.{j}.scp"),
        "done": os.path.join(out_dir, f".extract.{j}.done"),
    }


@functools.lru_cache(maxsize=4)
def model_files_id(model_dir: str) -> str:
    """Hash of the model dir's ``config.json`` and ``final.*`` weight files: tells whether a
    job's output is still current without loading TensorFlow."""
    names = ["config.json"] + sorted(n for n in os.listdir(model_dir) if n.startswith("final."))
    h = hashlib.sha1()
    for name in names:
        path = require_file(os.path.join(model_dir, name), "model file")
        h.update(f"{name}\0".encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def is_end_to_end(model_dir: str) -> bool:
    """Whether the model of ``model_dir`` reads audio (``end_to_end`` in its config.json)."""
    from utils_py.model.network import read_config
    return bool(read_config(model_dir).get("end_to_end", False))


def job_inputs(split_dir: str, end_to_end: bool) -> list:
    """The tables a job reads: ``feats.scp``; end-to-end: ``wav.scp`` (+ ``segments``, + ``feats.scp``
    whose frame counts it checks), each of them present."""
    if not end_to_end:
        return [require_file(os.path.join(split_dir, "feats.scp"), "feats.scp")]
    names = [require_file(os.path.join(split_dir, "wav.scp"), "wav.scp (end-to-end model)")]
    return names + [p for p in (os.path.join(split_dir, n) for n in ("segments", "feats.scp")) if os.path.isfile(p)]


def job_signature(model_dir: str, split_dir: str, opts: dict) -> dict:
    """What a job's output depends on (its ``.done`` stamp): model files, options and its exact input list."""
    inputs = job_inputs(split_dir, is_end_to_end(model_dir))
    return stamp.signature(contents=inputs, options=dict(opts, model_files=model_files_id(model_dir)))


def job_is_done(out_dir: str, job: int, signature: dict) -> bool:
    """The job's stamp matches ``signature`` and its scps exist."""
    files = job_files(out_dir, job)
    want = [files["scp"]] + ([files["vec_scp"]] if signature["options"]["speaker_vectors"] else [])
    return stamp.is_current(files["done"], signature, want)


@functools.lru_cache(maxsize=2)
def load_model(model_dir: str, backend: str = "keras"):
    """The model of ``model_dir`` (loaded once per process), clear error when missing.
    ``backend``: "keras" (TensorFlow) or "numpy" (utils_py.model.inference: no TensorFlow import)."""
    if not os.path.isdir(model_dir):
        raise UnspeechError(f"model directory not found: {model_dir}")
    if backend == "numpy":
        from utils_py.model.inference import load_numpy_model
        return load_numpy_model(model_dir)
    from utils_py.model.network import load_model_dir
    return load_model_dir(model_dir)


def _job_extractor(model_dir, make_extractor, split_dir, num_threads):
    """``(extractor, utterances, source)`` of a job, with the NumPy model when the job's work (its rows
    times the FLOPs of one window, read from the first utterances until NUMPY_MAX_FLOPS) is small
    enough for NumPy to finish before TensorFlow would have started, else the Keras one."""
    set_threads(num_threads, "numpy")   # BLAS threads, before the NumPy model runs its probe
    ex = make_extractor(load_model(model_dir, "numpy"))
    utterances, source = job_utterances(split_dir, ex)
    utterances = iter(utterances)
    flops = sum(ex.model.window_flops[t] for t in ex.towers)
    head, rows = [], 0
    for key, x in utterances:
        head.append((key, x))
        rows += num_rows(ex.num_frames(len(x), key, source), ex.period)
        if rows * flops > NUMPY_MAX_FLOPS:
            set_threads(num_threads)
            ex = make_extractor(load_model(model_dir, "keras"))
            break
    return ex, itertools.chain(head, utterances), source


def extractor_options(period=10, padding="repeat", combine_contexts=False, fast=False,
                      speaker_vectors=False, batch_size=512, compress=True, frame_shift=10.0,
                      frame_length=25.0, snip_edges=True) -> dict:
    """The options a job's output depends on (its ``.done`` signature, ``extract_opts.json``).

    ``compress``: ``ivector_online`` rows as Kaldi compressed matrices (what Kaldi's
    extract_ivectors_online.sh writes by default); ``utt_vectors`` are Kaldi vectors, which
    Kaldi cannot compress, and stay float32 either way.  ``frame_shift`` / ``frame_length`` (ms),
    ``snip_edges``: the frame grid of end-to-end models (ignored by fbank models)."""
    return {"period": int(period), "padding": padding, "combine_contexts": bool(combine_contexts),
            "fast": bool(fast), "speaker_vectors": bool(speaker_vectors), "batch_size": int(batch_size),
            "compress": bool(compress), "frame_shift": float(frame_shift), "frame_length": float(frame_length),
            "snip_edges": bool(snip_edges)}


def check_inputs(data_dir: str, model_dir: str) -> dict:
    """Check a data dir and model dir before any job starts; return the model config.

    Reads only matrix headers: every feats.scp entry must be readable, have at
    least one frame and the model's feature dim.  Errors name the utterance.
    An end-to-end model needs ``wav.scp`` instead (every file entry present); its
    sample rate and frame counts are checked by the jobs as they read the audio.
    """
    from utils_py.model.network import WEIGHTS_FILE, read_config
    if not os.path.isdir(model_dir):
        raise UnspeechError(f"model directory not found: {model_dir}")
    config = read_config(model_dir)
    require_file(os.path.join(model_dir, WEIGHTS_FILE), "model weights")
    for key in ("feature_dim", "window_length", "embedding_size") + (("sample_rate",) if config.get("end_to_end")
                                                                      else ()):
        if key not in config:
            raise UnspeechError(f"model config has no {key}: {os.path.join(model_dir, 'config.json')}")
    if config.get("end_to_end"):
        audio.check_data_dir(data_dir)
        return config
    datadir.validate(data_dir, need=("feats.scp",))
    feats_scp = os.path.join(data_dir, "feats.scp")
    dim = int(config["feature_dim"])
    for key, (rows, cols) in tables.scp_shapes(feats_scp).items():
        if rows < 1:
            raise UnspeechError(f"utterance {key} has no frames: {feats_scp}")
        if cols != dim:
            raise UnspeechError(f"utterance {key} has feature dim {cols}, the model expects {dim} "
                                f"({model_dir}): {feats_scp}")
    return config


def run_job(split_dir: str, model_dir: str, out_dir: str, job: int, model=None, num_threads: int = None,
            **opts) -> bool:
    """Extract the utterances of ``split_dir/feats.scp`` as job ``job`` of ``out_dir``.

    Skips the job (returns False, without loading TensorFlow) when its
    ``.done`` marker matches model files, options and input; otherwise writes
    ``ivector_online.JOB.{ark,scp}`` (+ ``utt_vectors.JOB.*``), marker last.
    ``model``: the already loaded model of ``model_dir`` (else it is loaded: the NumPy towers for a
    job of at most NUMPY_MAX_FLOPS, which then never imports TensorFlow, else the Keras model);
    ``num_threads``: TensorFlow's (NumPy's BLAS) threads.
    """
    log = get_logger("extract_unspeech")
    opts = extractor_options(**opts)
    if not os.path.isdir(model_dir):
        raise UnspeechError(f"model directory not found: {model_dir}")
    ensure_dir(out_dir)
    files = job_files(out_dir, job)
    signature = job_signature(model_dir, split_dir, opts)
    if job_is_done(out_dir, job, signature):
        log.info(f"job {job}: already done ({files['scp']})")
        return False
    stamp.clear(files["done"])
    for stale in (files["scp"], files["vec_scp"]):
        remove_stale_temps(stale)
        if os.path.exists(stale):
            os.remove(stale)
    make_extractor = functools.partial(
        Extractor, period=opts["period"], padding=opts["padding"], combine_contexts=opts["combine_contexts"],
        fast=opts["fast"], batch_size=opts["batch_size"], frame_shift=opts["frame_shift"],
        frame_length=opts["frame_length"], snip_edges=opts["snip_edges"])
    if model is None:
        ex, utterances, source = _job_extractor(model_dir, make_extractor, split_dir, num_threads)
        model = ex.model
    else:
        ex = make_extractor(model)
        utterances, source = job_utterances(split_dir, ex)
    n_utts = n_rows = 0
    vec_writer = (tables.MatrixWriter(files["vec_ark"], files["vec_scp"])
                  if opts["speaker_vectors"] else None)
    try:
        with tables.MatrixWriter(files["ark"], files["scp"], compress=opts["compress"]) as writer:
            for key, rows in ex.extract(utterances, source=source):
                writer.write(key, rows)
                if vec_writer:
                    vec_writer.write(key, rows.mean(axis=0))
                n_utts += 1
                n_rows += len(rows)
        if vec_writer:
            vec_writer.close()
    except BaseException as e:
        if vec_writer:
            vec_writer.abort(e)
        raise
    stamp.write(files["done"], signature, model_id=model.model_id, utterances=n_utts, rows=n_rows, dim=ex.dim)
    log.info(f"job {job}: {n_utts} utterances, {n_rows} rows of dim {ex.dim} -> {files['scp']}")
    return True


def job_utterances(split_dir: str, ex: Extractor):
    """``(utterances, source)`` a job feeds ``ex``: the matrices of ``feats.scp``, or for an end-to-end
    model the samples of ``wav.scp`` (+ ``segments``), each checked for the model's sample rate and,
    where ``feats.scp`` exists, for Kaldi's frame count."""
    feats_scp = os.path.join(split_dir, "feats.scp")
    if ex.grid is None:
        return tables.iter_matrices(feats_scp), feats_scp
    wav_scp = os.path.join(split_dir, "wav.scp")
    frames = tables.scp_shapes(feats_scp) if os.path.isfile(feats_scp) else {}

    def samples():
        for utt, x, rate, rx in audio.iter_utterances(split_dir):
            check_rate(ex.grid.sample_rate, rate, utt, rx)
            if utt in frames and (got := ex.num_frames(len(x), utt, rx)) != frames[utt][0]:
                raise UnspeechError(
                    f"utterance {utt}: {frames[utt][0]} frames in {feats_scp}, but its {len(x)} samples give "
                    f"{got} with --frame-shift {ex.grid.frame_shift_ms:g} --frame-length "
                    f"{ex.grid.frame_length_ms:g} --snip-edges {str(ex.grid.snip_edges).lower()} (set them as in "
                    f"the features' conf)")
            yield utt, x
    return samples(), wav_scp


def set_threads(num_threads: int = None, backend: str = "keras") -> None:
    """Limit TensorFlow (``backend`` "numpy": NumPy's BLAS) to ``num_threads`` (None or 0: its
    default, all cores); before any TF op."""
    if num_threads and backend == "numpy":
        from threadpoolctl import threadpool_limits
        threadpool_limits(int(num_threads), user_api="blas")
    elif num_threads and not _THREADS_SET:
        _THREADS_SET.append(num_threads)
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(int(num_threads))
        tf.config.threading.set_inter_op_parallelism_threads(min(int(num_threads), 2))


def finalize(data_dir: str, model_dir: str, out_dir: str, nj: int, **opts) -> int:
    """Merge the jobs' scps into the online-ivector dir; ``ivector_online.scp`` last.

    Every job must be done with these options on the current split of
    ``data_dir``, all with one model, and together they must cover exactly the
    utterances of ``data_dir``.  Needs no TensorFlow.  Returns the number of utterances.
    """
    opts = extractor_options(**opts)
    model_ids = set()
    for job in range(1, nj + 1):
        sig = job_signature(model_dir, os.path.join(data_dir, f"split{nj}", str(job)), opts)
        if not job_is_done(out_dir, job, sig):
            raise UnspeechError(f"job {job} of {nj} has not finished with this model and these options (see "
                                f"{out_dir}/log/extract.{job}.log); rerun to finish it: {out_dir}")
        model_ids.add(stamp.read(job_files(out_dir, job)["done"])["model_id"])
    if len(model_ids) != 1:
        raise UnspeechError(f"jobs were run with different models ({', '.join(sorted(model_ids))}); "
                            f"rerun to redo them: {out_dir}")
    utts = datadir.read_table(os.path.join(data_dir, "utt2spk"))
    scp_parts = [job_files(out_dir, j)["scp"] for j in range(1, nj + 1)]
    keys = [k for p in scp_parts for k in tables.scp_keys(p)]
    if set(keys) != set(utts) or len(keys) != len(utts):
        missing = [u for u in utts if u not in set(keys)]
        first = missing[0] if missing else next(k for k in keys if k not in utts)
        raise UnspeechError(f"job outputs do not match the data dir ({len(keys)} rows for {len(utts)} "
                            f"utterances), first mismatch {first}: {out_dir}")
    _remove_jobs_above(out_dir, nj)
    atomic_write_text(os.path.join(out_dir, "ivector_period"), f"{opts['period']}\n")
    atomic_write_text(os.path.join(out_dir, "final.ie.id"), f"{model_ids.pop()}\n")
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        atomic_write_text(os.path.join(out_dir, "config.json"), f.read())
    atomic_write_text(os.path.join(out_dir, "extract_opts.json"), json.dumps(opts, indent=1, sort_keys=True) + "\n")
    if opts["speaker_vectors"]:
        tables.merge_scps([job_files(out_dir, j)["vec_scp"] for j in range(1, nj + 1)],
                            os.path.join(out_dir, UTT_VECTORS))
    elif os.path.exists(os.path.join(out_dir, UTT_VECTORS)):
        os.remove(os.path.join(out_dir, UTT_VECTORS))
    return tables.merge_scps(scp_parts, os.path.join(out_dir, SCP))


def _remove_jobs_above(out_dir: str, nj: int) -> None:
    """Remove job outputs of an earlier run with more jobs (``*.K.*`` with K > nj)."""
    for name in os.listdir(out_dir):
        fields = name.split(".")
        if (name.startswith(("ivector_online.", "utt_vectors.", ".extract.")) and len(fields) >= 3
                and fields[-2].isdigit() and int(fields[-2]) > nj):
            os.remove(os.path.join(out_dir, name))


def clear_merged(out_dir: str) -> None:
    """Remove the merged scps so that an unfinished rerun never looks complete."""
    for name in (SCP, UTT_VECTORS):
        path = os.path.join(out_dir, name)
        if os.path.exists(path):
            os.remove(path)
