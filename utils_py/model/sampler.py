"""Vectorised, seeded sampling of (target, context) windows for unspeech training.

A *positive sample* is one contiguous chunk of ``window_neg_length * left +
window_length + window_neg_length * right`` frames: the centre window is the
target, each adjacent context window forms a positive pair with it.  Negative
pairs take both windows from random positions of random utterances, drawn
independently (with speakers: both from the positive sample's speaker, as the
original's per-speaker negative sampling).  With ``level_jitter_db`` every
training window gets its own random level offset (log fbank + constant; raw samples,
``samples=True``: times a gain), so windows cannot be matched by recording level alone.
Windows count rows of ``feats``: frames, or samples of a waveform set (dim 1).

Batch ``step`` is drawn from ``np.random.default_rng([seed, step])``: batches
are reproducible, can be produced ahead in a background thread, and a resumed
run continues the exact batch sequence from its step number alone.

Usage::

    from utils_py.model.sampler import ContextSampler, Prefetcher

    s = ContextSampler(feats, train_utts, window_length=32, window_neg_length=32,
                       left_contexts=2, right_contexts=2, negative_samples=4,
                       batch_size=32, seed=1)
    t, c, y = s.pair_batch(step)      # original objective: B*(L+R+k) labelled pairs
    t, c, u = s.chunk_batch(step)     # in-batch objective: (B, W, D), (B*(L+R), Wn, D), utt ids (B,)
    t, c, y = s.validation_pairs(1000, seed=7)   # balanced, fixed
    for batch in Prefetcher(s.pair_batch, start=0, stop=1000): ...
"""
import queue
import threading

import numpy as np

from utils_py.log import UnspeechError


def chunk_length(window_length, window_neg_length, left_contexts, right_contexts) -> int:
    """Frames of one positive sample (the shortest usable utterance)."""
    return int(window_length + window_neg_length * (left_contexts + right_contexts))


class ContextSampler:
    """Draws windows from the utterances ``utts`` (indices into ``feats``)."""

    def __init__(self, feats, utts, window_length, window_neg_length, left_contexts=2, right_contexts=2,
                 negative_samples=4, batch_size=32, seed=0, speakers=None, chunks_per_utt=1,
                 level_jitter_db=0.0, samples=False):
        """``speakers``: optional int array, the speaker of every utterance of ``feats``;
        ``chunks_per_utt``: positive samples per drawn utterance in ``chunk_batch``;
        ``level_jitter_db``: every window's level moved by uniform(-x, x) dB on its own
        (log fbank + x/10 ln 10; ``samples``: raw audio, times 10^(x/20)), so that matching windows
        by recording level does not pay."""
        self.feats = feats
        self.utts = np.asarray(utts, dtype=np.int64)
        self.window_length = int(window_length)
        self.window_neg_length = int(window_neg_length)
        self.left = int(left_contexts)
        self.right = int(right_contexts)
        self.negative_samples = int(negative_samples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.chunks_per_utt = int(chunks_per_utt)
        # in natural-log units of fbank (power) or of the samples' amplitude
        self.level_jitter = float(level_jitter_db) * np.log(10.0) / (20.0 if samples else 10.0)
        self.samples = bool(samples)
        if self.chunks_per_utt < 1 or self.batch_size % self.chunks_per_utt:
            raise UnspeechError(f"chunks per utterance ({chunks_per_utt}) must divide the batch size ({batch_size})")
        self.chunk_length = chunk_length(window_length, window_neg_length, left_contexts, right_contexts)
        if len(self.utts) == 0:
            raise UnspeechError("no utterances to sample from")
        short = self.utts[feats.lengths[self.utts] < self.chunk_length]
        if len(short):
            raise UnspeechError(f"utterance {feats.keys[short[0]]} has {feats.lengths[short[0]]} frames, "
                                f"fewer than one positive sample ({self.chunk_length})")
        if self.left + self.right < 1:
            raise UnspeechError("need at least one left or right context")
        self._spk = None
        if speakers is not None:  # utts grouped by speaker, CSR style
            spk = np.asarray(speakers)[self.utts]
            order = np.argsort(spk, kind="stable")
            self._spk_utts = self.utts[order]
            _, start, rows, count = np.unique(spk[order], return_index=True, return_inverse=True,
                                              return_counts=True)
            self._spk = (start, count)
            self._spk_row = np.full(feats.num_utts, -1, np.int64)   # utterance -> speaker row
            self._spk_row[self._spk_utts] = rows

    @property
    def contexts(self) -> int:
        return self.left + self.right

    def rng(self, step: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(step)])

    # ---- primitives ----
    def _windows(self, rng, utts, length):
        """One window of ``length`` frames at a random position of each utterance in ``utts``."""
        starts = rng.integers(0, self.feats.lengths[utts] - length + 1)
        idx = (self.feats.offsets[utts] + starts)[:, None] + np.arange(length)
        return np.asarray(self.feats.data[idx], dtype=np.float32)

    def _random_utts(self, rng, n, like=None):
        """``n`` random utterances (uniform); with speakers, of the same speaker as ``like``'s."""
        if self._spk is None or like is None:
            return self.utts[rng.integers(0, len(self.utts), n)]
        return self._of_speakers(rng, self._spk_row[like])

    def _chunk_utts(self, rng, n):
        if self._spk is None:
            return self.utts[rng.integers(0, len(self.utts), n)]
        return self._of_speakers(rng, rng.integers(0, len(self._spk[1]), n))  # speaker first, as the original

    def _of_speakers(self, rng, rows):
        """One random utterance of each speaker row in ``rows``."""
        start, count = self._spk
        return self._spk_utts[start[rows] + (rng.random(len(rows)) * count[rows]).astype(np.int64)]

    def chunks(self, rng, n, per_utt=1):
        """``n`` positive samples: utts (n,), targets (n, W, D), contexts (n, L+R, Wn, D);
        ``per_utt`` consecutive samples share an utterance (independent positions)."""
        utts = np.repeat(self._chunk_utts(rng, n // per_utt), per_utt)
        chunk = self._windows(rng, utts, self.chunk_length)
        wn, c0 = self.window_neg_length, self.left * self.window_neg_length
        target = chunk[:, c0:c0 + self.window_length]
        ctx = [chunk[:, i * wn:(i + 1) * wn] for i in range(self.left)]
        ctx += [chunk[:, c0 + self.window_length + i * wn:c0 + self.window_length + (i + 1) * wn]
                for i in range(self.right)]
        return utts, self._jitter(rng, np.ascontiguousarray(target)), self._jitter(rng, np.stack(ctx, axis=1))

    def negatives(self, rng, n, like=None):
        """``n`` negative pairs: targets (n, W, D), contexts (n, Wn, D), independent positions/utts."""
        t = self._windows(rng, self._random_utts(rng, n, like), self.window_length)
        c = self._windows(rng, self._random_utts(rng, n, like), self.window_neg_length)
        return self._jitter(rng, t), self._jitter(rng, c)

    def _jitter(self, rng, windows):
        """One random level offset per window (the last two axes are frames x bins, or samples x 1)."""
        if self.level_jitter <= 0:
            return windows
        shift = rng.uniform(-self.level_jitter, self.level_jitter, windows.shape[:-2] + (1, 1))
        if self.samples:
            windows *= np.exp(shift).astype(windows.dtype)
        else:
            windows += shift.astype(windows.dtype)
        return windows

    # ---- batches ----
    def pair_batch(self, step: int):
        """Original objective: B chunks -> B*(L+R) positive + B*k negative pairs (targets, contexts, labels)."""
        rng = self.rng(step)
        b, k, K = self.batch_size, self.negative_samples, self.contexts
        utts, target, ctx = self.chunks(rng, b)
        pos_t = np.repeat(target, K, axis=0)
        pos_c = ctx.reshape((b * K,) + ctx.shape[2:])
        neg_t, neg_c = self.negatives(rng, b * k, like=np.repeat(utts, k))
        labels = np.concatenate([np.ones(b * K, np.float32), np.zeros(b * k, np.float32)])
        return np.concatenate([pos_t, neg_t]), np.concatenate([pos_c, neg_c]), labels

    def chunk_batch(self, step: int):
        """In-batch objective: targets (B, W, D), contexts (B*(L+R), Wn, D) grouped by target, utts (B,)."""
        utts, target, ctx = self.chunks(self.rng(step), self.batch_size, self.chunks_per_utt)
        return target, ctx.reshape((-1,) + ctx.shape[2:]), utts.astype(np.int32)

    def validation_pairs(self, n_pairs: int, seed: int):
        """A fixed balanced sample: n/2 positive pairs (from chunks), n/2 negative pairs of windows
        from two *different* utterances (a same-utterance "negative" may overlap its target)."""
        rng = np.random.default_rng([self.seed, seed, 0x5A1])
        n_pos = n_pairs // 2
        n_neg = n_pairs - n_pos
        _, target, ctx = self.chunks(rng, -(-n_pos // self.contexts))
        pos_t = np.repeat(target, self.contexts, axis=0)[:n_pos]
        pos_c = ctx.reshape((-1,) + ctx.shape[2:])[:n_pos]
        u1 = rng.integers(0, len(self.utts), n_neg)
        u2 = u1.copy()
        if len(self.utts) > 1:  # second utterance uniform among the others
            u2 = (u1 + rng.integers(1, len(self.utts), n_neg)) % len(self.utts)
        neg_t = self._windows(rng, self.utts[u1], self.window_length)
        neg_c = self._windows(rng, self.utts[u2], self.window_neg_length)
        labels = np.concatenate([np.ones(n_pos, np.float32), np.zeros(n_neg, np.float32)])
        return np.concatenate([pos_t, neg_t]), np.concatenate([pos_c, neg_c]), labels


class Prefetcher:
    """Iterate ``make(step)`` for ``step`` in [start, stop), produced ahead in a background thread.

    Exceptions in the producer are re-raised in the consumer.  ``close()`` (or
    leaving a ``with`` block) stops the thread.
    """

    def __init__(self, make, start: int, stop: int, depth: int = 4):
        self._make, self._start, self._stop = make, int(start), int(stop)
        self._q = queue.Queue(maxsize=depth)
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="unspeech-sampler")
        self._thread.start()

    def _run(self):
        try:
            for step in range(self._start, self._stop):
                item = (step, self._make(step))
                while not self._halt.is_set():
                    try:
                        self._q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._halt.is_set():
                    return
        except BaseException as e:  # hand it to the consumer
            self._q.put(("error", e))
        self._q.put(("end", None))

    def __iter__(self):
        while True:
            step, item = self._q.get()
            if step == "end":
                return
            if step == "error":
                raise item
            yield step, item

    def close(self):
        self._halt.set()
        while self._thread.is_alive():
            try:
                self._q.get_nowait()
            except queue.Empty:
                self._thread.join(0.05)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
