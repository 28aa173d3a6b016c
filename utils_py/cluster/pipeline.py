"""Cluster utterance vectors into pseudo-speakers.

Pipeline (``cluster_vectors``): optional global-mean subtraction (Kaldi's
``ivector-subtract-global-mean``), L2 length normalisation, optional PCA, then
one of the methods (``--method``):

- ``hdbscan`` (the original's): min_cluster_size / min_samples as given; where
  either is 0 (auto) the best of a small grid by DBCV (``methods.hdbscan_grid``);
- ``spectral``: count from the normalised maximum eigengap (``methods.spectral_labels``);
- ``ahc``: average-linkage cosine AHC stopped at a threshold from the scores'
  own same/different mixture, or ``--threshold`` (``methods.ahc_labels``).

What was chosen and why is ``ClusterResult.choice`` (scores.json ``choice``).
HDBSCAN's spanning tree: by default
``hdbscan.HDBSCAN(algorithm='boruvka_kdtree')`` (any kd-tree metric), as in the
original unspeech.  ``algorithm="blas"`` builds the same minimum spanning tree
(same total weight) from matrix products instead -- 4-6x faster in 100 dims,
euclidean only -- and lets hdbscan's own code select the clusters; where the
distances tie, the two may break ties differently.
Above ``max_exact`` utterances a seeded sample of ``max_exact`` is clustered
and every other utterance goes to its nearest cluster centroid (two-stage).
The O(n^2)-memory / O(n^3) methods have their own limit (``EXACT_LIMITS``):
above it they run two-stage on a sample of that size, and say so in the log.

Outliers (HDBSCAN label -1):

- ``own``: each outlier is a speaker of its own (as in the original unspeech);
  in two-stage mode an unsampled utterance is an outlier when it lies farther
  from its nearest centroid than that cluster's radius (the largest distance of
  a sampled member, at least their mean + 3 standard deviations);
- ``nearest``: attached to the nearest cluster centroid.

Edge cases: fewer utterances than ``min_cluster_size`` -> no cluster can form,
every utterance is its own speaker; all vectors identical -> one speaker;
no cluster found -> every utterance its own speaker (with either ``outliers``).

Usage::

    from utils_py.cluster.pipeline import ClusterOptions, cluster_vectors, speaker_ids

    opts = ClusterOptions(min_cluster_size=5, min_samples=3, outliers="own")
    result = cluster_vectors(X, opts)               # X: (n, dim) float32
    result.labels                                   # cluster per row, -1 = outlier
    utt2spk = speaker_ids(keys, result.labels)      # {"utt": "unspk0000001", ...}
"""
import dataclasses
import json
import logging
import os
import time

import numpy as np

from utils_py.kaldi import datadir
from utils_py.cluster import methods, scoring
from utils_py.fileio import atomic_write, atomic_write_text, ensure_dir, read_json_or_none, require_file
from utils_py.log import UnspeechError
from utils_py.extract.utt_vectors import read_utt_vectors, vector_source

METRICS = ("euclidean", "manhattan", "chebyshev")   # what boruvka_kdtree supports
ALGORITHMS = ("blas", "boruvka_kdtree")
OUTLIER_MODES = ("own", "nearest")
MODES = ("cluster", "samedifferent")
CLUSTER_METHODS = ("hdbscan", "spectral", "ahc")
# most utterances each method clusters at once (its own cost), above: two-stage on a sample
EXACT_LIMITS = {"spectral": 5000, "ahc": 10000, "hdbscan-auto": 5000}
SPEAKER_PREFIX = "unspk"
_PCA_FIT_ROWS = 100_000


@dataclasses.dataclass
class ClusterOptions:
    method: str = "hdbscan"
    min_cluster_size: int = 0   # 0 = auto (grid, DBCV)
    min_samples: int = 0        # 0 = auto (grid, DBCV)
    threshold: float = None     # ahc: cosine score to stop merging; None = from the score distribution
    metric: str = "euclidean"
    algorithm: str = "boruvka_kdtree"  # hdbscan's own; blas: same exact MST from matrix products (euclidean)
    outliers: str = "own"
    subtract_mean: bool = True
    l2_normalize: bool = True
    pca_dim: int = 0            # 0 = off
    max_exact: int = 20000      # 0 = always exact
    seed: int = 0
    num_threads: int = 1

    def check(self):
        if self.method not in CLUSTER_METHODS:
            raise UnspeechError(f"--method must be one of {' '.join(CLUSTER_METHODS)}, got {self.method}")
        if self.min_cluster_size == 1 or self.min_cluster_size < 0:
            raise UnspeechError(f"--min-cluster-size must be >= 2 or 0 (auto), got {self.min_cluster_size}")
        if self.min_samples < 0:
            raise UnspeechError(f"--min-samples must be >= 1 or 0 (auto), got {self.min_samples}")
        if self.threshold is not None and not -1.0 <= self.threshold <= 1.0:
            raise UnspeechError(f"--threshold must be a cosine score in [-1, 1] or auto, got {self.threshold}")
        if self.metric not in METRICS:
            raise UnspeechError(f"--metric must be one of {' '.join(METRICS)}, got {self.metric}")
        if self.algorithm not in ALGORITHMS:
            raise UnspeechError(f"--algorithm must be one of {' '.join(ALGORITHMS)}, got {self.algorithm}")
        if self.algorithm == "blas" and self.metric != "euclidean":
            raise UnspeechError(f"--algorithm blas needs --metric euclidean; use --algorithm boruvka_kdtree "
                                f"for --metric {self.metric}")
        if self.outliers not in OUTLIER_MODES:
            raise UnspeechError(f"--outliers must be own or nearest, got {self.outliers}")
        if self.pca_dim < 0 or self.max_exact < 0:
            raise UnspeechError("--pca-dim and --max-exact must be >= 0")
        if 0 < self.max_exact < max(2, self.min_cluster_size):
            raise UnspeechError(f"--max-exact {self.max_exact} is below --min-cluster-size {self.min_cluster_size}")
        return self

    @property
    def auto_hdbscan(self) -> bool:
        return self.method == "hdbscan" and not (self.min_cluster_size and self.min_samples)

    def exact_limit(self) -> int:
        """Most utterances clustered at once (0 = no limit): --max-exact, capped by the method's cost."""
        own = EXACT_LIMITS.get("hdbscan-auto" if self.auto_hdbscan else self.method, 0)
        return min(x for x in (self.max_exact, own) if x) if (self.max_exact or own) else 0

    def hdbscan_grid(self) -> list:
        """(min_cluster_size, min_samples) pairs to try: the given value, else the grid's."""
        sizes = [self.min_cluster_size] if self.min_cluster_size else methods.HDBSCAN_SIZES
        samples = [self.min_samples] if self.min_samples else methods.HDBSCAN_SAMPLES
        return [(a, b) for a in sizes for b in samples if self.min_samples or b <= a]


@dataclasses.dataclass
class ClusterResult:
    labels: np.ndarray          # (n,) cluster index per row, -1 = own speaker (none with outliers=nearest)
    is_outlier: np.ndarray      # (n,) bool: outlier of HDBSCAN / the two-stage radius, attached or not
    num_clusters: int
    sample_size: int            # rows clustered by HDBSCAN (n unless two-stage)
    note: str = ""              # why no clustering happened, if so
    choice: dict = dataclasses.field(default_factory=dict)   # method, what it chose and why

    @property
    def num_outliers(self) -> int:
        return int(self.is_outlier.sum())


def prepare_vectors(X, subtract_mean: bool = True, l2_normalize: bool = True) -> np.ndarray:
    """Mean-subtracted (over the set) and length-normalised copy of ``X`` (float32).

    Zero vectors stay zero.
    """
    X = np.array(X, dtype=np.float32)
    if subtract_mean:
        X -= X.mean(axis=0, dtype=np.float64).astype(np.float32)
    if l2_normalize:
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        X /= np.where(norms > 0, norms, 1.0)
    return X


def reduce_dim(X, pca_dim: int, seed: int = 0) -> np.ndarray:
    """PCA to ``pca_dim`` dims, fit on at most 100k seeded rows; ``X`` itself if not smaller."""
    if not pca_dim or pca_dim >= min(X.shape):
        return X
    from sklearn.decomposition import PCA
    rng = np.random.default_rng(seed)
    fit = X if len(X) <= _PCA_FIT_ROWS else X[np.sort(rng.choice(len(X), _PCA_FIT_ROWS, replace=False))]
    pca = PCA(n_components=pca_dim, random_state=seed).fit(fit)
    return pca.transform(X).astype(np.float32)


def hdbscan_labels(X, opts: ClusterOptions, min_cluster_size: int = None, min_samples: int = None):
    """HDBSCAN labels of all rows of ``X`` (-1 = outlier), with the edge cases handled.

    ``min_cluster_size``/``min_samples`` default to ``opts``' (which must not be 0 then).
    Returns ``(labels, note)``; ``note`` says why HDBSCAN was not run, else "".
    """
    mcs = min_cluster_size or opts.min_cluster_size
    n = len(X)
    if n < mcs:
        return np.full(n, -1), f"{n} utterance(s) < --min-cluster-size {mcs}: no cluster can form"
    if np.ptp(X, axis=0).max() == 0:
        return np.zeros(n, dtype=np.int64), "all vectors identical: one cluster"
    return labels_from_tree(hdbscan_tree(X, opts, min_samples or opts.min_samples), mcs), ""


def hdbscan_tree(X, opts: ClusterOptions, min_samples: int) -> np.ndarray:
    """HDBSCAN's single-linkage tree of ``X`` for ``min_samples`` (it does not depend on
    min_cluster_size: the automatic grid builds one per min_samples): hdbscan's boruvka_kdtree,
    or the BLAS spanning tree (``opts.algorithm``)."""
    min_samples = min(min_samples, len(X) - 1)
    if opts.algorithm == "blas":
        from hdbscan._hdbscan_linkage import label
        mst = mutual_reachability_mst(X, min_samples)
        return label(np.ascontiguousarray(mst[np.argsort(mst[:, 2], kind="stable")]))
    from hdbscan.hdbscan_ import hdbscan
    return hdbscan(np.asarray(X, dtype=np.float64), min_cluster_size=2, min_samples=min_samples, metric=opts.metric,
                   algorithm="boruvka_kdtree", core_dist_n_jobs=opts.num_threads)[4]


def labels_from_tree(tree, min_cluster_size: int) -> np.ndarray:
    """HDBSCAN labels (eom selection, -1 = outlier) from a single-linkage tree, by hdbscan's own code."""
    from hdbscan.hdbscan_ import _tree_to_labels
    return np.asarray(_tree_to_labels(None, tree, min_cluster_size)[0], dtype=np.int64)


def method_labels(X, opts: ClusterOptions):
    """Labels of all rows of prepared ``X`` by ``opts.method``: ``(labels, note, choice)``.

    ``choice``: the method, what it chose (count, threshold, grid point) and why.
    """
    n = len(X)
    choice = {"method": opts.method}
    if opts.method == "hdbscan" and not opts.auto_hdbscan:
        labels, note = hdbscan_labels(X, opts)
        choice.update(rule="--min-cluster-size and --min-samples given",
                      min_cluster_size=opts.min_cluster_size, min_samples=opts.min_samples)
        return labels, note, choice
    if n >= 2 and np.ptp(X, axis=0).max() == 0:
        return np.zeros(n, dtype=np.int64), "all vectors identical: one cluster", choice
    if opts.method == "hdbscan":
        grid = opts.hdbscan_grid()
        if n < min(a for a, _ in grid):
            return hdbscan_labels(X, opts, min(a for a, _ in grid), 1) + (choice,)
        trees = {}          # one tree per min_samples

        def run(Y, mcs, ms):
            if ms not in trees:
                trees[ms] = hdbscan_tree(Y, opts, ms)
            return labels_from_tree(trees[ms], mcs)
        labels, info = methods.hdbscan_grid(X, run, grid, opts.metric)
    elif n < 2:
        return np.full(n, -1), f"{n} utterance(s): nothing to cluster", choice
    elif opts.method == "spectral":
        labels, info = methods.spectral_labels(X, seed=opts.seed)
    else:
        labels, info = methods.ahc_labels(X, opts.threshold, opts.seed)
    choice.update(info)
    return labels, "", choice


# --- exact HDBSCAN for the euclidean metric, with BLAS ------------------------
#
# hdbscan's boruvka_kdtree degrades to slow brute force in 100 dims (10k vectors:
# 30 s, 20k: 150 s on 2 busy cores).  Here the minimum spanning tree of the
# mutual-reachability graph (weight max(core_u, core_v, d_uv), core = distance to
# the min_samples-th neighbour) is built from matrix products instead:
#   1. exact k nearest neighbours, chunked GEMM;
#   2. Boruvka rounds on the kNN edges, accepting a component's cheapest kNN edge
#      only when no other edge can be cheaper (every non-kNN edge of u weighs at
#      least max(core_u, distance to u's k-th neighbour));
#   3. the remaining components are contracted: one pass over all pairs gives the
#      cheapest edge between every two components, Kruskal finishes the tree.
# The tree then goes through hdbscan's own condensing and cluster selection, so
# the labels are HDBSCAN's.  The tree has the same total weight as hdbscan's exact
# one (tested); mutual-reachability weights have many ties (a weight is often a
# core distance) and HDBSCAN's cluster selection depends on how a tree breaks
# them, so on borderline data the clusters can differ from the library's.

_CHUNK_ELEMENTS = 1 << 24          # distance-matrix block: 16M float32 = 64 MB
_MAX_CONTRACTED = 4000             # components for the contraction table (C x C)


def _sq_distances(A, B, sq_a, sq_b) -> np.ndarray:
    """Squared euclidean distances of rows of ``A`` to rows of ``B`` (float32 GEMM, clipped at 0)."""
    D = A @ B.T
    D *= -2.0
    D += sq_a[:, None]
    D += sq_b[None, :]
    return np.maximum(D, 0.0, out=D)


def _rows_per_chunk(n: int) -> int:
    return max(1, min(n, _CHUNK_ELEMENTS // max(n, 1)))


def nearest_neighbours(X, k: int):
    """Exact ``(distances, indices)`` of each row's ``k`` nearest other rows, ascending.

    Candidates come from float32 matrix products; the returned distances are
    recomputed in float64.
    """
    X64 = np.ascontiguousarray(X, dtype=np.float64)
    X32 = X64.astype(np.float32)
    n = len(X64)
    sq = np.einsum("nd,nd->n", X32, X32)
    dist = np.empty((n, k))
    idx = np.empty((n, k), dtype=np.int64)
    step = _rows_per_chunk(n)
    for a in range(0, n, step):
        b = min(n, a + step)
        D = _sq_distances(X32[a:b], X32, sq[a:b], sq)
        D[np.arange(b - a), np.arange(a, b)] = np.inf            # not its own neighbour
        part = np.argpartition(D, k - 1, axis=1)[:, :k]
        exact = np.linalg.norm(X64[a:b, None, :] - X64[part], axis=2)
        order = np.argsort(exact, axis=1, kind="stable")
        idx[a:b] = np.take_along_axis(part, order, axis=1)
        dist[a:b] = np.take_along_axis(exact, order, axis=1)
    return dist, idx


class _UnionFind:
    def __init__(self, n):
        self.parent = np.arange(n)

    def find(self, x):
        parent = self.parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a, b) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)
        return True

    def components(self) -> np.ndarray:
        """Component index 0..C-1 of every element."""
        roots = np.array([self.find(i) for i in range(len(self.parent))])
        return np.unique(roots, return_inverse=True)[1].ravel()


def _contract(X, core, comp, edges, uf):
    """Finish the tree over components ``comp``: cheapest edge between every two, then Kruskal."""
    n = len(X)
    order = np.argsort(comp, kind="stable")
    Xs, cores, comps = X[order].astype(np.float32), core[order].astype(np.float32), comp[order]
    starts = np.flatnonzero(np.r_[True, comps[1:] != comps[:-1]])
    C = len(starts)
    sq = np.einsum("nd,nd->n", Xs, Xs)
    cheapest = np.full((C, C), np.inf)
    step = _rows_per_chunk(n)
    for a in range(0, n, step):
        b = min(n, a + step)
        D = _mutual_reachability_rows(Xs, sq, cores, a, b)
        per_comp = np.minimum.reduceat(D, starts, axis=1)                  # (rows, C)
        row_starts = np.flatnonzero(np.r_[True, comps[a + 1:b] != comps[a:b - 1]])
        block = np.minimum.reduceat(per_comp, row_starts, axis=0)
        rows = comps[a:b][row_starts]
        cheapest[rows] = np.minimum(cheapest[rows], block)
    np.fill_diagonal(cheapest, np.inf)
    i, j = np.triu_indices(C, k=1)
    w = np.minimum(cheapest[i, j], cheapest[j, i]).astype(np.float64)
    representative = order[starts]
    for e in np.argsort(w, kind="stable"):
        if uf.union(representative[i[e]], representative[j[e]]):
            edges.append((representative[i[e]], representative[j[e]], w[e]))
            if len(edges) == n - 1:
                break


def _mutual_reachability_rows(X, sq, core, a, b) -> np.ndarray:
    """HDBSCAN's mutual-reachability distances of rows ``a:b`` of ``X`` to all rows:
    max(core[i], core[j], ||x_i - x_j||), with ``sq`` the squared row norms."""
    D = np.sqrt(_sq_distances(X[a:b], X, sq[a:b], sq))
    np.maximum(D, core[a:b, None], out=D)
    np.maximum(D, core[None, :], out=D)
    return D


def _brute_force_round(X, core, comp, edges, uf):
    """One exact Boruvka round over all pairs: every component gets its cheapest edge."""
    n = len(X)
    X, core32 = X.astype(np.float32), core.astype(np.float32)
    sq = np.einsum("nd,nd->n", X, X)
    best_w = np.full(n, np.inf)
    best_v = np.zeros(n, dtype=np.int64)
    step = _rows_per_chunk(n)
    for a in range(0, n, step):
        b = min(n, a + step)
        D = _mutual_reachability_rows(X, sq, core32, a, b)
        D[comp[a:b, None] == comp[None, :]] = np.inf
        best_v[a:b] = np.argmin(D, axis=1)
        best_w[a:b] = D[np.arange(b - a), best_v[a:b]]
    _add_component_minima(comp, best_w, best_v, np.ones(comp.max() + 1, bool), edges, uf)


def _add_component_minima(comp, weight, neighbour, accept, edges, uf):
    """For every accepted component: add the edge of its member with the smallest ``weight``."""
    order = np.lexsort((weight, comp))
    first = order[np.r_[True, comp[order][1:] != comp[order][:-1]]]
    for u in first:
        if accept[comp[u]] and np.isfinite(weight[u]) and uf.union(u, neighbour[u]):
            edges.append((u, neighbour[u], weight[u]))


def mutual_reachability_mst(X, min_samples: int, k: int = 16) -> np.ndarray:
    """Exact minimum spanning tree ``(n-1, 3)`` rows ``(u, v, weight)`` of the mutual-reachability graph.

    Euclidean distances; ``core_u`` = distance to u's ``min_samples``-th nearest
    other point (as in hdbscan).  ``k`` >= min_samples neighbours seed Boruvka.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    n = len(X)
    if n < 2:
        return np.zeros((0, 3))
    k = min(max(k, min_samples), n - 1)
    knn_d, knn_i = nearest_neighbours(X, k)
    core = knn_d[:, min(min_samples, k) - 1]
    weights = np.maximum(np.maximum(core[:, None], core[knn_i]), knn_d)      # kNN edges
    bound = np.maximum(core, knn_d[:, -1])          # no non-kNN edge of u is cheaper
    uf = _UnionFind(n)
    edges = []
    comp = np.arange(n)
    rows = np.arange(n)
    while len(edges) < n - 1:
        masked = np.where(comp[knn_i] == comp[:, None], np.inf, weights)
        j = np.argmin(masked, axis=1)
        cand_w, cand_v = masked[rows, j], knn_i[rows, j]
        C = comp.max() + 1
        upper = np.full(C, np.inf)
        np.minimum.at(upper, comp, cand_w)
        unresolved = np.full(C, np.inf)             # cheapest possible non-kNN edge per component
        np.minimum.at(unresolved, comp, np.where(cand_w <= bound, np.inf, bound))
        accept = np.isfinite(upper) & (upper <= unresolved)
        if not accept.any():
            break
        _add_component_minima(comp, cand_w, cand_v, accept, edges, uf)
        comp = uf.components()
    while len(edges) < n - 1:
        if comp.max() + 1 <= _MAX_CONTRACTED:
            _contract(X, core, comp, edges, uf)
        else:
            _brute_force_round(X, core, comp, edges, uf)
            comp = uf.components()
    return np.array(edges, dtype=np.float64).reshape(-1, 3)


def centroids(X, labels) -> np.ndarray:
    """Mean of each cluster ``0..max(labels)`` (outliers ignored), ``(k, dim)``."""
    k = int(labels.max()) + 1
    inside = labels >= 0
    sums = np.zeros((k, X.shape[1]), dtype=np.float64)
    np.add.at(sums, labels[inside], X[inside])
    return sums / np.bincount(labels[inside], minlength=k)[:, None]


def nearest_centroid(X, C, metric: str = "euclidean"):
    """``(index, distance)`` of the nearest row of ``C`` for every row of ``X`` (chunked)."""
    from sklearn.metrics import pairwise_distances_argmin_min
    return pairwise_distances_argmin_min(np.asarray(X, dtype=np.float32), np.asarray(C, dtype=np.float32),
                                         metric=metric)


def cluster_vectors(X, opts: ClusterOptions = None, log: logging.Logger = None) -> ClusterResult:
    """Cluster the rows of ``X`` (n, dim) following ``opts``; see the module docstring."""
    from threadpoolctl import threadpool_limits
    opts = (opts or ClusterOptions()).check()
    with threadpool_limits(max(1, opts.num_threads)):
        return _cluster_vectors(X, opts, log or logging.getLogger("cluster"))


def _cluster_vectors(X, opts, log):
    X = prepare_vectors(X, opts.subtract_mean, opts.l2_normalize)
    X = reduce_dim(X, opts.pca_dim, opts.seed)
    n = len(X)
    limit = opts.exact_limit()
    two_stage = bool(limit) and n > limit
    if two_stage:
        rng = np.random.default_rng(opts.seed)
        sample = np.sort(rng.choice(n, limit, replace=False))
        why = "--max-exact" if limit == opts.max_exact else (
            f"--method {opts.method}{' with automatic settings' if opts.auto_hdbscan else ''} "
            f"is O(n^2) or worse: at most {limit} utterances at once")
        log.info(f"two-stage: clustering a seeded sample of {len(sample)} of {n} utterances ({why}); "
                 f"the others go to the nearest cluster centroid")
    else:
        sample = np.arange(n)
    sample_labels, note, choice = method_labels(X[sample], opts)
    num_clusters = int(sample_labels.max()) + 1 if len(sample_labels) else 0
    if num_clusters == 0:
        note = note or f"{opts.method} found no cluster"
        return ClusterResult(np.full(n, -1), np.ones(n, bool), 0, len(sample),
                             note + ": every utterance is its own speaker", choice)
    labels = np.full(n, -1, dtype=np.int64)
    labels[sample] = sample_labels
    C = centroids(X[sample], sample_labels)
    if two_stage:
        rest = np.setdiff1d(np.arange(n), sample, assume_unique=True)
        idx, dist = nearest_centroid(X[rest], C, opts.metric)
        if opts.outliers == "own":
            radius = cluster_radii(X, labels, C, opts.metric)
            idx = np.where(dist <= radius[idx], idx, -1)
        labels[rest] = idx
    is_outlier = labels < 0
    if opts.outliers == "nearest" and is_outlier.any():
        labels[is_outlier] = nearest_centroid(X[is_outlier], C, opts.metric)[0]
    return ClusterResult(labels, is_outlier, num_clusters, len(sample), note, choice)


def cluster_radii(X, labels, C, metric: str = "euclidean") -> np.ndarray:
    """Per cluster: how far from centroid ``C`` a new utterance may lie and still belong.

    The largest member distance, at least mean + 3 std of the member distances,
    after scaling them by sqrt((m+1)/(m-1)) (m members): a centroid lies closer to
    the members it was averaged from than to new points of the same cluster.
    """
    inside = labels >= 0
    lab = labels[inside]
    k = len(C)
    count = np.bincount(lab, minlength=k)
    d = row_distances(X[inside], C[lab], metric) * np.sqrt((count[lab] + 1) / np.maximum(count[lab] - 1, 1))
    mean = np.bincount(lab, d, minlength=k) / count
    std = np.sqrt(np.maximum(np.bincount(lab, d * d, minlength=k) / count - mean ** 2, 0))
    largest = np.zeros(k)
    np.maximum.at(largest, lab, d)
    return np.maximum(largest, mean + 3 * std)


def row_distances(A, B, metric: str = "euclidean") -> np.ndarray:
    """Distance between ``A[i]`` and ``B[i]`` for every row ``i``."""
    diff = np.abs(np.asarray(A, dtype=np.float64) - np.asarray(B, dtype=np.float64))
    if metric == "manhattan":
        return diff.sum(axis=1)
    if metric == "chebyshev":
        return diff.max(axis=1)
    return np.sqrt((diff * diff).sum(axis=1))


def speaker_ids(keys, labels, prefix: str = SPEAKER_PREFIX) -> dict:
    """``{utt: speaker}``: clusters and outliers (each alone) numbered ``unspk0000001``, ...

    Numbering: larger speakers first, ties broken by their first utterance in
    ``LC_ALL=C`` order -- the same input always gives the same ids.
    """
    c_key = datadir.c_key
    groups = {}
    for key, label in zip(keys, labels):
        groups.setdefault(int(label) if label >= 0 else ("out", key), []).append(key)
    order = sorted(groups.values(), key=lambda utts: (-len(utts), min(c_key(u) for u in utts)))
    width = max(7, len(str(len(order))))
    return {utt: f"{prefix}{rank:0{width}d}" for rank, utts in enumerate(order, 1) for utt in utts}


def project_2d(X, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D coordinates of the rows of ``X`` by PCA or t-SNE (zeros where undefined)."""
    n = len(X)
    out = np.zeros((n, 2))
    if n < 2:
        return out
    if method == "tsne" and len(np.unique(np.asarray(X), axis=0)) >= 4:   # t-SNE crashes on identical points
        from sklearn.manifold import TSNE
        return TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca",
                    random_state=seed).fit_transform(np.asarray(X, dtype=np.float32))
    Xc = np.asarray(X, dtype=np.float64) - np.mean(X, axis=0)
    if not Xc.any():
        return out
    _, _, vt = np.linalg.svd(Xc, full_matrices=False)
    proj = Xc @ vt[:2].T
    out[:, :proj.shape[1]] = proj
    return out


def plot_embedding_map(path: str, X, labels, gold=None, seed: int = 0, tsne_max: int = 2000,
                       max_points: int = 20000, title: str = "") -> None:
    """PNG of the utterance vectors in 2-D (PCA; t-SNE too up to ``tsne_max`` utterances).

    Coloured by cluster (outliers grey crosses) and, side by side, by gold speaker.
    More than ``max_points`` utterances: a seeded sample of them is drawn.
    """
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(X)
    rows = np.arange(n)
    if n > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
    Xs = np.asarray(X)[rows]
    views = [("PCA", project_2d(Xs, "pca", seed))]
    if n <= tsne_max and len(np.unique(Xs, axis=0)) >= 4:
        views.append(("t-SNE", project_2d(Xs, "tsne", seed)))
    colourings = [("cluster", np.asarray(labels)[rows])]
    if gold is not None:
        colourings.append(("gold speaker", np.unique(np.asarray(gold), return_inverse=True)[1].ravel()[rows]))
    fig, axes = plt.subplots(len(views), len(colourings), squeeze=False,
                             figsize=(6 * len(colourings), 5 * len(views)))
    cmap = plt.get_cmap("tab20")
    for r, (view, P) in enumerate(views):
        for c, (what, lab) in enumerate(colourings):
            ax = axes[r][c]
            own = lab < 0
            ax.scatter(P[~own, 0], P[~own, 1], s=6, c=cmap(lab[~own] % 20), linewidths=0)
            if own.any():
                ax.scatter(P[own, 0], P[own, 1], s=10, c="0.6", marker="x", linewidths=0.6, label="outlier")
                ax.legend(loc="best", fontsize=8)
            k = len(np.unique(lab[~own]))
            ax.set_title(f"{view}, coloured by {what} ({k} {'clusters' if what == 'cluster' else 'speakers'})",
                         fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
    sample_note = f", {len(rows)} of {n} shown" if len(rows) < n else ""
    fig.suptitle(f"{title}{sample_note}" if title else f"{n} utterances{sample_note}", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())


def read_gold(path: str, keys, source: str) -> list:
    """Gold speaker of each of ``keys`` from utt2spk ``path``; it must cover exactly these utterances."""
    table = datadir.read_table(path)
    missing = [k for k in keys if k not in table]
    if missing:
        raise UnspeechError(f"utterance {missing[0]} ({len(missing)} in all) of {source} "
                            f"is not in gold utt2spk: {path}")
    if len(table) != len(keys):
        extra = next(k for k in table if k not in set(keys))
        raise UnspeechError(f"gold utt2spk has utterance {extra} ({len(table) - len(keys)} in all) "
                            f"without a vector in {source}: {path}")
    return [table[k] for k in keys]


def _stamp(path):
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


def cluster_utts(src: str, out_dir: str, gold: str = None, opts: ClusterOptions = None, mode: str = "cluster",
                 half_index: int = 0, max_pairs: int = 1_000_000, plot: bool = True,
                 log: logging.Logger = None) -> dict:
    """The cluster step: vectors of ``src`` -> ``out_dir/{utt2spk,spk2utt,clusters.txt,scores.json,...}``.

    Returns the scores/statistics dict.  ``.done`` (the inputs and options) is
    written last; a rerun with the same inputs and options does nothing.
    BLAS/OpenMP use ``opts.num_threads`` threads (spinning OpenMP threads on
    busy cores made t-SNE 30x slower).
    """
    from threadpoolctl import threadpool_limits
    opts = (opts or ClusterOptions()).check()
    with threadpool_limits(max(1, opts.num_threads)):
        return _cluster_utts(src, out_dir, gold, opts, mode, half_index, max_pairs, plot,
                             log or logging.getLogger("cluster_utts"))


def _cluster_utts(src, out_dir, gold, opts, mode, half_index, max_pairs, plot, log):
    if mode not in MODES:
        raise UnspeechError(f"--mode must be cluster or samedifferent, got {mode}")
    if mode == "samedifferent" and not gold:
        raise UnspeechError("--mode samedifferent needs gold speakers: --utt2spk <utt2spk>")
    if max_pairs < 1:
        raise UnspeechError(f"--max-pairs must be >= 1, got {max_pairs}")
    if gold:
        require_file(gold, "gold utt2spk")
    ensure_dir(out_dir)
    source = vector_source(src)
    signature = {"source": _stamp(source), "gold": _stamp(gold) if gold else None, "mode": mode,
                 "half_index": half_index, "max_pairs": max_pairs, "plot": plot,
                 "options": dataclasses.asdict(opts)}
    path = lambda name: os.path.join(out_dir, name)  # noqa: E731
    done = path(".done")
    previous = read_json_or_none(done)
    if previous is not None and previous.get("signature") == signature and (
            mode == "samedifferent" or os.path.isfile(path("utt2spk"))):
        log.info(f"already done with these inputs and options (remove {done} to redo): {out_dir}")
        for line in summary_lines(previous.get("stats", {})):
            log.info("summary: " + line)
        return previous.get("stats", {})
    for name in (".done", "utt2spk"):          # nothing stale may look complete
        if os.path.exists(path(name)):
            os.remove(path(name))

    keys, X, source = read_utt_vectors(src, half_index)
    gold_labels = read_gold(gold, keys, source) if gold else None
    log.info(f"{len(keys)} utterance vectors of dim {X.shape[1]} from {source}"
             + (f" (first {half_index} dims)" if half_index else ""))
    stats = {"num_utts": len(keys), "dim": int(X.shape[1]), "mode": mode}
    if gold_labels is not None:
        stats["num_gold_speakers"] = len(set(gold_labels))
        prepared = prepare_vectors(X, opts.subtract_mean, opts.l2_normalize)
        stats.update(scoring.trial_scores(prepared, gold_labels, max_pairs, opts.seed))

    if mode == "cluster":
        start = time.time()
        result = cluster_vectors(X, opts, log)
        log.info(f"clustering took {time.time() - start:.1f} s")
        if result.note:
            log.warning(result.note)
        utt2spk = speaker_ids(keys, result.labels)
        sizes = np.bincount(result.labels[result.labels >= 0]) if result.num_clusters else np.zeros(0, int)
        stats.update({"num_clusters": result.num_clusters, "num_outliers": result.num_outliers,
                      "num_speakers": len(set(utt2spk.values())), "sample_size": result.sample_size,
                      "largest_cluster": int(sizes.max()) if len(sizes) else 0,
                      "smallest_cluster": int(sizes[sizes > 0].min()) if sizes.any() else 0,
                      "method": opts.method, "choice": result.choice})
        if gold_labels is not None:
            stats.update(scoring.cluster_scores(gold_labels, [utt2spk[k] for k in keys]))
        with atomic_write(path("clusters.txt")) as f:
            for key, label, out in zip(keys, result.labels, result.is_outlier):
                f.write(f"{key} {-1 if out else int(label)}\n")
        if plot:
            plot_embedding_map(path("embedding_map.png"), prepare_vectors(X, opts.subtract_mean, opts.l2_normalize),
                               np.where(result.is_outlier, -1, result.labels), gold_labels, seed=opts.seed,
                               title=f"{source}: {len(keys)} utterances")
    stats["options"] = dataclasses.asdict(opts)
    if gold_labels is not None:
        atomic_write_text(path("scores.json"), json.dumps(stats, indent=1, sort_keys=True) + "\n")
    if mode == "cluster":
        datadir.write_table(path("spk2utt"), datadir.spk2utt_from_utt2spk(utt2spk))
        datadir.write_table(path("utt2spk"), utt2spk)
    atomic_write_text(done, json.dumps({"signature": signature, "stats": stats}, sort_keys=True) + "\n")
    for line in summary_lines(stats):
        log.info("summary: " + line)
    return stats


def summary_lines(stats: dict) -> list:
    """Readable summary of a cluster_utts result (for the log)."""
    lines = []
    if stats.get("mode") == "cluster":
        lines.append(f"{stats['num_utts']} utterances -> {stats['num_speakers']} speakers: "
                     f"{stats['num_clusters']} clusters (sizes {stats['smallest_cluster']}..{stats['largest_cluster']})"
                     f" + {stats['num_outliers']} outliers ({stats['options']['outliers']})")
        lines.append(choice_line(stats.get("choice", {})))
    if "num_gold_speakers" in stats:
        if "ari" in stats:
            lines.append(f"against {stats['num_gold_speakers']} gold speakers: ARI {stats['ari']:.4f}  "
                         f"NMI {stats['nmi']:.4f}  V-measure {stats['v_measure']:.4f}  purity {stats['purity']:.4f}  "
                         f"inverse purity {stats['inverse_purity']:.4f}")
        if stats.get("eer") is not None:
            lines.append(f"same/different speaker trials ({stats['num_trials']}, {stats['num_target_trials']} target):"
                         f" EER {100 * stats['eer']:.2f}%  minDCF(p=0.01) {stats['min_dcf_p0.01']:.4f}  "
                         f"minDCF(p=0.05) {stats['min_dcf_p0.05']:.4f}  AP {stats['average_precision']:.4f}")
        else:
            lines.append("same/different trials: no EER (gold has only one speaker or only singletons)")
    return lines


def choice_line(choice: dict) -> str:
    """What the method chose and why, in one line."""
    method = choice.get("method", "?")
    if "threshold" in choice:
        what = f"threshold {choice['threshold']:.3f}"
    elif "count" in choice:
        what = f"{choice['count']} clusters (p = {choice['neighbours']} neighbours)"
    elif "min_cluster_size" in choice:
        what = f"min_cluster_size {choice['min_cluster_size']}, min_samples {choice['min_samples']}"
        what += f" (DBCV {choice['dbcv']:.3f})" if "dbcv" in choice else ""
    else:
        what = "-"
    return f"method {method}: {what}; {choice.get('rule', '')}"
