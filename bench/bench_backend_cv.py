#!/usr/bin/env python3
"""Utterance pooling and label-free back-ends of the cluster step on cv_fa, unspeech and Kaldi i-vectors alike.

Issue 17, part "quality". Vectors (nothing is trained or extracted here):

- unspeech: ``--clusterer-work/cv/exp/unspeech/vectors_{train,test}`` of ``bench/bench_clustering_methods.py``
  (trained on cv_fa train without labels), its ``ivector_online.scp`` rows;
- Kaldi online i-vectors of ``bench/bench_ivectors_cv.py`` (``--ivectors-work/exp/ivectors_ubm<G>``,
  trained without labels): the mean of the online rows and the last row;
- demo / FSDD: the test sets of ``bench/bench_vs_ivectors.py`` (``bench/work/vs_ivectors_<corpus>``), skipped
  where absent.

1. Pooling of unspeech's rows into one vector per utterance (``POOLS``): the row mean (the cluster step's
   input today) against the mean of L2-normalised rows, mean + std, median, a 20 % trimmed mean, the mean without
   the quarter of rows of lowest norm, the norm-weighted mean. Scored with no back-end.
2. Back-ends on the row means (``BACKENDS``), all fitted on the very vectors clustered, no labels:
   ``none``; ``lda`` (the step's ``--backend lda``: LDA on the clusters of a first pass of the same method);
   for reference, computed here: ``lda 3+`` (classes of >= 3 utterances), ``lda (ahc pass)`` (first pass
   AHC), ``wccn``, ``pca whiten``; and s-norm (adaptive, top-50 cohort of the set itself) of the cosine
   scores, EER only.
Scores: EER of cosine trials on the vectors clustered (1M seeded pairs if more), ARI / NMI of the step's
default ``hdbscan auto`` and of ``ahc``, speakers found (outliers each their own); ``capped`` (speakers with
>= 5 clips, a seeded 20 each) for subset seeds ``--seeds`` (mean and spread; seed 0 is the subset of
bench_ivectors_cv), ``uneven`` (every clip) once. CPU time: the clustering call (back-end included), one thread.

    bench/bench_backend_cv.py --clusterer-work /tmp/clusterer --ivectors-work /tmp/ivcv --note "..."

Writes ``<out>.md`` and ``<out>.json`` (default ``bench/results/backend_cv_fa``).
"""
import argparse
import datetime
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)

from bench_clustering_methods import capped  # noqa: E402
from benchinfo import cpu_description, write_results  # noqa: E402
from utils_py.cluster import backend, scoring  # noqa: E402
from utils_py.cluster.pipeline import ClusterOptions, cluster_vectors, method_labels, prepare_vectors  # noqa: E402
from utils_py.kaldi import datadir  # noqa: E402
from utils_py.kaldi.tables import iter_matrices  # noqa: E402

METHODS = {"hdbscan auto": "hdbscan", "ahc": "ahc"}
SNORM_COHORT = 50


def _l2(M):
    return M / np.maximum(np.linalg.norm(M, axis=1, keepdims=True), 1e-12)


def _trimmed(M, cut=0.2):
    k = int(cut * len(M))
    return np.sort(M, axis=0)[k:len(M) - k].mean(axis=0)


def _loud(M, drop=0.25):
    norms = np.linalg.norm(M, axis=1)
    return M[norms >= np.quantile(norms, drop)].mean(axis=0)


POOLS = {
    "row mean": lambda M: M.mean(axis=0),
    "mean of L2 rows": lambda M: _l2(M).mean(axis=0),
    "mean + std": lambda M: np.concatenate([M.mean(axis=0), M.std(axis=0)]),
    "median": lambda M: np.median(M, axis=0),
    "trimmed mean 20%": _trimmed,
    "mean w/o low-norm 25%": _loud,
    "norm-weighted mean": lambda M: (M * np.linalg.norm(M, axis=1, keepdims=True)).sum(axis=0)
    / max(np.linalg.norm(M, axis=1).sum(), 1e-12),
}


def _first_pass_lda(Xp, method, min_members=backend.MIN_MEMBERS, full=False):
    """Reference LDA / WCCN (full=True) fitted on a first pass of ``method``."""
    labels = method_labels(Xp, ClusterOptions(method=method))[0]
    if full:        # WCCN: whiten the within-class scatter, every dim kept
        keep = labels >= 0
        keep[keep] = np.bincount(labels[keep])[labels[keep]] >= min_members
        within = backend.class_scatter(Xp[keep], labels[keep])[0]
        within += backend.SHRINK * np.trace(within) / len(within) * np.eye(len(within))
        return Xp @ np.linalg.cholesky(np.linalg.inv(within))
    W = backend.lda_projection(Xp, labels, min_members)[0]
    return Xp if W is None else Xp @ W


def _whiten(Xp):
    Y = Xp - Xp.mean(axis=0)
    _, s, Vt = np.linalg.svd(Y, full_matrices=False)
    return Y @ Vt.T / np.sqrt(s ** 2 / len(Y) + 1e-6 * s[0] ** 2 / len(Y))


# name -> (step --backend, reference transform of the prepared vectors or None); the step's own first
BACKENDS = {
    "none": ("none", None),
    "lda": ("lda", None),
    "lda 3+": ("none", lambda Xp, m: _first_pass_lda(Xp, m, 3)),
    "lda (ahc pass)": ("none", lambda Xp, m: _first_pass_lda(Xp, "ahc")),
    "wccn": ("none", lambda Xp, m: _first_pass_lda(Xp, m, full=True)),
    "pca whiten": ("none", lambda Xp, m: _whiten(Xp)),
}


def snorm_eer(X, labels, seed: int, cohort: int = SNORM_COHORT):
    """EER of adaptive s-norm cosine scores; each utterance's cohort: its ``cohort`` best other scores in the set."""
    Xp = prepare_vectors(X)
    S = Xp.astype(np.float64) @ Xp.T.astype(np.float64)
    np.fill_diagonal(S, -np.inf)
    k = min(cohort, len(S) - 1)
    top = -np.partition(-S, k - 1, axis=1)[:, :k]
    mu, sd = top.mean(axis=1), top.std(axis=1) + 1e-9
    i, j = scoring.sample_trials(labels, 1_000_000, seed)
    codes = np.unique(np.asarray(labels), return_inverse=True)[1]
    scores = 0.5 * ((S[i, j] - mu[i]) / sd[i] + (S[i, j] - mu[j]) / sd[j])
    return scoring.eer(scores, codes[i] == codes[j])[0]


def score_set(X, labels, name: str, seed: int, snorm: bool = False) -> dict:
    """EER and every method's clustering of ``X`` with back-end ``name``."""
    step_backend, transform = BACKENDS[name]
    out = {"methods": {}}
    for label, method in METHODS.items():
        start = time.process_time()
        Y = X if transform is None else transform(prepare_vectors(X), method).astype(np.float32)
        result = cluster_vectors(Y, ClusterOptions(method=method, backend=step_backend, seed=seed))
        cpu = time.process_time() - start
        ids = [f"c{lab}" if lab >= 0 else f"o{i}" for i, lab in enumerate(result.labels)]
        s = scoring.cluster_scores(labels, ids)
        out["methods"][label] = {"ari": s["ari"], "nmi": s["nmi"], "speakers": len(set(ids)), "cpu_s": cpu,
                                 "backend": result.choice.get("backend")}
        if label == "hdbscan auto":   # the EER of the vectors the default clustering used
            out["eer"] = scoring.trial_scores(result.vectors, labels, 1_000_000, seed)["eer"]
            if snorm:
                out["eer_snorm"] = snorm_eer(result.vectors, labels, seed)
    return out


def read_rows(dirs) -> tuple:
    """``(keys, [rows per utterance])`` of the ``ivector_online.scp`` of ``dirs``."""
    keys, rows = [], []
    for d in dirs:
        for key, mat in iter_matrices(os.path.join(d, "ivector_online.scp")):
            keys.append(key)
            rows.append(np.asarray(mat, dtype=np.float32))
    return keys, rows


def cv_subsets(keys, gold, seeds) -> list:
    """``[(variant, seed, row indices)]``: capped per seed, then uneven."""
    index = {k: i for i, k in enumerate(keys)}
    return ([("capped", s, [index[k] for k in capped(keys, gold, 5, 20, s)]) for s in seeds]
            + [("uneven", 0, list(range(len(keys))))])


def run_grid(sets, gold_by_corpus, seeds, pools, backends, log=print) -> list:
    """Every (vectors, pool, back-end) on every subset: one row each."""
    out = []
    for corpus, name, keys, rows in sets:
        gold = gold_by_corpus[corpus]
        subsets = cv_subsets(keys, gold, seeds) if corpus == "cv_fa" else [("all", 0, list(range(len(keys))))]
        for pool in pools:
            if pool == "last row":
                X = np.stack([M[-1] for M in rows])
            else:
                X = np.stack([POOLS[pool](M) for M in rows]).astype(np.float32)
            for variant, seed, idx in subsets:
                labels = [gold[keys[i]] for i in idx]
                for b in backends if pool in ("row mean", "last row") else ["none"]:
                    r = score_set(X[idx], labels, b, seed, snorm=b in ("none", "lda"))
                    r.update(corpus=corpus, vectors=name, pool=pool, backend=b, variant=variant, seed=seed,
                             utts=len(idx), gold_speakers=len(set(labels)))
                    out.append(r)
                    m = r["methods"]
                    log(f"{corpus} {variant} s{seed} {name} | {pool} | {b}: EER {100 * r['eer']:.2f} "
                        f"ARI hdbscan {m['hdbscan auto']['ari']:.3f} ({m['hdbscan auto']['speakers']}) "
                        f"ahc {m['ahc']['ari']:.3f} ({m['ahc']['speakers']}) "
                        f"cpu {m['hdbscan auto']['cpu_s']:.1f}+{m['ahc']['cpu_s']:.1f} s")
    return out


def summarise(rows) -> list:
    """Mean / spread over capped seeds per (corpus, variant, vectors, pool, back-end)."""
    groups = {}
    for r in rows:
        groups.setdefault((r["corpus"], r["variant"], r["vectors"], r["pool"], r["backend"]), []).append(r)
    out = []
    for (corpus, variant, vectors, pool, b), rs in groups.items():
        def stat(get):
            vals = [get(r) for r in rs]
            vals = [v for v in vals if v is not None]
            return (float(np.mean(vals)), float(np.std(vals))) if vals else (None, None)
        row = {"corpus": corpus, "variant": variant, "vectors": vectors, "pool": pool, "backend": b, "n": len(rs),
               "utts": rs[0]["utts"], "eer": stat(lambda r: r["eer"]), "eer_snorm": stat(lambda r: r.get("eer_snorm")),
               "seed0": next((r for r in rs if r["seed"] == 0), rs[0])}
        for label in METHODS:
            row[label] = {k: stat(lambda r: r["methods"][label][k]) for k in ("ari", "nmi", "speakers", "cpu_s")}
        out.append(row)
    return out


def _pm(pair, scale=1.0, spec=".3f"):
    mean, sd = pair
    if mean is None:
        return "-"
    return format(scale * mean, spec) + (f" ± {format(scale * sd, spec)}" if sd else "")


def render(res) -> list:
    """The results as markdown lines."""
    out = ["# Pooling and label-free back-ends of the cluster step (cv_fa; unspeech and Kaldi i-vectors alike)", "",
           "Made by `bench/bench_backend_cv.py`. " + res["description"], "",
           f"Machine: {res['machine']}. {res['note']} Date {res['date']}.", ""]
    head = ("| corpus | vectors | pool | back-end | EER % | EER % s-norm | ARI hdbscan auto | speakers | "
            "ARI ahc | speakers | CPU s (hdbscan auto) |")
    rule = "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
    for title, keep in (("Back-ends (row means; Kaldi also last row)", lambda s: s["pool"] in ("row mean", "last row")),
                        ("Pooling of unspeech's rows (no back-end)",
                         lambda s: s["backend"] == "none" and s["corpus"] == "cv_fa" and s["vectors"] == "unspeech")):
        out += [f"## {title}", "", f"capped: mean ± spread (std) over the subset seeds {res['seeds']}; uneven, "
                "demo, fsdd: one set.", "",
                head, rule]
        for s in res["summary"]:
            if not keep(s):
                continue
            h, a = s["hdbscan auto"], s["ahc"]
            out.append(f"| {s['corpus']} {s['variant']} | {s['vectors']} | {s['pool']} | {s['backend']} | "
                       f"{_pm(s['eer'], 100, '.2f')} | {_pm(s['eer_snorm'], 100, '.2f')} | {_pm(h['ari'])} | "
                       f"{_pm(h['speakers'], 1, '.0f')} | {_pm(a['ari'])} | {_pm(a['speakers'], 1, '.0f')} | "
                       f"{_pm(h['cpu_s'], 1, '.1f')} |")
        out.append("")
    return out + ["## Notes", ""] + [f"- {line}" for line in res["notes"]]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clusterer-work", default=os.path.join(BENCH, "work", "clustering_methods"),
                   help="--work of bench_clustering_methods.py (cv/data, cv/exp/unspeech)")
    p.add_argument("--ivectors-work", default=os.path.join(BENCH, "work", "ivectors_cv"),
                   help="--work of bench_ivectors_cv.py (exp/ivectors_ubm<G>)")
    p.add_argument("--num-gauss", default="128 256", help="Kaldi UBM sizes to include (their online-row means)")
    p.add_argument("--last-row-gauss", default="128", help="Kaldi UBM sizes whose last online row is included too")
    p.add_argument("--only", choices=("all", "unspeech", "kaldi"), default="all",
                   help="vectors to run (unspeech: cv_fa unspeech, demo, fsdd; kaldi: cv_fa Kaldi); for parallel runs")
    p.add_argument("--merge", nargs="*", default=[], help="write <out> from these earlier --out .json files instead")
    p.add_argument("--seeds", default="0 1 2 3 4", help="capped subset seeds")
    p.add_argument("--pools", default=" | ".join(POOLS), help="pools, separated by ' | '")
    p.add_argument("--backends", default=" | ".join(BACKENDS), help="back-ends, separated by ' | '")
    p.add_argument("--note", default="", help="machine load etc., for the results file")
    p.add_argument("--out", default=os.path.join(BENCH, "results", "backend_cv_fa"))
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split()]
    if args.merge:
        parts = []
        for path in args.merge:
            with open(path) as f:
                parts.append(json.load(f))
        res = dict(parts[0], rows=[r for part in parts for r in part["rows"]])
        res["summary"] = summarise(res["rows"])
        return write_results(res, args.out, render(res))
    pools, backends = args.pools.split(" | "), args.backends.split(" | ")

    cv = os.path.join(args.clusterer_work, "cv")
    sets, gold = [], {}
    unspeech = os.path.join(cv, "exp", "unspeech")
    if not os.path.isfile(os.path.join(unspeech, "vectors_test", "ivector_online.scp")):
        raise SystemExit(f"ERROR (bench_backend_cv): {unspeech}/vectors_test missing: run "
                         f"bench/bench_clustering_methods.py --work {args.clusterer_work} first")
    gold["cv_fa"] = {}
    for part in ("train", "test"):
        gold["cv_fa"].update(datadir.read_table(os.path.join(cv, "data", part, "utt2spk.gold")))
    sets.append(("cv_fa", "unspeech", *read_rows([os.path.join(unspeech, f"vectors_{p}") for p in ("train", "test")])))
    for g in args.num_gauss.split() if args.only != "unspeech" else []:
        dirs = [os.path.join(args.ivectors_work, "exp", f"ivectors_ubm{g}", f"ivectors_{p}") for p in ("train", "test")]
        if not all(os.path.isfile(os.path.join(d, "ivector_online.scp")) for d in dirs):
            print(f"SKIP Kaldi UBM {g}: no i-vectors in {dirs[0]} (run bench/bench_ivectors_cv.py)", flush=True)
            continue
        sets.append(("cv_fa", f"Kaldi i-vector UBM {g}", *read_rows(dirs)))
    for corpus in ("demo", "fsdd") if args.only != "kaldi" else ():
        base = os.path.join(BENCH, "work", f"vs_ivectors_{corpus}")
        gold_path = os.path.join(base, "data", "test", "utt2spk.gold")
        if not os.path.isfile(gold_path):
            print(f"SKIP {corpus}: run bench/bench_vs_ivectors.py --corpus {corpus} first ({gold_path})", flush=True)
            continue
        gold[corpus] = datadir.read_table(gold_path)
        for name, sub in (("unspeech", "ivectors/unspeech"), ("Kaldi i-vector", "ivectors/kaldi_per_utt")):
            sets.append((corpus, name, *read_rows([os.path.join(base, sub)])))

    rows = []
    for s in sets:   # pooling: unspeech on cv_fa; Kaldi on cv_fa: the row mean and the last online row
        cv_unspeech, cv_kaldi = s[0] == "cv_fa" and s[1] == "unspeech", s[0] == "cv_fa" and s[1] != "unspeech"
        if args.only == "kaldi" and cv_unspeech:
            continue
        last = cv_kaldi and s[1].split()[-1] in args.last_row_gauss.split()
        rows += run_grid([s], gold, seeds if s[0] == "cv_fa" else [0],
                         [q for q in pools if cv_unspeech or q == "row mean"] + (["last row"] if last else []),
                         backends, log=lambda line: print(line, flush=True))
    notes = [
        "No speaker labels anywhere but the scoring: every back-end is fitted on the vectors it is applied to "
        "(the set being clustered), from a first clustering pass of the same method (lda, lda 3+, wccn) or of "
        "ahc (lda (ahc pass)), clusters of >= 2 (lda 3+: >= 3) utterances, outliers out.",
        "lda is the cluster step's --backend lda, run through cluster_vectors; the other back-ends are computed "
        "here on the prepared vectors and then clustered by the step with --backend none (reference only).",
        "EER: cosine trials on the vectors the default clustering (hdbscan auto) used, after its back-end; "
        f"s-norm: adaptive symmetric score normalisation, cohort the {SNORM_COHORT} best other scores of each "
        "utterance in the set itself (EER only, not used by the clustering).",
        "ahc columns: the back-end's first pass is ahc too (lda (ahc pass) is then the same as lda).",
        "CPU s: process time of the clustering call (first pass + back-end + clustering), one BLAS thread.",
        "unspeech and Kaldi vectors: those of bench/results/vs_ivectors_cv_fa.md (seed 0 capped subset and "
        "uneven are the same sets).",
    ]
    res = {"description": __doc__.split("\n\n")[0].strip(), "machine": cpu_description(), "note": args.note,
           "date": datetime.date.today().isoformat(), "seeds": seeds, "rows": rows, "summary": summarise(rows),
           "notes": notes}
    write_results(res, args.out, render(res))


if __name__ == "__main__":
    main()
