"""unspeech library: everything the step scripts in ``steps_unspeech/`` compute.

Subpackages by concern (each ``__init__`` says what it owns; importing a package
imports nothing heavy -- TensorFlow is loaded only by ``model``/``train``/``extract``):

- ``kaldi``     -- Kaldi's formats: data dirs, tables, online-ivector dirs, relabelling,
                   speed perturbation, the chain hand-off checks
- ``features``  -- audio reading, Kaldi-compatible fbank, whole feature sets and their cache
- ``model``     -- the siamese towers, the training objectives, the window sampler
- ``train``     -- the training loop: options, checkpoints, resume, outputs
- ``extract``   -- embeddings of a data dir as an online-ivector dir; one vector per utterance
- ``cluster``   -- utterance clustering into pseudo-speakers and its scoring
- ``corpora``   -- corpus preparation: demo (generated), FSDD, TED-LIUM, Common Voice

Shared by all: ``log`` (logging, ``UnspeechError``), ``fileio`` (atomic writes, locks,
the stale-temp cleaner), ``stamp`` (the "complete and current" marker of every step's
output), ``cli`` (the step scripts' option parsing: every option, its default and range).
"""
__version__ = "0.1.0"

from utils_py import tflog as _tflog

_tflog.quiet_by_default()   # TensorFlow's C++ log lines off unless UNSPEECH_TF_LOG=1
