#!/usr/bin/env python3
"""Training-step throughput of the unspeech model vs this machine's dense matmul peak.

For each transform (default Vgg16 and Vgg16big) at window 64, batch 32 (= 256
labelled pairs, objective original) and each compute variant (float32 /
mixed bfloat16, oneDNN / XLA), times real training steps on random fbank-like
input and reports pairs/s, the step's FLOPs (counted from the architecture:
3x the forward multiply-adds of both towers, the usual forward + 2 backward
passes) and the achieved FLOP/s as a fraction of the dense matmul FLOP/s
measured in the same run with the same dtype.  Also one tower's inference
speed (windows/s).

    .venv/bin/python bench/bench_train.py                       # all variants, ~5 min on 2 cores
    .venv/bin/python bench/bench_train.py --runs "Vgg16:fp32,bf16;Resnet:bf16" --out /tmp/b.md
"""
from benchinfo import cpu_description  # noqa: E402  (bench/ is sys.path[0])
import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from utils_py.train import loop  # noqa: E402
from utils_py.model.network import MODEL_TRANSFORMS  # noqa: E402

VARIANTS = {  # name -> (mixed_precision, jit_compile)
    "fp32": (False, False),
    "fp32-xla": (False, True),
    "bf16": (True, False),
    "bf16-xla": (True, True),
}


def machine() -> str:
    return f"{cpu_description()}, {platform.system()} {platform.machine()}"

def forward_flops(cfg: dict, length: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of one tower's forward pass on one window of ``length`` frames."""
    kind, stages = MODEL_TRANSFORMS[cfg["embedding_transformation"]]
    t, f, c_in, flops = length, cfg["feature_dim"], 1, 0
    for s, stage in enumerate(stages):
        convs = [stage[1]] * stage[0] if kind == "vgg" else [stage, stage]
        if kind == "resnet":
            if s == 0:
                flops += 2 * t * f * 9 * c_in * stage   # stem
                c_in = stage
            if c_in != stage:
                flops += 2 * t * f * c_in * stage        # 1x1 projection
        for c_out in convs:
            flops += 2 * t * f * 9 * c_in * c_out
            c_in = c_out
        t, f = t // 2, f // 2
    flat = t * f * c_in
    return flops + 2 * flat * cfg["fc_size"] + 2 * cfg["fc_size"] * cfg["embedding_size"]


def matmul_flops_per_second(dtype, n=2048, reps=8) -> float:
    import tensorflow as tf
    a = tf.random.normal((n, n), dtype=tf.float32)
    b = tf.random.normal((n, n), dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    mm = tf.function(lambda x, y: tf.matmul(x, y))
    mm(a, b).numpy()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        mm(a, b).numpy()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def bench_step(transform, window, batch, variant, steps, warmup):
    mixed, jit = VARIANTS[variant]
    cfg = loop.default_options()
    cfg.update(embedding_transformation=transform, window_length=window, window_neg_length=window,
               batch_size=batch, mixed_precision=mixed, jit_compile=jit, feature_dim=40, steps=10 ** 6)
    trainer = loop.Trainer(cfg)
    rng = np.random.default_rng(0)
    n = loop.pairs_per_step(cfg)
    batch_arrays = (rng.normal(10, 3, (n, window, 40)).astype(np.float32),
                    rng.normal(10, 3, (n, window, 40)).astype(np.float32),
                    (np.arange(n) < n // 2).astype(np.float32))
    for _ in range(warmup):
        trainer.step(batch_arrays)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        trainer.step(batch_arrays)
        times.append(time.perf_counter() - t)
    step_time = float(np.median(times))
    step_flops = 3 * n * (forward_flops(cfg, window) + forward_flops(cfg, window))
    x = batch_arrays[0][:256]
    trainer.model.embed(x)
    t = time.perf_counter()
    for _ in range(3):
        trainer.model.embed(x)
    infer = 3 * len(x) / (time.perf_counter() - t)
    return {"transform": transform, "variant": variant, "step_s": step_time, "pairs_s": n / step_time,
            "gflop_step": step_flops / 1e9, "gflops": step_flops / step_time / 1e9, "infer_windows_s": infer}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="Vgg16:" + ",".join(VARIANTS) + ";Vgg16big:fp32,bf16",
                   help="';'-separated transform:variant,variant... (variants: " + ", ".join(VARIANTS) +
                        "; Vgg16big with XLA takes > 5 min per variant on 2 cores)")
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32, help="positive samples (x 8 pairs)")
    p.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--note", default="", help="free text for the results file (e.g. other load)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                 "bench_train.md"))
    args = p.parse_args(argv)
    import tensorflow as tf
    peak = {"fp32": matmul_flops_per_second(tf.float32), "bf16": matmul_flops_per_second(tf.bfloat16)}
    print(f"dense matmul peak: fp32 {peak['fp32'] / 1e9:.1f} GFLOP/s, bf16 {peak['bf16'] / 1e9:.1f} GFLOP/s",
          flush=True)
    rows = []
    for run in args.runs.split(";"):
        transform, variants = run.split(":")
        for variant in variants.split(","):
            r = bench_step(transform, args.window, args.batch_size, variant, args.steps, args.warmup)
            rows.append(r)
            print(f"{transform:9s} {variant:9s} {r['step_s']:.3f} s/step {r['pairs_s']:7.1f} pairs/s "
                  f"{r['gflop_step']:.1f} GFLOP/step {r['gflops']:6.1f} GFLOP/s = "
                  f"{100 * r['gflops'] * 1e9 / peak[variant[:4]]:.0f}% of the {variant[:4]} matmul peak; "
                  f"inference {r['infer_windows_s']:.0f} windows/s", flush=True)
    peak2 = {"fp32": matmul_flops_per_second(tf.float32), "bf16": matmul_flops_per_second(tf.bfloat16)}
    for r in rows:  # ratio against the higher of the two peak measurements: conservative
        r["peak"] = max(peak[r["variant"][:4]], peak2[r["variant"][:4]]) / 1e9
        r["ratio"] = r["gflops"] / r["peak"]
    lines = [
        "# bench_train: unspeech training step vs dense matmul peak",
        "",
        f"Machine: {machine()}; TensorFlow {tf.__version__}, {time.strftime('%Y-%m-%d %H:%M')}.",
        f"Window {args.window}, batch {args.batch_size} positive samples = "
        f"{rows[0]['pairs_s'] * rows[0]['step_s']:.0f} pairs/step (objective original, 2+2 contexts, 4 negatives), "
        f"median of {args.steps} steps after {args.warmup} warm-up.",
        f"Dense matmul (2048x2048, best of 8): fp32 {peak['fp32'] / 1e9:.1f} GFLOP/s, "
        f"bf16 {peak['bf16'] / 1e9:.1f} GFLOP/s at the start; fp32 {peak2['fp32'] / 1e9:.1f}, "
        f"bf16 {peak2['bf16'] / 1e9:.1f} at the end; the ratios use the higher of the two.",
        "FLOPs/step = 3 x the forward FLOPs (2 per multiply-add, counted from the architecture) "
        "of both towers over all pairs.",
        "",
    ]
    if args.note:
        lines += [f"Note: {args.note}", ""]
    lines += ["| transform | variant | s/step | pairs/s | GFLOP/step | GFLOP/s | % of matmul peak | "
              "inference windows/s |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['transform']} | {r['variant']} | {r['step_s']:.3f} | {r['pairs_s']:.1f} | "
                     f"{r['gflop_step']:.1f} | {r['gflops']:.1f} | {100 * r['ratio']:.0f}% (of {r['peak']:.0f}) | "
                     f"{r['infer_windows_s']:.0f} |")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
