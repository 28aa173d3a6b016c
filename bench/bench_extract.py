#!/usr/bin/env python3
"""Speed of unspeech extraction (utils_py/extract/extractor.py) on this machine.

For each model (random weights: speed does not depend on them), exact and
--fast mode: times real time (100 frames = 1 s of audio), windows/s, achieved
FLOP/s of the model's convolutions and dense layers, and that as a fraction of
the machine's float32 matmul FLOP/s measured in the same run with the same
threads.  Also the raw forward pass (model.embed on ready windows) to show the
overhead of windowing/batching, and the fast-vs-exact deviation (cosine).

    .venv/bin/python bench/bench_extract.py                   # Vgg16, Vgg16big; 2 threads
    .venv/bin/python bench/bench_extract.py --models Vgg16 --seconds 30 --out /tmp/x

Writes <out>.md and <out>.json (default bench/results/bench_extract).
"""
import argparse
import json
import os
import platform
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from utils_py.extract.extractor import Extractor, compare_fast, set_threads  # noqa: E402


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except Exception:
        name = platform.processor() or "unknown CPU"
    return f"{os.cpu_count()}-core CPU ({name})"


def matmul_flops(seconds: float = 5.0, n: int = 2048) -> float:
    """Best float32 matmul FLOP/s of TensorFlow here (n x n times n x n)."""
    import tensorflow as tf
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    mm = tf.function(lambda x, y: tf.matmul(x, y))
    mm(a, b).numpy()
    best, end = 0.0, time.time() + seconds
    while time.time() < end:
        t = time.perf_counter()
        mm(a, b).numpy()
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t))
    return best


def layer_flops(model_part, frames: int, feature_dim: int) -> float:
    """Multiply-add FLOPs (x2) of Conv2D and Dense layers for an input of ``frames`` frames."""
    import keras
    t, f, flops = frames, feature_dim, 0.0
    for layer in model_part.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            flops += 2.0 * t * f * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.MaxPooling2D):
            t, f = t // layer.pool_size[0], f // layer.pool_size[1]
        elif isinstance(layer, keras.layers.Dense):
            flops += 2.0 * layer.kernel.shape[0] * layer.kernel.shape[1]
    return flops


def utterances(seconds: float, utt_seconds: float, dim: int, seed: int = 0):
    rng = np.random.RandomState(seed)
    n = max(1, int(round(seconds / utt_seconds)))
    return [(f"utt{i:03d}", rng.randn(int(utt_seconds * 100), dim).astype(np.float32)) for i in range(n)]


def bench_model(name, args):
    from utils_py.model.network import build_model
    model = build_model({"feature_dim": 40, "window_length": args.window, "window_neg_length": args.window,
                         "embedding_transformation": name})
    utts = utterances(args.seconds, args.utt_seconds, 40)
    audio_s = sum(len(f) for _, f in utts) / 100.0
    conv = layer_flops(model.conv_stack(), args.window, 40)
    head = layer_flops(model.head(), args.window, 40)
    frame_conv = layer_flops(model.conv_stack(), model.min_frames, 40) / model.min_frames
    rows = sum(-(-len(f) // args.period) for _, f in utts)
    padded_frames = sum(-(-(((-(-len(f) // args.period)) - 1) * args.period + args.window) // model.min_frames)
                        * model.min_frames for _, f in utts)
    results = {"model": name, "window": args.window, "period": args.period, "audio_seconds": audio_s,
               "rows": rows, "flop_per_window": conv + head}
    # Time spent inside model.embed during exact extraction (the rest is our overhead).
    embed, in_model = model.embed, [0.0]

    def timed_embed(*a, **k):
        t = time.perf_counter()
        out = embed(*a, **k)
        in_model[0] += time.perf_counter() - t
        return out

    model.embed = timed_embed
    windows = np.random.RandomState(1).randn(min(rows, 4096), args.window, 40).astype(np.float32)
    extractors = {mode: Extractor(model, period=args.period, fast=fast, batch_size=args.batch_size)
                  for mode, fast in (("exact", False), ("fast", True))}
    runs = {mode: (lambda ex=ex: [r for _, r in ex.extract(utts)]) for mode, ex in extractors.items()}
    runs["raw_forward"] = lambda: embed(windows, batch_size=args.batch_size)
    for run in runs.values():
        run()  # warm-up: tracing
    best = {mode: float("inf") for mode in runs}
    overhead = 1.0
    for _ in range(args.repeats):  # interleaved, best of: the least disturbed by other jobs
        for mode, run in runs.items():
            in_model[0] = 0.0
            t = time.perf_counter()
            run()
            sec = time.perf_counter() - t
            best[mode] = min(best[mode], sec)
            if mode == "exact":
                overhead = min(overhead, 1 - in_model[0] / sec)
    model.embed = embed
    for mode in ("exact", "fast"):
        sec = best[mode]
        flop = rows * (conv + head) if mode == "exact" else padded_frames * frame_conv + rows * head
        results[mode] = {"seconds": sec, "x_real_time": audio_s / sec, "windows_per_s": rows / sec,
                         "gflop_per_s": flop / sec / 1e9}
    sec = best["raw_forward"]
    results["raw_forward"] = {"windows_per_s": len(windows) / sec,
                              "gflop_per_s": len(windows) * (conv + head) / sec / 1e9}
    results["exact_overhead"] = overhead
    results["fast_vs_exact"] = compare_fast(model, utts[:2], period=args.period)
    return results


def trained_deviation(args) -> dict:
    """compare_fast of a trained model on real features (first 100 utterances)."""
    from utils_py.kaldi import tables
    from utils_py.model.network import load_model_dir
    model = load_model_dir(args.trained_model)
    utts = []
    for key, feats in tables.iter_matrices(args.trained_feats):
        utts.append((key, feats))
        if len(utts) == 100:
            break
    dev = compare_fast(model, utts, period=args.period)
    dev.update(model=args.trained_model, feats=args.trained_feats,
               transform=model.config["embedding_transformation"], window=model.config["window_length"],
               time_pooling=model.min_frames, frames=int(sum(len(f) for _, f in utts)))
    return dev


def write_report(out, meta, rows):
    with open(out + ".json", "w") as f:
        json.dump({"meta": meta, "results": rows}, f, indent=1)
    lines = [
        "# Extraction speed (bench/bench_extract.py)", "",
        f"Machine: {meta['machine']}; {meta['threads']} TensorFlow threads; float32 matmul (2048^3) measured in "
        f"the same run before/after: {meta['matmul_gflops_before_after'][0]:.1f} / "
        f"{meta['matmul_gflops_before_after'][1]:.1f} GFLOP/s; fractions below are of the better one, "
        f"**{meta['matmul_gflops']:.1f} GFLOP/s**.",
        f"Load average before/after: {meta['load_before']} / {meta['load_after']} "
        f"({meta['note']}).",
        f"Input: {meta['seconds']:.0f} s of audio as {meta['utt_seconds']:.0f}-s utterances, 40-dim features, "
        f"window {meta['window']}, period {meta['period']}, batch {meta['batch_size']}, random weights; "
        f"best of {meta['repeats']} runs.", "",
        "| model | mode | x real time | windows/s | GFLOP/s | of matmul peak |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        for mode in ("exact", "fast", "raw_forward"):
            m = r[mode]
            xrt = f"{m['x_real_time']:.1f}" if "x_real_time" in m else "-"
            label = {"raw_forward": "raw forward (model.embed, ready windows)"}.get(mode, mode)
            lines.append(f"| {r['model']} | {label} | {xrt} | {m['windows_per_s']:.0f} | "
                         f"{m['gflop_per_s']:.1f} | {100 * m['fraction_of_matmul']:.0f} % |")
    lines += ["", "FLOPs: 2 x multiply-adds of Conv2D and Dense layers (pooling/activations not counted); "
              "per window: " + ", ".join(f"{r['model']} {r['flop_per_window'] / 1e6:.0f} MFLOP" for r in rows)
              + ". Fast mode counts the conv stack once per (padded) frame plus the head per row. These are "
              "nominal direct-convolution FLOPs: oneDNN may use cheaper algorithms (e.g. Winograd for 3x3), and "
              "other jobs on the same cores disturb single runs, so a fraction can exceed 100 %.", "",
              "Time of exact extraction spent outside the model's forward pass (windowing, batching): "
              + ", ".join(f"{r['model']} {100 * r['exact_overhead']:.1f} %" for r in rows) + ".", "",
              "Fast vs exact rows (random weights, random features, first 2 utterances): "
              + "; ".join(f"{r['model']} mean cosine {r['fast_vs_exact']['mean_cosine']:.3f} "
                          f"(min {r['fast_vs_exact']['min_cosine']:.3f}; after subtracting the mean row "
                          f"{r['fast_vs_exact']['mean_cosine_centered']:.3f}; {r['fast_vs_exact']['rows']} rows)"
                          for r in rows) + ". Untrained models share one large direction in all rows, so "
              "the plain cosine flatters; the centered one shows that fast rows are only approximate.", ""]
    if "trained" in meta:
        t = meta["trained"]
        lines += [f"Fast vs exact with a trained model ({t['transform']}, window {t['window']}, time pooling "
                  f"{t['time_pooling']}, period {meta['period']}; {t['rows']} rows of {t['frames']} frames of real "
                  f"features, {t['feats']}): mean cosine {t['mean_cosine']:.3f} (min {t['min_cosine']:.3f}; "
                  f"after subtracting the mean row {t['mean_cosine_centered']:.3f}).", ""]
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["Vgg16", "Vgg16big"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--period", type=int, default=10)
    p.add_argument("--seconds", type=float, default=60.0, help="audio per measurement")
    p.add_argument("--utt-seconds", type=float, default=10.0)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--note", default="other jobs were sharing the cores" if os.getloadavg()[0] > 0.5 else "idle")
    p.add_argument("--trained-model", default="",
                   help="also measure fast-vs-exact deviation of this trained model dir on --trained-feats")
    p.add_argument("--trained-feats", default="", help="feats.scp of real speech for --trained-model")
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "bench_extract"))
    args = p.parse_args()
    set_threads(args.threads)
    load_before = " ".join(f"{v:.1f}" for v in os.getloadavg())
    peak_before = matmul_flops()
    rows = [bench_model(name, args) for name in args.models]
    peak_after = matmul_flops()
    peak = max(peak_before, peak_after)  # conservative: the better of the two measurements
    for r in rows:
        for mode in ("exact", "fast", "raw_forward"):
            r[mode]["fraction_of_matmul"] = r[mode]["gflop_per_s"] * 1e9 / peak
        print(f"{r['model']}: exact {r['exact']['x_real_time']:.1f}x RT "
              f"({100 * r['exact']['fraction_of_matmul']:.0f} % of matmul), fast {r['fast']['x_real_time']:.1f}x RT, "
              f"raw {r['raw_forward']['windows_per_s']:.0f} windows/s", flush=True)
    meta = {"machine": cpu_name(), "threads": args.threads, "matmul_gflops": peak / 1e9,
            "matmul_gflops_before_after": [peak_before / 1e9, peak_after / 1e9], "load_before": load_before,
            "load_after": " ".join(f"{v:.1f}" for v in os.getloadavg()), "note": args.note,
            "seconds": args.seconds, "utt_seconds": args.utt_seconds, "window": args.window, "period": args.period,
            "batch_size": args.batch_size, "repeats": args.repeats}
    if args.trained_model:
        meta["trained"] = trained_deviation(args)
    write_report(args.out, meta, rows)
    print(f"wrote {args.out}.md")


if __name__ == "__main__":
    main()
