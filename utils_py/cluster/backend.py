"""Label-free back-end of the cluster step (``--backend``): LDA on the set's own first-pass clusters.

``lda``: the prepared vectors (set mean subtracted, L2 norm, [PCA]) are clustered
once by the step's own method; its clusters with at least ``MIN_MEMBERS``
utterances (outliers out) are the classes of a linear discriminant analysis
(within-class scatter shrunk by ``SHRINK`` x its mean variance); the vectors
projected onto its ``min(classes - 1, dim)`` leading directions are prepared
again (mean, L2) and clustered for good.  No gold labels: it is fitted only on
the vectors being clustered (in two-stage mode on the clustered sample).
Fewer than 3 classes: no back-end (the vectors as they were), and ``info``
says why.  With ``classes - 1 >= dim`` LDA keeps every dim and is the same as
WCCN up to a rotation.

Not the default (``bench/results/backend_cv_fa.md``): it lowers EER and raises
HDBSCAN's ARI on cv_fa, but where the first pass is already right the LDA space
is so tight that spectral's eigengap count and AHC's automatic threshold
over-split (tests/test_cluster.py).

Usage::

    from utils_py.cluster import backend
    W, info = backend.lda_projection(X, first_pass_labels)   # W: (dim, d) or None
"""
import numpy as np

BACKENDS = ("none", "lda")
MIN_MEMBERS = 2      # a first-pass cluster needs this many utterances to be a class
MIN_CLASSES = 3      # fewer classes: no back-end (LDA would keep 1 dim)
SHRINK = 1e-3        # within-class scatter + SHRINK * mean variance * I


def class_scatter(X, labels) -> tuple:
    """``(within, between, counts)``: scatter matrices / n of the rows of ``X`` with label >= 0."""
    X = np.asarray(X, dtype=np.float64)
    classes, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    means = np.zeros((len(classes), X.shape[1]))
    np.add.at(means, codes, X)
    means /= counts[:, None]
    centred = X - means[codes]
    offsets = (means - X.mean(axis=0)) * np.sqrt(counts)[:, None]
    return centred.T @ centred / len(X), offsets.T @ offsets / len(X), counts


def lda_projection(X, labels, min_members: int = MIN_MEMBERS, shrink: float = SHRINK) -> tuple:
    """LDA of the rows of ``X`` on ``labels`` (-1 = outlier, left out): ``(W, info)``.

    ``W``: ``(dim, min(classes - 1, dim))``, leading discriminant directions
    first; None (and ``info['rule']`` says why) with fewer than 3 classes of
    ``min_members`` or more.
    """
    from scipy.linalg import eigh
    labels = np.asarray(labels)
    sizes = np.bincount(labels[labels >= 0]) if (labels >= 0).any() else np.zeros(0, int)
    use = labels >= 0
    use[use] = sizes[labels[use]] >= min_members
    info = {"kind": "lda", "classes": int((sizes >= min_members).sum()), "fit_utts": int(use.sum()),
            "min_members": min_members}
    if info["classes"] < MIN_CLASSES:
        info["rule"] = (f"first pass found {info['classes']} cluster(s) of >= {min_members} utterances "
                        f"(< {MIN_CLASSES}): no back-end")
        return None, info
    within, between, _ = class_scatter(X[use], labels[use])
    within += shrink * np.trace(within) / len(within) * np.eye(len(within))
    values, vectors = eigh(between, within)
    dim = min(info["classes"] - 1, X.shape[1])
    info.update(dim=int(dim), rule=f"LDA on the first pass's clusters of >= {min_members} utterances (outliers out)")
    return vectors[:, np.argsort(values)[::-1][:dim]], info
