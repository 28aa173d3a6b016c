"""Kaldi's formats, read and written as Kaldi's own tools do.

- ``datadir``       -- data directories: read, write, sort (``LC_ALL=C``), validate
- ``tables``        -- Kaldi tables (ark/scp) through kaldiio, written atomically, optionally compressed
- ``ivector_dir``   -- online-ivector dirs (``ivector_online.scp`` + ``ivector_period``): read and check
- ``relabel``       -- clustered speaker ids prepended to utterance ids
- ``speed_perturb`` -- Kaldi-style speed-perturbed copies of a data dir
- ``handoff``       -- the checks before a chain/TDNN recipe gets our dirs
"""
