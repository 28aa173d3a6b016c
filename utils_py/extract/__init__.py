"""Embeddings of a data dir.

- ``extractor``   -- a trained model's rows as a Kaldi online-ivector dir, in jobs
- ``utt_vectors`` -- one vector per utterance (row mean, or a stored ``utt_vectors.scp``)
"""
