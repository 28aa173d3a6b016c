#!/usr/bin/env python3
"""Energy-gated pooling of unspeech's rows (a crude VAD) against the row mean, on cv_fa.

Each row of an extraction (``ivector_online.scp``) describes the window of ``--window`` frames that starts
at frame ``i * period``.  A window's energy is the mean over its frames of the log of the summed mel
energies (log-sum-exp of the fbank row, the features the model saw); ``speech mean`` pools only the rows
whose window energy is at least the utterance's mean window energy (every row where none is), ``row mean``
pools all (what the cluster step does).  Scored like ``bench/bench_backend_cv.py``: EER of cosine trials
after the step's preparation and ARI of the step's default clustering (automatic HDBSCAN) and of AHC, on
cv_fa ``capped`` (speakers with >= 5 clips, a seeded 20 each; mean over ``--seeds``) and ``uneven``.

    bench/bench_vad_pool.py --clusterer-work /tmp/clusterer \\
        --unspeech "seed 1=/tmp/clusterer/cv/exp/unspeech_cv2" --note "..."

Writes ``<out>.md`` and ``<out>.json`` (default ``bench/results/vad_pool_cv_fa``).
"""
import argparse
import datetime
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)

from bench_backend_cv import cv_subsets, read_rows, score_set  # noqa: E402
from benchinfo import cpu_description, write_results  # noqa: E402
from utils_py.kaldi import datadir  # noqa: E402
from utils_py.kaldi.tables import iter_matrices  # noqa: E402


def frame_energies(feats_scp: str) -> dict:
    """{utt: per-frame log energy}: log-sum-exp of each fbank row (log mel energies)."""
    from scipy.special import logsumexp
    return {key: logsumexp(np.asarray(mat, dtype=np.float64), axis=1) for key, mat in iter_matrices(feats_scp)}


def window_energies(energy: np.ndarray, rows: int, period: int, window: int) -> np.ndarray:
    """Mean frame energy of each row's window (frames ``i*period`` .. ``+window``, clipped to the utterance)."""
    T = len(energy)
    out = np.empty(rows)
    for i in range(rows):
        s = min(i * period, max(T - 1, 0))
        out[i] = energy[s:min(s + window, T)].mean()
    return out


def pooled(rows, energies, keys, period: int, window: int, gated: bool) -> np.ndarray:
    out = []
    for key, M in zip(keys, rows):
        w = np.ones(len(M))
        if gated:
            e = window_energies(energies[key], len(M), period, window)
            w = (e >= e.mean()).astype(np.float64)
            if not w.any():
                w[:] = 1.0
        out.append((M * w[:, None]).sum(axis=0) / w.sum())
    return np.asarray(out, dtype=np.float32)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clusterer-work", default=os.path.join(BENCH, "work", "clustering_methods"),
                   help="--work of bench_clustering_methods.py (cv/data/{train,test} with feats.scp, utt2spk.gold)")
    p.add_argument("--unspeech", nargs="+", required=True,
                   help="NAME=MODEL_DIR of unspeech models with vectors_{train,test} (ivector_online.scp)")
    p.add_argument("--seeds", default="0 1 2 3 4 5 6 7 8 9", help="capped subset seeds")
    p.add_argument("--note", default="", help="machine load etc., for the results file")
    p.add_argument("--out", default=os.path.join(BENCH, "results", "vad_pool_cv_fa"))
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split()]
    data = os.path.join(args.clusterer_work, "cv", "data")
    gold, energies = {}, {}
    for part in ("train", "test"):
        gold.update(datadir.read_table(os.path.join(data, part, "utt2spk.gold")))
        energies.update(frame_energies(os.path.join(data, part, "feats.scp")))
    rows_out = []
    for spec in args.unspeech:
        name, model = spec.split("=", 1)
        with open(os.path.join(model, "config.json")) as f:
            window = int(json.load(f)["window_length"])
        dirs = [os.path.join(model, f"vectors_{p}") for p in ("train", "test")]
        with open(os.path.join(dirs[0], "ivector_period")) as f:
            period = int(f.read())
        keys, rows = read_rows(dirs)
        for pool, gated in (("row mean", False), ("speech mean", True)):
            X = pooled(rows, energies, keys, period, window, gated)
            for variant, seed, idx in cv_subsets(keys, gold, seeds):
                labels = [gold[keys[i]] for i in idx]
                r = score_set(X[idx], labels, "none", seed)
                rows_out.append({"model": name, "pool": pool, "variant": variant, "seed": seed, "eer": r["eer"],
                                 "ari_hdbscan": r["methods"]["hdbscan auto"]["ari"],
                                 "ari_ahc": r["methods"]["ahc"]["ari"]})
                print(f"{name} {pool} {variant} s{seed}: EER {100 * r['eer']:.2f} ARI hdbscan "
                      f"{rows_out[-1]['ari_hdbscan']:.3f} ahc {rows_out[-1]['ari_ahc']:.3f}", flush=True)
    summary = []
    for name in dict.fromkeys(r["model"] for r in rows_out):
        for pool in ("row mean", "speech mean"):
            row = {"model": name, "pool": pool}
            for variant in ("capped", "uneven"):
                rs = [r for r in rows_out if r["model"] == name and r["pool"] == pool and r["variant"] == variant]
                row[variant] = {k: float(np.mean([r[k] for r in rs])) for k in ("eer", "ari_hdbscan", "ari_ahc")}
            summary.append(row)
    lines = ["# Energy-gated pooling (a crude VAD) vs the row mean, cv_fa", "",
             "Made by `bench/bench_vad_pool.py`. " + __doc__.split("\n\n")[0].strip(), "",
             f"Machine: {cpu_description()}. {args.note} Date {datetime.date.today().isoformat()}.", "",
             f"capped: mean over the subset seeds {seeds}; uneven: every clip, once.", "",
             "| model | pool | capped EER % | capped ARI (hdbscan auto) | capped ARI (ahc) | uneven EER % | "
             "uneven ARI (hdbscan auto) | uneven ARI (ahc) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        c, u = s["capped"], s["uneven"]
        lines.append(f"| {s['model']} | {s['pool']} | {100 * c['eer']:.2f} | {c['ari_hdbscan']:.3f} | "
                     f"{c['ari_ahc']:.3f} | {100 * u['eer']:.2f} | {u['ari_hdbscan']:.3f} | {u['ari_ahc']:.3f} |")
    res = {"description": __doc__.split("\n\n")[0].strip(), "machine": cpu_description(), "note": args.note,
           "date": datetime.date.today().isoformat(), "seeds": seeds, "rows": rows_out, "summary": summary}
    write_results(res, args.out, lines)


if __name__ == "__main__":
    main()
