"""Cluster utterance vectors into pseudo-speakers.

Pipeline (``cluster_vectors``): optional global-mean subtraction (Kaldi's
``ivector-subtract-global-mean``), L2 length normalisation, optional PCA,
optional label-free back-end (``--backend lda``: LDA on the clusters of a first
pass of the same method, :mod:`utils_py.cluster.backend`), then one of the
methods (``--method``):

- ``hdbscan`` (the original's): min_cluster_size / min_samples as given; where
  either is 0 (auto, the default) the best of a small grid by DBCV
  (``methods.hdbscan_grid``): min_cluster_size 3 5 10 20 40, min_samples 1 or
  equal to min_cluster_size (``methods.hdbscan_samples``).  Measured against
  the grid before (min_cluster_size from 2, min_samples 1-20: DBCV picked
  pairs, or 2-3 clusters) in ``bench/results/hdbscan_auto_grid.md``;
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
from utils_py.cluster import backend, methods, plots, scoring, spanning_tree
from utils_py import stamp
from utils_py.fileio import atomic_write, atomic_write_text, ensure_dir, require_file
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
    backend: str = "none"       # label-free back-end fitted on a first clustering pass (backend.BACKENDS)
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
        if self.backend not in backend.BACKENDS:
            raise UnspeechError(f"--backend must be one of {' '.join(backend.BACKENDS)}, got {self.backend}")
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
        return [(a, b) for a in sizes for b in ([self.min_samples] if self.min_samples else methods.hdbscan_samples(a))]


@dataclasses.dataclass
class ClusterResult:
    labels: np.ndarray          # (n,) cluster index per row, -1 = own speaker (none with outliers=nearest)
    is_outlier: np.ndarray      # (n,) bool: outlier of HDBSCAN / the two-stage radius, attached or not
    num_clusters: int
    sample_size: int            # rows clustered by HDBSCAN (n unless two-stage)
    note: str = ""              # why no clustering happened, if so
    choice: dict = dataclasses.field(default_factory=dict)   # method, what it chose and why
    vectors: np.ndarray = None  # (n, d) the vectors clustered (prepared, [PCA], [back-end])

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
        mst = spanning_tree.mutual_reachability_mst(X, min_samples)
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


def clustering_space(X, opts: ClusterOptions, log: logging.Logger):
    """``(vectors, sample, info)``: ``X`` prepared, [PCA], [--backend]; the rows clustered at once
    (all, or the two-stage sample); the back-end's ``info`` ({} without)."""
    X = prepare_vectors(X, opts.subtract_mean, opts.l2_normalize)
    X = reduce_dim(X, opts.pca_dim, opts.seed)
    n = len(X)
    limit = opts.exact_limit()
    if bool(limit) and n > limit:
        rng = np.random.default_rng(opts.seed)
        sample = np.sort(rng.choice(n, limit, replace=False))
        why = "--max-exact" if limit == opts.max_exact else (
            f"--method {opts.method}{' with automatic settings' if opts.auto_hdbscan else ''} "
            f"is O(n^2) or worse: at most {limit} utterances at once")
        log.info(f"two-stage: clustering a seeded sample of {len(sample)} of {n} utterances ({why}); "
                 f"the others go to the nearest cluster centroid")
    else:
        sample = np.arange(n)
    X, info = apply_backend(X, sample, opts, log)
    return X, sample, info


def apply_backend(X, sample, opts: ClusterOptions, log: logging.Logger):
    """``(vectors, info)``: prepared ``X`` through ``opts.backend`` (:mod:`backend`), fitted on the
    first-pass clusters of ``X[sample]`` by ``opts.method``, then prepared again (mean, L2)."""
    if opts.backend == "none":
        return X, {}
    start = time.process_time()
    first = method_labels(X[sample], opts)[0]
    W, info = backend.lda_projection(X[sample], first)
    if W is not None:
        X = prepare_vectors(X @ W.astype(np.float32))
    log.info(f"back-end {opts.backend}: {info['rule']}"
             + (f"; {info['classes']} classes, {info['fit_utts']} utterances -> {info['dim']} dims"
                if W is not None else "") + f" ({time.process_time() - start:.1f} s CPU)")
    return X, info


def _cluster_vectors(X, opts, log):
    X, sample, backend_info = clustering_space(X, opts, log)
    n = len(X)
    two_stage = len(sample) < n
    sample_labels, note, choice = method_labels(X[sample], opts)
    if backend_info:
        choice["backend"] = backend_info
    num_clusters = int(sample_labels.max()) + 1 if len(sample_labels) else 0
    if num_clusters == 0:
        note = note or f"{opts.method} found no cluster"
        return ClusterResult(np.full(n, -1), np.ones(n, bool), 0, len(sample),
                             note + ": every utterance is its own speaker", choice, X)
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
    return ClusterResult(labels, is_outlier, num_clusters, len(sample), note, choice, X)


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


def cluster_utts(src: str, out_dir: str, gold: str = None, opts: ClusterOptions = None, mode: str = "cluster",
                 half_index: int = 0, max_pairs: int = 1_000_000, plot: bool = True,
                 log: logging.Logger = None) -> dict:
    """The cluster step: vectors of ``src`` -> ``out_dir/{utt2spk,spk2utt,clusters.txt,scores.json,...}``.

    Returns the scores/statistics dict.  ``.done`` (a stamp of the inputs and
    options, :mod:`utils_py.stamp`) is written last; a rerun with the same inputs
    and options does nothing.  BLAS/OpenMP use ``opts.num_threads`` threads
    (spinning OpenMP threads on busy cores made t-SNE 30x slower).
    """
    from threadpoolctl import threadpool_limits
    opts = (opts or ClusterOptions()).check()
    with threadpool_limits(max(1, opts.num_threads)):
        return _cluster_utts(src, out_dir, gold, opts, mode, half_index, max_pairs, plot,
                             log or logging.getLogger("cluster_utts"))


def _cluster_utts(src, out_dir, gold, opts, mode, half_index, max_pairs, plot, log):
    """check -> (already current? done) -> read -> score trials -> cluster -> write outputs -> stamp."""
    _check_step_options(mode, gold, max_pairs)
    ensure_dir(out_dir)
    done = os.path.join(out_dir, ".done")
    sig = stamp.signature(files=[vector_source(src)] + ([gold] if gold else []),
                          options={"gold": bool(gold), "mode": mode, "half_index": half_index,
                                   "max_pairs": max_pairs, "plot": plot, "options": dataclasses.asdict(opts)})
    outputs = [os.path.join(out_dir, "utt2spk")] if mode == "cluster" else []
    if stamp.is_current(done, sig, outputs):
        stats = stamp.read(done).get("stats", {})
        log.info(f"already done with these inputs and options (remove {done} to redo): {out_dir}")
        _log_summary(stats, log)
        return stats
    stamp.clear(done)
    stale = os.path.join(out_dir, "utt2spk")    # nothing stale may look complete
    if os.path.exists(stale):
        os.remove(stale)

    keys, X, source, gold_labels = _read_inputs(src, gold, half_index, log)
    stats = {"num_utts": len(keys), "dim": int(X.shape[1]), "mode": mode}
    draw = plot and mode == "cluster"
    result = utt2spk = None
    if mode == "cluster":
        result, utt2spk = _cluster_step(keys, X, opts, stats, log)
    prepared = scored_vectors(X, opts, result, log) if gold_labels is not None or draw else None
    if gold_labels is not None:
        stats["num_gold_speakers"] = len(set(gold_labels))
        stats.update(scoring.trial_scores(prepared, gold_labels, max_pairs, opts.seed))
    if mode == "cluster":
        if gold_labels is not None:
            stats.update(scoring.cluster_scores(gold_labels, [utt2spk[k] for k in keys]))
        _write_clusters(out_dir, keys, result)
        if draw:
            plots.plot_embedding_map(os.path.join(out_dir, "embedding_map.png"), prepared,
                                     np.where(result.is_outlier, -1, result.labels), gold_labels, seed=opts.seed,
                                     title=f"{source}: {len(keys)} utterances")
    stats["options"] = dataclasses.asdict(opts)
    _write_outputs(out_dir, stats, utt2spk, scores=gold_labels is not None)
    stamp.write(done, sig, stats=stats)
    _log_summary(stats, log)
    return stats


def scored_vectors(X, opts: ClusterOptions, result: ClusterResult, log) -> np.ndarray:
    """Vectors of the trials and the map: prepared; with --backend, the back-end's (those clustered)."""
    if opts.backend == "none":
        return prepare_vectors(X, opts.subtract_mean, opts.l2_normalize)
    return result.vectors if result is not None else clustering_space(X, opts, log)[0]


def _check_step_options(mode, gold, max_pairs):
    if mode not in MODES:
        raise UnspeechError(f"--mode must be cluster or samedifferent, got {mode}")
    if mode == "samedifferent" and not gold:
        raise UnspeechError("--mode samedifferent needs gold speakers: --utt2spk <utt2spk>")
    if max_pairs < 1:
        raise UnspeechError(f"--max-pairs must be >= 1, got {max_pairs}")
    if gold:
        require_file(gold, "gold utt2spk")


def _read_inputs(src, gold, half_index, log):
    """``(keys, X, source, gold labels or None)``."""
    keys, X, source = read_utt_vectors(src, half_index)
    gold_labels = read_gold(gold, keys, source) if gold else None
    log.info(f"{len(keys)} utterance vectors of dim {X.shape[1]} from {source}"
             + (f" (first {half_index} dims)" if half_index else ""))
    return keys, X, source, gold_labels


def _cluster_step(keys, X, opts, stats, log):
    """Cluster, name the speakers, and add the clustering's statistics to ``stats``."""
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
    return result, utt2spk


def _write_clusters(out_dir, keys, result):
    with atomic_write(os.path.join(out_dir, "clusters.txt")) as f:
        for key, label, out in zip(keys, result.labels, result.is_outlier):
            f.write(f"{key} {-1 if out else int(label)}\n")


def _write_outputs(out_dir, stats, utt2spk, scores: bool):
    """scores.json (with gold speakers), then spk2utt and utt2spk last (cluster mode)."""
    if scores:
        atomic_write_text(os.path.join(out_dir, "scores.json"), json.dumps(stats, indent=1, sort_keys=True) + "\n")
    if utt2spk is not None:
        datadir.write_table(os.path.join(out_dir, "spk2utt"), datadir.spk2utt_from_utt2spk(utt2spk))
        datadir.write_table(os.path.join(out_dir, "utt2spk"), utt2spk)


def _log_summary(stats, log):
    for line in summary_lines(stats):
        log.info("summary: " + line)


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
    line = f"method {method}: {what}; {choice.get('rule', '')}"
    b = choice.get("backend")
    if b:
        line += (f"; back-end {b['kind']}: {b['classes']} first-pass clusters, {b['fit_utts']} utterances -> "
                 f"{b['dim']} dims" if "dim" in b else f"; back-end {b['kind']}: {b['rule']}")
    return line
