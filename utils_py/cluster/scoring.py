"""Scores for speaker clustering and same/different-speaker trials.

Clustering (``cluster_scores``): predicted speakers against gold speakers,
one label per utterance --

- ``ari``: adjusted Rand index, pairs of utterances put together/apart as in the
  gold labels, 0 for chance, 1 for a perfect match;
- ``nmi`` / ``v_measure``: normalised mutual information (arithmetic mean
  normalisation, which makes it equal to the V-measure), with ``homogeneity``
  (each cluster holds one speaker) and ``completeness`` (each speaker in one cluster);
- ``purity``: share of utterances in their cluster's majority gold speaker;
  ``inverse_purity``: share of utterances in their speaker's majority cluster.

Trials (``trial_scores``): cosine similarity of utterance pairs, target = same
gold speaker --

- ``eer``: equal error rate (miss rate = false-alarm rate), linearly interpolated;
- ``min_dcf_p0.01`` / ``min_dcf_p0.05``: minimum normalised detection cost
  (C_miss = C_fa = 1) at target priors 0.01 and 0.05, as in NIST SRE.

Usage::

    from utils_py.cluster import scoring

    scoring.cluster_scores(gold_labels, predicted_labels)   # {"ari": .., "nmi": .., ...}
    i, j = scoring.sample_trials(gold_labels, max_pairs=1_000_000, seed=0)
    scoring.trial_scores(X_l2normed, gold_labels, max_pairs=1_000_000)   # {"eer": .., ...}
    scoring.eer(scores, is_target)        # (eer, threshold)
    scoring.min_dcf(scores, is_target, p_target=0.01)   # (min_dcf, threshold)
"""
import numpy as np
from sklearn import metrics

DCF_P_TARGETS = (0.01, 0.05)


def _codes(labels) -> np.ndarray:
    return np.unique(np.asarray(labels), return_inverse=True)[1].ravel()


def purity(gold, pred) -> float:
    """Share of items whose predicted cluster's majority gold label is their own."""
    table = metrics.cluster.contingency_matrix(_codes(gold), _codes(pred), sparse=True)
    return float(table.max(axis=0).sum() / table.sum())


def cluster_scores(gold, pred) -> dict:
    """ARI, NMI, V-measure, homogeneity, completeness, purity, inverse purity (floats)."""
    g, p = _codes(gold), _codes(pred)
    if len(g) != len(p):
        raise ValueError(f"{len(g)} gold labels but {len(p)} predicted labels")
    h, c, v = metrics.homogeneity_completeness_v_measure(g, p)
    return {
        "ari": float(metrics.adjusted_rand_score(g, p)),
        "nmi": float(metrics.normalized_mutual_info_score(g, p)),
        "v_measure": float(v),
        "homogeneity": float(h),
        "completeness": float(c),
        "purity": purity(g, p),
        "inverse_purity": purity(p, g),
    }


def _error_curve(scores, is_target):
    """Miss and false-alarm rates accepting ``score >= threshold`` at each distinct threshold.

    Returns ``(p_miss, p_fa, thresholds)``, from accepting nothing (threshold +inf)
    to accepting everything.
    """
    scores = np.asarray(scores, dtype=np.float64)
    is_target = np.asarray(is_target, dtype=bool)
    n_tar = int(is_target.sum())
    n_non = len(is_target) - n_tar
    if n_tar == 0 or n_non == 0:
        raise ValueError(f"need target and non-target trials, got {n_tar} and {n_non}")
    order = np.argsort(-scores, kind="mergesort")
    s, t = scores[order], is_target[order]
    last_of_tie = np.r_[s[1:] != s[:-1], True]      # accept up to the end of a run of equal scores
    hits = np.cumsum(t)[last_of_tie]
    false_alarms = np.cumsum(~t)[last_of_tie]
    p_miss = np.r_[1.0, 1.0 - hits / n_tar]
    p_fa = np.r_[0.0, false_alarms / n_non]
    thresholds = np.r_[np.inf, s[last_of_tie]]
    return p_miss, p_fa, thresholds


def eer(scores, is_target):
    """``(equal error rate, threshold)``; linear interpolation where miss and FA rates cross."""
    p_miss, p_fa, thr = _error_curve(scores, is_target)
    diff = p_miss - p_fa                       # non-increasing
    k = int(np.argmax(diff <= 0))              # first point with p_miss <= p_fa (exists: last is -1 ... <= 0)
    if k == 0:
        return float(p_miss[0]), float(thr[0])
    a, b = diff[k - 1], diff[k]
    w = a / (a - b) if a != b else 0.0
    rate = p_miss[k - 1] + w * (p_miss[k] - p_miss[k - 1])
    t0 = thr[k - 1] if np.isfinite(thr[k - 1]) else thr[k]
    return float(rate), float(t0 + w * (thr[k] - t0))


def min_dcf(scores, is_target, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0):
    """``(minimum normalised detection cost, threshold)`` at prior ``p_target``."""
    p_miss, p_fa, thr = _error_curve(scores, is_target)
    cost = c_miss * p_miss * p_target + c_fa * p_fa * (1 - p_target)
    cost /= min(c_miss * p_target, c_fa * (1 - p_target))
    k = int(np.argmin(cost))
    return float(cost[k]), float(thr[k])


def sample_trials(labels, max_pairs: int = 1_000_000, seed: int = 0):
    """Index arrays ``(i, j)``, ``i < j``: every pair if there are at most ``max_pairs``.

    Otherwise a seeded sample: up to half target pairs (same label, drawn with
    probability proportional to each label's pair count) and the rest
    non-target pairs, so rare same-speaker pairs are not drowned out.
    Sampled pairs may repeat.
    """
    codes = _codes(labels)
    n = len(codes)
    if n * (n - 1) // 2 <= max_pairs:
        i, j = np.triu_indices(n, k=1)
        return i.astype(np.int64), j.astype(np.int64)
    rng = np.random.default_rng(seed)
    members = np.argsort(codes, kind="stable")
    counts = np.bincount(codes)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    pair_counts = counts * (counts - 1) / 2
    n_tar = int(min(pair_counts.sum(), max_pairs // 2))
    parts_i, parts_j = [], []
    if n_tar > 0:
        spk = rng.choice(len(counts), size=n_tar, p=pair_counts / pair_counts.sum())
        a = rng.integers(0, counts[spk])
        b = rng.integers(0, counts[spk] - 1)
        b = b + (b >= a)                                   # distinct member
        parts_i.append(members[starts[spk] + a])
        parts_j.append(members[starts[spk] + b])
    n_non = max_pairs - n_tar
    got = 0
    while got < n_non:
        a = rng.integers(0, n, size=2 * (n_non - got))
        b = rng.integers(0, n, size=2 * (n_non - got))
        keep = codes[a] != codes[b]
        a, b = a[keep][: n_non - got], b[keep][: n_non - got]
        if len(a) == 0:
            break                                          # one label only: no non-target pairs
        parts_i.append(a)
        parts_j.append(b)
        got += len(a)
    i = np.concatenate(parts_i) if parts_i else np.zeros(0, np.int64)
    j = np.concatenate(parts_j) if parts_j else np.zeros(0, np.int64)
    return np.minimum(i, j).astype(np.int64), np.maximum(i, j).astype(np.int64)


def cosine_pair_scores(X, i, j, chunk: int = 1 << 20) -> np.ndarray:
    """Cosine similarity of rows ``X[i]`` and ``X[j]`` (rows need not be normalised)."""
    norms = np.linalg.norm(X, axis=1)
    norms[norms == 0] = 1.0
    out = np.empty(len(i), dtype=np.float64)
    for s in range(0, len(i), chunk):
        a, b = i[s:s + chunk], j[s:s + chunk]
        out[s:s + chunk] = np.einsum("nd,nd->n", X[a], X[b], dtype=np.float64) / (norms[a] * norms[b])
    return out


def trial_scores(X, labels, max_pairs: int = 1_000_000, seed: int = 0) -> dict:
    """Same/different-speaker trials on cosine similarity: EER, minDCF, average precision.

    Returns ``{"num_trials", "num_target_trials"}`` plus, when there are both
    target and non-target trials, ``eer, eer_threshold, min_dcf_p0.01,
    min_dcf_p0.05 (+ _threshold), average_precision``; otherwise ``eer`` is None.
    """
    i, j = sample_trials(labels, max_pairs, seed)
    codes = _codes(labels)
    is_target = codes[i] == codes[j]
    out = {"num_trials": int(len(i)), "num_target_trials": int(is_target.sum())}
    if out["num_target_trials"] == 0 or out["num_target_trials"] == len(i):
        out["eer"] = None
        return out
    scores = cosine_pair_scores(X, i, j)
    out["eer"], out["eer_threshold"] = eer(scores, is_target)
    for p in DCF_P_TARGETS:
        out[f"min_dcf_p{p:g}"], out[f"min_dcf_p{p:g}_threshold"] = min_dcf(scores, is_target, p)
    out["average_precision"] = float(metrics.average_precision_score(is_target, scores))
    return out
