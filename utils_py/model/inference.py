"""The towers of a saved model in NumPy: inference without importing TensorFlow or Keras.

A short extraction job spends most of its time importing TensorFlow + Keras and building the
Keras model (bench/results/bench_startup.md); this runs the same towers from
``final.weights.npz`` with NumPy (im2col convolutions as BLAS matmuls).  The layer sequence
follows :mod:`utils_py.model.network` (``MODEL_TRANSFORMS`` and the config; weights read by
the Keras variable paths, every one of them used exactly once), and ``mixed_precision`` models
are emulated by rounding every layer's inputs, weights and outputs to bfloat16 as Keras'
``mixed_bfloat16`` policy does.  Rows equal the Keras path's within float tolerance
(tests/test_inference.py).

    from utils_py.model.inference import load_numpy_model
    m = load_numpy_model("exp/unspeech")      # same interface as network.UnspeechModel for extraction
    emb = m.embed(windows)                    # (N, window, feature_dim) -> (N, E) float32
    fmap = m.conv_stack("target")(utt[None]); emb1 = m.head("target")(fmap[:, :2])
"""
import os

import numpy as np

from utils_py.log import UnspeechError
from utils_py.model import network
from utils_py.model.network import (FRONTEND_STRIDE, LEAK, MODEL_TRANSFORMS, WEIGHTS_FILE, as_windows,
                                    check_model_config, load_weights, min_frames_of, read_config, time_stride,
                                    weights_id)

LAYER_NORM_EPSILON = 1e-3   # keras.layers.LayerNormalization's default
IM2COL_BYTES = 16 << 20     # largest im2col block of one convolution call


def bfloat16(x: np.ndarray, inplace: bool = False) -> np.ndarray:
    """``x`` rounded to the nearest bfloat16 (ties to even), kept as float32 (``inplace``: in ``x``,
    a C-contiguous float32 array)."""
    u = (x if inplace else np.array(x, np.float32, order="C")).view(np.uint32)
    r = u >> 16
    r &= 1
    r += 0x7FFF
    u += r
    u &= 0xFFFF0000
    return u.view(np.float32)


def _same(x, inplace=False):
    return np.asarray(x, np.float32)


def _matmul_blocks(ops, cols, kernel, patch_ndim):
    """``cols`` (N, T, ..., *patch) times ``kernel`` (patch size, O) -> (N, T, ..., O), in blocks of
    whole samples (or of time rows of one sample) whose im2col copy stays under IM2COL_BYTES."""
    n, t = cols.shape[:2]
    inner = cols.shape[2:cols.ndim - patch_ndim]
    y = np.empty((n, t) + inner + (kernel.shape[1],), np.float32)
    ops.flops += 2 * y.size * kernel.shape[0]
    row_bytes = max(1, int(np.prod(inner, dtype=np.int64)) * kernel.shape[0] * 4)
    if t * row_bytes <= IM2COL_BYTES:
        m = IM2COL_BYTES // (t * row_bytes)
        blocks = [np.s_[i:i + m] for i in range(0, n, m)]
    else:
        r = max(1, IM2COL_BYTES // row_bytes)
        blocks = [np.s_[i, t0:t0 + r] for i in range(n) for t0 in range(0, t, r)]
    for blk in blocks:
        part = cols[blk]
        y[blk] = (part.reshape(-1, kernel.shape[0]) @ kernel).reshape(part.shape[:part.ndim - patch_ndim] + (-1,))
    return y


class _Ops:
    """The layers' maths on float32 arrays; ``mixed``: bfloat16 rounding of inputs, weights and outputs."""

    def __init__(self, weights: dict, mixed: bool):
        self.w, self.q = weights, (bfloat16 if mixed else _same)
        self.leak = float(self.q(np.float32(LEAK)))
        self.used, self.rounded = set(), {}
        self.flops = 0   # 2 x multiply-adds of the matmuls so far

    def get(self, name, var, quantize=True):
        """Weight ``name/var`` (``quantize``: in the layer's compute dtype, rounded once)."""
        key = f"{name}/{var}"
        self.used.add(key)
        if not quantize:
            return self.w[key]
        if key not in self.rounded:
            self.rounded[key] = self.q(self.w[key])
        return self.rounded[key]

    def conv2d(self, x, name, act=True):
        """'same' conv of a 3x3 (or 1x1) kernel over (N, T, F, C) + bias [+ leaky ReLU]."""
        k, b = self.get(name, "kernel"), self.get(name, "bias")   # x: bfloat16 values already when mixed
        kh, kw, c, o = k.shape
        p = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0))) if kh > 1 else x
        s = p.strides
        cols = np.lib.stride_tricks.as_strided(p, x.shape[:3] + (kh, kw, c), s[:3] + s[1:], writeable=False)
        y = self.q(self.q(_matmul_blocks(self, cols, k.reshape(-1, o), 3), True) + b, True)
        return self.leaky(y) if act else y

    def leaky(self, x):
        return np.maximum(x, self.q(x * np.float32(self.leak), True))

    def layer_norm(self, x, name):
        g, b = self.get(name, "gamma", False), self.get(name, "beta", False)   # Keras: no autocast
        mean = x.mean(axis=-1, keepdims=True)
        inv = g / np.sqrt(np.square(x - mean).mean(axis=-1, keepdims=True) + np.float32(LAYER_NORM_EPSILON))
        return self.q(x * inv + (b - mean * inv), True)

    def dense(self, x, name):
        k = self.get(name, "kernel")
        self.flops += 2 * len(x) * k.size
        return self.q(self.q(x @ k, True) + self.get(name, "bias"), True)


def _frontend(ops, x, cfg, prefix):
    """End-to-end: (N, S, 1) samples -> (N, stack_rows(S), frontend_filters), as network._build_frontend."""
    name = f"{prefix}_frontend_conv"
    k, b = ops.get(name, "kernel"), ops.get(name, "bias")
    x = ops.q(x)
    n, s, c = x.shape
    taps = k.shape[0]
    rows = (s - taps) // FRONTEND_STRIDE + 1
    st = x.strides
    cols = np.lib.stride_tricks.as_strided(x, (n, rows, taps, c), (st[0], FRONTEND_STRIDE * st[1]) + st[1:],
                                           writeable=False)
    pool = int(cfg["frontend_pool"])
    kept = rows // pool * pool
    out = np.empty((n, kept // pool, k.shape[-1]), np.float32)
    # A few windows at a time, in place: the full-rate output is `pool` times the pooled one, and large
    # fresh temporaries cost more in page faults than in arithmetic.
    step = max(1, IM2COL_BYTES // max(1, rows * k.shape[-1] * 4))
    for i in range(0, n, step):
        y = ops.q(_matmul_blocks(ops, cols[i:i + step], k.reshape(taps * c, -1), 2), True)
        y += b
        ops.q(y, True)
        if cfg["frontend_activation"] == "tanh":
            ops.q(np.tanh(y, out=y), True)
        else:
            y = ops.leaky(y)
        if cfg["frontend_log1p"]:
            ops.q(np.log1p(np.abs(y, out=y), out=y), True)
        out[i:i + step] = y[:, :kept].reshape(len(y), kept // pool, pool, -1).max(axis=2)
    return out


def _conv_stack(ops, x, cfg, prefix):
    """(N, T, D) -> (N, T', F', C): the layers of network._build_conv_stack."""
    kind, stages = MODEL_TRANSFORMS[cfg["embedding_transformation"]]
    x = np.asarray(x, np.float32)
    if cfg["input_normalization"]:
        name = f"{prefix}_input_norm"
        x = (x - ops.get(name, "mean", False)) / ops.get(name, "std", False)
    if cfg["end_to_end"]:
        x = _frontend(ops, x, cfg, prefix)
    x = ops.q(x[..., None])   # the first conv's input in its compute dtype
    for s, stage in enumerate(stages, 1):
        if kind == "vgg":
            convs, filters = stage
            for c in range(1, convs + 1):
                x = ops.conv2d(x, f"{prefix}_conv{s}_{c}")
        else:
            filters = stage
            if s == 1:
                x = ops.conv2d(x, f"{prefix}_stem", act=False)
            shortcut = x if x.shape[-1] == filters else ops.conv2d(x, f"{prefix}_proj{s}", act=False)
            for c in (1, 2):
                x = ops.conv2d(ops.leaky(ops.layer_norm(x, f"{prefix}_norm{s}_{c}")), f"{prefix}_conv{s}_{c}",
                               act=False)
            x = ops.q(shortcut + x, True)
            if s == len(stages):
                x = ops.leaky(x)
        t, f = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2   # 2x2 max pool, 'valid'
        x = np.maximum(np.maximum(x[:, 0:t:2, 0:f:2], x[:, 1:t:2, 0:f:2]),
                       np.maximum(x[:, 0:t:2, 1:f:2], x[:, 1:t:2, 1:f:2]))
    return x


def _head(ops, fmap, cfg, tower):
    """Feature map of one window -> embedding (float32): the layers of network._build_head."""
    x = ops.leaky(ops.dense(fmap.reshape(len(fmap), -1), f"{tower}_fc"))
    k = ops.get(f"{tower}_embedding", "kernel", False)
    ops.flops += 2 * len(x) * k.size
    x = x @ k + ops.get(f"{tower}_embedding", "bias", False)
    if cfg["unit_normalize"]:
        x = x * np.minimum(1.0 / np.sqrt(np.square(x).sum(axis=-1, keepdims=True)), np.float32(1e12))
    if cfg["unit_normalize_var"]:
        x = x * ops.get("unit_normalize_var", "scale", False)
    return x.astype(np.float32, copy=False)


class NumpyModel:
    """A saved model's towers in NumPy, with the inference interface of network.UnspeechModel."""

    backend = "numpy"

    def __init__(self, config: dict, weights: dict, source: str = "weights"):
        cfg = check_model_config(config)
        self.config = dict(config, **cfg)
        self.min_frames = min_frames_of(cfg["embedding_transformation"])
        self.time_stride = time_stride(cfg)
        self._prefix = {t: "shared" if cfg["tied_embeddings_transforms"] else t for t in ("target", "context")}
        self._ops = _Ops(weights, bool(cfg["mixed_precision"]))
        self._check_weights(weights, source)
        self._weights = weights

    def _check_weights(self, weights, source):
        """Run both towers once on one window: every weight must be there with its shape, and used
        (and ``window_flops[tower]``: FLOPs of one window's matmuls)."""
        cfg = self.config
        self.window_flops = {}
        try:
            for tower in ("target", "context"):
                probe = np.zeros((1, self.window_length_of(tower), int(cfg["feature_dim"])), np.float32)
                start = self._ops.flops
                self.embed(probe, tower)
                self.window_flops[tower] = self._ops.flops - start
        except KeyError as e:
            raise UnspeechError(f"weights do not match the model config (missing {e.args[0]}): {source}") from None
        except ValueError as e:
            raise UnspeechError(f"weights do not match the model config ({e}): {source}") from None
        extra = sorted(set(weights) - self._ops.used)
        if extra:
            raise UnspeechError(f"weights do not match the model config (unexpected {extra[:3]}): {source}")

    def _block_windows(self, tower: str) -> int:
        """Windows per block whose first conv-stage output stays under IM2COL_BYTES: each layer makes a
        few fresh arrays of that size, and large ones cost more in page faults than in arithmetic."""
        cfg = self.config
        kind, stages = MODEL_TRANSFORMS[cfg["embedding_transformation"]]
        filters = stages[0][1] if kind == "vgg" else stages[0]
        width = cfg["frontend_filters"] if cfg["end_to_end"] else cfg["feature_dim"]
        per_window = network.stack_rows(cfg, self.window_length_of(tower)) * int(width) * filters * 4
        return max(1, IM2COL_BYTES // per_window)

    def window_length_of(self, tower: str = "target") -> int:
        return network.window_length_of(self.config, tower)

    def conv_stack(self, tower: str = "target"):
        """Callable (N, T, feature_dim) -> (N, stack_rows(T) // 2^p, width // 2^p, C), as the Keras conv stack."""
        prefix = self._prefix[network._check_tower(tower)]
        return lambda x: _conv_stack(self._ops, x, self.config, prefix)

    def head(self, tower: str = "target"):
        """Callable: feature map of exactly one window -> (N, embedding_size)."""
        network._check_tower(tower)
        return lambda fmap: _head(self._ops, np.asarray(fmap, np.float32), self.config, tower)

    def head_input_shape(self, tower: str = "target") -> tuple:
        """(rows, width, channels) of one window's feature map."""
        probe = np.zeros((1, self.window_length_of(tower), int(self.config["feature_dim"])), np.float32)
        return self.conv_stack(tower)(probe).shape[1:]

    def embed(self, windows, tower: str = "target", batch_size: int = 512) -> np.ndarray:
        """Embeddings (N, E) float32 of windows (N, window, feature_dim)."""
        windows = as_windows(windows, tower, self.window_length_of(tower), self.config["feature_dim"])
        stack, head = self.conv_stack(tower), self.head(tower)
        batch_size = max(1, min(int(batch_size), self._block_windows(tower)))
        out = [head(stack(windows[i:i + batch_size])) for i in range(0, len(windows), batch_size)]
        if not out:
            return np.zeros((0, int(self.config["embedding_size"])), np.float32)
        return np.concatenate(out)

    @property
    def model_id(self) -> str:
        """The id network.UnspeechModel.model_id gives the same config and weights."""
        return weights_id(self.config, self._weights)


def load_numpy_model(model_dir: str) -> NumpyModel:
    """The trained model in ``model_dir`` (config.json + final.weights.npz) as a :class:`NumpyModel`."""
    path = os.path.join(model_dir, WEIGHTS_FILE)
    return NumpyModel(read_config(model_dir), load_weights(path), path)
