"""unspeech library: everything the step scripts in ``steps_unspeech/`` compute.

One module per concern:

- ``log``        -- logging set-up and the one error convention (``UnspeechError``)
- ``fileio``     -- atomic writes (temp name + rename) and directory checks
- ``datadir``    -- Kaldi data directories: read, write, sort, validate
- ``kaldi_io``   -- Kaldi tables (ark/scp) through kaldiio, written atomically
- ``feats``      -- a whole feats.scp as one float32 array, in memory or memory-mapped
"""
__version__ = "0.1.0"
