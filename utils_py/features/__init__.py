"""Acoustic features.

- ``audio``       -- ``wav.scp`` / ``segments`` / pipes to samples
- ``fbank``       -- Kaldi-compatible fbank (kaldi-native-fbank) of a data dir, in jobs
- ``feature_set`` -- a whole ``feats.scp`` as one float32 array, in memory or memory-mapped (the cache)
- ``waveform``    -- raw audio as a dim-1 feature set (``--end-to-end``) and Kaldi's frame grid over it
"""
