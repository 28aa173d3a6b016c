"""Independent float64 NumPy implementation of Kaldi's log mel filterbank (for tests only).

Written from the algorithm (Kaldi's documented option meanings), vectorised over
frames; it shares no code with ``utils_py.features.fbank`` / kaldi-native-fbank, so the
two can check each other, and both are checked against real Kaldi outputs.

Usage::

    from kaldi_fbank_reference import reference_fbank     # tests/ is on sys.path under pytest
    feats = reference_fbank(samples_int16_scale, 16000, num_mel_bins=40, snip_edges=False)

Steps per frame: cut (``snip_edges`` or edge reflection), remove DC, raw log
energy, pre-emphasis, window, zero-pad (power of two), power spectrum, mel
bins (``mel(f) = 1127 ln(1 + f/700)``, triangles in the mel domain, the Nyquist
FFT bin unused), log with a floor of FLT_EPSILON, optional energy column.
"""
import numpy as np

FLT_EPSILON = float(np.finfo(np.float32).eps)


def mel_scale(freq):
    return 1127.0 * np.log(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)


def frame_starts(num_samples: int, window: int, shift: int, snip_edges: bool) -> np.ndarray:
    """First sample of every frame (may be negative without snip-edges)."""
    if snip_edges:
        count = 0 if num_samples < window else 1 + (num_samples - window) // shift
        return np.arange(count) * shift
    count = (num_samples + shift // 2) // shift
    return np.arange(count) * shift + shift // 2 - window // 2


def cut_frames(x: np.ndarray, window: int, shift: int, snip_edges: bool) -> np.ndarray:
    """``(frames, window)`` matrix; indices outside the signal are mirrored back into it."""
    starts = frame_starts(len(x), window, shift, snip_edges)
    idx = starts[:, None] + np.arange(window)[None, :]
    n = len(x)
    while True:  # mirror: -1 -> 0, -2 -> 1, ...; n -> n-1, n+1 -> n-2, ...
        low, high = idx < 0, idx >= n
        if not (low.any() or high.any()):
            break
        idx = np.where(low, -idx - 1, idx)
        idx = np.where(high, 2 * n - 1 - idx, idx)
    return x[idx]


def window_function(kind: str, length: int, blackman_coeff: float = 0.42) -> np.ndarray:
    i = np.arange(length, dtype=np.float64)
    a = 2 * np.pi / (length - 1)
    if kind == "hanning":
        return 0.5 - 0.5 * np.cos(a * i)
    if kind == "hamming":
        return 0.54 - 0.46 * np.cos(a * i)
    if kind == "povey":  # hanning to the power 0.85, nonzero at the ends
        return (0.5 - 0.5 * np.cos(a * i)) ** 0.85
    if kind == "sine":
        return np.sin(0.5 * a * i)
    if kind == "rectangular":
        return np.ones(length)
    if kind == "blackman":
        return blackman_coeff - 0.5 * np.cos(a * i) + (0.5 - blackman_coeff) * np.cos(2 * a * i)
    raise ValueError(f"unknown window type {kind}")


def mel_filterbank(num_bins: int, fft_size: int, sample_rate: float, low_freq: float, high_freq: float):
    """``(fft_size // 2, num_bins)`` triangular weights (FFT bins 0 .. N/2-1)."""
    nyquist = 0.5 * sample_rate
    if high_freq <= 0:
        high_freq = nyquist + high_freq
    if not (0 <= low_freq < high_freq <= nyquist):
        raise ValueError(f"bad low/high freq {low_freq} {high_freq} for nyquist {nyquist}")
    mel_low, mel_high = mel_scale(low_freq), mel_scale(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    left = mel_low + delta * np.arange(num_bins)
    center, right = left + delta, left + 2 * delta
    mel = mel_scale(np.arange(fft_size // 2) * sample_rate / fft_size)[:, None]
    rising = (mel - left) / (center - left)
    falling = (right - mel) / (right - center)
    weights = np.where(mel <= center, rising, falling)
    inside = (mel > left) & (mel < right)
    return np.where(inside, weights, 0.0)


def reference_fbank(samples, sample_rate: float, num_mel_bins: int = 23, frame_length: float = 25.0,
                    frame_shift: float = 10.0, preemphasis_coefficient: float = 0.97,
                    remove_dc_offset: bool = True, window_type: str = "povey",
                    round_to_power_of_two: bool = True, blackman_coeff: float = 0.42,
                    snip_edges: bool = True, low_freq: float = 20.0, high_freq: float = 0.0,
                    use_energy: bool = False, energy_floor: float = 0.0, raw_energy: bool = True,
                    htk_compat: bool = False, use_log_fbank: bool = True, use_power: bool = True,
                    dither: float = 0.0) -> np.ndarray:
    """Kaldi ``compute-fbank-feats`` on int16-scale ``samples``; float64 ``(frames, dim)``."""
    if dither != 0:
        raise ValueError("the reference implements dither 0 only (deterministic)")
    x = np.asarray(samples, dtype=np.float64)
    window = int(sample_rate * 0.001 * frame_length)
    shift = int(sample_rate * 0.001 * frame_shift)
    frames = cut_frames(x, window, shift, snip_edges)
    if remove_dc_offset:
        frames = frames - frames.mean(axis=1, keepdims=True)
    log_energy = None
    if use_energy and raw_energy:
        log_energy = np.log(np.maximum((frames ** 2).sum(axis=1), FLT_EPSILON))
    if preemphasis_coefficient != 0:
        previous = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)  # x[-1] := x[0]
        frames = frames - preemphasis_coefficient * previous
    frames = frames * window_function(window_type, window, blackman_coeff)
    if use_energy and not raw_energy:
        log_energy = np.log(np.maximum((frames ** 2).sum(axis=1), FLT_EPSILON))
    fft_size = 1 << int(np.ceil(np.log2(window))) if round_to_power_of_two else window
    spectrum = np.abs(np.fft.rfft(frames, n=fft_size, axis=1)) ** 2
    if not use_power:
        spectrum = np.sqrt(spectrum)
    banks = mel_filterbank(num_mel_bins, fft_size, sample_rate, low_freq, high_freq)
    mel = spectrum[:, : fft_size // 2] @ banks
    if use_log_fbank:
        mel = np.log(np.maximum(mel, FLT_EPSILON))
    if not use_energy:
        return mel
    if energy_floor > 0:
        log_energy = np.maximum(log_energy, np.log(energy_floor))
    energy = log_energy[:, None]
    return np.hstack([mel, energy] if htk_compat else [energy, mel])


def kaldi_options_to_kwargs(tokens) -> dict:
    """``["--num-mel-bins=40", "--snip-edges=false"]`` -> keyword arguments of :func:`reference_fbank`."""
    kwargs = {}
    for tok in tokens:
        name, _, value = tok[2:].partition("=")
        key = name.replace("-", "_")
        if key == "sample_frequency":
            continue
        if value in ("true", "false"):
            kwargs[key] = value == "true"
        elif key in ("num_mel_bins",):
            kwargs[key] = int(value)
        elif key == "window_type":
            kwargs[key] = value
        else:
            kwargs[key] = float(value)
    return kwargs
