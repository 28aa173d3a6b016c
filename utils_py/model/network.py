"""The unspeech siamese context model: two towers (target, context) -> embeddings.

Each tower = conv stack (the "embedding transformation", a 2-D CNN over the
window seen as a frames x fbank-bins image) -> head (flatten -> fc with leaky
ReLU 0.2 and dropout -> linear embedding [-> L2 norm] [-> trainable scale]).
The logit of a (target, context) pair is the dot product of their embeddings.
With ``tied_embeddings_transforms`` the two towers share the conv stack (as in
the original unspeech); the heads are always separate.

``end_to_end``: the towers read raw samples (windows of ``window_length`` samples, input
dim 1) through the original's learned front-end -- one 1-D conv of ``frontend_filters``
filters of ``frontend_filter_size`` taps, stride 2, no padding, tanh or leaky ReLU, optionally
log(1 + |x|), max-pool ``frontend_pool`` over time -- whose (time x filters) output is the
image the conv stack sees.  ``time_stride`` is the input rows (frames or samples) per row of
the conv stack's output.

Usage::

    from utils_py.model.network import build_model, load_model_dir

    m = build_model({"feature_dim": 40, "window_length": 32, "window_neg_length": 32,
                     "embedding_transformation": "Vgg16"})   # missing keys: MODEL_DEFAULTS
    emb = m.embed(windows)                     # (N, 32, 40) -> (N, 100) float32
    fmap = m.conv_stack("target")(utt[None])   # any T >= m.min_frames
    emb1 = m.head("target")(fmap[:, :2])       # one window's slice of the map
    m.save("exp/unspeech")                     # config.json + final.weights.npz
    m = load_model_dir("exp/unspeech")

Transforms (``MODEL_TRANSFORMS``): ``Vgg16`` / ``Vgg16big`` (original filters,
4 / 5 max pools, min window 16 / 32 frames), ``VggCpu`` (one conv per stage,
narrow: the fast CPU default of our small-corpus confs), ``Resnet`` (pre-activation
residual blocks with a per-position LayerNorm over channels -- no batch
statistics, so it trains in the siamese setting and is translation-equivariant
like the VGGs).
"""
import hashlib
import json
import os

import numpy as np

from utils_py.cli import Option, check_values, defaults_of, nonneg_int, one_of, positive_int, probability, str2bool
from utils_py.fileio import atomic_write, atomic_write_text, require_file
from utils_py.log import UnspeechError

# TensorFlow/Keras 3 are imported on first use (_load_tf), so that option
# parsing, --help and input checks of the steps do not pay for the import.
keras = tf = _Scale = _Standardize = _Log1pAbs = None

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "final.weights.npz"

# name -> (kind, stages). vgg stage = (convs, filters) then a 2x2 max pool;
# resnet stage = filters of one residual block (two 3x3 convs) then a pool.
MODEL_TRANSFORMS = {
    "Vgg16": ("vgg", [(2, 16), (2, 32), (3, 64), (3, 128)]),
    "Vgg16big": ("vgg", [(2, 32), (2, 64), (3, 128), (3, 256), (3, 512)]),
    "VggCpu": ("vgg", [(1, 16), (1, 32), (1, 64), (1, 64)]),
    "Resnet": ("resnet", [16, 32, 64, 128]),
}

# Options of the model itself (defaults: the unspeech-64-ted settings): the one place they are
# defined; training options (utils_py.train.loop.OPTIONS) add the rest.
MODEL_OPTIONS = [
    Option("window_length", positive_int, 64, "frames (end-to-end: samples) of the target (centre) window"),
    Option("window_neg_length", positive_int, 64, "frames (end-to-end: samples) of each context window"),
    Option("left_contexts", nonneg_int, 2, "context windows left of the target"),
    Option("right_contexts", nonneg_int, 2, "context windows right of the target"),
    Option("embedding_transformation", one_of(*MODEL_TRANSFORMS), "Vgg16big", "conv stack"),
    Option("embedding_size", positive_int, 100, "embedding dimension"),
    Option("fc_size", positive_int, 2048, "units of the fully connected layer before the embedding"),
    Option("tied_embeddings_transforms", str2bool, True, "share the conv stack between target and context tower"),
    Option("unit_normalize_var", str2bool, True, "one trainable scalar multiplies both embeddings"),
    Option("unit_normalize", str2bool, False, "L2-normalise the embeddings (cosine logits)"),
    Option("dropout_keep_prob", probability, 0.9, "keep probability of the fc dropout"),
    Option("mixed_precision", str2bool, False,
           "bfloat16 compute, float32 weights (faster on CPUs with AVX512-BF16/AMX and on GPUs)"),
    Option("input_normalization", str2bool, True,
           "standardise each fbank bin (end-to-end: the samples) with mean/std of the training data "
           "(stored in the model)"),
    Option("end_to_end", str2bool, False, "read raw samples (wav.scp) through a learned 1-D conv front-end "
           "instead of fbank frames; window lengths then count samples"),
    Option("frontend_filter_size", positive_int, 512, "end-to-end: taps (samples) of each front-end filter"),
    Option("frontend_filters", positive_int, 40, "end-to-end: front-end filters (the image width the conv stack sees)"),
    Option("frontend_activation", one_of("tanh", "leaky_relu"), "tanh", "end-to-end: non-linearity of the front-end"),
    Option("frontend_log1p", str2bool, True, "end-to-end: log(1 + |x|) of the front-end output"),
    Option("frontend_pool", positive_int, 2, "end-to-end: max-pool over time of the front-end output (its conv "
           "has stride 2, so one image row = 2 x this many samples)"),
]
MODEL_DEFAULTS = defaults_of(MODEL_OPTIONS)
MODEL_KEYS = tuple(MODEL_DEFAULTS) + ("feature_dim", "sample_rate")   # sample_rate: end-to-end models
FRONTEND_STRIDE = 2

LEAK = 0.2


def min_frames_of(transform: str) -> int:
    """Smallest window (and feature dim) a transform accepts: 2 ** number of pools."""
    if transform not in MODEL_TRANSFORMS:
        raise UnspeechError(f"unknown --embedding-transformation {transform} "
                            f"(choose from {', '.join(MODEL_TRANSFORMS)})")
    return 2 ** len(MODEL_TRANSFORMS[transform][1])


def stack_rows(cfg: dict, length: int) -> int:
    """Rows of the image the conv stack sees for an input of ``length`` frames (end-to-end: samples)."""
    if not cfg["end_to_end"]:
        return int(length)
    conv = (int(length) - int(cfg["frontend_filter_size"])) // FRONTEND_STRIDE + 1
    return max(conv, 0) // int(cfg["frontend_pool"])


def time_stride(cfg: dict) -> int:
    """Input frames (end-to-end: samples) per row of the conv stack's output."""
    pools = min_frames_of(cfg["embedding_transformation"])
    return pools * (FRONTEND_STRIDE * int(cfg["frontend_pool"]) if cfg["end_to_end"] else 1)


def min_window(cfg: dict) -> int:
    """Shortest window (frames; end-to-end: samples, the receptive field of one output row)."""
    need = min_frames_of(cfg["embedding_transformation"])
    if not cfg["end_to_end"]:
        return need
    return int(cfg["frontend_filter_size"]) + FRONTEND_STRIDE * (need * int(cfg["frontend_pool"]) - 1)


def check_model_config(config: dict) -> dict:
    """``config`` with MODEL_DEFAULTS filled in; UnspeechError for impossible values."""
    cfg = dict(MODEL_DEFAULTS)
    cfg.update(config)
    if "feature_dim" not in cfg:
        raise UnspeechError("model config has no feature_dim")
    check_values(MODEL_OPTIONS, cfg)
    transform = cfg["embedding_transformation"]
    need, shortest = min_frames_of(transform), min_window(cfg)
    why = (f"samples of the receptive field (the front-end's {cfg['frontend_filter_size']}-tap filters, stride "
           f"{FRONTEND_STRIDE}, pool {cfg['frontend_pool']}, then the {need} rows {transform} needs)"
           if cfg["end_to_end"] else f"frames {transform} needs (2^pools)")
    for key in ("window_length", "window_neg_length"):
        if int(cfg[key]) < shortest:
            raise UnspeechError(f"--{key.replace('_', '-')}={cfg[key]} is smaller than the {shortest} {why}")
    if cfg["end_to_end"]:
        if int(cfg["feature_dim"]) != 1:
            raise UnspeechError(f"an end-to-end model reads samples (input dim 1), not features of dim "
                                f"{cfg['feature_dim']}; train it on a data dir with wav.scp")
        if int(cfg["frontend_filters"]) < need:
            raise UnspeechError(f"--frontend-filters={cfg['frontend_filters']} is smaller than the {need} "
                                f"{transform} needs (2^pools)")
    elif int(cfg["feature_dim"]) < need:
        raise UnspeechError(f"feature dim {cfg['feature_dim']} is smaller than the {need} bins "
                            f"{transform} needs (2^pools)")
    return cfg


def _load_tf():
    """Import TensorFlow + Keras and define our layer classes (once)."""
    global keras, tf, _Scale, _Standardize, _Log1pAbs
    if keras is not None:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras as keras_
    import tensorflow as tf_
    keras, tf = keras_, tf_

    class Scale(keras.layers.Layer):
        """One trainable scalar multiplying its input (``unit_normalize_var``)."""

        def build(self, input_shape):
            self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

        def call(self, x):
            return x * keras.ops.cast(self.scale, x.dtype)

    class Standardize(keras.layers.Layer):
        """(x - mean) / std per feature bin; fixed (non-trainable) statistics of the training data."""

        def build(self, input_shape):
            dim = input_shape[-1]
            self.mean = self.add_weight(shape=(dim,), initializer="zeros", trainable=False, name="mean")
            self.std = self.add_weight(shape=(dim,), initializer="ones", trainable=False, name="std")

        def call(self, x):
            return (x - keras.ops.cast(self.mean, x.dtype)) / keras.ops.cast(self.std, x.dtype)

    class Log1pAbs(keras.layers.Layer):
        """log(1 + |x|) (the original's ``first_layer_log1p``)."""

        def call(self, x):
            return keras.ops.log1p(keras.ops.abs(x))

    _Scale, _Standardize, _Log1pAbs = Scale, Standardize, Log1pAbs


def _conv(x, filters, name, policy, kernel=3, activation=True):
    x = keras.layers.Conv2D(
        filters, kernel, padding="same", name=name, dtype=policy,
        kernel_initializer=keras.initializers.VarianceScaling(2.0, "fan_in", "truncated_normal"),
        bias_initializer=keras.initializers.Constant(0.001))(x)
    if activation:
        x = keras.layers.LeakyReLU(LEAK, name=name + "_act", dtype=policy)(x)
    return x


def _build_frontend(x, cfg, prefix, policy):
    """End-to-end: (N, S, 1) samples -> (N, stack_rows(S), frontend_filters) learned filterbank."""
    x = keras.layers.Conv1D(
        cfg["frontend_filters"], cfg["frontend_filter_size"], strides=FRONTEND_STRIDE, padding="valid",
        name=f"{prefix}_frontend_conv", dtype=policy,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.01),
        bias_initializer=keras.initializers.Constant(0.01))(x)
    if cfg["frontend_activation"] == "tanh":
        x = keras.layers.Activation("tanh", name=f"{prefix}_frontend_tanh", dtype=policy)(x)
    else:
        x = keras.layers.LeakyReLU(LEAK, name=f"{prefix}_frontend_act", dtype=policy)(x)
    if cfg["frontend_log1p"]:
        x = _Log1pAbs(name=f"{prefix}_frontend_log1p", dtype=policy)(x)
    if cfg["frontend_pool"] > 1:
        x = keras.layers.MaxPooling1D(cfg["frontend_pool"], name=f"{prefix}_frontend_pool", dtype=policy)(x)
    return x


def _build_conv_stack(cfg, prefix, policy):
    """(N, T, D) -> (N, T // 2^p, D // 2^p, C), fully convolutional in T (end-to-end: (N, S, 1)
    samples -> front-end -> (N, stack_rows(S) // 2^p, frontend_filters // 2^p, C))."""
    kind, stages = MODEL_TRANSFORMS[cfg["embedding_transformation"]]
    inp = keras.Input((None, cfg["feature_dim"]), name=f"{prefix}_{'samples' if cfg['end_to_end'] else 'frames'}")
    x = inp
    if cfg["input_normalization"]:
        x = _Standardize(name=f"{prefix}_input_norm")(x)
    width = cfg["feature_dim"]
    if cfg["end_to_end"]:
        x = _build_frontend(x, cfg, prefix, policy)
        width = cfg["frontend_filters"]
    x = keras.layers.Reshape((-1, width, 1), name=f"{prefix}_image")(x)
    for s, stage in enumerate(stages, 1):
        if kind == "vgg":
            convs, filters = stage
            for c in range(1, convs + 1):
                x = _conv(x, filters, f"{prefix}_conv{s}_{c}", policy)
        else:  # pre-activation residual block, LayerNorm over channels per (t, f) position
            filters = stage
            if s == 1:
                x = _conv(x, filters, f"{prefix}_stem", policy, activation=False)
            shortcut = x
            if x.shape[-1] != filters:
                shortcut = _conv(x, filters, f"{prefix}_proj{s}", policy, kernel=1, activation=False)
            for c in (1, 2):
                x = keras.layers.LayerNormalization(axis=-1, name=f"{prefix}_norm{s}_{c}", dtype=policy)(x)
                x = keras.layers.LeakyReLU(LEAK, name=f"{prefix}_act{s}_{c}", dtype=policy)(x)
                x = _conv(x, filters, f"{prefix}_conv{s}_{c}", policy, activation=False)
            x = keras.layers.Add(name=f"{prefix}_add{s}", dtype=policy)([shortcut, x])
            if s == len(stages):
                x = keras.layers.LeakyReLU(LEAK, name=f"{prefix}_act_out", dtype=policy)(x)
        x = keras.layers.MaxPooling2D(2, name=f"{prefix}_pool{s}", dtype=policy)(x)
    return keras.Model(inp, x, name=f"{prefix}_conv_stack")


def _build_head(cfg, prefix, fmap_shape, scale, policy):
    """Conv feature map of one window -> embedding (float32)."""
    inp = keras.Input(fmap_shape, name=f"{prefix}_fmap")
    x = keras.layers.Flatten(name=f"{prefix}_flatten", dtype=policy)(inp)
    x = keras.layers.Dense(cfg["fc_size"], name=f"{prefix}_fc", dtype=policy,
                           kernel_initializer=keras.initializers.VarianceScaling(2.0, "fan_in", "truncated_normal"),
                           bias_initializer=keras.initializers.Constant(0.001))(x)
    x = keras.layers.LeakyReLU(LEAK, name=f"{prefix}_fc_act", dtype=policy)(x)
    rate = 1.0 - float(cfg["dropout_keep_prob"])
    if rate > 0:
        x = keras.layers.Dropout(rate, name=f"{prefix}_dropout", dtype=policy)(x)
    x = keras.layers.Dense(cfg["embedding_size"], name=f"{prefix}_embedding", dtype="float32",
                           kernel_initializer=keras.initializers.VarianceScaling(1.0, "fan_in", "truncated_normal"),
                           bias_initializer=keras.initializers.Constant(0.001))(x)
    if cfg["unit_normalize"]:
        x = keras.layers.UnitNormalization(axis=-1, name=f"{prefix}_unit_norm", dtype="float32")(x)
    if scale is not None:
        x = scale(x)
    return keras.Model(inp, x, name=f"{prefix}_head")


class UnspeechModel:
    """Both towers of a built model plus inference helpers (see module docstring)."""

    def __init__(self, config: dict):
        cfg = check_model_config(config)
        _load_tf()
        self.config = cfg
        self.min_frames = min_frames_of(cfg["embedding_transformation"])
        self.time_stride = time_stride(cfg)   # input rows (frames or samples) per conv-stack output row
        policy = "mixed_bfloat16" if cfg["mixed_precision"] else "float32"
        tied = bool(cfg["tied_embeddings_transforms"])
        conv_t = _build_conv_stack(cfg, "shared" if tied else "target", policy)
        conv_c = conv_t if tied else _build_conv_stack(cfg, "context", policy)
        scale = _Scale(name="unit_normalize_var", dtype="float32") if cfg["unit_normalize_var"] else None
        self._conv = {"target": conv_t, "context": conv_c}
        self._head, towers = {}, {}
        for tower, length in (("target", cfg["window_length"]), ("context", cfg["window_neg_length"])):
            # one window's map: (rows // 2^pools, width // 2^pools, C); min_frames == 2^pools
            fmap_shape = ((stack_rows(cfg, length) // self.min_frames,)
                          + tuple(int(v) for v in conv_t.output.shape[2:]))
            self._head[tower] = _build_head(cfg, tower, fmap_shape, scale, policy)
            inp = keras.Input((int(length), cfg["feature_dim"]), name=f"{tower}_window")
            towers[tower] = keras.Model(inp, self._head[tower](self._conv[tower](inp)), name=f"{tower}_tower")
        self.target_tower = towers["target"]
        self.context_tower = towers["context"]
        self._embed_fn = {}
        names = [v.path for v in self.variables]
        if len(set(names)) != len(names):  # would make saved weights ambiguous
            raise RuntimeError(f"duplicate variable names in model: {names}")

    @property
    def variables(self) -> list:
        """All model variables (shared ones once), in a fixed order."""
        seen, out = set(), []
        for m in (self.target_tower, self.context_tower):
            for v in m.weights:
                if id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
        return out

    @property
    def trainable_variables(self) -> list:
        return [v for v in self.variables if v.trainable]

    @property
    def l2_variables(self) -> list:
        """Kernels that get the l2 penalty (conv and dense kernels, as in the original)."""
        return [v for v in self.trainable_variables if v.path.endswith("/kernel")]

    def tower(self, tower: str = "target") -> "keras.Model":
        return {"target": self.target_tower, "context": self.context_tower}[_check_tower(tower)]

    def window_length_of(self, tower: str = "target") -> int:
        return window_length_of(self.config, tower)

    def conv_stack(self, tower: str = "target") -> "keras.Model":
        """(N, T, feature_dim), any T >= min_window -> (N, stack_rows(T) // 2^p, width // 2^p, C)."""
        return self._conv[_check_tower(tower)]

    def head(self, tower: str = "target") -> "keras.Model":
        """Conv feature map of exactly one window -> (N, embedding_size)."""
        return self._head[_check_tower(tower)]

    def embed(self, windows, tower: str = "target", batch_size: int = 512) -> np.ndarray:
        """Embeddings (N, E) float32 of windows (N, window, feature_dim), inference mode."""
        windows = as_windows(windows, tower, self.window_length_of(tower), self.config["feature_dim"])
        want = windows.shape[1:]
        if tower not in self._embed_fn:
            model = self.tower(tower)
            spec = tf.TensorSpec((None,) + want, tf.float32)
            self._embed_fn[tower] = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        out = [self._embed_fn[tower](windows[i:i + batch_size]).numpy()
               for i in range(0, len(windows), batch_size)]
        if not out:
            return np.zeros((0, int(self.config["embedding_size"])), np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    # ---- weights ----
    def get_weights(self) -> dict:
        return {v.path: np.asarray(v.numpy()) for v in self.variables}

    def set_weights(self, weights: dict, source: str = "weights") -> None:
        missing = [v.path for v in self.variables if v.path not in weights]
        extra = sorted(set(weights) - {v.path for v in self.variables})
        if missing or extra:
            raise UnspeechError(f"weights do not match the model config (missing {missing[:3]}, "
                                f"unexpected {extra[:3]}): {source}")
        for v in self.variables:
            w = weights[v.path]
            if tuple(w.shape) != tuple(v.shape):
                raise UnspeechError(f"weight {v.path} has shape {w.shape}, model needs {tuple(v.shape)}: {source}")
            v.assign(w)

    def set_input_stats(self, mean, std) -> None:
        """Set the input normalisation (per-bin mean and std of the training features)."""
        if not self.config["input_normalization"]:
            return
        layer = self._conv["target"].get_layer(
            ("shared" if self.config["tied_embeddings_transforms"] else "target") + "_input_norm")
        layers = [layer] if self.config["tied_embeddings_transforms"] else \
            [layer, self._conv["context"].get_layer("context_input_norm")]
        for lay in layers:
            lay.mean.assign(np.asarray(mean, np.float32))
            lay.std.assign(np.maximum(np.asarray(std, np.float32), 1e-3))

    @property
    def model_id(self) -> str:
        """Stable hex id of the model config (MODEL_KEYS) and the weights."""
        return weights_id(self.config, self.get_weights())

    def save(self, model_dir: str, extra_config: dict = None) -> None:
        """Write ``final.weights.npz`` then ``config.json`` (config + extra_config), atomically."""
        save_weights(os.path.join(model_dir, WEIGHTS_FILE), self.get_weights())
        cfg = dict(extra_config or {})
        cfg.update(self.config)
        atomic_write_text(os.path.join(model_dir, CONFIG_FILE), json.dumps(cfg, indent=1, sort_keys=True) + "\n")


def as_windows(windows, tower: str, window: int, feature_dim: int) -> np.ndarray:
    """``windows`` as a float32 array (N, window, feature_dim); UnspeechError naming the tower otherwise."""
    windows = np.asarray(windows, dtype=np.float32)
    if windows.ndim != 3 or windows.shape[1:] != (int(window), int(feature_dim)):
        raise UnspeechError(f"{tower} tower expects windows of shape (N, {window}, {feature_dim}), "
                            f"got {windows.shape}")
    return windows


def window_length_of(config: dict, tower: str = "target") -> int:
    """Input rows (frames; end-to-end: samples) of one window of ``tower``."""
    return int(config["window_length" if _check_tower(tower) == "target" else "window_neg_length"])


def _check_tower(tower):
    if tower not in ("target", "context"):
        raise ValueError(f"tower must be 'target' or 'context', got {tower!r}")
    return tower


def weights_id(config: dict, weights: dict) -> str:
    """Stable hex id of a model config (MODEL_KEYS) and its weights (variable path -> array, in
    the model's variable order, as saved in final.weights.npz)."""
    h = hashlib.sha256()
    h.update(json.dumps({k: config.get(k) for k in MODEL_KEYS}, sort_keys=True).encode())
    for path, w in weights.items():
        w = np.ascontiguousarray(w)
        h.update(f"{path}:{w.dtype}:{w.shape}".encode())
        h.update(w.tobytes())
    return h.hexdigest()[:32]


def save_weights(path: str, weights: dict) -> None:
    with atomic_write(path, "wb") as f:
        np.savez(f, **weights)


def load_weights(path: str) -> dict:
    require_file(path, "model weights")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:
        raise UnspeechError(f"cannot read model weights (corrupt?): {path} ({type(e).__name__}: {e})") from None


def read_config(model_dir: str) -> dict:
    path = require_file(os.path.join(model_dir, CONFIG_FILE), "model config")
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise UnspeechError(f"cannot parse model config (corrupt?): {path} ({e})") from None
    if not isinstance(cfg, dict):
        raise UnspeechError(f"model config is not a JSON object: {path}")
    return cfg


def build_model(config: dict) -> UnspeechModel:
    """A freshly initialised model for ``config`` (all options + ``feature_dim``)."""
    return UnspeechModel(config)


def load_model_dir(model_dir: str) -> UnspeechModel:
    """The trained model in ``model_dir`` (config.json + final.weights.npz)."""
    cfg = read_config(model_dir)
    model = build_model(cfg)
    model.config = dict(cfg, **model.config)  # keep the training options for the caller
    path = os.path.join(model_dir, WEIGHTS_FILE)
    model.set_weights(load_weights(path), path)
    return model
