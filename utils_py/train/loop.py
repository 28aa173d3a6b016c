"""Training of the unspeech model: options, data, loop, checkpoints, resume, outputs.

``steps_unspeech/train_unspeech.py`` is the CLI; everything it does is here::

    from utils_py.train import loop

    p = step_parser("...")
    loop.add_options(p)                 # every option with its default (unspeech-64-ted)
    args = parse_args(p, argv)
    opts = loop.options_of(args)
    loop.run(opts, "data/train/feats.scp", "exp/unspeech")
    loop.run(dict(opts, end_to_end=True), "data/train", "exp/unspeech_e2e")   # the audio of a data dir

Model dir layout: ``config.json`` (every option + ``feature_dim``; end-to-end: + ``sample_rate``),
``final.weights.npz``, ``metrics.json`` (written last: the "done" marker),
``checkpoints/{last,best}.npz`` (model + optimizer state + step + history),
``log/train.log``, ``tb/`` (TensorBoard), ``training_curves.png``.

A run is four phases: :func:`prepare_data` (features, split, sampler) ->
:func:`restore_or_initialise` (last checkpoint or fresh weights) -> :func:`train_loop`
-> :func:`write_outputs`; progress reporting is ``utils_py.train.progress``.

Rerunning the same command resumes from ``checkpoints/last.npz``; batches are
drawn from ``rng([seed, step])`` so the resumed run sees exactly the batches
the uninterrupted one would have.  A finished model dir says "already
trained" and returns.
"""
import dataclasses
import json
import math
import os
import time

import numpy as np

from utils_py import cli
from utils_py.cli import (Option, fraction, int_range, nonneg_float, nonneg_int, one_of, positive_float,
                          positive_int, str2bool)
from utils_py.kaldi.datadir import read_table
from utils_py.features.feature_set import load_features
from utils_py.features.waveform import load_waveforms
from utils_py.fileio import atomic_write_text, dir_lock, ensure_dir, remove_stale_temps
from utils_py.log import UnspeechError, get_logger
from utils_py.model.network import (CONFIG_FILE, MODEL_OPTIONS, WEIGHTS_FILE, build_model, check_model_config,
                                    load_weights, save_weights)
from utils_py.model.sampler import ContextSampler, Prefetcher, chunk_length
from utils_py.train.progress import Progress, fmt, plot_curves

METRICS_FILE = "metrics.json"

_M = {o.name: o for o in MODEL_OPTIONS}
# Every option of train_unspeech, defined once (type with its range, default, help): the parser
# (add_options) and check_options use this table; model options come from MODEL_OPTIONS.
OPTIONS = [
    _M["window_length"], _M["window_neg_length"], _M["left_contexts"], _M["right_contexts"],
    Option("negative_samples", nonneg_int, 4, "negative pairs per positive sample (objective original)"),
    _M["embedding_transformation"], _M["embedding_size"], _M["fc_size"], _M["tied_embeddings_transforms"],
    _M["unit_normalize_var"], _M["unit_normalize"],
    Option("l2_reg", nonneg_float, 1e-4, "L2 weight penalty on conv/fc kernels (l2_reg * sum(w^2) / 2)"),
    _M["dropout_keep_prob"],
    Option("learn_rate", positive_float, 3e-4, "Adam learning rate"),
    Option("lr_schedule", one_of("constant", "cosine"), "constant",
           "constant, or cosine: decay to 5% of --learn-rate at --steps"),
    Option("warmup_steps", nonneg_int, 0, "linear learning-rate warm-up steps (lr-schedule cosine)"),
    Option("batch_size", positive_int, 32, "positive samples (chunks) per batch"),
    Option("gradient_clipping", nonneg_float, 10.0, "clip each gradient tensor to this norm (0: off)"),
    Option("objective", one_of("original", "inbatch"), "original",
           "original (labelled pairs) or inbatch (all targets x all contexts)"),
    Option("inbatch_loss", one_of("sigmoid", "softmax"), "sigmoid",
           "sigmoid (balanced pairs) or softmax (InfoNCE): loss of --objective inbatch"),
    Option("inbatch_chunks_per_utt", positive_int, 1, "positive samples (chunks) drawn from each utterance of an "
           "in-batch batch, at independent positions (must divide --batch-size)"),
    Option("inbatch_same_utt", one_of("mask", "positive"), "mask", "a target vs the contexts of another chunk of "
           "its own utterance: left out of the loss (mask) or counted as a positive pair"),
    Option("level_jitter_db", nonneg_float, 0.0, "augmentation: add to each training window's log fbank its own "
           "random level offset, uniform(-x, x) dB (0: off)"),
    Option("steps", positive_int, 400000, "training steps"),
    Option("max_hours", nonneg_float, 0.0, "stop after this many hours of training, all runs together (0: no limit)"),
    Option("seed", nonneg_int, 1, "seed of the weight init, the validation split and the batches"),
    Option("checkpoint_every", positive_int, 1000, "steps between checkpoints (resume points)"),
    Option("log_every", positive_int, 100, "steps between progress lines (with validation accuracy)"),
    Option("val_fraction", fraction, 0.1, "fraction of utterances held out for validation (0: none)"),
    Option("val_pairs", int_range(2), 2000, "validation pairs (half positive, half negative from two different "
           "utterances; fixed)"),
    Option("final_model", one_of("last", "best"), "last", "final.weights.npz = the last step, or the step with "
           "the best held-out context accuracy (early stopping; checkpoints/best.npz)"),
    _M["mixed_precision"], _M["input_normalization"],
    _M["end_to_end"], _M["frontend_filter_size"], _M["frontend_filters"], _M["frontend_activation"],
    _M["frontend_log1p"], _M["frontend_pool"],
    Option("jit_compile", str2bool, False, "XLA-compile the training step (slower than oneDNN on CPU here)"),
    Option("cache_dir", str, "", "memory-map the features from this directory (built once) instead of RAM"),
    Option("spk2utt", str, "", "negatives from the same speaker as the positive sample (spk2utt file)"),
]
assert {o.name for o in OPTIONS} >= set(_M), "every model option is a training option"
# Options that may change between a run and its resume.
RESUME_FREE = {"steps", "max_hours", "checkpoint_every", "log_every", "cache_dir", "jit_compile"}
# What training adds to the options from the data (a resume must see the same).
DATA_KEYS = ("feature_dim", "sample_rate")


def add_options(parser) -> None:
    cli.add_options(parser, OPTIONS)


def options_of(args) -> dict:
    return cli.options_of(args, OPTIONS)


def default_options() -> dict:
    return cli.defaults_of(OPTIONS)


def check_options(cfg: dict) -> None:
    """Each value in its range (the option table), then what options must satisfy together."""
    cli.check_values(OPTIONS, cfg)
    if cfg["batch_size"] % cfg["inbatch_chunks_per_utt"]:
        raise UnspeechError(f"--inbatch-chunks-per-utt {cfg['inbatch_chunks_per_utt']} must "
                            f"divide --batch-size {cfg['batch_size']}")
    if cfg["final_model"] == "best" and cfg["val_fraction"] <= 0:
        raise UnspeechError("--final-model best needs held-out utterances (--val-fraction > 0)")
    if cfg["left_contexts"] + cfg["right_contexts"] < 1:
        raise UnspeechError("need --left-contexts + --right-contexts >= 1")
    if cfg["objective"] == "inbatch" and cfg["batch_size"] < 2:
        raise UnspeechError("--objective inbatch needs --batch-size >= 2")
    check_model_config(dict(cfg, feature_dim=1 if cfg["end_to_end"] else 10 ** 6))  # window vs receptive field


# ---------------------------------------------------------------- data
def load_training_data(source, cfg, log):
    """FeatureSet (end-to-end: the samples of data dir ``source``, dim 1; else the feature table
    ``source``), indices of usable utterances (>= one positive sample), speakers or None."""
    cache = cfg["cache_dir"] or None
    if cfg["end_to_end"]:
        feats, unit = load_waveforms(source, cache_dir=cache), "samples"
        what = f"{feats.num_frames} samples at {feats.meta['sample_rate']} Hz"
    else:
        feats, unit = load_features(source, cache_dir=cache), "frames"
        what = f"{feats.num_frames} frames, dim {feats.dim}"
    need = chunk_length(cfg["window_length"], cfg["window_neg_length"], cfg["left_contexts"], cfg["right_contexts"])
    usable = np.flatnonzero(feats.lengths >= need)
    dropped = feats.num_utts - len(usable)
    log.info(f"{feats.num_utts} utterances, {what} from {source}; "
             f"dropped {dropped} shorter than one positive sample ({need} {unit})")
    if len(usable) == 0:
        raise UnspeechError(f"every utterance is shorter than one positive sample ({need} {unit} = "
                            f"window-length + window-neg-length * contexts; longest has "
                            f"{int(feats.lengths.max())}): {source}")
    speakers = read_speakers(cfg["spk2utt"], feats) if cfg["spk2utt"] else None
    return feats, usable, speakers


def read_speakers(spk2utt_path, feats) -> np.ndarray:
    """Speaker number of every utterance of ``feats`` from a spk2utt file."""
    spk2utt = read_table(spk2utt_path, check_sorted=False)
    spk = np.full(feats.num_utts, -1, np.int64)
    for s, (name, utts) in enumerate(spk2utt.items()):
        for u in utts.split():
            if u in feats:
                spk[feats.index(u)] = s
    missing = np.flatnonzero(spk < 0)
    if len(missing):
        raise UnspeechError(f"utterance {feats.keys[missing[0]]} has no speaker in {spk2utt_path}")
    return spk


def feature_stats(feats, utts, seed, max_frames=500000):
    """Per-bin mean and std of (a seeded sample of at most ``max_frames`` frames of) ``utts``."""
    rng = np.random.default_rng([seed, 0x57A7])
    lengths = feats.lengths[utts]
    n = int(min(max_frames, lengths.sum()))
    pick = rng.choice(len(utts), n, p=lengths / lengths.sum())
    rows = feats.offsets[utts][pick] + (rng.random(n) * lengths[pick]).astype(np.int64)
    x = np.asarray(feats.data[np.sort(rows)], dtype=np.float64)
    return x.mean(axis=0), x.std(axis=0)


def split_utts(usable, val_fraction, seed):
    """Seeded split of utterance indices into (train, validation); validation may be empty."""
    usable = np.asarray(usable)
    if val_fraction <= 0:
        return usable, usable[:0]
    if len(usable) < 2:
        raise UnspeechError("need at least 2 usable utterances to hold some out for validation "
                            "(or --val-fraction 0)")
    n_val = int(min(max(round(val_fraction * len(usable)), 1), len(usable) - 1))
    perm = np.random.default_rng([seed, 0xDA7A]).permutation(len(usable))
    return np.sort(usable[perm[n_val:]]), np.sort(usable[perm[:n_val]])


# ---------------------------------------------------------------- model + steps
def choose_strategy():
    """MirroredStrategy over all GPUs when more than one is visible, else the default strategy."""
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def make_optimizer(cfg):
    import keras
    lr = cfg["learn_rate"]
    if cfg["lr_schedule"] == "cosine":
        if cfg["warmup_steps"]:
            lr = keras.optimizers.schedules.CosineDecay(
                0.0, max(cfg["steps"] - cfg["warmup_steps"], 1), alpha=0.05,
                warmup_target=cfg["learn_rate"], warmup_steps=cfg["warmup_steps"])
        else:
            lr = keras.optimizers.schedules.CosineDecay(cfg["learn_rate"], cfg["steps"], alpha=0.05)
    clip = cfg["gradient_clipping"] if cfg["gradient_clipping"] > 0 else None
    return keras.optimizers.Adam(learning_rate=lr, clipnorm=clip)


class Trainer:
    """Model + optimizer + compiled training step for one config."""

    def __init__(self, cfg, strategy=None):
        import keras
        import tensorflow as tf
        from utils_py.model import objectives
        self.cfg = cfg
        self.strategy = strategy or choose_strategy()
        self.replicas = self.strategy.num_replicas_in_sync
        if cfg["batch_size"] % self.replicas:
            raise UnspeechError(f"--batch-size {cfg['batch_size']} is not divisible by the "
                                f"{self.replicas} GPUs")
        keras.utils.set_random_seed(cfg["seed"])
        with self.strategy.scope():
            self.model = build_model(cfg)
            self.optimizer = make_optimizer(cfg)
            self.optimizer.build(self.model.trainable_variables)
        tvars = self.model.trainable_variables
        l2vars = self.model.l2_variables
        l2 = float(cfg["l2_reg"]) / 2.0
        K = cfg["left_contexts"] + cfg["right_contexts"]
        m = self.model

        def replica_step(xt, xc, extra):
            with tf.GradientTape() as tape:
                et = m.target_tower(xt, training=True)
                ec = m.context_tower(xc, training=True)
                if cfg["objective"] == "original":
                    loss, acc, chance = objectives.pair_loss(et, ec, extra)
                else:
                    labels, mask = objectives.inbatch_targets(extra, K, cfg["inbatch_same_utt"])
                    loss, acc, chance = objectives.inbatch_loss(et, ec, labels, mask, cfg["inbatch_loss"])
                total = loss
                if l2 > 0:
                    total += l2 * tf.add_n([tf.reduce_sum(tf.square(v)) for v in l2vars])
                total = total / self.replicas  # replica gradients are summed
            grads = tape.gradient(total, tvars)
            self.optimizer.apply_gradients(zip(grads, tvars))
            return loss, acc, chance

        if self.replicas == 1:
            self._step = tf.function(replica_step, jit_compile=cfg["jit_compile"])
        else:
            @tf.function(jit_compile=cfg["jit_compile"])
            def dist_step(values):
                out = self.strategy.run(replica_step, args=values)
                return tuple(self.strategy.reduce(tf.distribute.ReduceOp.MEAN, o, axis=None) for o in out)
            self._dist_step = dist_step

    def step(self, batch):
        """One optimisation step on ``(targets, contexts, labels-or-utts)``; returns loss, acc, chance."""
        if self.replicas == 1:
            out = self._step(*batch)
        else:
            shards = [np.split(a, self.replicas) for a in batch]
            values = self.strategy.experimental_distribute_values_from_function(
                lambda ctx: tuple(s[ctx.replica_id_in_sync_group] for s in shards))
            out = self._dist_step(values)
        return tuple(float(v) for v in out)

    # ---- checkpoints ----
    def save_checkpoint(self, path, meta):
        arrays = {"model/" + k: v for k, v in self.model.get_weights().items()}
        for i, v in enumerate(self.optimizer.variables):
            arrays[f"optimizer/{i:04d}"] = np.asarray(v.numpy())
        for i, g in enumerate(seed_generators(self.model)):  # dropout goes on as if never stopped
            arrays[f"rng/{i:04d}"] = np.asarray(g.state.numpy())
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        save_weights(path, arrays)

    def load_model_weights(self, path) -> None:
        """Only the model weights of a checkpoint (e.g. the best one, for the final model)."""
        self.model.set_weights(read_checkpoint(path)[0], path)

    def load_checkpoint(self, path) -> dict:
        weights, opt, meta = read_checkpoint(path)
        self.model.set_weights(weights, path)
        if len(opt) != len(self.optimizer.variables):
            raise UnspeechError(f"checkpoint optimizer state does not match the model: {path}")
        for v, a in zip(self.optimizer.variables, opt):
            if tuple(v.shape) != tuple(a.shape):
                raise UnspeechError(f"checkpoint optimizer state does not match the model: {path}")
            v.assign(a)
        with np.load(path, allow_pickle=False) as z:   # none in checkpoints of older versions
            rng = [z[k] for k in sorted(k for k in z.files if k.startswith("rng/"))]
        generators = seed_generators(self.model)
        if rng and len(rng) != len(generators):
            raise UnspeechError(f"checkpoint random state does not match the model: {path}")
        for g, a in zip(generators, rng):
            g.state.assign(a)
        return meta


def seed_generators(model) -> list:
    """The Keras seed generators of the model's layers (dropout), in build order."""
    found = []
    for tower in (model.target_tower, model.context_tower):
        for layer in tower._flatten_layers():
            g = getattr(layer, "seed_generator", None)
            if g is not None and all(g is not f for f in found):
                found.append(g)
    return found


def read_checkpoint(path):
    """(model weights by variable path, optimizer arrays in order, meta dict) of a checkpoint."""
    arrays = load_weights(path)
    if "meta" not in arrays:
        raise UnspeechError(f"checkpoint has no meta data (corrupt?): {path}")
    weights = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    opt = [arrays[k] for k in sorted(k for k in arrays if k.startswith("optimizer/"))]
    return weights, opt, json.loads(arrays["meta"].tobytes().decode("utf-8"))


def checkpoint_meta(path) -> dict:
    """The meta data (step, config, history, ...) of a checkpoint, without loading its arrays."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(z["meta"].tobytes().decode("utf-8"))
    except Exception as e:
        raise UnspeechError(f"cannot read checkpoint (corrupt?): {path} ({type(e).__name__}: {e})") from None


def evaluate(model, val):
    """Pair-classification accuracy (logit > 0) and ROC AUC of a fixed validation sample."""
    from sklearn.metrics import roc_auc_score
    xt, xc, y = val
    logits = np.sum(model.embed(xt, "target") * model.embed(xc, "context"), axis=1)
    acc = float(np.mean((logits > 0) == (y > 0.5)))
    return acc, float(roc_auc_score(y, logits))


# ---------------------------------------------------------------- outputs
def pairs_per_step(cfg) -> int:
    K = cfg["left_contexts"] + cfg["right_contexts"]
    if cfg["objective"] == "original":
        return cfg["batch_size"] * (K + cfg["negative_samples"])
    return cfg["batch_size"] * cfg["batch_size"] * K


def windows_per_step(cfg) -> int:
    K = cfg["left_contexts"] + cfg["right_contexts"]
    if cfg["objective"] == "original":
        return 2 * cfg["batch_size"] * (K + cfg["negative_samples"])
    return cfg["batch_size"] * (1 + K)


def _config_diff(old, new):
    """Options that differ; an option newer than ``old``'s checkpoint counts as its default."""
    keys = sorted((set(old) | set(new)) - RESUME_FREE - set(DATA_KEYS))
    defaults = default_options()
    return [k for k in keys if old.get(k, defaults.get(k)) != new.get(k, defaults.get(k))]


def _other_options_message(model_dir, what, old, new, diff) -> str:
    defaults = default_options()
    return (f"{model_dir} holds {what} trained with other options ("
            + ", ".join(f"{k}: {old.get(k, defaults.get(k))} -> {new.get(k)}" for k in diff)
            + "); use another model dir or remove it")


# ---------------------------------------------------------------- main entry
def run(cfg: dict, source: str, model_dir: str, strategy=None, log=None) -> dict:
    """Train (or resume) the model for ``cfg`` on ``source`` into ``model_dir``: a feature table
    (scp/ark), or with ``end_to_end`` a data dir whose audio (``wav.scp``) is read.

    Returns the final metrics dict.  Raises UnspeechError for bad input, or when
    another run holds ``model_dir`` (``<model_dir>/.lock``).
    """
    log = log or get_logger("train_unspeech")
    check_options(cfg)
    ensure_dir(model_dir)
    with dir_lock(model_dir, "train_unspeech"):
        return _run_locked(cfg, source, model_dir, strategy, log)


OUTPUT_FILES = (WEIGHTS_FILE, CONFIG_FILE, METRICS_FILE, "training_curves.png",
                "checkpoints/last.npz", "checkpoints/best.npz")


@dataclasses.dataclass
class Data:
    """What training reads: features, the utterance split, the batch sampler, fixed validation pairs."""
    cfg: dict                # the options + DATA_KEYS
    feats: object            # FeatureSet
    usable: np.ndarray       # utterances long enough for one positive sample
    train_utts: np.ndarray
    val_utts: np.ndarray
    sampler: ContextSampler
    val: tuple = None        # (targets, contexts, labels) or None without held-out utterances


@dataclasses.dataclass
class State:
    """Where training stands; a checkpoint's meta data holds all of it."""
    step: int = 0
    elapsed0: float = 0.0    # seconds trained by earlier runs
    history: list = dataclasses.field(default_factory=list)
    best_val: float = -1.0
    best_step: int = None
    stop_reason: str = "steps"
    t0: float = 0.0          # when this run's loop started

    def elapsed(self) -> float:
        return self.elapsed0 + time.time() - self.t0

    def meta(self, cfg) -> dict:
        """Checkpoint meta data; batches come from rng([seed, step]), so the step is the sampler state."""
        return {"step": self.step, "elapsed_seconds": self.elapsed(), "history": self.history,
                "best_val_accuracy": self.best_val, "best_val_step": self.best_step, "config": cfg,
                "sampler": {"seed": cfg["seed"], "next_batch": self.step}}


def _run_locked(cfg, source, model_dir, strategy, log):
    for name in OUTPUT_FILES:  # temp files of a killed earlier run
        remove_stale_temps(os.path.join(model_dir, name))
    done = _finished_metrics(model_dir, cfg)
    if done is not None:
        log.info(f"already trained: {model_dir} (step {done['step']}, held-out context accuracy "
                 f"{fmt(done.get('val_accuracy'))}); remove {os.path.join(model_dir, METRICS_FILE)} "
                 f"or raise --steps to train more")
        return done
    data = prepare_data(source, cfg, log)
    trainer = Trainer(data.cfg, strategy)
    state = restore_or_initialise(trainer, data, model_dir, log)
    train_loop(trainer, data, state, model_dir, log)
    return write_outputs(trainer, data, state, model_dir, log)


def prepare_data(source, cfg, log) -> Data:
    """Features (or samples), the seeded train/validation split, the sampler and the fixed validation pairs."""
    feats, usable, speakers = load_training_data(source, cfg, log)
    cfg = dict(cfg, feature_dim=feats.dim)
    if cfg["end_to_end"]:
        cfg["sample_rate"] = int(feats.meta["sample_rate"])
    train_utts, val_utts = split_utts(usable, cfg["val_fraction"], cfg["seed"])
    log.info(f"training on {len(train_utts)} utterances, {len(val_utts)} held out for validation")
    sampler = ContextSampler(feats, train_utts, cfg["window_length"], cfg["window_neg_length"],
                             cfg["left_contexts"], cfg["right_contexts"], cfg["negative_samples"],
                             cfg["batch_size"], cfg["seed"], speakers,
                             chunks_per_utt=cfg["inbatch_chunks_per_utt"] if cfg["objective"] == "inbatch" else 1,
                             level_jitter_db=cfg["level_jitter_db"], samples=cfg["end_to_end"])
    val = None
    if len(val_utts):
        val = ContextSampler(feats, val_utts, cfg["window_length"], cfg["window_neg_length"],
                             cfg["left_contexts"], cfg["right_contexts"], seed=cfg["seed"]
                             ).validation_pairs(cfg["val_pairs"], seed=1)
    return Data(cfg, feats, usable, train_utts, val_utts, sampler, val)


def restore_or_initialise(trainer, data, model_dir, log) -> State:
    """Resume from ``checkpoints/last.npz`` (same options only), else set the input statistics."""
    cfg = data.cfg
    last_ckpt = os.path.join(model_dir, "checkpoints", "last.npz")
    if not os.path.isfile(last_ckpt):
        trainer.model.set_input_stats(*feature_stats(data.feats, data.train_utts, cfg["seed"]))
        log.info(f"model {cfg['embedding_transformation']}: {trainer.model.target_tower.count_params()} + "
                 f"{trainer.model.context_tower.count_params()} parameters (target + context tower, "
                 f"tied conv stack: {cfg['tied_embeddings_transforms']}), objective {cfg['objective']}"
                 + (f"/{cfg['inbatch_loss']}" if cfg["objective"] == "inbatch" else ""))
        return State()
    old = checkpoint_meta(last_ckpt)["config"]
    diff = _config_diff(old, cfg) or [k for k in DATA_KEYS if old.get(k) != cfg.get(k)]
    if diff:
        raise UnspeechError(_other_options_message(model_dir, "a checkpoint", old, cfg, diff))
    meta = trainer.load_checkpoint(last_ckpt)
    log.info(f"resuming from {last_ckpt} at step {meta['step']} ({meta['elapsed_seconds'] / 3600:.3f} h trained)")
    return State(step=meta["step"], elapsed0=meta["elapsed_seconds"], history=meta["history"],
                 best_val=meta.get("best_val_accuracy", -1.0), best_step=meta.get("best_val_step"))


def train_loop(trainer, data, state, model_dir, log) -> None:
    """Optimisation steps from ``state.step`` to ``--steps`` (or ``--max-hours``): progress every
    ``--log-every`` steps (with validation; ``checkpoints/best.npz`` on a new best), ``checkpoints/last.npz``
    every ``--checkpoint-every`` steps and at the end."""
    cfg = data.cfg
    last_ckpt = os.path.join(model_dir, "checkpoints", "last.npz")
    best_ckpt = os.path.join(model_dir, "checkpoints", "best.npz")
    make_batch = data.sampler.pair_batch if cfg["objective"] == "original" else data.sampler.chunk_batch
    max_seconds = cfg["max_hours"] * 3600 if cfg["max_hours"] > 0 else math.inf
    pairs, windows = pairs_per_step(cfg), windows_per_step(cfg)
    progress = Progress(log, model_dir, cfg["steps"], state.step)
    state.t0 = time.time()
    with Prefetcher(make_batch, state.step, cfg["steps"]) as batches, progress:
        if state.elapsed0 >= max_seconds:
            state.stop_reason = "max_hours"
        batch_iter = iter(batches if state.stop_reason == "steps" else ())
        while True:
            t_wait = time.time()
            step_idx, batch = next(batch_iter, (None, None))
            progress.waited(time.time() - t_wait)
            if step_idx is None:
                break
            loss, acc, chance = trainer.step(batch)
            if not math.isfinite(loss):
                raise UnspeechError(f"training diverged (loss {loss}) at step {step_idx + 1}; "
                                    f"lower --learn-rate (now {cfg['learn_rate']})")
            state.step = step_idx + 1
            progress.add(loss, acc, chance)
            elapsed = state.elapsed()
            last = state.step == cfg["steps"] or elapsed >= max_seconds
            if state.step % cfg["log_every"] == 0 or last:
                row = progress.row(state.step, pairs, windows, elapsed)
                if data.val is not None:
                    row["val_accuracy"], row["val_auc"] = evaluate(trainer.model, data.val)
                state.history.append(row)
                if row["val_accuracy"] is not None and row["val_accuracy"] > state.best_val:
                    state.best_val, state.best_step = row["val_accuracy"], state.step
                    trainer.save_checkpoint(best_ckpt, state.meta(cfg))
                progress.report(row)
            if state.step % cfg["checkpoint_every"] == 0 or last:
                trainer.save_checkpoint(last_ckpt, state.meta(cfg))
            if elapsed >= max_seconds:
                state.stop_reason = "max_hours"
                break


def write_outputs(trainer, data, state, model_dir, log) -> dict:
    """The final model (last or best step), config, curves and -- last, the "finished" marker -- metrics.json."""
    cfg, history = data.cfg, state.history
    final = history[-1] if history else {}
    if cfg["final_model"] == "best" and state.best_step is not None:
        trainer.load_model_weights(os.path.join(model_dir, "checkpoints", "best.npz"))
        final = next(h for h in history if h["step"] == state.best_step)
        log.info(f"final model: step {state.best_step} of {state.step}, the best held-out context accuracy "
                 f"(--final-model best)")
    trainer.model.save(model_dir, extra_config=cfg)
    metrics = {
        "finished": True, "stop_reason": state.stop_reason, "step": state.step,
        "final_model_step": final.get("step", state.step),
        "val_accuracy": final.get("val_accuracy"), "val_auc": final.get("val_auc"),
        "val_majority_accuracy": 0.5 if data.val is not None else None,
        "best_val_accuracy": state.best_val if state.best_val >= 0 else None, "best_val_step": state.best_step,
        "train_accuracy": final.get("train_accuracy"), "train_chance": final.get("train_chance"),
        "loss": final.get("loss"), "pairs_per_second": final.get("pairs_per_second"),
        "windows_per_second": final.get("windows_per_second"),
        "elapsed_hours": state.elapsed() / 3600,
        "train_utterances": int(len(data.train_utts)), "val_utterances": int(len(data.val_utts)),
        "dropped_utterances": int(data.feats.num_utts - len(data.usable)),
        "model_id": trainer.model.model_id, "history": history,
    }
    if history:
        plot_curves(history, os.path.join(model_dir, "training_curves.png"),
                    f"unspeech {cfg['embedding_transformation']} w{cfg['window_length']} {cfg['objective']}",
                    final_step=metrics["final_model_step"])
    atomic_write_text(os.path.join(model_dir, METRICS_FILE), json.dumps(metrics, indent=1) + "\n")
    log.info(f"done: step {state.step} ({state.stop_reason}), held-out context accuracy "
             f"{fmt(metrics['val_accuracy'])}, model {os.path.join(model_dir, WEIGHTS_FILE)}")
    return metrics


def _finished_metrics(model_dir, cfg):
    """The metrics of a finished run of the same options that needs no more steps, else None."""
    path = os.path.join(model_dir, METRICS_FILE)
    if not (os.path.isfile(path) and os.path.isfile(os.path.join(model_dir, WEIGHTS_FILE))
            and os.path.isfile(os.path.join(model_dir, CONFIG_FILE))):
        return None
    try:
        with open(path) as f:
            metrics = json.load(f)
        with open(os.path.join(model_dir, CONFIG_FILE)) as f:
            old = json.load(f)
    except ValueError:
        return None
    diff = _config_diff(old, cfg)
    if diff:
        raise UnspeechError(_other_options_message(model_dir, "a model", old, cfg, diff))
    more_time = cfg["max_hours"] <= 0 or metrics.get("elapsed_hours", 0) < cfg["max_hours"]
    if metrics.get("step", 0) < cfg["steps"] and more_time:
        return None  # --steps / --max-hours raised: continue from the last checkpoint
    return metrics
