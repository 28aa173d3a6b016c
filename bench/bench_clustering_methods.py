#!/usr/bin/env python3
"""Clustering methods side by side, each with its default settings (no per-corpus tuning).

Methods (``utils_py.cluster.pipeline.ClusterOptions(method=...)``): HDBSCAN with the fixed
``--min-cluster-size`` 3 / 5 / 10 (``--min-samples 3``, the former default), HDBSCAN with
both settings automatic (grid, DBCV), spectral (NME eigengap) and AHC (no-label threshold).
Every vector set is prepared as the cluster step does (set mean subtracted, L2 norm) and
scored against the gold speakers: ARI, NMI, clusters (+ outliers, each its own speaker) vs
speakers, EER of cosine same/different trials, clustering time (wall, one thread).

Vector sets:

- ``cv_fa`` (Common Voice Persian, ``--cv-root``, all utterances of train + test): unspeech
  trained in-domain at a fixed budget (``--train-config``, ``--max-hours`` of training wall
  time on this machine), fbank mean and mean+std. Two variants: ``capped`` (speakers with
  >= 5 clips, each capped at a seeded 20) and ``uneven`` (every speaker, every clip).
  The steps (data prep, fbank, training, extraction) run in ``--work/cv`` and are skipped
  when done.
- ``demo`` and ``fsdd``: the test-set vectors of ``bench/bench_vs_ivectors.py``'s work dirs
  (``bench/work/vs_ivectors_<corpus>``): unspeech, fbank mean, mean+std, and Kaldi online
  i-vectors per utterance (mean of the rows, and the last row); skipped where absent.

    bench/bench_clustering_methods.py --note "2 shared cores, other jobs running"

Writes ``<out>.md`` and ``<out>.json`` (default ``bench/results/bench_clustering_methods``).
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)

from bench_quality import fbank_vectors  # noqa: E402
from benchinfo import cpu_description  # noqa: E402
from utils_py.cluster import scoring  # noqa: E402
from utils_py.cluster.pipeline import ClusterOptions, cluster_vectors, prepare_vectors, speaker_ids  # noqa: E402
from utils_py.extract.utt_vectors import read_utt_vectors, write_utt_vectors  # noqa: E402
from utils_py.kaldi import datadir  # noqa: E402

STEPS = os.path.join(REPO, "steps_unspeech")
RECIPE_CONF = os.path.join(REPO, "egs", "tedlium", "s5_unspeech", "conf")
METHODS = [  # (label, options); the fixed HDBSCAN rows are the baselines of the issue
    ("hdbscan mcs 3", dict(method="hdbscan", min_cluster_size=3, min_samples=3)),
    ("hdbscan mcs 5", dict(method="hdbscan", min_cluster_size=5, min_samples=3)),
    ("hdbscan mcs 10", dict(method="hdbscan", min_cluster_size=10, min_samples=3)),
    ("hdbscan auto", dict(method="hdbscan")),
    ("spectral", dict(method="spectral")),
    ("ahc", dict(method="ahc")),
]
VS_IVECTORS = {  # name -> path under bench/work/vs_ivectors_<corpus>
    "unspeech": "ivectors/unspeech",
    "fbank mean": "vectors/fbank_mean",
    "fbank mean+std": "vectors/fbank_mean_std",
    "Kaldi i-vector (online mean)": "ivectors/kaldi_per_utt",
    "Kaldi i-vector (last row)": "vectors/kaldi_per_utt_last",
}


def sh(*cmd):
    """Run a step script with this Python's environment first on PATH (the steps import utils_py)."""
    print("+ " + " ".join(cmd), flush=True)
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    subprocess.run(cmd, check=True, env=env)


def cv_vectors(args) -> dict:
    """{name: (keys, X)} of all cv_fa utterances (train + test), and the gold utt2spk dict."""
    work = os.path.join(args.work, "cv")
    data, model = os.path.join(work, "data"), os.path.join(work, "exp", "unspeech")
    sh(sys.executable, os.path.join(REPO, "local", "prepare_common_voice.py"), args.cv_root, data)
    for part in ("train", "test"):
        if not os.path.isfile(os.path.join(data, part, "feats.scp")):
            sh(os.path.join(STEPS, "make_fbank.sh"), "--nj", "2", "--fbank-config",
               os.path.join(RECIPE_CONF, "fbank.conf"), os.path.join(data, part),
               os.path.join(work, "log", f"fbank_{part}"), os.path.join(work, "fbank"))
    sh(os.path.join(STEPS, "train_unspeech.sh"), "--config", args.train_config, "--max-hours", str(args.max_hours),
       os.path.join(data, "train"), model)
    sets = {}
    for part in ("train", "test"):
        out = os.path.join(model, f"vectors_{part}")
        if not os.path.isfile(os.path.join(out, "utt_vectors.scp")):
            sh(os.path.join(STEPS, "extract_unspeech.sh"), "--nj", "2", "--speaker-vectors", "true",
               os.path.join(data, part), model, out)
        sets.setdefault("unspeech", []).append(out)
    sets["fbank mean"] = [fbank_vectors(data, ["train", "test"], os.path.join(work, "fbank_mean"), with_std=False)]
    sets["fbank mean+std"] = [fbank_vectors(data, ["train", "test"], os.path.join(work, "fbank_mean_std"),
                                            with_std=True)]
    gold = {}
    for part in ("train", "test"):
        gold.update(datadir.read_table(os.path.join(data, part, "utt2spk.gold")))
    with open(os.path.join(model, "metrics.json")) as f:
        metrics = json.load(f)
    training = {"config": os.path.relpath(args.train_config, REPO), "max_hours": args.max_hours,
                "steps": metrics.get("step"), "val_accuracy": metrics.get("val_accuracy"),
                "elapsed_hours": metrics.get("elapsed_hours")}
    return {name: _concat(dirs) for name, dirs in sets.items()}, gold, training


def _concat(dirs):
    keys, mats = [], []
    for d in dirs:
        k, X, _ = read_utt_vectors(d)
        keys += k
        mats.append(X)
    return keys, np.concatenate(mats)


def capped(keys, gold, min_clips: int, cap: int, seed: int) -> list:
    """Utterances of speakers with >= min_clips clips, at most ``cap`` each (seeded)."""
    by_spk = {}
    for k in sorted(keys):
        by_spk.setdefault(gold[k], []).append(k)
    rng = np.random.default_rng(seed)
    keep = []
    for spk in sorted(by_spk):
        utts = by_spk[spk]
        if len(utts) >= min_clips:
            keep += list(rng.choice(utts, min(cap, len(utts)), replace=False))
    return keep


def evaluate(keys, X, gold, seed: int) -> dict:
    """Every method on one vector set: {label: scores}, plus the set's EER."""
    labels = [gold[k] for k in keys]
    trials = scoring.trial_scores(prepare_vectors(X), labels, 1_000_000, seed)
    rows = {}
    for label, kw in METHODS:
        start = time.time()
        result = cluster_vectors(X, ClusterOptions(seed=seed, **kw))
        seconds = time.time() - start
        spk = speaker_ids(keys, result.labels)
        s = scoring.cluster_scores(labels, [spk[k] for k in keys])
        rows[label] = {"ari": s["ari"], "nmi": s["nmi"], "clusters": result.num_clusters,
                       "outliers": result.num_outliers, "speakers": len(set(spk.values())),
                       "seconds": seconds, "choice": result.choice, "sample_size": result.sample_size}
        print(f"   {label:16s} ARI {s['ari']:.4f} NMI {s['nmi']:.4f} clusters {result.num_clusters} "
              f"(+{result.num_outliers} outliers) {seconds:.1f} s", flush=True)
    return {"utts": len(keys), "gold_speakers": len(set(labels)), "dim": int(X.shape[1]),
            "eer": trials.get("eer"), "methods": rows}


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def render(res, path):
    labels = [m for m, _ in METHODS]
    out = [f"# Clustering methods, default settings: {', '.join(labels)}", "",
           "Made by `bench/bench_clustering_methods.py`. " + res["description"], "",
           f"Machine: {res['machine']}. {res['note']} Date {res['date']}.", "",
           "## ARI (best per row in bold; speakers found / gold speakers below)", "",
           "| corpus | vectors | utts | gold spk | EER % | " + " | ".join(labels) + " |",
           "|---|---|---:|---:|---:|" + "---:|" * len(labels)]
    for s in res["sets"]:
        best = max(m["ari"] for m in s["methods"].values())
        cells = [(f"**{m['ari']:.3f}**" if m["ari"] == best else f"{m['ari']:.3f}")
                 + f" ({m['speakers']})" for m in (s["methods"][lab] for lab in labels)]
        out.append(f"| {s['corpus']} | {s['vectors']} | {s['utts']} | {s['gold_speakers']} | "
                   f"{fmt(s['eer'] and 100 * s['eer'], '.2f')} | " + " | ".join(cells) + " |")
    out += ["", "## NMI, clusters + outliers, time", "",
            "| corpus | vectors | method | NMI | clusters | outliers | speakers / gold | s | choice |",
            "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for s in res["sets"]:
        for lab in labels:
            m = s["methods"][lab]
            out.append(f"| {s['corpus']} | {s['vectors']} | {lab} | {m['nmi']:.3f} | {m['clusters']} | "
                       f"{m['outliers']} | {m['speakers']} / {s['gold_speakers']} | {m['seconds']:.1f} | "
                       f"{choice_cell(m['choice'])} |")
    out += ["", "## Notes", ""] + [f"- {line}" for line in res["notes"]]
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def choice_cell(c: dict) -> str:
    if "threshold" in c:
        return f"threshold {c['threshold']:.3f}"
    if "count" in c:
        return f"k {c['count']}, p {c['neighbours']}"
    if "dbcv" in c:
        return f"mcs {c['min_cluster_size']}, ms {c['min_samples']} (DBCV {c['dbcv']:.3f})"
    return ""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cv-root", default=os.path.join(os.path.dirname(REPO), "shared", "data", "cv_fa"))
    p.add_argument("--train-config", default=os.path.join(RECIPE_CONF, "train_cv.conf"))
    p.add_argument("--max-hours", type=float, default=0.2, help="unspeech training budget on cv_fa (wall hours)")
    p.add_argument("--work", default=os.path.join(BENCH, "work", "clustering_methods"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--note", default="", help="machine load etc., for the results file")
    p.add_argument("--out", default=os.path.join(BENCH, "results", "bench_clustering_methods"))
    args = p.parse_args(argv)

    jobs = []       # (corpus, vectors, keys, X, gold)
    training = None
    if os.path.isdir(args.cv_root):
        vectors, gold, training = cv_vectors(args)
        for name, (keys, X) in vectors.items():
            index = {k: i for i, k in enumerate(keys)}
            keep = capped(keys, gold, 5, 20, args.seed)
            jobs.append(("cv_fa capped", name, keep, X[[index[k] for k in keep]], gold))
            jobs.append(("cv_fa uneven", name, keys, X, gold))
    else:
        print(f"SKIP cv_fa: no Common Voice release at {args.cv_root}", flush=True)
    for corpus in ("demo", "fsdd"):
        base = os.path.join(BENCH, "work", f"vs_ivectors_{corpus}")
        gold_path = os.path.join(base, "data", "test", "utt2spk.gold")
        if not os.path.isfile(gold_path):
            print(f"SKIP {corpus}: run bench/bench_vs_ivectors.py --corpus {corpus} first ({gold_path})")
            continue
        gold = datadir.read_table(gold_path)
        for name, sub in VS_IVECTORS.items():
            if os.path.isdir(os.path.join(base, sub)):
                keys, X, _ = read_utt_vectors(os.path.join(base, sub))
                jobs.append((corpus, name, keys, X, gold))
    jobs.sort(key=lambda j: (not j[0].startswith("cv_fa"), j[0], j[1]))

    sets = []
    for corpus, name, keys, X, gold in jobs:
        print(f"== {corpus} / {name}: {len(keys)} utterances", flush=True)
        sets.append({"corpus": corpus, "vectors": name, **evaluate(keys, X, gold, args.seed)})

    uneven = [s for s in sets if s["corpus"] == "cv_fa uneven"]
    notes = [
        "Clusters: found by the method; outliers (HDBSCAN's -1) are each their own speaker, as in the "
        "cluster step, so `speakers` = clusters + outliers. Time: the clustering alone (prepared vectors in, "
        "labels out), one BLAS thread, on a shared machine (other engineers' jobs running).",
        "EER: cosine scores of all utterance pairs (1M seeded if more), the same for every method of a row.",
        "cv_fa: all utterances of train + test (42 speakers, clip counts "
        "960 806 65 64 50 20 ... 5 5 4 2 2 2 1 1 1 1); `capped`: speakers with >= 5 clips, each capped at a "
        "seeded 20; `uneven`: every clip. unspeech on cv_fa: trained on cv_fa train (no labels) with "
        f"{training['config'] if training else '-'}, capped at {args.max_hours} h of training wall time: "
        f"{training and training['steps']} steps, held-out context accuracy "
        f"{fmt(training and training['val_accuracy'], '.3f')}. Kaldi i-vectors on cv_fa: bench_ivectors_cv.py.",
        "demo / fsdd: test sets of bench/bench_vs_ivectors.py (Kaldi i-vectors extracted per utterance).",
    ]
    res = {"description": __doc__.split("\n\n")[0].strip() + " " + (
        "HDBSCAN mcs N: --min-cluster-size N --min-samples 3 (mcs 5 was the step's default); hdbscan auto: "
        "the step's default (both 0: chosen by DBCV from a grid, the grid of issue 17: hdbscan_auto_grid.md); "
        "spectral and ahc: their automatic count / threshold."),
        "machine": cpu_description(), "note": args.note,
        "date": datetime.date.today().isoformat(), "training": training, "sets": sets, "notes": notes,
        "winner_uneven": _winner(uneven)}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(res, f, indent=1)
    render(res, args.out + ".md")
    print(f"wrote {args.out}.md and .json")


def _winner(sets):
    """Method with the best mean ARI over ``sets`` (None if none)."""
    if not sets:
        return None
    labels = [m for m, _ in METHODS]
    mean = {lab: float(np.mean([s["methods"][lab]["ari"] for s in sets])) for lab in labels}
    return {"method": max(mean, key=mean.get), "mean_ari": mean}


if __name__ == "__main__":
    main()
