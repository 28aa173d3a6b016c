#!/usr/bin/env python3
"""Memory and time at scale: per-stage throughput and peak memory on growing inputs, extrapolated.

Stages (each measurement in its own child process, so its peak RSS -- VmHWM of
/proc/self/status -- is that stage's alone):

  fbank       utils_py.features.fbank.compute_data_dir (what one make_fbank.sh job runs),
              compressed (default) and float32 archives
  cache       utils_py.features.feature_set.load_features: in memory, memmap cache build, memmap open
  sampler     the training batches alone (no model; loop.prepare_data's sampler), in memory and memmap
  train       training steps (utils_py.train.loop.Trainer, batches through the Prefetcher as in
              training) of conf/train_cv.conf (VggCpu) and conf/train_tedlium.conf (Vgg16big)
  extract     utils_py.extract.extractor.run_job (one extract_unspeech.sh job, 1 thread, the step's
              defaults + --speaker-vectors true as run.sh), random-weight models of both confs
  cluster     utils_py.cluster.pipeline.cluster_vectors with cluster_utts.sh's defaults on synthetic
              100-d vectors (the exact method up to its limit, two-stage above), and the two-stage
              path's per-utterance work above the limit on its own (see --cluster-rest-sizes)

Audio: real speech, the Common Voice Persian clips of ../shared/data/cv_fa decoded once to 16 kHz
wav (cached under --work); where that is absent, synthetic voiced signals (stated in the results).
A line (or n log n / n^2) is fitted through the growing sizes and its residuals are reported; the
fits extrapolate to 450 h (TED-LIUM) and 10,000 h on N grid jobs (wall time, RAM per job, disk).

    .venv/bin/python bench/bench_scale.py                 # ~15 min on 2 shared cores (+1-2 min: audio, once)
    .venv/bin/python bench/bench_scale.py --hours 0.05,0.1 --big-hours 0.01,0.02 \\
        --cluster-sizes 500,1000,2000 --cluster-rest-sizes 30000,60000 --out /tmp/s   # quick try

Writes <out>.json and <out>.md (default bench/results/bench_scale).
"""
from benchinfo import cpu_description  # noqa: E402  (bench/ is sys.path[0])
import argparse
import concurrent.futures
import glob
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONF_DIR = os.path.join(REPO, "egs", "tedlium", "s5_unspeech", "conf")
FBANK_CONF = os.path.join(CONF_DIR, "fbank.conf")
CPU_CONF = os.path.join(CONF_DIR, "train_cv.conf")
FULL_CONF = os.path.join(CONF_DIR, "train_tedlium.conf")
CV_CLIPS = os.path.abspath(os.path.join(REPO, "..", "shared", "data", "cv_fa", "clips"))  # --cv-clips
FRAMES_PER_HOUR = 360_000          # 10 ms frame shift
TARGETS_HOURS = (450.0, 10_000.0)  # TED-LIUM 3 (~450 h), a large corpus
JOBS = (1, 16, 64)
UTT_SECONDS = 6.0                  # assumed mean utterance length at scale (TED-LIUM 3: ~268k segments in ~452 h)
TWO_STAGE_CLUSTERS = 2000          # clusters the two-stage assignment compares against (see --help)

# ---------------------------------------------------------------- fits and extrapolation (pure)
BASES = {"linear": lambda x: x, "nlogn": lambda x: x * math.log(x), "n2": lambda x: x * x,
         "constant": lambda x: 0.0}


def fit(xs, ys, kind="linear") -> dict:
    """Least squares ``y = a + b * g(x)`` (g: x, x ln x or x^2 by ``kind``) with ``b >= 0``.

    A negative slope (a flat quantity plus noise) becomes the constant ``a = mean(y)``, so
    nothing extrapolates below zero; ``kind="constant"``: ``a = max(y)``.  ``residuals``:
    measured / fitted - 1 per point.
    """
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError(f"need >= 2 points of (x, y), got {len(xs)} x and {len(ys)} y")
    g = np.array([BASES[kind](float(x)) for x in xs])
    y = np.asarray(ys, dtype=float)
    if kind == "constant":
        a, b = float(y.max()), 0.0
    else:
        (a, b), *_ = np.linalg.lstsq(np.stack([np.ones_like(g), g], axis=1), y, rcond=None)
    if b < 0:
        a, b = float(y.mean()), 0.0
    fitted = a + b * g
    residuals = [float(m / f - 1) if f > 0 else math.inf for m, f in zip(y, fitted)]   # inf: fit <= 0 there
    return {"kind": kind, "a": float(a), "b": float(b), "x": [float(x) for x in xs], "y": [float(v) for v in y],
            "residuals": residuals}


def predict(f: dict, x: float) -> float:
    return f["a"] + f["b"] * BASES[f["kind"]](float(x))


def max_residual(f: dict) -> float:
    return max(abs(r) for r in f["residuals"])


def memory_fit(xs, ys, tolerance=0.1) -> dict:
    """Peak-RSS model: constant (the largest measured) when every measurement lies within
    ``tolerance`` of it -- a streaming stage -- else the line (memory grows with the input)."""
    const = fit(xs, ys, "constant")
    return const if max_residual(const) <= tolerance else fit(xs, ys)


def cluster_seconds(fits: dict, n: int, max_exact: int) -> float:
    """cluster_utts.sh's time for ``n`` utterances: exact HDBSCAN up to ``max_exact``, above it
    HDBSCAN of a ``max_exact`` sample plus the nearest-centroid assignment of all ``n``."""
    exact = predict(fits["cluster_exact_cpu"], min(n, max_exact))
    return exact + (predict(fits["cluster_rest_cpu"], n) if n > max_exact else 0.0)


def cluster_rss(fits: dict, n: int, max_exact: int) -> float:
    exact = predict(fits["cluster_exact_rss"], min(n, max_exact))
    return max(exact, predict(fits["cluster_rest_rss"], n)) if n > max_exact else exact


def extrapolate(fits: dict, per_hour: dict, train: dict, hours=TARGETS_HOURS, jobs=JOBS,
                utt_seconds=UTT_SECONDS, max_exact=20000) -> list:
    """Rows ``{stage, hours, jobs, wall_s, cpu_s, rss_mb, disk_bytes, note}`` for every target size.

    ``fits``: name -> fit (x = audio hours per job, or utterances for clustering; CPU seconds or
    MB); ``per_hour``: bytes per audio hour of each output; ``train``: per conf name
    ``{"cpu_step_s", "threads", "rss_mb", "steps"}`` (wall = CPU / threads: dedicated cores).
    Split stages (fbank, extraction) run ``jobs`` jobs of hours/jobs each, one core each (wall =
    the job's CPU time); the others are one job.
    """
    rows = []
    for h in hours:
        for nj in jobs:
            for stage, key, disk_key in (("fbank", "fbank", "fbank_compressed"),
                                         ("extract VggCpu", "extract_VggCpu", "extract_VggCpu"),
                                         ("extract Vgg16big", "extract_Vgg16big", "extract_Vgg16big")):
                if f"{key}_cpu" not in fits:
                    continue
                cpu = predict(fits[f"{key}_cpu"], h / nj)
                rows.append({"stage": stage, "hours": h, "jobs": nj, "wall_s": cpu, "cpu_s": cpu * nj,
                             "rss_mb": predict(fits[f"{key}_rss"], h / nj), "disk_bytes": per_hour[disk_key] * h})
        if "cache_memmap_cpu" in fits:
            rows.append({"stage": "feature cache (memmap build)", "hours": h, "jobs": 1,
                         "wall_s": predict(fits["cache_memmap_cpu"], h), "cpu_s": predict(fits["cache_memmap_cpu"], h),
                         "rss_mb": predict(fits["cache_memmap_rss"], h), "disk_bytes": per_hour["cache"] * h})
        if "cache_memory_cpu" in fits:
            rows.append({"stage": "features in RAM (no cache)", "hours": h, "jobs": 1,
                         "wall_s": predict(fits["cache_memory_cpu"], h), "cpu_s": predict(fits["cache_memory_cpu"], h),
                         "rss_mb": predict(fits["cache_memory_rss"], h), "disk_bytes": 0.0})
        for name, t in train.items():
            cpu = t["cpu_step_s"] * t["steps"]
            rows.append({"stage": f"train {name}", "hours": h, "jobs": 1, "wall_s": cpu / t["threads"],
                         "cpu_s": cpu, "rss_mb": t["rss_mb"], "disk_bytes": 0.0,
                         "note": f"{t['steps']:,} steps on {t['threads']} cores, memmap cache"})
        if "cluster_exact_cpu" in fits:
            n = int(round(h * 3600 / utt_seconds))
            sec = cluster_seconds(fits, n, max_exact)
            rows.append({"stage": "cluster", "hours": h, "jobs": 1, "wall_s": sec, "cpu_s": sec,
                         "rss_mb": cluster_rss(fits, n, max_exact), "disk_bytes": 0.0,
                         "note": f"{n} utterances"})
    return rows


# ---------------------------------------------------------------- child side: one measurement
def _memory() -> dict:
    """Peak and current resident memory of this process in MB (VmHWM, VmRSS, RssAnon, RssFile)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 1024.0
    return out


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def train_options(conf: str, **overrides) -> dict:
    """The training options of a recipe conf, as train_unspeech.py parses them."""
    from utils_py.cli import parse_args, step_parser
    from utils_py.train import loop
    p = step_parser("bench")
    loop.add_options(p)
    cfg = loop.options_of(parse_args(p, ["--config", conf]))
    cfg.update(overrides)
    return cfg


def _training_data(cfg, spec):
    """Features (memmap with ``cache_dir``), split and sampler exactly as train_unspeech prepares them,
    and the batch function of the conf's objective."""
    import logging
    from utils_py.train import loop
    data = loop.prepare_data(spec["scp"], dict(cfg, cache_dir=spec.get("cache_dir", "")), logging.getLogger("bench"))
    return data, (data.sampler.chunk_batch if cfg["objective"] == "inbatch" else data.sampler.pair_batch)


def child_fbank(spec):
    from utils_py.features import fbank
    config = fbank.FbankConfig.from_file(FBANK_CONF)
    w0 = time.perf_counter()
    fbank.compute_data_dir(spec["data"], config, spec["ark"], spec["scp"], num_frames=spec["num_frames"],
                           compress=spec["compress"])
    return {"work_wall_s": time.perf_counter() - w0, "ark_bytes": os.path.getsize(spec["ark"])}


def child_cache(spec):
    from utils_py.features.feature_set import load_features
    w0 = time.perf_counter()
    fs = load_features(spec["scp"], cache_dir=spec.get("cache_dir"))
    out = {"work_wall_s": time.perf_counter() - w0, "frames": fs.num_frames, "utterances": fs.num_utts}
    if spec.get("cache_dir"):
        out["cache_bytes"] = sum(os.path.getsize(p) for p in glob.glob(os.path.join(spec["cache_dir"], "*")))
    return out


def child_sampler(spec):
    from utils_py.train import loop
    cfg = train_options(spec["conf"])
    _, make = _training_data(cfg, spec)
    make(0)
    n, w0 = 0, time.perf_counter()
    while n < 5 or time.perf_counter() - w0 < spec["seconds"]:
        make(n + 1)
        n += 1
    sec = (time.perf_counter() - w0) / n
    return {"batches_per_s": 1 / sec, "pairs_per_s": loop.pairs_per_step(cfg) / sec,
            "windows_per_s": loop.windows_per_step(cfg) / sec, "batches": n}


def child_train(spec):
    from utils_py.model.sampler import Prefetcher
    from utils_py.train import loop
    data, make = _training_data(train_options(spec["conf"]), spec)
    cfg = data.cfg
    trainer = loop.Trainer(cfg)
    trainer.model.set_input_stats(*loop.feature_stats(data.feats, data.train_utts, cfg["seed"]))
    warmup, steps = spec["warmup"], spec["steps"]
    times, cpu0 = [], None
    with Prefetcher(make, 0, warmup + steps) as batches:
        for step, batch in batches:
            if step == warmup:
                cpu0 = _cpu()
            t = time.perf_counter()
            trainer.step(batch)
            if step >= warmup:
                times.append(time.perf_counter() - t)
        cpu_step = (_cpu() - cpu0) / steps   # all threads, the sampler's included
    step_s = float(np.median(times))
    return {"step_s": step_s, "mean_step_s": float(np.mean(times)), "cpu_step_s": cpu_step,
            "threads": os.cpu_count(), "pairs_per_s": loop.pairs_per_step(cfg) / step_s,
            "windows_per_s": loop.windows_per_step(cfg) / step_s, "steps": steps, "warmup": warmup,
            "transform": cfg["embedding_transformation"], "objective": cfg["objective"],
            "mixed_precision": cfg["mixed_precision"], "conf_steps": cfg["steps"]}


def child_model(spec):
    from utils_py.model.network import build_model
    cfg = train_options(spec["conf"], feature_dim=40)
    os.makedirs(spec["dir"], exist_ok=True)
    build_model(cfg).save(spec["dir"], extra_config=cfg)
    return {}


def child_extract(spec):
    w0, c0 = time.perf_counter(), _cpu()
    from utils_py.extract import extractor
    extractor.set_threads(1)
    model = extractor.load_model(spec["model"])
    w1, c1 = time.perf_counter(), _cpu()
    extractor.run_job(spec["data"], spec["model"], spec["out"], 1, model=model, speaker_vectors=True)
    w2, c2 = time.perf_counter(), _cpu()
    return {"startup_wall_s": w1 - w0, "startup_cpu_s": c1 - c0, "work_wall_s": w2 - w1, "work_cpu_s": c2 - c1,
            "out_bytes": sum(os.path.getsize(p) for p in glob.glob(os.path.join(spec["out"], "*.ark")))}


def child_cluster(spec):
    from bench_cluster import clusters_for, gaussian_mixture
    from utils_py.cluster import pipeline
    n = spec["n"]
    opts = pipeline.ClusterOptions()   # cluster_utts.sh's defaults
    limit = opts.exact_limit() if hasattr(opts, "exact_limit") else opts.max_exact
    out = {"method": getattr(opts, "method", "hdbscan"), "algorithm": opts.algorithm, "limit": limit}
    if spec["mode"] == "exact":
        X, _ = gaussian_mixture(n, clusters_for(n), seed=0)
        c0, w0 = _cpu(), time.perf_counter()
        result = pipeline.cluster_vectors(X, opts)
        return dict(out, work_cpu_s=_cpu() - c0, work_wall_s=time.perf_counter() - w0, speakers=clusters_for(n),
                    clusters=result.num_clusters, sample=result.sample_size)
    # The two-stage path's per-utterance work above the limit, by the pipeline's own functions:
    # mean/L2 of all, centroids of the clustered sample (here its true speakers), nearest centroid
    # and cluster radius for every other utterance.  The sample's clustering is the exact fit.
    X, labels = gaussian_mixture(n, TWO_STAGE_CLUSTERS, seed=0)
    c0, w0 = _cpu(), time.perf_counter()
    X = pipeline.prepare_vectors(X)
    sample = np.zeros(n, bool)
    sample[np.random.default_rng(0).choice(n, min(limit, n), replace=False)] = True
    full = np.full(n, -1)
    full[sample] = np.unique(labels[sample], return_inverse=True)[1]   # speakers present in the sample
    C = pipeline.centroids(X[sample], full[sample])
    idx, dist = pipeline.nearest_centroid(X[~sample], C)
    radius = pipeline.cluster_radii(X, full, C)
    full[~sample] = np.where(dist <= radius[idx], idx, -1)
    return dict(out, work_cpu_s=_cpu() - c0, work_wall_s=time.perf_counter() - w0, speakers=TWO_STAGE_CLUSTERS,
                clusters=len(C), sample=int(sample.sum()))


CHILDREN = {"fbank": child_fbank, "cache": child_cache, "sampler": child_sampler, "train": child_train,
            "model": child_model, "extract": child_extract, "cluster": child_cluster}


def child_main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    out = CHILDREN[spec["kind"]](spec)
    out.update(cpu_s=_cpu(), memory_mb=_memory())
    print("RESULT " + json.dumps(out), flush=True)
    return 0


# ---------------------------------------------------------------- parent side
def measure(spec: dict, threads: int = 1) -> dict:
    """Run one measurement in a child process; its result + the child's whole wall time."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"ERROR (bench_scale): {spec['kind']} measurement failed (exit {proc.returncode}):\n"
                         + proc.stderr[-3000:])
    out = json.loads(lines[-1][len("RESULT "):])
    out.update(wall_s=wall, peak_rss_mb=out["memory_mb"]["VmHWM"])
    print(f"  {spec['kind']:8s} {spec.get('label', ''):32s} wall {wall:7.1f} s  cpu {out['cpu_s']:7.1f} s  "
          f"peak RSS {out['peak_rss_mb']:7.0f} MB", file=sys.stderr, flush=True)
    return out


def _decode(mp3: str, wav: str) -> None:
    tmp = wav + ".tmp.wav"
    subprocess.run(["sox", "-R", "-V1", "--ignore-length", mp3, "-t", "wav", "-r", "16000", "-b", "16", "-c", "1",
                    tmp], check=True, capture_output=True)
    os.replace(tmp, wav)


def _synthetic(wav: str, seconds: float, seed: int) -> None:
    """A voiced-like 16 kHz signal: harmonics of a wandering f0, syllable-rate envelope, noise."""
    import soundfile as sf
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000.0
    f0 = rng.uniform(90, 250) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.2, 1) * t))
    phase = 2 * np.pi * np.cumsum(f0) / 16000.0
    voice = sum(np.sin(h * phase) / h for h in range(1, 30))
    env = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t), 0, None)
    x = 3000 * env * voice + rng.normal(0, 30, len(t))
    sf.write(wav, np.clip(x, -32768, 32767).astype(np.int16), 16000)


def prepare_audio(work: str, hours: float, cv_clips: str = CV_CLIPS) -> dict:
    """``{"utts": [(id, wav, seconds)], "source": ...}`` of at least ``hours`` of 16 kHz audio, cached."""
    import soundfile as sf
    audio_dir = os.path.join(work, "audio")
    os.makedirs(audio_dir, exist_ok=True)
    manifest = os.path.join(audio_dir, "manifest.json")
    if os.path.isfile(manifest):
        with open(manifest) as f:
            cached = json.load(f)
        if sum(s for _, _, s in cached["utts"]) >= hours * 3600:
            return cached
    clips = sorted(glob.glob(os.path.join(cv_clips, "*.mp3")))
    if clips and shutil.which("sox"):
        source = f"Common Voice Persian clips (real read speech, {cv_clips}), decoded by sox to 16 kHz wav"
        print(f"decoding cv_fa clips to {audio_dir} (once)", file=sys.stderr, flush=True)
        utts, total, todo = [], 0.0, []
        for mp3 in clips:  # durations from the mp3 headers first, so only what is needed is decoded
            wav = os.path.join(audio_dir, os.path.basename(mp3)[:-4] + ".wav")
            todo.append((mp3, wav))
            total += float(subprocess.run(["soxi", "-D", mp3], capture_output=True, text=True).stdout or 0)
            if total >= hours * 3600 * 1.03:   # the headers count one mp3 frame more than decodes
                break
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
            list(pool.map(lambda mw: os.path.isfile(mw[1]) or _decode(*mw), todo))
        utts = [(os.path.basename(w)[:-4], w, sf.info(w).frames / 16000.0) for _, w in todo]
    else:
        source = (f"synthetic voiced signals ({cv_clips} or sox not found): harmonics of a wandering f0 with a "
                  f"syllable-rate envelope, 16 kHz, 2-8 s each")
        print(f"cv_fa not found at {cv_clips}: generating synthetic audio", file=sys.stderr, flush=True)
        rng, utts, total, i = np.random.default_rng(0), [], 0.0, 0
        while total < hours * 3600:
            seconds = float(rng.uniform(2, 8))
            wav = os.path.join(audio_dir, f"syn{i:06d}.wav")
            _synthetic(wav, seconds, i)
            utts.append((f"syn{i:06d}", wav, seconds))
            total, i = total + seconds, i + 1
    result = {"source": source, "utts": utts}
    with open(manifest, "w") as f:
        json.dump(result, f)
    return result


def size_dir(work: str, audio: dict, hours: float) -> dict:
    """A data dir with the first ``hours`` of the audio (wav.scp, utt2spk, spk2utt)."""
    from utils_py.kaldi import datadir
    d = os.path.join(work, f"h{hours:g}")
    data = os.path.join(d, "data")
    os.makedirs(data, exist_ok=True)
    utts, total = {}, 0.0
    for utt, wav, sec in audio["utts"]:
        if total >= hours * 3600:
            break
        utts[utt] = wav
        total += sec
    datadir.write_table(os.path.join(data, "wav.scp"), utts)
    datadir.write_table(os.path.join(data, "utt2spk"), {u: u for u in utts})
    datadir.write_spk2utt(data)
    return {"hours": hours, "dir": d, "data": data, "audio_hours": total / 3600, "utterances": len(utts)}


def run_stages(args, audio) -> dict:
    """Every measurement; returns ``{stage: [results]}``."""
    sizes = [size_dir(args.work, audio, h) for h in args.hours]
    m = {k: [] for k in ("fbank", "fbank_float32", "cache_memory", "cache_memmap", "cache_memmap_open",
                         "sampler", "train", "extract", "cluster_exact", "cluster_rest")}

    def add(stage, spec, threads=1, **extra):
        r = measure(spec, threads)
        r.update(extra)
        m[stage].append(r)
        return r

    print("fbank", file=sys.stderr, flush=True)
    for s in sizes:
        for stage, compress in (("fbank", True), ("fbank_float32", False)):
            out = os.path.join(s["dir"], "fbank" if compress else "fbank_f32")
            os.makedirs(out, exist_ok=True)
            add(stage, {"kind": "fbank", "label": f"{s['hours']:g} h compress={compress}", "data": s["data"],
                        "ark": os.path.join(out, "feats.ark"), "scp": os.path.join(out, "feats.scp"),
                        "num_frames": os.path.join(out, "utt2num_frames"), "compress": compress},
                audio_hours=s["audio_hours"], utterances=s["utterances"])
            if compress:
                shutil.copy(os.path.join(out, "feats.scp"), os.path.join(s["data"], "feats.scp"))
    print("feature cache", file=sys.stderr, flush=True)
    for s in sizes:
        scp, cache = os.path.join(s["data"], "feats.scp"), os.path.join(s["dir"], "cache")
        shutil.rmtree(cache, ignore_errors=True)
        base = {"kind": "cache", "scp": scp}
        add("cache_memory", dict(base, label=f"{s['hours']:g} h in memory"), audio_hours=s["audio_hours"])
        add("cache_memmap", dict(base, label=f"{s['hours']:g} h memmap build", cache_dir=cache),
            audio_hours=s["audio_hours"])
        add("cache_memmap_open", dict(base, label=f"{s['hours']:g} h memmap open", cache_dir=cache),
            audio_hours=s["audio_hours"])
    print("sampler (input pipeline without the model)", file=sys.stderr, flush=True)
    for s in sizes:
        for conf in (CPU_CONF, FULL_CONF):
            for cache in ("", os.path.join(s["dir"], "cache")):
                add("sampler", {"kind": "sampler", "conf": conf, "scp": os.path.join(s["data"], "feats.scp"),
                                "cache_dir": cache, "seconds": args.sampler_seconds,
                                "label": f"{s['hours']:g} h {os.path.basename(conf)} {'memmap' if cache else 'RAM'}"},
                    audio_hours=s["audio_hours"], conf=os.path.basename(conf), memmap=bool(cache))
    print("training steps", file=sys.stderr, flush=True)
    big = sizes[-1]
    for conf, steps in ((CPU_CONF, args.train_steps), (FULL_CONF, args.full_train_steps)):
        add("train", {"kind": "train", "conf": conf, "scp": os.path.join(big["data"], "feats.scp"),
                      "cache_dir": os.path.join(big["dir"], "cache"), "warmup": 2, "steps": steps,
                      "label": os.path.basename(conf)}, threads=os.cpu_count(), conf=os.path.basename(conf),
            audio_hours=big["audio_hours"])
    print("extraction", file=sys.stderr, flush=True)
    big_sizes = [size_dir(args.work, audio, h) for h in args.big_hours]
    for conf, name, sz in ((CPU_CONF, "VggCpu", sizes), (FULL_CONF, "Vgg16big", big_sizes)):
        model = os.path.join(args.work, f"model_{name}")
        if not os.path.isfile(os.path.join(model, "config.json")):
            measure({"kind": "model", "conf": conf, "dir": model, "label": name})
        for s in sz:
            data = s["data"]
            if not os.path.isfile(os.path.join(data, "feats.scp")):  # sizes only extraction uses: their fbank
                out = os.path.join(s["dir"], "fbank")
                measure({"kind": "fbank", "label": f"{s['hours']:g} h (input)", "data": data, "compress": True,
                         "ark": os.path.join(out, "feats.ark"), "scp": os.path.join(data, "feats.scp"),
                         "num_frames": os.path.join(out, "utt2num_frames")})
            out = os.path.join(s["dir"], f"ivectors_{name}")
            shutil.rmtree(out, ignore_errors=True)
            add("extract", {"kind": "extract", "model": model, "data": data, "out": out,
                            "label": f"{s['hours']:g} h {name}"}, model=name, audio_hours=s["audio_hours"],
                utterances=s["utterances"])
    print("clustering", file=sys.stderr, flush=True)
    for n in args.cluster_sizes:
        add("cluster_exact", {"kind": "cluster", "mode": "exact", "n": n, "label": f"{n} exact"}, n=n)
    for n in args.cluster_rest_sizes:
        add("cluster_rest", {"kind": "cluster", "mode": "rest", "n": n, "label": f"{n} two-stage w/o HDBSCAN"}, n=n)
    return m


def make_fits(m: dict) -> tuple:
    """Fits (CPU seconds and peak MB vs hours or utterances) and bytes per audio hour."""
    def xs(rows, key="audio_hours"):
        return [r[key] for r in rows]

    fits, per_hour = {}, {}
    for stage in ("fbank", "fbank_float32", "cache_memory", "cache_memmap"):
        rows = m[stage]
        if len(rows) >= 2:
            fits[f"{stage}_cpu"] = fit(xs(rows), [r["cpu_s"] for r in rows])
            fits[f"{stage}_rss"] = memory_fit(xs(rows), [r["peak_rss_mb"] for r in rows])
    for stage, key in (("fbank", "ark_bytes"), ("fbank_float32", "ark_bytes"), ("cache_memmap", "cache_bytes")):
        if m[stage]:
            per_hour[{"fbank": "fbank_compressed", "fbank_float32": "fbank_float32",
                      "cache_memmap": "cache"}[stage]] = fit(xs(m[stage]), [r[key] for r in m[stage]])["b"]
    for name in sorted({r["model"] for r in m["extract"]}):
        rows = [r for r in m["extract"] if r["model"] == name]
        if len(rows) >= 2:
            fits[f"extract_{name}_cpu"] = fit(xs(rows), [r["cpu_s"] for r in rows])
            fits[f"extract_{name}_rss"] = memory_fit(xs(rows), [r["peak_rss_mb"] for r in rows])
            per_hour[f"extract_{name}"] = fit(xs(rows), [r["out_bytes"] for r in rows])["b"]
    ex = [r for r in m["cluster_exact"] if r["sample"] == r["n"]]   # sizes above the limit are two-stage
    rest = m["cluster_rest"]
    if len(ex) >= 2:
        for kind in ("n2", "nlogn"):
            fits[f"cluster_exact_cpu_{kind}"] = fit(xs(ex, "n"), [r["work_cpu_s"] for r in ex], kind)
        best = min(("n2", "nlogn"), key=lambda k: max_residual(fits[f"cluster_exact_cpu_{k}"]))
        fits["cluster_exact_cpu"] = fits[f"cluster_exact_cpu_{best}"]
        fits["cluster_exact_rss"] = memory_fit(xs(ex, "n"), [r["peak_rss_mb"] for r in ex])
    if len(rest) >= 2:
        fits["cluster_rest_cpu"] = fit(xs(rest, "n"), [r["work_cpu_s"] for r in rest])
        fits["cluster_rest_rss"] = memory_fit(xs(rest, "n"), [r["peak_rss_mb"] for r in rest])
    return fits, per_hour


# ---------------------------------------------------------------- report
def human_seconds(s) -> str:
    if s is None:
        return "-"
    for unit, sec in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= 2 * sec or (unit == "min" and s >= 60):
            return f"{s / sec:.1f} {unit}"
    return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"


def human_bytes(b) -> str:
    if not b:
        return "-"
    for unit, n in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if b >= n:
            return f"{b / n:.1f} {unit}"
    return f"{b / 1e3:.0f} kB"


def human_mb(mb) -> str:
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def fit_line(name: str, f: dict, unit_x: str) -> str:
    form = {"linear": " + {b:.4g} * x", "nlogn": " + {b:.4g} * x ln x", "n2": " + {b:.4g} * x^2",
            "constant": " (constant: the largest measured)"}[f["kind"]].format(b=f["b"])
    res = ", ".join(f"{x:g}: {100 * r:+.1f} %" for x, r in zip(f["x"], f["residuals"]))
    return f"| {name} | {f['a']:.4g}{form} | {unit_x} | {res} |"


def markdown(report: dict) -> str:
    m, fits, per_hour = report["measurements"], report["fits"], report["per_hour"]
    L = ["# Memory and time at scale (bench/bench_scale.py)", "",
         f"Machine: {report['machine']}; {report['date']}. Load average before/after: {report['load_before']} / "
         f"{report['load_after']} -- other engineers' jobs shared the 2 cores, so wall times are inflated; the "
         "extrapolations use each child process's own CPU time (user + sys), i.e. the wall time on a dedicated core.",
         (f"Note: {report['args']['note']}\n" if report["args"].get("note") else "") +
         f"Whole run: {report['total_minutes']:.1f} min. Audio: {report['audio_source']}; mean utterance "
         f"{report['audio_mean_utt_s']:.1f} s. Every measurement is its own child process; peak RSS = its VmHWM "
         "(Python, NumPy and, where used, TensorFlow included).", "",
         "## Measured", "",
         "| stage | input | utts | CPU s | wall s | peak RSS | output | throughput |", "|---|---|---:|---:|---:|---:|---:|---|"]
    def row(what, size, utts, r, output, throughput, work=False):
        cpu, wall = (r["work_cpu_s"], r["work_wall_s"]) if work else (r["cpu_s"], r["wall_s"])
        L.append(f"| {what} | {size} | {utts} | {cpu:.1f} | {wall:.1f} | {human_mb(r['peak_rss_mb'])} | {output} | "
                 f"{throughput} |")

    for stage, what in (("fbank", "compressed"), ("fbank_float32", "float32")):
        for r in m[stage]:
            row(f"fbank ({what})", f"{r['audio_hours']:.3f} h", r["utterances"], r, human_bytes(r["ark_bytes"]),
                f"{r['audio_hours'] / (r['cpu_s'] / 3600):.0f} audio h per CPU h")
    for stage, what in (("cache_memory", "load_features in RAM"), ("cache_memmap", "memmap cache build"),
                        ("cache_memmap_open", "memmap cache open")):
        for r in m[stage]:
            row(what, f"{r['audio_hours']:.3f} h", r["utterances"], r,
                human_bytes(r.get("cache_bytes")) if stage == "cache_memmap" else "-",
                f"{r['frames'] / r['work_wall_s'] / 1e6:.2f} M frames/s (load only, wall)")
    for r in m["sampler"]:
        row(f"sampler {r['conf']} ({'memmap' if r['memmap'] else 'RAM'})", f"{r['audio_hours']:.3f} h", "-", r, "-",
            f"{r['batches_per_s']:.1f} batches/s = {r['pairs_per_s']:.0f} pairs/s, {r['windows_per_s']:.0f} windows/s")
    for r in m["train"]:
        row(f"train {r['conf']} ({r['transform']}, {r['objective']}, {'bf16' if r['mixed_precision'] else 'fp32'}, "
            f"{r['threads']} threads)", f"{r['audio_hours']:.3f} h memmap", "-", r, "-",
            f"{r['step_s']:.3f} s/step wall (median of {r['steps']}), {r['cpu_step_s']:.3f} CPU-s/step; "
            f"{r['pairs_per_s']:.0f} pairs/s, {r['windows_per_s']:.0f} windows/s (wall)")
    for r in m["extract"]:
        row(f"extract {r['model']} (1 thread)", f"{r['audio_hours']:.3f} h", r["utterances"], r,
            human_bytes(r["out_bytes"]), f"{r['audio_hours'] * 3600 / r['work_cpu_s']:.0f}x real time per core; "
            f"start-up {r['startup_cpu_s']:.1f} s CPU ({r['startup_wall_s']:.1f} s wall)")
    for r in m["cluster_exact"]:
        two_stage = "" if r["sample"] == r["n"] or "cluster_rest_cpu" not in fits else (
            f", two-stage on {r['sample']}: the model below predicts {cluster_seconds(fits, r['n'], r['limit']):.1f} s")
        row(f"cluster_vectors ({r['method']}, {r['algorithm']})", f"{r['n']} vectors, {r['speakers']} spk", "-", r,
            "-", f"{r['clusters']} clusters{two_stage}", work=True)
    for r in m["cluster_rest"]:
        row("cluster, two-stage minus the sample's clustering", f"{r['n']} vectors, {r['clusters']} clusters", "-",
            r, "-", f"{r['n'] / r['work_cpu_s']:.0f} vectors/s", work=True)
    L += ["", "CPU s: the child's whole CPU time (interpreter, imports, work); for clustering and extraction "
          "throughput the work alone. Training CPU s is over 2 threads, its step time is wall.", "",
          "## Fits", "", "x: audio hours per job (clustering: vectors); y: CPU seconds or peak MB. "
          "Residual = measured / fitted - 1 at each measured x; large relative residuals at the smallest sizes "
          "can be a fraction of a second (start-up, not the algorithm). Peak RSS is a constant (the largest "
          "measured) where all sizes lie within 10 % of it, else a line.", "",
          "| quantity | fit | x | residuals |", "|---|---|---|---|"]
    for name in sorted(fits):
        f = fits[name]
        L.append(fit_line(name, f, "vectors" if name.startswith("cluster") else "hours"))
    L += ["", "Bytes per audio hour (slope of a line through the sizes): " + ", ".join(
        f"{k} {human_bytes(v)}" for k, v in sorted(per_hour.items())) + ".", ""]
    L += ["## Extrapolated: 450 h (TED-LIUM) and 10,000 h", "", extrapolation_table(report["extrapolation"]), ""]
    L += ["Assumptions:", ""] + [f"- {a}" for a in report["assumptions"]] + [""]
    L += ["## Which stage needs a GPU", ""] + [f"- {g}" for g in report["gpu"]] + [""]
    return "\n".join(L)


def extrapolation_table(rows: list) -> str:
    """One line per stage and corpus size; wall per job at N = each job count."""
    jobs = sorted({r["jobs"] for r in rows})
    head = "| stage | corpus | wall per job, N = " + " / ".join(str(j) for j in jobs) + \
           " jobs | CPU total | RAM per job (N = " + f"{jobs[0]} / {jobs[-1]}) | disk |"
    lines = [head, "|---|---|---|---|---|---|"]
    keys = []
    for r in rows:
        if (r["stage"], r["hours"]) not in keys:
            keys.append((r["stage"], r["hours"]))
    for stage, hours in keys:
        rs = [r for r in rows if r["stage"] == stage and r["hours"] == hours]
        if len(rs) == 1:
            wall = f"one job: {human_seconds(rs[0]['wall_s'])}"
            rss = human_mb(rs[0]["rss_mb"])
        else:
            wall = " / ".join(human_seconds(r["wall_s"]) for r in rs)
            rss = f"{human_mb(rs[0]['rss_mb'])} / {human_mb(rs[-1]['rss_mb'])}"
        note = f" ({rs[0]['note']})" if rs[0].get("note") else ""
        lines.append(f"| {stage}{note} | {hours:,.0f} h | {wall} | {human_seconds(rs[0]['cpu_s'])} | {rss} | "
                     f"{human_bytes(rs[0]['disk_bytes'])} |")
    return "\n".join(lines)


def summary(m: dict, fits: dict, per_hour: dict, train: dict) -> tuple:
    """Assumptions and GPU lines for the report, from the measurements."""
    ex = (m["cluster_exact"] or [{"method": "?", "algorithm": "?", "limit": 20000}])[0]
    clustering, limit = f"{ex['method']}, {ex['algorithm']}, exact up to {ex['limit']:,}", ex["limit"]
    assumptions = [
        f"{FRAMES_PER_HOUR:,} frames per audio hour (10 ms shift), 40-dim fbank; bytes per hour as measured on the "
        f"audio above (compressed archives {human_bytes(per_hour.get('fbank_compressed'))}/h, float32 "
        f"{human_bytes(per_hour.get('fbank_float32'))}/h, ratio "
        f"{per_hour.get('fbank_float32', 0) / max(per_hour.get('fbank_compressed', 1), 1):.2f}).",
        "Hours are the hours each stage processes: with run.sh's speed perturbation (stage 1) the training set "
        "is fbank'd, cached and extracted 3 times (0.9/1.0/1.1).",
        "Split stages (fbank, extraction): N jobs of hours/N each, one core per job, jobs run at once; wall per job "
        "= the fitted CPU time of one job (the intercept carries the start-up); reading the input from shared disk "
        "is not modelled. Total CPU = N x that.",
        "Feature cache, training and clustering are one job each (training: one process on the 2 cores measured "
        "here; clustering: --num-threads 1).",
        f"Clustering: {UTT_SECONDS:g} s mean utterance (TED-LIUM 3: ~268k segments in ~452 h), one 100-d vector "
        f"per utterance; cluster_utts.sh's defaults ({clustering}): above {limit:,} utterances the exact method on "
        f"a {limit:,} sample + nearest-centroid assignment of all, against {TWO_STAGE_CLUSTERS} clusters (the "
        "assignment is linear in utterances x clusters).",
        "Training is independent of corpus size: its cost is the number of steps, a choice of the conf "
        "(train_cv.conf: 10,000 steps capped at 0.1 h; train_tedlium.conf: 400,000 steps, as the original).",
        "RSS of memory-mapped features counts only what the process holds; the file's pages are the kernel's page "
        "cache (RssFile), which it drops under pressure. The sampler was timed with the cache file in the page "
        "cache; a cache larger than RAM makes every window a random disk read (not measured).",
        "CPU time is not immune to the other jobs: the 2 vCPUs share caches and memory bandwidth with them, so "
        "these CPU seconds are upper bounds, compare the same step in bench_train.md measured at lower load.",
    ]
    gpu = []
    for name, t in train.items():
        cpu = t["cpu_step_s"] * t["steps"]
        gpu.append(f"Training {name} ({t['transform']}): {t['cpu_step_s']:.2f} CPU-s per step ({t['step_s']:.2f} s "
                   f"wall per step measured on the shared cores) -> {t['steps']:,} steps = {cpu / 86400:.2f} "
                   f"CPU-days, {human_seconds(cpu / t['threads'])} on {t['threads']} dedicated cores.")
    if "Vgg16big" in {t["transform"] for t in train.values()}:
        gpu.append("So the full model (Vgg16big, original settings) needs a GPU at any corpus size: the original "
                   "needed about 25 GPU-hours for ~400k steps (the paper's number, as README cites); GPU step time is "
                   "not measured here (no GPU on this machine), nor multi-GPU (MirroredStrategy) scaling. "
                   "The CPU conf (VggCpu, in-batch objective) trains on a CPU at any corpus size, since its cost "
                   "is steps, not hours.")
    for name in ("VggCpu", "Vgg16big"):
        key = f"extract_{name}_cpu"
        if key in fits:
            hrs = [predict(fits[key], h) / 3600 for h in TARGETS_HOURS]
            gpu.append(f"Extraction with {name}: {hrs[0]:,.1f} CPU-hours for 450 h, {hrs[1]:,.1f} for 10,000 h "
                       f"({hrs[1] / 64:,.1f} h wall on 64 single-core jobs): "
                       + ("a CPU grid does it." if hrs[1] / 64 < 48 else "a GPU (or many more jobs) is needed."))
    gpu.append("Fbank, the feature cache and clustering are CPU work at both sizes (see the table); none uses a GPU.")
    return assumptions, gpu


def parse_list(text, typ=float):
    return [typ(v) for v in text.split(",") if v.strip()]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", type=parse_list, default=[0.1, 0.3, 1.0],
                   help="audio hours of the growing inputs (fbank, cache, sampler, VggCpu extraction)")
    p.add_argument("--big-hours", type=parse_list, default=[0.02, 0.05, 0.1],
                   help="audio hours for Vgg16big extraction (~10x slower)")
    p.add_argument("--cluster-sizes", type=lambda t: parse_list(t, int), default=[1000, 2000, 5000, 10000],
                   help="vectors for cluster_vectors with the step's defaults; those up to the method's exact "
                        "limit give the exact fit, larger ones check the two-stage model")
    p.add_argument("--cluster-rest-sizes", type=lambda t: parse_list(t, int), default=[50000, 200000, 1000000],
                   help="vectors for the two-stage path without the clustering of its sample (that part is the "
                        "exact fit at the limit): mean/L2, centroids, nearest-centroid assignment, radii")
    p.add_argument("--sampler-seconds", type=float, default=3.0, help="time per sampler measurement")
    p.add_argument("--train-steps", type=int, default=30, help="timed steps of train_cv.conf (after 2 warm-up)")
    p.add_argument("--full-train-steps", type=int, default=5, help="timed steps of train_tedlium.conf (Vgg16big)")
    p.add_argument("--cv-clips", default=CV_CLIPS, help="Common Voice mp3 clips (real speech); synthetic audio "
                                                         "where absent")
    p.add_argument("--work", default="/tmp/bench_scale", help="scratch dir (decoded audio is cached here)")
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "bench_scale"),
                   help="output prefix (.json and .md)")
    p.add_argument("--note", default="", help="free text for the results (e.g. which code was measured)")
    p.add_argument("--analyse-only", action="store_true",
                   help="no measuring: redo fits, extrapolation and <out>.md from the measurements in <out>.json")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child_main(args.child)
    if args.analyse_only:
        with open(args.out + ".json") as f:
            report = json.load(f)
    else:
        t0 = time.time()
        load_before = " ".join(f"{v:.1f}" for v in os.getloadavg())
        audio = prepare_audio(args.work, max(args.hours + args.big_hours), args.cv_clips)
        m = run_stages(args, audio)
        report = {"machine": f"{cpu_description()}, {platform.python_implementation()} {platform.python_version()}",
                  "date": time.strftime("%Y-%m-%d %H:%M"), "load_before": load_before,
                  "load_after": " ".join(f"{v:.1f}" for v in os.getloadavg()),
                  "total_minutes": (time.time() - t0) / 60, "audio_source": audio["source"],
                  "audio_mean_utt_s": float(np.mean([s for _, _, s in audio["utts"]])),
                  "args": {k: v for k, v in vars(args).items() if k not in ("child", "analyse_only")},
                  "measurements": m}
        write_report(args.out, report, markdown_too=False)   # the measurements are safe before the analysis
    report.update(analyse(report["measurements"]))
    write_report(args.out, report)
    print(f"wrote {args.out}.md ({report['total_minutes']:.1f} min)", file=sys.stderr)
    return 0


def analyse(m: dict) -> dict:
    """Fits, bytes per hour, training costs, extrapolation and summary lines from the measurements."""
    fits, per_hour = make_fits(m)
    train = {}
    for r in m["train"]:
        train[r["conf"]] = {"step_s": r["step_s"], "cpu_step_s": r["cpu_step_s"], "threads": r["threads"],
                            "rss_mb": r["peak_rss_mb"], "steps": r["conf_steps"], "transform": r["transform"]}
    limits = {r["limit"] for r in m["cluster_exact"] + m["cluster_rest"]}
    rows = extrapolate(fits, per_hour, train, max_exact=max(limits) if limits else 20000)
    assumptions, gpu = summary(m, fits, per_hour, train)
    return {"fits": fits, "per_hour": per_hour, "train": train, "extrapolation": rows,
            "assumptions": assumptions, "gpu": gpu}


def write_report(out: str, report: dict, markdown_too: bool = True) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    if markdown_too:
        with open(out + ".md", "w") as f:
            f.write(markdown(report))


if __name__ == "__main__":
    sys.exit(main())
