#!/usr/bin/env python3
"""Start-up of an extraction job (issue 17): wall and CPU of a whole
``extract_unspeech.py --task all`` on ONE short utterance and on 20, before and after the
NumPy inference path, and where the time goes (phases, each in a fresh process).

Models: random weights (speed does not depend on them) with the confs' shapes: VggCpu as
conf/train_cv.conf (window 32, fc 512, mixed precision) and Vgg16big as conf/train_tedlium.conf
(window 64, fc 2048, float32); 40-dim features, utterances of 3 s (300 frames), period 10.
"Before" runs the extraction step of git revision ``--before`` (exported with git archive).

    .venv/bin/python bench/bench_startup.py --before 76524ab~1      # writes bench/results/bench_startup.{md,json}
    .venv/bin/python bench/bench_startup.py --reps 1 --out /tmp/x   # after only, quick

Phases (fresh process each): interpreter start + numpy + utils_py imports, tensorflow (+ keras) import,
model build, weight load, first call (trace), compute of the utterances' windows; the NumPy path
has no TensorFlow/Keras phases and its "weight load" includes one probe window per tower.
The crossover (windows at which the Keras path's start-up is paid back by its faster compute) is
derived from the phases and compared with extractor.NUMPY_MAX_FLOPS.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))

import numpy as np  # noqa: E402

from benchinfo import cpu_description  # noqa: E402

MODELS = {
    "VggCpu": {"embedding_transformation": "VggCpu", "window_length": 32, "window_neg_length": 32,
               "fc_size": 512, "mixed_precision": True},
    "Vgg16big": {"embedding_transformation": "Vgg16big", "window_length": 64, "window_neg_length": 64,
                 "fc_size": 2048, "mixed_precision": False},
}
SETS = {"1 utt": 1, "20 utts": 20}
FRAMES = 300

PHASES = r"""
import json, sys, time
START = time.time()
T = [(time.perf_counter(), time.process_time())]
def mark(): T.append((time.perf_counter(), time.process_time()))
import numpy as np
from utils_py.extract import extractor
from utils_py.kaldi import tables
mark()
model_dir, scp, backend = sys.argv[1:4]
if backend == "keras":
    import tensorflow   # imports keras 3 too (tf.keras)
    extractor.set_threads(1)
    mark()
    from utils_py.model.network import build_model, load_weights, read_config
    model = build_model(read_config(model_dir))
    mark()
    model.set_weights(load_weights(model_dir + "/final.weights.npz"))
    mark()
else:
    from utils_py.model.inference import load_numpy_model
    extractor.set_threads(1, "numpy")
    model = load_numpy_model(model_dir)
    mark()
utts = list(tables.iter_matrices(scp))
ex = extractor.Extractor(model, 10)
ex.embed_utterance(utts[0][1][:model.window_length_of("target")])
mark()
rows = sum(len(r) for _, r in ex.extract(utts))
mark()
print(json.dumps({"marks": T, "rows": rows, "start": START}))
"""
PHASE_NAMES = {"keras": ["start + imports (numpy, utils_py)", "tensorflow + keras import", "model build",
                         "weight load", "first call (trace)", "compute", "exit"],
               "numpy": ["start + imports (numpy, utils_py)", "weight load (+ probe)", "first call", "compute",
                         "exit"]}


def timed(cmd, env=None):
    """(wall s, CPU s of the child, stdout, its start time.time()) of a command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, p.stdout, started


def make_inputs(work):
    """Model dirs and data dirs (1 and 20 utterances of FRAMES frames)."""
    from utils_py.kaldi import datadir, tables
    from utils_py.model.network import build_model
    import keras
    keras.utils.set_random_seed(0)
    models = {}
    for name, cfg in MODELS.items():
        models[name] = os.path.join(work, "model_" + name)
        build_model(dict(cfg, feature_dim=40, embedding_size=100)).save(models[name])
    rng = np.random.RandomState(0)
    data = {}
    for label, n in SETS.items():
        d = data[label] = os.path.join(work, f"data{n}")
        os.makedirs(d)
        utts = {f"spk{i % 4}-utt{i:02d}": f"spk{i % 4}" for i in range(n)}
        datadir.write_table(os.path.join(d, "utt2spk"), utts)
        datadir.write_spk2utt(d)
        with tables.MatrixWriter(os.path.join(d, "feats.ark"), os.path.join(d, "feats.scp")) as w:
            for u in sorted(utts):
                w.write(u, rng.randn(FRAMES, 40).astype(np.float32))
    return models, data


def export_revision(rev, work):
    dest = os.path.join(work, "before")
    os.makedirs(dest)
    subprocess.run(f"git -C {REPO} archive {rev} | tar -x -C {dest}", shell=True, check=True)
    return dest


def step_runs(repo, model_dir, data_dir, out, reps):
    """Wall and CPU of ``extract_unspeech.py --task all`` (a fresh out dir per run), per rep."""
    env = dict(os.environ, PYTHONPATH=repo)
    runs = []
    for r in range(reps):
        wall, cpu, _, _ = timed([sys.executable, os.path.join(repo, "steps_unspeech", "extract_unspeech.py"),
                              data_dir, model_dir, f"{out}.{r}"], env)
        runs.append((wall, cpu))
    return runs


def phase_runs(model_dir, scp, backend, reps):
    """Per phase: median (wall, CPU) over ``reps`` fresh processes; the first phase includes the
    interpreter's start (and the CPU of start and exit, which the script cannot split), "exit" the
    wall time from the last mark to the process's end."""
    env = dict(os.environ, PYTHONPATH=REPO)
    per = []
    for _ in range(reps):
        wall, cpu, out, started = timed([sys.executable, "-c", PHASES, model_dir, scp, backend], env)
        res = json.loads(out.strip().splitlines()[-1])
        m = res["marks"]
        d = [(m[i + 1][0] - m[i][0], m[i + 1][1] - m[i][1]) for i in range(len(m) - 1)]
        start = res["start"] - started
        d[0] = (d[0][0] + start, d[0][1] + cpu - (m[-1][1] - m[0][1]))
        d.append((wall - start - (m[-1][0] - m[0][0]), 0.0))
        per.append(d)
    return [(statistics.median(p[i][0] for p in per), statistics.median(p[i][1] for p in per))
            for i in range(len(per[0]))], res["rows"]


def loadavg():
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", default=None, help="git revision to time as 'before' (default: none)")
    p.add_argument("--reps", type=int, default=3, help="runs of each measurement (median reported)")
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "bench_startup"))
    args = p.parse_args()
    from utils_py.extract import extractor
    from utils_py.model.inference import load_numpy_model
    meta = {"machine": cpu_description(), "load_before": loadavg(), "reps": args.reps, "frames": FRAMES,
            "threads": 1, "numpy_max_flops": extractor.NUMPY_MAX_FLOPS, "before": args.before}
    results = {"steps": [], "phases": {}, "crossover": {}}
    with tempfile.TemporaryDirectory(prefix="bench_startup.") as work:
        models, data = make_inputs(work)
        trees = ([("before", export_revision(args.before, work))] if args.before else []) + [("after", REPO)]
        for name, model_dir in models.items():
            flops = load_numpy_model(model_dir).window_flops["target"]
            for label, d in data.items():
                for tree, repo in trees:
                    runs = step_runs(repo, model_dir, d, os.path.join(work, f"out_{tree}_{name}_{SETS[label]}"),
                                     args.reps)
                    windows = SETS[label] * -(-FRAMES // 10)
                    results["steps"].append({
                        "model": name, "set": label, "tree": tree, "windows": windows,
                        "backend": "numpy" if tree == "after" and windows * flops <= extractor.NUMPY_MAX_FLOPS
                        else "keras",
                        "wall_s": statistics.median(r[0] for r in runs), "cpu_s": statistics.median(r[1] for r in runs),
                        "runs": runs})
                    print(results["steps"][-1], flush=True)
            scp = os.path.join(data["20 utts"], "feats.scp")
            ph = {}
            for backend in ("keras", "numpy"):
                times, rows = phase_runs(model_dir, scp, backend, args.reps)
                ph[backend] = {"phases": dict(zip(PHASE_NAMES[backend], times)), "rows": rows}
                print(name, backend, ph[backend], flush=True)
            results["phases"][name] = ph
            k, n = ph["keras"]["phases"], ph["numpy"]["phases"]
            c = results["crossover"][name] = {"window_gflop": flops / 1e9}
            for i, what in ((0, "wall"), (1, "cpu")):
                fixed_k = sum(v[i] for key, v in k.items() if key != "compute")   # start-up and exit
                fixed_n = sum(v[i] for key, v in n.items() if key != "compute")
                per_k, per_n = k["compute"][i] / rows, n["compute"][i] / rows
                cross = (fixed_k - fixed_n) / (per_n - per_k) if per_n > per_k else float("inf")
                c[what] = {"keras_windows_per_s": 1 / per_k, "numpy_windows_per_s": 1 / per_n, "fixed_keras_s": fixed_k,
                           "fixed_numpy_s": fixed_n, "windows": cross, "gflop": cross * flops / 1e9}
            print(name, c, flush=True)
    meta["load_after"] = loadavg()
    with open(args.out + ".json", "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    write_md(args.out + ".md", meta, results)


def write_md(path, meta, results):
    lines = ["# Extraction start-up (bench/bench_startup.py)", "",
             f"Machine: {meta['machine']}, shared with other jobs: load average before/after "
             f"{meta['load_before']} / {meta['load_after']} (so single runs vary; medians of {meta['reps']}).",
             f"Whole `extract_unspeech.py --task all` (fresh process; 1 thread, the step's default), utterances of "
             f"{meta['frames']} frames (3 s), period 10; random-weight models with the confs' shapes. "
             f"Before: revision {meta['before']} (Keras always). After: this tree, which picks NumPy when a job's "
             f"windows x FLOPs per window <= NUMPY_MAX_FLOPS = {meta['numpy_max_flops'] / 1e9:g} GFLOP.", "",
             "| model | input | windows | before wall / CPU s | after wall / CPU s | after uses |",
             "|---|---|---:|---:|---:|---|"]
    steps = results["steps"]
    for s in steps:
        if s["tree"] != "after":
            continue
        b = next((x for x in steps if x["tree"] == "before" and x["model"] == s["model"] and x["set"] == s["set"]),
                 None)
        before = f"{b['wall_s']:.2f} / {b['cpu_s']:.2f}" if b else "-"
        lines.append(f"| {s['model']} | {s['set']} | {s['windows']} | {before} | "
                     f"{s['wall_s']:.2f} / {s['cpu_s']:.2f} | {s['backend']} |")
    lines += ["", "Phases (fresh process each, median wall / CPU s; compute = the 20 utterances' windows):", "",
              "| model | path | " + " | ".join(PHASE_NAMES["keras"]) + " |",
              "|---|---|" + "---:|" * len(PHASE_NAMES["keras"])]
    for name, ph in results["phases"].items():
        for backend in ("keras", "numpy"):
            cells = [ph[backend]["phases"].get(k) for k in PHASE_NAMES["keras"]]
            if backend == "numpy":
                n = ph[backend]["phases"]
                cells = [n[PHASE_NAMES["numpy"][0]], None, None, n["weight load (+ probe)"], n["first call"],
                         n["compute"], n["exit"]]
            lines.append(f"| {name} | {backend} | " + " | ".join(
                "-" if c is None else f"{c[0]:.2f} / {c[1]:.2f}" for c in cells) + " |")
    lines += ["", "The CPU of the interpreter's start and exit is in the first column (exit: wall only). "
              "In this install `import tensorflow` imports Keras 3 as well, so the two are one phase."]
    lines += ["", "Crossover (from the phases): the Keras path's start-up (and exit) minus NumPy's, divided by "
              "the per-window compute NumPy loses; in wall time (this busy machine) and in CPU time:", "",
              "| model | time | GFLOP / window | Keras windows/s | NumPy windows/s | start-up Keras / NumPy s | "
              "crossover windows | crossover GFLOP |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, cross in results["crossover"].items():
        for what in ("wall", "cpu"):
            c = cross[what]
            lines.append(f"| {name} | {what} | {cross['window_gflop']:.3f} | {c['keras_windows_per_s']:.0f} | "
                         f"{c['numpy_windows_per_s']:.0f} | {c['fixed_keras_s']:.2f} / {c['fixed_numpy_s']:.2f} | "
                         f"{c['windows']:.0f} | {c['gflop']:.0f} |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
