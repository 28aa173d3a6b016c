"""Exact HDBSCAN spanning tree for the euclidean metric, from matrix products (``--algorithm blas``).

hdbscan's boruvka_kdtree degrades to slow brute force in 100 dims (10k vectors:
30 s, 20k: 150 s on 2 busy cores).  Here the minimum spanning tree of the
mutual-reachability graph (weight max(core_u, core_v, d_uv), core = distance to
the min_samples-th neighbour) is built from matrix products instead:
  1. exact k nearest neighbours, chunked GEMM;
  2. Boruvka rounds on the kNN edges, accepting a component's cheapest kNN edge
     only when no other edge can be cheaper (every non-kNN edge of u weighs at
     least max(core_u, distance to u's k-th neighbour));
  3. the remaining components are contracted: one pass over all pairs gives the
     cheapest edge between every two components, Kruskal finishes the tree.
The tree then goes through hdbscan's own condensing and cluster selection, so
the labels are HDBSCAN's.  The tree has the same total weight as hdbscan's exact
one (tested); mutual-reachability weights have many ties (a weight is often a
core distance) and HDBSCAN's cluster selection depends on how a tree breaks
them, so on borderline data the clusters can differ from the library's.

Usage::

    from utils_py.cluster import spanning_tree

    mst = spanning_tree.mutual_reachability_mst(X, min_samples=3)   # (n-1, 3): u, v, weight
"""
import numpy as np

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
