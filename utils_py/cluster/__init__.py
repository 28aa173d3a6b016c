"""Utterance clustering into pseudo-speakers.

- ``pipeline`` -- vectors -> HDBSCAN (with its spanning tree for large inputs) -> speaker ids, plots
- ``scoring``  -- clustering and same/different-speaker scores against gold labels
"""
