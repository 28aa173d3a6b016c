"""Utterance clustering into pseudo-speakers.

- ``pipeline``      -- options, vectors -> method -> speaker ids; the cluster step (read, score, cluster, write, stamp)
- ``methods``       -- spectral (eigengap), AHC (no-label threshold), automatic HDBSCAN settings (DBCV)
- ``spanning_tree`` -- exact HDBSCAN spanning tree from matrix products (``--algorithm blas``)
- ``plots``         -- 2-D maps of the vectors by cluster and by gold speaker
- ``scoring``       -- clustering and same/different-speaker scores against gold labels
"""
