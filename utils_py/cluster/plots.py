"""Pictures of a clustering: 2-D maps of the utterance vectors by cluster and by gold speaker.

Usage::

    from utils_py.cluster import plots

    plots.plot_embedding_map("exp/x/embedding_map.png", X, labels, gold=None)
"""
import numpy as np

from utils_py.fileio import atomic_write


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
