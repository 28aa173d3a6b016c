"""Clustering methods that choose the number of speakers themselves.

All take prepared vectors (set mean subtracted, L2-normalised: dot products are
cosine scores) and return ``(labels, choice)``; ``choice`` says what was chosen
and why (it goes into ``scores.json``).

- ``spectral_labels``: spectral clustering of a pruned cosine affinity; the
  number of neighbours kept per row (p) and the speaker count k come from the
  normalised maximum eigengap (NME-SC, Park et al. 2019, as in the
  ``spectralcluster`` package's auto-tuning): for each p the largest gap among
  the smallest Laplacian eigenvalues gives k, and the p with the smallest
  p / gap wins; k-means on the row-normalised eigenvectors gives the labels.
- ``ahc_labels``: average-linkage agglomerative clustering on cosine scores,
  stopped at ``same_different_threshold`` (or a given threshold).
- ``same_different_threshold``: the no-label threshold rule: a mixture of
  few same-speaker and many different-speaker pair scores, the threshold where
  P(same | score) = 0.5 (see there).
- ``hdbscan_grid``: HDBSCAN over a small grid of (min_cluster_size,
  min_samples) (the automatic one: ``HDBSCAN_SIZES`` x ``hdbscan_samples``);
  the clustering with the best density-based validity index (DBCV,
  ``hdbscan.validity.validity_index``) wins.
"""
import numpy as np

SPECTRAL_NEIGHBOURS = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
HDBSCAN_SIZES = (3, 5, 10, 20, 40)   # min_cluster_size values of the auto grid (no pairs: DBCV over-split with them)
_TRIAL_PAIRS = 1_000_000
_CLIP = 0.999          # |cosine| cap before arctanh


def hdbscan_samples(min_cluster_size: int) -> tuple:
    """min_samples values the auto grid tries with ``min_cluster_size``: 1 (plain distances, single
    linkage) and ``min_cluster_size`` itself (hdbscan's own default); see bench/results/hdbscan_auto_grid.md.

    >>> hdbscan_samples(5), hdbscan_samples(1)
    ((1, 5), (1,))
    """
    return tuple(sorted({1, int(min_cluster_size)}))


def cosine_scores(X) -> np.ndarray:
    """``(n, n)`` cosine scores of the rows of ``X`` (float64)."""
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    X = X / np.where(norms > 0, norms, 1.0)
    return X @ X.T


def _pair_scores(S, seed: int) -> np.ndarray:
    """Scores of all pairs i < j of ``S`` (a seeded sample of 1M if more)."""
    n = len(S)
    i, j = np.triu_indices(n, k=1)
    if len(i) > _TRIAL_PAIRS:
        pick = np.random.default_rng(seed).choice(len(i), _TRIAL_PAIRS, replace=False)
        i, j = i[pick], j[pick]
    return S[i, j]


def same_different_threshold(S, seed: int = 0) -> tuple:
    """No-label threshold on the cosine score matrix ``S``: ``(threshold, info)``.

    The scores of all pairs (1M seeded if more) and each utterance's best score
    go to ``mixture_threshold``.  Fewer than 3 utterances: 0.5.
    """
    n = len(S)
    if n < 3:
        return 0.5, {"rule": "fewer than 3 utterances: threshold 0.5"}
    best = np.where(np.eye(n, dtype=bool), -np.inf, S).max(axis=1)
    return mixture_threshold(_pair_scores(S, seed), best)


def mixture_threshold(scores, best, iterations: int = 300) -> tuple:
    """Threshold between same- and different-speaker cosine ``scores``, no labels.

    Fisher-z (arctanh) transformed scores as a mixture of two Gaussians:
    different-speaker pairs, fixed at the median and robust standard deviation
    (1.4826 MAD) of all scores (they are the bulk), and same-speaker pairs,
    fitted by EM, started from ``best`` (each utterance's best score).  The
    threshold is the score between the two means where P(same | score) = 0.5;
    where P(same) stays below 0.5 between the means: the point equally many
    standard deviations from both; no same-speaker mode above the bulk: the
    median + 3 robust standard deviations.
    """
    z = np.arctanh(np.clip(np.asarray(scores, dtype=np.float64), -_CLIP, _CLIP))
    mu0 = float(np.median(z))
    sd0 = max(1.4826 * float(np.median(np.abs(z - mu0))), 1e-4)
    best = np.arctanh(np.clip(np.asarray(best, dtype=np.float64), -_CLIP, _CLIP))
    mu1, sd1, w1 = float(best.mean()), max(float(best.std()), 1e-3), 0.05
    log_different = -0.5 * ((z - mu0) / sd0) ** 2 - np.log(sd0)
    for _ in range(iterations):
        log_same = -0.5 * ((z - mu1) / sd1) ** 2 - np.log(sd1)
        r = 1.0 / (1.0 + np.exp(np.clip(np.log(1 - w1) + log_different - np.log(w1) - log_same, -60, 60)))
        w1 = float(np.clip(r.mean(), 1e-9, 1 - 1e-9))
        new_mu1 = float((r * z).sum() / max(r.sum(), 1e-12))
        sd1 = max(float(np.sqrt((r * (z - new_mu1) ** 2).sum() / max(r.sum(), 1e-12))), 1e-4)
        converged = abs(new_mu1 - mu1) < 1e-7
        mu1 = new_mu1
        if converged:
            break
    info = {"different_mean": float(np.tanh(mu0)), "same_mean": float(np.tanh(mu1)), "same_weight": w1,
            "fisher_z": {"different": [mu0, sd0], "same": [mu1, sd1]}, "pairs": int(len(z))}
    grid = np.linspace(mu0, mu1, 2001)
    above = np.flatnonzero(np.log(w1) - 0.5 * ((grid - mu1) / sd1) ** 2 - np.log(sd1)
                           > np.log(1 - w1) - 0.5 * ((grid - mu0) / sd0) ** 2 - np.log(sd0))
    if mu1 <= mu0 + sd0:
        info["rule"] = "no same-speaker mode above the bulk of the scores: median + 3 robust std"
        return float(np.tanh(mu0 + 3 * sd0)), info
    if not len(above):
        info["rule"] = "P(same | score) < 0.5 between the means: the equal z-score point of the two Gaussians"
        return float(np.tanh((mu0 * sd1 + mu1 * sd0) / (sd0 + sd1))), info
    info["rule"] = "P(same | score) = 0.5 under the fitted same/different mixture (Fisher z)"
    return float(np.tanh(grid[above[0]])), info


def ahc_labels(X, threshold: float = None, seed: int = 0) -> tuple:
    """Average-linkage AHC on cosine scores, merging while the linkage score >= threshold."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform
    n = len(X)
    S = cosine_scores(X)
    if threshold is None:
        threshold, info = same_different_threshold(S, seed)
    else:
        info = {"rule": "--threshold given"}
    info["threshold"] = float(threshold)
    if n < 2:
        return np.zeros(n, dtype=np.int64), info
    D = np.clip(1.0 - S, 0.0, 2.0)
    np.fill_diagonal(D, 0.0)
    Z = linkage(squareform(D, checks=False), method="average")
    labels = fcluster(Z, t=1.0 - threshold, criterion="distance") - 1
    return _renumber(labels), info


def _renumber(labels) -> np.ndarray:
    """Labels 0..k-1 in order of first appearance."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[inverse.ravel()].astype(np.int64)


def _pruned_affinity(S, p: int) -> np.ndarray:
    """Each row keeps its ``p`` best other scores as 1 (else 0), symmetrised by averaging."""
    n = len(S)
    S = S.copy()
    np.fill_diagonal(S, -np.inf)
    keep = np.argpartition(-S, p - 1, axis=1)[:, :p]
    A = np.zeros((n, n))
    A[np.arange(n)[:, None], keep] = 1.0
    return (A + A.T) / 2


def _laplacian_eigen(A, m: int):
    """Smallest ``m`` eigenvalues and eigenvectors of the normalised Laplacian of ``A``."""
    from scipy.linalg import eigh
    d = A.sum(axis=1)
    inv = 1.0 / np.sqrt(np.where(d > 0, d, 1.0))
    L = np.eye(len(A)) - inv[:, None] * A * inv[None, :]
    return eigh(L, subset_by_index=[0, m - 1])


def spectral_labels(X, max_clusters: int = 0, seed: int = 0) -> tuple:
    """Spectral clustering with the speaker count from the normalised maximum eigengap."""
    from sklearn.cluster import KMeans
    n = len(X)
    if n < 3:
        return np.zeros(n, dtype=np.int64), {"rule": "fewer than 3 utterances: one cluster"}
    m = min(n - 1, max_clusters or max(2, min(200, n // 2))) + 1
    S = cosine_scores(X)
    grid, best, vectors = [], None, None
    for p in (p for p in SPECTRAL_NEIGHBOURS if p < n - 1):
        values, eigenvectors = _laplacian_eigen(_pruned_affinity(S, p), m)
        gaps = np.diff(values)
        k = int(np.argmax(gaps)) + 1
        g = float(gaps[k - 1]) / max(float(values[-1]), 1e-10)
        grid.append({"p": p, "k": k, "gap": float(gaps[k - 1]), "ratio": p / max(g, 1e-10)})
        if best is None or grid[-1]["ratio"] < best["ratio"]:
            best, vectors = grid[-1], eigenvectors[:, :k]
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    if best["k"] == 1:
        labels = np.zeros(n, dtype=np.int64)
    else:
        labels = KMeans(best["k"], n_init=10, random_state=seed).fit_predict(vectors)
    info = {"rule": "neighbours p and count k with the smallest p / normalised max eigengap (NME-SC)",
            "neighbours": best["p"], "count": best["k"], "max_clusters": m - 1, "grid": grid}
    return _renumber(labels), info


def hdbscan_grid(X, run, grid, metric: str = "euclidean") -> tuple:
    """HDBSCAN over ``grid`` of (min_cluster_size, min_samples), best DBCV wins.

    ``run(X, min_cluster_size, min_samples)`` gives the labels (-1 = outlier).
    Clusterings with fewer than 2 clusters score -1.  Ties: the earlier entry.
    """
    from hdbscan.validity import validity_index
    X64 = np.asarray(X, dtype=np.float64)
    rows, best = [], None
    for mcs, ms in grid:
        if mcs > len(X):
            continue
        labels = run(X, mcs, ms)
        k = int(labels.max()) + 1
        if k >= 2:
            with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
                dbcv = float(validity_index(X64, labels, metric=metric))
            dbcv = dbcv if np.isfinite(dbcv) else -1.0
        else:
            dbcv = -1.0
        rows.append({"min_cluster_size": mcs, "min_samples": ms, "clusters": k,
                     "outliers": int((labels < 0).sum()), "dbcv": dbcv})
        if best is None or dbcv > best[0]:
            best = (dbcv, labels, mcs, ms)
    if best is None:
        return np.full(len(X), -1, dtype=np.int64), {"rule": "fewer utterances than every grid min_cluster_size"}
    info = {"rule": "(min_cluster_size, min_samples) of the grid with the best DBCV",
            "min_cluster_size": best[2], "min_samples": best[3], "dbcv": best[0], "grid": rows}
    return best[1], info
