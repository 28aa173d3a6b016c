#!/usr/bin/env python3
"""Speed and ARI of utterance clustering on synthetic 100-d utterance vectors.

Data: a Gaussian mixture with known labels -- unit-norm random centres (one per
speaker), lognormal speaker sizes, isotropic noise of norm ``--noise`` (so
clusters span all dims: the worst case for kd-trees and PCA).

For every size it times ``utils_py.cluster.pipeline.cluster_vectors`` (the code of
``steps_unspeech/cluster_utts.sh``) with the step's defaults (two-stage above
``--max-exact``), the exact HDBSCAN for sizes in ``--exact-sizes``, hdbscan's
own kd-tree algorithm for sizes in ``--library-sizes``, PCA variants for sizes
in ``--pca-sizes``, and the whole step (vectors on disk -> utt2spk,
scores.json, embedding_map.png) for sizes in ``--step-sizes``.

    bench/bench_cluster.py                                     # 10k, 100k (+ exact), 1M
    bench/bench_cluster.py --sizes 10000 --exact-sizes 10000 --pca-sizes 10000

Results are appended case by case to ``<out>.json`` and rendered as
``<out>.md``; a case already in the json (same size/method/settings) is not rerun.
"""
from benchinfo import cpu_description  # noqa: E402  (bench/ is sys.path[0])
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from utils_py.kaldi import datadir  # noqa: E402
from utils_py.cluster.pipeline import ClusterOptions, cluster_vectors  # noqa: E402
from utils_py.cluster.scoring import cluster_scores  # noqa: E402
from utils_py.extract.utt_vectors import write_utt_vectors  # noqa: E402


FIXED = dict(min_cluster_size=5, min_samples=3)   # HDBSCAN as measured here (the step's default is automatic)


def gaussian_mixture(n, k, dim=100, noise=1.0, seed=0):
    """``(X float32 (n, dim), labels)``: k unit-norm centres, lognormal sizes, noise of norm ~``noise``."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = rng.lognormal(0.0, 0.5, k)
    labels = rng.choice(k, size=n, p=weights / weights.sum())
    X = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        lab = labels[s:s + 100_000]
        X[s:s + 100_000] = centres[lab] + rng.standard_normal((len(lab), dim)) * (noise / np.sqrt(dim))
    return X, labels


def clusters_for(n):
    """Speakers in the synthetic set of n utterances: 100 at 10k, 500 at 100k, 2000 at 1M."""
    return {10_000: 100, 100_000: 500, 1_000_000: 2000}.get(n, max(10, int(100 * (n / 10_000) ** 0.6)))


def machine():
    return f"{cpu_description()}, {platform.python_implementation()} {platform.python_version()}"

def load():
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def run_library(X, labels, opts):
    start = time.time()
    result = cluster_vectors(X, opts)
    seconds = time.time() - start
    s = cluster_scores(labels, np.where(result.labels >= 0, result.labels, -1 - np.arange(len(labels))))
    return {"seconds": round(seconds, 1), "ari": round(s["ari"], 4), "nmi": round(s["nmi"], 4),
            "clusters_found": result.num_clusters, "outliers": result.num_outliers,
            "sample_size": result.sample_size}


def run_step(X, labels, work, opts, threads):
    """The whole step via cluster_utts.sh: vectors on disk -> utt2spk + scores.json + picture."""
    keys = [f"utt{i:07d}" for i in range(len(X))]
    vec = os.path.join(work, "vectors")
    write_utt_vectors(vec, keys, X)
    datadir.write_table(os.path.join(work, "gold"), {k: f"spk{lab:05d}" for k, lab in zip(keys, labels)})
    out = os.path.join(work, "cluster")
    if os.path.exists(os.path.join(out, ".done")):
        os.remove(os.path.join(out, ".done"))
    env = dict(os.environ, PYTHONPATH=REPO, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    start = time.time()
    p = subprocess.run([os.path.join(REPO, "steps_unspeech", "cluster_utts.sh"), "--num-threads", str(threads),
                        "--max-exact", str(opts.max_exact), "--min-cluster-size", str(opts.min_cluster_size),
                        "--min-samples", str(opts.min_samples), "--utt2spk", os.path.join(work, "gold"), vec, out],
                       env=env, capture_output=True, text=True)
    seconds = time.time() - start
    if p.returncode != 0:
        raise SystemExit(f"step failed: {p.stderr}")
    with open(os.path.join(out, "scores.json")) as f:
        s = json.load(f)
    return {"seconds": round(seconds, 1), "ari": round(s["ari"], 4), "nmi": round(s["nmi"], 4),
            "clusters_found": s["num_clusters"], "outliers": s["num_outliers"], "sample_size": s["sample_size"],
            "eer": round(s["eer"], 4)}


def render(results, path):
    lines = [
        "# bench_cluster: HDBSCAN utterance clustering on synthetic 100-d vectors",
        "",
        "Made by `bench/bench_cluster.py` (`utils_py.cluster.pipeline.cluster_vectors`, the code of "
        "`steps_unspeech/cluster_utts.sh`). Data: Gaussian mixture, unit-norm random centres, lognormal "
        "speaker sizes, isotropic noise; ARI against the true labels (outliers count as singletons).",
        "HDBSCAN min_cluster_size 5, min_samples 3; spanning tree by `--algorithm blas` (the default) unless "
        "the method says `hdbscan boruvka_kdtree` (the hdbscan library's own). "
        "`two-stage N`: HDBSCAN on a seeded sample of N, the rest to the nearest centroid (`--max-exact N`); "
        "`exact`: HDBSCAN on all (`--max-exact 0`); `pca D`: `--pca-dim D`; "
        "`step`: the whole `cluster_utts.sh` run from vectors on disk (read, cluster, score, EER trials, picture).",
        "",
        "| utterances | speakers | method | threads | seconds | ARI | NMI | clusters found | outliers | machine "
        "| load avg before/after |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['n']:,} | {r['k']:,} | {r['method']} | {r['threads']} | {r['seconds']} | {r['ari']:.4f} | "
                     f"{r['nmi']:.4f} | {r['clusters_found']} | {r['outliers']} | {r['machine']} | "
                     f"{r['load_before']} / {r['load_after']} |")
    for r in results:
        exact = next((e for e in results if e["n"] == r["n"] and e["method"] == "exact"), None)
        if exact is not None and r["method"].startswith("two-stage"):
            lines.append(f"\n{r['n']:,} utterances, {r['method']} vs exact: ARI {r['ari']:.4f} vs {exact['ari']:.4f} "
                         f"(difference {exact['ari'] - r['ari']:+.4f}), {r['seconds']} s vs {exact['seconds']} s.")
    lines += ["", "Load average: other engineers' jobs were sharing the 2 cores while these ran "
              "(load above 2 means the benchmark got less than the cores); the times are upper bounds.", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--exact-sizes", default="10000,100000", help="also run exact HDBSCAN at these sizes")
    p.add_argument("--other-max-exact", default="20000",
                   help="at --exact-sizes, also two-stage with these sample sizes")
    p.add_argument("--library-sizes", default="10000",
                   help="also run hdbscan's own boruvka_kdtree (--algorithm boruvka_kdtree) at these sizes")
    p.add_argument("--pca-sizes", default="10000", help="also run --pca-dims variants at these sizes")
    p.add_argument("--pca-dims", default="20,50")
    p.add_argument("--step-sizes", default="1000000", help="also time the whole cluster_utts.sh step")
    p.add_argument("--max-exact", type=int, default=ClusterOptions().max_exact)
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--noise", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "bench_cluster"))
    p.add_argument("--work", default=os.path.join(REPO, "bench", "work", "cluster"))
    args = p.parse_args()
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    results = []
    if os.path.isfile(args.out + ".json"):
        with open(args.out + ".json") as f:
            results = json.load(f)
    for n in ints(args.sizes):
        k = clusters_for(n)
        X = labels = None
        base = ClusterOptions(**FIXED, num_threads=args.threads, max_exact=args.max_exact, seed=args.seed)
        cases = [("two-stage %d" % args.max_exact if n > args.max_exact else "exact", base, "lib")]
        if n in ints(args.exact_sizes) and n > args.max_exact:
            cases.append(("exact", ClusterOptions(**FIXED, num_threads=args.threads, max_exact=0), "lib"))
        if n in ints(args.exact_sizes):
            for m in ints(args.other_max_exact):
                if n > m and m != args.max_exact:
                    cases.append((f"two-stage {m}", ClusterOptions(**FIXED, num_threads=args.threads, max_exact=m,
                                                                   seed=args.seed), "lib"))
        if n in ints(args.library_sizes):
            cases.append(("exact, hdbscan boruvka_kdtree", ClusterOptions(
                **FIXED, num_threads=args.threads, max_exact=0, algorithm="boruvka_kdtree"), "lib"))
        if n in ints(args.pca_sizes):
            for d in ints(args.pca_dims):
                cases.append((f"pca {d}, " + cases[0][0], ClusterOptions(**FIXED, num_threads=args.threads,
                              max_exact=args.max_exact, pca_dim=d), "lib"))
        if n in ints(args.step_sizes):
            cases.append(("step, " + cases[0][0], base, "step"))
        for method, opts, how in cases:
            key = dict(n=n, k=k, method=method, threads=args.threads, noise=args.noise, dim=args.dim)
            if any(all(r.get(a) == b for a, b in key.items()) for r in results):
                print(f"have {key}", flush=True)
                continue
            print(f"running {key} ...", flush=True)
            if X is None:
                X, labels = gaussian_mixture(n, k, args.dim, args.noise, args.seed)
            before = load()
            if how == "lib":
                row = run_library(X, labels, opts)
            else:
                row = run_step(X, labels, os.path.join(args.work, str(n)), opts, args.threads)
            row.update(key, machine=machine(), load_before=before, load_after=load())
            print(row, flush=True)
            results.append(row)
            with open(args.out + ".json", "w") as f:
                json.dump(results, f, indent=1)
            render(results, args.out + ".md")
    render(results, args.out + ".md")


if __name__ == "__main__":
    main()
