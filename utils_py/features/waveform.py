"""Raw audio as training input (``--end-to-end true``) and Kaldi's frame grid over it.

A waveform set is a :class:`~utils_py.features.feature_set.FeatureSet` of dim 1: one row
per sample (float32, int16 scale, as Kaldi reads wavs), so the sampler cuts windows of
*samples* exactly as it cuts windows of fbank frames.  One sample rate per corpus (in
``FeatureSet.meta["sample_rate"]``); the cache is the feature cache (``--cache-dir``),
keyed on ``wav.scp`` and ``segments``.

:class:`FrameGrid` is Kaldi's framing (``--frame-shift``, ``--frame-length``,
``--snip-edges`` of compute-fbank-feats / compute-mfcc-feats): how many frames Kaldi's
features of an utterance have, and which sample frame ``i`` starts at.  An end-to-end
model's online-ivector rows sit on this grid, so they match the chain model's MFCCs.

Usage::

    from utils_py.features.waveform import FrameGrid, load_waveforms

    wavs = load_waveforms("data/train")                       # FeatureSet, dim 1
    wavs.meta["sample_rate"], wavs["utt1"].shape              # 16000, (num_samples, 1)
    grid = FrameGrid(16000)                                   # 10 ms shift, 25 ms frames, snip-edges
    grid.num_frames(16000)                                    # 98, as compute-mfcc-feats
    grid.shift                                                # 160 samples
"""
import dataclasses
import os

import numpy as np

from utils_py import stamp
from utils_py.features import audio
from utils_py.features.feature_set import build_feature_set
from utils_py.log import UnspeechError

_CACHE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class FrameGrid:
    """Kaldi's frames of audio at ``sample_rate``: shift and length in ms, snip-edges.

    Sample counts are truncated like Kaldi's ``FrameExtractionOptions::WindowShift/Size``.
    """
    sample_rate: int
    frame_shift_ms: float = 10.0
    frame_length_ms: float = 25.0
    snip_edges: bool = True

    def __post_init__(self):
        if self.shift < 1 or self.length < 1:
            raise UnspeechError(f"--frame-shift {self.frame_shift_ms} / --frame-length {self.frame_length_ms} ms "
                                f"is less than one sample at {self.sample_rate} Hz")

    @property
    def shift(self) -> int:
        """Samples between frame starts."""
        return int(self.sample_rate * 0.001 * self.frame_shift_ms)

    @property
    def length(self) -> int:
        """Samples of one frame."""
        return int(self.sample_rate * 0.001 * self.frame_length_ms)

    def num_frames(self, num_samples: int) -> int:
        """Frames Kaldi's feature binaries give ``num_samples`` samples (``NumFrames`` in feature-window.cc)."""
        n = int(num_samples)
        if self.snip_edges:
            return 0 if n < self.length else 1 + (n - self.length) // self.shift
        return (n + self.shift // 2) // self.shift


def load_waveforms(data_dir: str, cache_dir: str = None, channel: int = -1):
    """The audio of ``data_dir`` (``wav.scp``, optional ``segments``) as a dim-1 FeatureSet.

    Every utterance must have the same sample rate (else UnspeechError naming the first that
    differs); ``meta["sample_rate"]`` holds it.  With ``cache_dir`` the samples are memory-mapped
    from a cache built once (rebuilt when ``wav.scp`` or ``segments`` change).
    """
    wav_scp = os.path.join(data_dir, "wav.scp")
    if not os.path.isfile(wav_scp):
        raise UnspeechError(f"an end-to-end model reads audio, but there is no wav.scp in {data_dir}")
    inputs = [p for p in (wav_scp, os.path.join(data_dir, "segments")) if os.path.isfile(p)]
    meta = {}

    def items():
        meta.clear()
        for utt, samples, rate, rx in audio.iter_utterances(data_dir, channel):
            check_rate(meta.setdefault("sample_rate", int(rate)), rate, utt, rx)
            yield utt, samples[:, None]

    signature = stamp.signature(contents=inputs, options={"version": _CACHE_VERSION, "channel": channel,
                                                          "kind": "waveform"})
    return build_feature_set(items, wav_scp, cache_dir, signature, meta)


def check_rate(expected: int, rate: int, utt: str, where: str) -> None:
    """UnspeechError unless utterance ``utt`` has the sample rate ``expected``."""
    if int(rate) != int(expected):
        raise UnspeechError(f"utterance {utt} has sample rate {int(rate)} Hz, not {int(expected)} Hz like the "
                            f"rest (resample it, e.g. 'sox ... -r {int(expected)} ... |' in wav.scp): {where}")
