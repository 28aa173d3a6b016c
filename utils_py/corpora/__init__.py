"""Corpus preparation into Kaldi data dirs.

- ``prep``         -- shared by all: utterances, train/test splits, writing the data dirs
- ``demo``         -- the generated demo corpus (speakers and channels from known filters)
- ``fsdd``         -- Free Spoken Digit Dataset
- ``tedlium``      -- TED-LIUM (stm to data dir)
- ``common_voice`` -- Common Voice (a per-speaker split with no sentence in both sets)
"""
