"""Kaldi-compatible log mel filterbank features (``compute-fbank-feats``) via kaldi-native-fbank.

Options have Kaldi's names, meanings and defaults (note Kaldi's ``--dither``
default is 1.0; our ``conf/fbank.conf`` sets 0).  Samples are on the int16
scale, as Kaldi reads wavs, so ``--dither`` and ``--energy-floor`` mean what
they mean in Kaldi.  The sample rate comes from each wav unless the config sets
``--sample-frequency``; then a wav with another rate is an error.

Usage::

    from utils_py.features.fbank import FbankConfig, FbankExtractor

    config = FbankConfig.from_file("conf/fbank.conf", overrides=["--num-mel-bins=40"])
    extract = FbankExtractor(config)
    feats = extract(samples, 16000, utt="spk1-utt1")      # (frames, 40) float32

Data-directory level (what ``steps_unspeech/make_fbank.sh`` runs)::

    nj = prepare_data_dir("data/train", config, nj=4)      # validate, check wavs, split
    compute_data_dir("data/train/split4utt/1", config, "fbank/raw_fbank_train.1.ark", ...)
    finish_data_dir("data/train", config, ["fbank/raw_fbank_train.1.scp", ...], [...])
"""
import os
from dataclasses import dataclass

import kaldi_native_fbank as knf
import numpy as np

from utils_py.features import audio
from utils_py.kaldi import datadir
from utils_py.kaldi import tables
from utils_py.cli import read_config
from utils_py import stamp
from utils_py.fileio import atomic_write_text, remove_stale_temps
from utils_py.log import UnspeechError, get_logger

WINDOW_TYPES = ("hamming", "hanning", "povey", "rectangular", "sine", "blackman")


@dataclass(frozen=True)
class _Option:
    name: str          # Kaldi option name, e.g. "num-mel-bins"
    kind: type         # float, int, bool or str
    default: object
    knf: str = None    # attribute path in knf.FbankOptions, e.g. "mel_opts.num_bins"
    only: bool = False  # known Kaldi option, but only its default value is supported
    help: str = ""


OPTIONS = {o.name: o for o in (
    # frame extraction (Kaldi's FrameExtractionOptions)
    _Option("sample-frequency", float, None, "frame_opts.samp_freq",
            help="sample rate in Hz; unset = each wav's rate, set = a wav with another rate is an error"),
    _Option("frame-shift", float, 10.0, "frame_opts.frame_shift_ms", help="frame shift in ms"),
    _Option("frame-length", float, 25.0, "frame_opts.frame_length_ms", help="frame length in ms"),
    _Option("dither", float, 1.0, "frame_opts.dither", help="dithering constant on the int16 scale (0 = off)"),
    _Option("preemphasis-coefficient", float, 0.97, "frame_opts.preemph_coeff", help="pre-emphasis coefficient"),
    _Option("remove-dc-offset", bool, True, "frame_opts.remove_dc_offset", help="subtract each frame's mean"),
    _Option("window-type", str, "povey", "frame_opts.window_type", help="|".join(WINDOW_TYPES)),
    _Option("round-to-power-of-two", bool, True, "frame_opts.round_to_power_of_two",
            help="pad frames to a power of two for the FFT"),
    _Option("blackman-coeff", float, 0.42, "frame_opts.blackman_coeff", help="constant of the blackman window"),
    _Option("snip-edges", bool, True, "frame_opts.snip_edges",
            help="true: only frames that fit in the signal; false: reflect at the edges, frames = round(n/shift)"),
    # mel banks (Kaldi's MelBanksOptions)
    _Option("num-mel-bins", int, 23, "mel_opts.num_bins", help="number of triangular mel bins"),
    _Option("low-freq", float, 20.0, "mel_opts.low_freq", help="low cutoff of the mel bins in Hz"),
    _Option("high-freq", float, 0.0, "mel_opts.high_freq", help="high cutoff in Hz; <= 0 is an offset from Nyquist"),
    _Option("vtln-low", float, 100.0, "mel_opts.vtln_low", help="VTLN lower cutoff (unused: --vtln-warp is 1)"),
    _Option("vtln-high", float, -500.0, "mel_opts.vtln_high", help="VTLN upper cutoff (unused: --vtln-warp is 1)"),
    _Option("debug-mel", bool, False, only=True, help="Kaldi debug printout; only false"),
    # fbank (Kaldi's FbankOptions)
    _Option("use-energy", bool, False, "use_energy", help="add log energy as an extra first (htk: last) column"),
    _Option("energy-floor", float, 0.0, "energy_floor", help="floor on the log energy (absolute, not relative)"),
    _Option("raw-energy", bool, True, "raw_energy", help="energy before pre-emphasis and windowing"),
    _Option("htk-compat", bool, False, "htk_compat", help="energy last instead of first, like HTK"),
    _Option("use-log-fbank", bool, True, "use_log_fbank", help="log of the mel energies"),
    _Option("use-power", bool, True, "use_power", help="power (true) or magnitude (false) spectrum"),
    # compute-fbank-feats
    _Option("vtln-warp", float, 1.0, only=True, help="VTLN warp factor; only 1.0"),
    _Option("subtract-mean", bool, False, help="subtract each utterance's feature mean"),
    _Option("channel", int, -1, help="-1 = expect mono; 0, 1, ... = use this channel"),
    _Option("min-duration", float, 0.0, only=True, help="only 0 (no utterance is skipped)"),
    _Option("output-format", str, "kaldi", only=True, help="only kaldi"),
    _Option("allow-downsample", bool, False, only=True, help="only false (no resampling)"),
    _Option("allow-upsample", bool, False, only=True, help="only false (no resampling)"),
    _Option("max-feature-vectors", int, -1, only=True, help="only -1"),
)}

# compute-fbank-feats options that are command-line inputs there and have no meaning here.
_NOT_SUPPORTED = ("utt2spk", "vtln-map", "write-utt2dur", "write-num-frames", "config")


def _parse_value(opt: _Option, text: str, source: str):
    try:
        if opt.kind is bool:
            v = text.lower()
            if v not in ("true", "false", "1", "0"):
                raise ValueError
            return v in ("true", "1")
        return opt.kind(text)
    except ValueError:
        raise UnspeechError(f"bad value for --{opt.name}: {text!r} (need {opt.kind.__name__}): {source}") from None


class FbankConfig:
    """Kaldi fbank options (``--name=value`` tokens) checked against :data:`OPTIONS`."""

    def __init__(self, values: dict = None, source: str = "defaults"):
        self.source = source
        self.values = {name: opt.default for name, opt in OPTIONS.items()}
        for name, value in (values or {}).items():
            self.values[name] = value
        self._check()

    @classmethod
    def from_tokens(cls, tokens, source: str = "command line") -> "FbankConfig":
        values = {}
        for tok in tokens:
            if not tok.startswith("--"):
                raise UnspeechError(f"expected --name=value, got {tok!r}: {source}")
            name, sep, text = tok[2:].partition("=")
            name = name.replace("_", "-")
            if name in _NOT_SUPPORTED:
                raise UnspeechError(f"compute-fbank-feats option --{name} is not supported here: {source}")
            if name not in OPTIONS:
                raise UnspeechError(f"unknown fbank option --{name}: {source}")
            opt = OPTIONS[name]
            if not sep:
                if opt.kind is not bool:
                    raise UnspeechError(f"option --{name} needs a value (--{name}=...): {source}")
                text = "true"
            values[name] = _parse_value(opt, text, source)
        return cls(values, source)

    @classmethod
    def from_file(cls, path: str = None, overrides=()) -> "FbankConfig":
        """Options of a Kaldi conf file (``None``/"" = Kaldi defaults), then ``overrides`` tokens."""
        tokens = read_config(path) if path else []
        source = path or "defaults"
        if overrides:
            source += " + command line"
        return cls.from_tokens(list(tokens) + list(overrides), source)

    def __getitem__(self, name):
        return self.values[name]

    def _check(self):
        v, src = self.values, self.source
        for name, opt in OPTIONS.items():
            if opt.only and v[name] != opt.default:
                raise UnspeechError(f"--{name}={v[name]} is not supported (only {opt.default}): {src}")
        if v["window-type"] not in WINDOW_TYPES:
            raise UnspeechError(
                f"bad --window-type={v['window-type']} (need {'|'.join(WINDOW_TYPES)}): {src}")
        if v["num-mel-bins"] < 3:
            raise UnspeechError(f"--num-mel-bins must be >= 3: {src}")
        if v["frame-length"] <= 0 or v["frame-shift"] <= 0:
            raise UnspeechError(f"--frame-length and --frame-shift must be > 0: {src}")
        if v["sample-frequency"] is not None and v["sample-frequency"] <= 0:
            raise UnspeechError(f"--sample-frequency must be > 0: {src}")

    @property
    def dim(self) -> int:
        return self.values["num-mel-bins"] + (1 if self.values["use-energy"] else 0)

    @property
    def frame_shift_seconds(self) -> float:
        return self.values["frame-shift"] / 1000.0

    def canonical(self) -> str:
        """Every option with its effective value, one ``--name=value`` per line (for fingerprints)."""
        return "".join(f"--{k}={self.values[k]}\n" for k in sorted(self.values))

    def knf_options(self, sample_rate: float) -> "knf.FbankOptions":
        """kaldi-native-fbank options for audio at ``sample_rate`` (all values set explicitly)."""
        opts = knf.FbankOptions()
        for name, opt in OPTIONS.items():
            if opt.knf and name != "sample-frequency":
                holder_path, _, attr = opt.knf.rpartition(".")
                holder = getattr(opts, holder_path) if holder_path else opts
                setattr(holder, attr, self.values[name])
        opts.frame_opts.samp_freq = float(sample_rate)
        # Kaldi's log floor is FLT_EPSILON, kaldi-native-fbank's default too; set it anyway.
        opts.use_log_floor = True
        opts.eps = float(np.finfo(np.float32).eps)
        opts.mel_opts.is_librosa = False
        opts.mel_opts.htk_mode = False
        return opts


class FbankExtractor:
    """Callable computing ``(frames, dim)`` float32 features from int16-scale samples."""

    CHUNK_SECONDS = 2.0

    def __init__(self, config: FbankConfig):
        self.config = config
        self._opts = {}

    def _options(self, rate: float, utt: str, where: str):
        want = self.config["sample-frequency"]
        if want is not None and float(rate) != float(want):
            raise UnspeechError(
                f"wrong sample rate vs config: utterance {utt} is {rate:g} Hz, "
                f"--sample-frequency={want:g} in {self.config.source}: {where}")
        rate = float(rate)
        if rate not in self._opts:
            opts = self.config.knf_options(rate)
            try:  # let kaldi-native-fbank check the mel/frame options on a few samples
                probe = knf.OnlineFbank(opts)
                probe.accept_waveform(float(rate), [0.0] * 16)
            except (ValueError, RuntimeError) as e:
                raise UnspeechError(f"bad fbank options for {rate:g} Hz audio ({e}): {self.config.source}") from None
            self._opts[rate] = opts
        return self._opts[rate]

    def __call__(self, samples: np.ndarray, rate: float, utt: str = "?", where: str = "") -> np.ndarray:
        opts = self._options(rate, utt, where)
        fb = knf.OnlineFbank(opts)
        # A float32 memoryview converts ~1.5x faster in the binding than a list, and ~2 s chunks
        # are ~10% faster than one call per long utterance; the features are the same.
        buffer = memoryview(np.ascontiguousarray(samples, dtype=np.float32))
        chunk = max(1, int(self.CHUNK_SECONDS * rate))
        for start in range(0, len(buffer), chunk):
            fb.accept_waveform(rate, buffer[start:start + chunk])
        fb.input_finished()
        n = fb.num_frames_ready
        if n == 0:
            raise UnspeechError(
                f"utterance {utt} is too short for one frame ({len(samples)} samples < "
                f"{self.config['frame-length']:g} ms at {rate:g} Hz): {where}")
        feats = np.empty((n, self.config.dim), dtype=np.float32)
        for i in range(n):
            feats[i] = fb.get_frame(i)
        if self.config["subtract-mean"]:
            feats -= feats.mean(axis=0, dtype=np.float64).astype(np.float32)
        return feats


# ----------------------------------------------------------------------------------------------
# Data directories: what make_fbank.sh runs (prepare -> one compute per job -> finish).

def prepare_data_dir(data_dir: str, config: FbankConfig, nj: int, log=None) -> int:
    """Validate ``data_dir``, check its wav files exist, split it.

    Returns the number of jobs actually used (``nj`` capped at the number of
    utterances); the parts are ``<data_dir>/split<nj>utt/{1..nj}``.
    """
    log = log or get_logger("make_fbank")
    utt2spk = audio.check_data_dir(data_dir)
    if nj > len(utt2spk):
        log.info(f"only {len(utt2spk)} utterances: using {len(utt2spk)} jobs instead of {nj}")
        nj = len(utt2spk)
    datadir.split(data_dir, nj, per_utt=True)   # reused while its stamp matches the data dir
    return nj


def _signature(part_dir: str, config: FbankConfig, ark: str, compress: bool = True) -> dict:
    """What a job's output depends on (its ``.done`` stamp): options (``compress`` included), output
    path, the content of the part's tables and the size + mtime of every existing file named in its
    wav.scp (plain entries and pipe arguments)."""
    tables_ = [os.path.join(part_dir, name) for name in ("wav.scp", "segments", "utt2spk")
               if os.path.isfile(os.path.join(part_dir, name))]
    wavs = [token for rx in datadir.read_table(os.path.join(part_dir, "wav.scp")).values()
            for token in rx.split() if os.path.isfile(token)]
    return stamp.signature(files=wavs, contents=tables_,
                           options={"fbank": config.canonical(), "compress": bool(compress),
                                    "ark": os.path.abspath(ark)})


def compute_data_dir(part_dir: str, config: FbankConfig, ark: str, scp: str, num_frames: str = None,
                     done_marker: str = None, log=None, compress: bool = True) -> bool:
    """Features of every utterance of ``part_dir`` -> ``ark``/``scp`` (+ ``num_frames`` table).

    ``compress``: Kaldi's compressed matrices (as Kaldi's make_fbank.sh writes by default),
    else float32.  With ``done_marker``: skip (return False) when that stamp (utils_py.stamp)
    says the same inputs and options were already done; write it last otherwise.
    """
    log = log or get_logger("compute_fbank")
    sig = _signature(part_dir, config, ark, compress)
    outputs = [p for p in (ark, scp, num_frames) if p]
    if done_marker and stamp.is_current(done_marker, sig, outputs):
        log.info(f"already done, skipping: {scp}")
        return False
    if done_marker:
        stamp.clear(done_marker)
    for path in outputs:
        remove_stale_temps(path)  # of a killed earlier run of this job
    if config["dither"] != 0:
        log.warning(f"--dither={config['dither']:g}: features are random, reruns give other bytes")
    extract = FbankExtractor(config)
    frames = {}
    with tables.MatrixWriter(ark, scp, compress=compress) as writer:
        for utt, samples, rate, rx in audio.iter_utterances(part_dir, channel=config["channel"]):
            feats = extract(samples, rate, utt, rx)
            writer.write(utt, feats)
            frames[utt] = len(feats)
    if num_frames:
        datadir.write_table(num_frames, frames)
    if done_marker:
        stamp.write(done_marker, sig, utterances=len(frames), frames=sum(frames.values()))
    log.info(f"wrote {len(frames)} utterances, {sum(frames.values())} frames: {scp}")
    return True


def finish_data_dir(data_dir: str, config: FbankConfig, scps, num_frames_files, log=None) -> int:
    """Merge job outputs into ``utt2num_frames``, ``frame_shift`` and -- last, atomically -- ``feats.scp``.

    Every utterance of ``utt2spk`` must have features; the result is validated
    and ``feats.scp`` removed again if validation fails.  Returns the utterance count.
    """
    log = log or get_logger("make_fbank")
    utt2spk = datadir.read_table(os.path.join(data_dir, "utt2spk"))
    frames = {}
    for path in num_frames_files:
        frames.update(datadir.read_table(path))
    missing = [u for u in utt2spk if u not in frames]
    if missing:
        raise UnspeechError(f"{len(missing)} utterance(s) got no features, first {missing[0]}: {data_dir}")
    extra = [u for u in frames if u not in utt2spk]
    if extra:
        raise UnspeechError(f"features for utterance {extra[0]} not in utt2spk (stale job output?): {data_dir}")
    datadir.write_table(os.path.join(data_dir, "utt2num_frames"), frames)
    atomic_write_text(os.path.join(data_dir, "frame_shift"), f"{config.frame_shift_seconds:g}\n")
    feats_scp = os.path.join(data_dir, "feats.scp")
    n = tables.merge_scps(scps, feats_scp)
    try:
        datadir.validate(data_dir, need=("feats.scp",))
        if n != len(utt2spk):
            raise UnspeechError(f"feats.scp has {n} lines, utt2spk {len(utt2spk)}: {feats_scp}")
    except BaseException:
        os.remove(feats_scp)
        raise
    log.info(f"{n} utterances, {sum(int(v) for v in frames.values())} frames of dim {config.dim}: {feats_scp}")
    return n
