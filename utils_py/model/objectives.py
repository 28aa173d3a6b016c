"""Training objectives of the unspeech model (TensorFlow ops, usable inside tf.function).

``original`` -- the unspeech paper's: labelled (target, context) pairs, logit =
dot product of the two embeddings, sigmoid cross-entropy.

``inbatch`` -- every one of B targets is scored against all B*K context windows
(K = left + right contexts) of the batch: a (B, B*K) logit matrix from only
B + B*K tower passes.  Context j belongs to target j // K (positive), all
other pairs are negatives -- except pairs whose two chunks come from the same
utterance, which are masked out (neither positive nor negative), or, with
``same_utt="positive"`` (``--inbatch-same-utt positive``, best with several
chunks per utterance, ``--inbatch-chunks-per-utt``), count as positives: an
utterance-level pull that slowed, but did not stop, the drift towards
utterance-specific cues on the demo corpus
(bench/results/bench_train_inbatch_drift.md).  Losses:

- ``softmax`` (InfoNCE): for every context window, cross-entropy of picking its
  own target among the B targets (masked targets excluded);
- ``sigmoid``: sigmoid cross-entropy on every unmasked pair, positives and
  negatives each weighted 1/2 (as balanced as the original's 4 pos / 4 neg);
  its accuracy is balanced the same way (chance 0.5).

Both rank pairs equally well (same held-out AUC per CPU-minute on FSDD and the
demo corpus), but only ``sigmoid`` makes ``logit > 0`` a calibrated same-context
decision -- softmax is blind to a per-context logit offset, so its held-out
pair accuracy at 0 lags (0.83 vs 0.91 on FSDD).  ``sigmoid`` is the default.

Every loss returns ``(loss, accuracy, chance)`` where accuracy is the training
metric printed in the log and chance the majority-class / random level of it.

Usage::

    from utils_py.model import objectives as obj

    loss, acc, chance = obj.pair_loss(t_emb, c_emb, labels)
    labels, mask = obj.inbatch_targets(utts, contexts=4)
    loss, acc, chance = obj.inbatch_loss(t_emb, c_emb, labels, mask, kind="sigmoid")
"""
import tensorflow as tf

INBATCH_LOSSES = ("sigmoid", "softmax")


def pair_logits(t_emb, c_emb):
    """Dot product of row i of ``t_emb`` with row i of ``c_emb``: (N,)."""
    return tf.reduce_sum(t_emb * c_emb, axis=-1)


def pair_loss(t_emb, c_emb, labels):
    """Original objective on N labelled pairs; chance = majority-class accuracy."""
    logits = pair_logits(t_emb, c_emb)
    labels = tf.cast(labels, logits.dtype)
    loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
    acc = tf.reduce_mean(tf.cast(tf.equal(tf.cast(logits > 0, labels.dtype), labels), tf.float32))
    pos = tf.reduce_mean(labels)
    return loss, acc, tf.maximum(pos, 1.0 - pos)


def inbatch_targets(utts, contexts: int, same_utt: str = "mask"):
    """(B, B*K) labels and mask: label 1 where context j is target i's own (j // K == i).
    A context j from another chunk of target i's utterance is masked out
    (``same_utt="mask"``: mask 0) or a positive too (``"positive"``: label 1)."""
    utts = tf.convert_to_tensor(utts)
    b = tf.shape(utts)[0]
    owner = tf.repeat(tf.range(b), contexts)                          # (B*K,)
    own = tf.equal(tf.range(b)[:, None], owner[None, :])              # (B, B*K)
    same_utt_pairs = tf.equal(utts[:, None], tf.gather(utts, owner)[None, :])
    if same_utt == "positive":
        return tf.cast(same_utt_pairs, tf.float32), tf.ones_like(tf.cast(own, tf.float32))
    if same_utt != "mask":
        raise ValueError(f"unknown same_utt {same_utt!r} (mask | positive)")
    labels = tf.cast(own, tf.float32)
    mask = tf.cast(tf.logical_or(own, tf.logical_not(same_utt_pairs)), tf.float32)
    return labels, mask


def inbatch_logits(t_emb, c_emb):
    """(B, B*K): logit[i, j] = <target i, context j>."""
    return tf.matmul(t_emb, c_emb, transpose_b=True)


def inbatch_loss(t_emb, c_emb, labels, mask, kind: str = "sigmoid"):
    logits = tf.cast(inbatch_logits(t_emb, c_emb), tf.float32)
    if kind == "softmax":
        return _infonce(logits, labels, mask)
    if kind == "sigmoid":
        return _balanced_sigmoid(logits, labels, mask)
    raise ValueError(f"unknown in-batch loss {kind!r} (choose from {INBATCH_LOSSES})")


def _infonce(logits, labels, mask):
    """Per context column: softmax over the unmasked targets, CE of the own target.
    Accuracy = own target has the highest logit; chance = 1 / (unmasked targets)."""
    masked = tf.where(mask > 0, logits, tf.fill(tf.shape(logits), -1e9))
    logp = tf.nn.log_softmax(masked, axis=0)
    loss = -tf.reduce_mean(tf.reduce_sum(logp * labels, axis=0))
    pred = tf.argmax(masked, axis=0, output_type=tf.int32)
    own = tf.argmax(labels, axis=0, output_type=tf.int32)
    acc = tf.reduce_mean(tf.cast(tf.equal(pred, own), tf.float32))
    chance = tf.reduce_mean(1.0 / tf.reduce_sum(mask, axis=0))
    return loss, acc, chance


def _balanced_sigmoid(logits, labels, mask):
    """Positive and negative pairs each weighted 1/2; accuracy balanced the same way (chance 0.5)."""
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    neg = mask * (1.0 - labels)
    n_pos = tf.reduce_sum(labels)
    n_neg = tf.maximum(tf.reduce_sum(neg), 1.0)
    loss = 0.5 * tf.reduce_sum(ce * labels) / n_pos + 0.5 * tf.reduce_sum(ce * neg) / n_neg
    said_pos = tf.cast(logits > 0, tf.float32)
    acc = 0.5 * tf.reduce_sum(said_pos * labels) / n_pos + 0.5 * tf.reduce_sum((1.0 - said_pos) * neg) / n_neg
    return loss, acc, tf.constant(0.5)
