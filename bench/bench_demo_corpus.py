#!/usr/bin/env python3
"""Time to make the demo corpus (and FSDD data prep) with local/make_demo_corpus.py.

  bench/bench_demo_corpus.py                          # --sizes small --nj 2
  bench/bench_demo_corpus.py --sizes tiny small medium --out bench/results/bench_demo_corpus

Each size is made from scratch into a temp dir; reported: wall seconds, CPU
seconds of this process and its children (espeak-ng, sox), minutes of audio, and
the load average before the run (other jobs on the machine slow the wall time).
`make demo` needs `small` in about 1.5 min or less on 2 cores.
Writes ``<out>.json`` and ``<out>.md``.
"""
from benchinfo import cpu_description  # noqa: E402  (bench/ is sys.path[0])
import argparse
import json
import os
import resource
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from utils_py.corpora import demo  # noqa: E402
from utils_py.corpora import fsdd  # noqa: E402
from utils_py.log import get_logger  # noqa: E402

FSDD_ROOT = os.path.abspath(os.path.join(REPO, "..", "shared", "data", "fsdd"))


def machine() -> str:
    return cpu_description()

def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn):
    load = os.getloadavg()[0]
    wall, cpu = time.time(), cpu_seconds()
    result = fn()
    return result, {"wall_seconds": round(time.time() - wall, 1), "cpu_seconds": round(cpu_seconds() - cpu, 1),
                    "load_before": round(load, 2)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["small"], choices=sorted(demo.SIZES))
    p.add_argument("--nj", type=int, default=2)
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "bench_demo_corpus"))
    args = p.parse_args()
    log = get_logger("bench_demo_corpus")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            d = os.path.join(tmp, size)
            res, t = timed(lambda: demo.make_corpus(os.path.join(d, "wav"), os.path.join(d, "data"),
                                                           size=size, seed=1, nj=args.nj, logger=log))
            rows.append({"what": f"demo {size}", "speakers": res["speakers"], **t,
                         "train_minutes": round(res["seconds"]["train"] / 60, 1),
                         "test_minutes": round(res["seconds"]["test"] / 60, 1)})
        if os.path.isdir(os.path.join(FSDD_ROOT, "recordings")):
            d = os.path.join(tmp, "fsdd")
            res, t = timed(lambda: fsdd.prepare(FSDD_ROOT, os.path.join(d, "data"), logger=log))
            rows.append({"what": "FSDD prep", "speakers": 6, **t,
                         "train_minutes": round(res["train"]["hours"] * 60, 1),
                         "test_minutes": round(res["test"]["hours"] * 60, 1)})
    report = {"machine": machine(), "nj": args.nj, "date": time.strftime("%Y-%m-%d"), "results": rows}
    md = ["# Demo corpus generation time", "",
          f"Machine: {report['machine']}, --nj {args.nj}, {report['date']}. `load before` is the 1-min load",
          "average when the run started: above ~0.5 other jobs were sharing the cores and the wall time is",
          "longer than on an idle machine.", "",
          "| corpus | speakers | train min | test min | wall s | CPU s | load before |",
          "|---|---|---|---|---|---|---|"]
    md += [f"| {r['what']} | {r['speakers']} | {r['train_minutes']} | {r['test_minutes']} | {r['wall_seconds']} | "
           f"{r['cpu_seconds']} | {r['load_before']} |" for r in rows]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=1)
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
