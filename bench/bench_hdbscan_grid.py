#!/usr/bin/env python3
"""How the cluster step's automatic HDBSCAN picks its settings: selection rules side by side.

Every vector set is prepared as the cluster step does (set mean subtracted, L2 norm) and clustered by
HDBSCAN at every point of the former grid min_cluster_size 2 3 5 10 20 40 x min_samples 1 2 3 5 10 20
(min_samples <= min_cluster_size) and at (40, 40); each rule then picks one point by the density-based validity
index (DBCV, ``hdbscan.validity``), no labels:

- ``full grid``: every point (the step's default until issue 17);
- ``mcs >= 3``: the former grid without clusters of 2;
- ``mcs >= 3, ms 1``: min_samples 1 (plain distances, one spanning tree), min_cluster_size 3 5 10 20 40;
- ``mcs >= 3, ms 1 or mcs``: min_cluster_size 3 5 10 20 40, min_samples 1 or equal to min_cluster_size
  (hdbscan's own default), 10 points (the step's default since issue 17);
- ``oracle``: the point of best ARI of the former grid (uses the labels: a ceiling for reference, not a rule).

ARI of the gold speakers vs the clustering, outliers each their own speaker (as the step writes them).
Sets: cv_fa (``--clusterer-work``: its gold speakers; every ``--unspeech NAME=MODEL_DIR`` with
``vectors_{train,test}``, and Kaldi's online i-vectors of ``bench/bench_ivectors_cv.py`` in
``--ivectors-work`` at each UBM size), ``capped`` (speakers with >= 5 clips, a seeded 20 each) for
every subset seed of ``--seeds`` and ``uneven`` (every clip) once; demo and FSDD test sets of
``bench/bench_vs_ivectors.py`` where present (unspeech and Kaldi per-utterance i-vectors).

    bench/bench_hdbscan_grid.py --clusterer-work /tmp/clusterer --ivectors-work /tmp/ivcv \\
        --unspeech "train_cv.conf seed 1=/tmp/clusterer/cv/exp/unspeech_cv2" --note "..."

Writes ``<out>.md`` and ``<out>.json`` (default ``bench/results/hdbscan_auto_grid``).
"""
import argparse
import datetime
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)

from bench_clustering_methods import _concat, capped  # noqa: E402
from benchinfo import cpu_description, write_results  # noqa: E402
from utils_py.cluster import methods, scoring  # noqa: E402
from utils_py.cluster.pipeline import ClusterOptions, hdbscan_labels, prepare_vectors  # noqa: E402
from utils_py.extract.utt_vectors import read_utt_vectors  # noqa: E402
from utils_py.kaldi import datadir  # noqa: E402

OLD_GRID = [(a, b) for a in (2, 3, 5, 10, 20, 40) for b in (1, 2, 3, 5, 10, 20) if b <= a]
GRID = OLD_GRID + [(40, 40)]
RULES = {
    "full grid": lambda p: (p["mcs"], p["ms"]) in OLD_GRID,
    "mcs >= 3": lambda p: p["mcs"] >= 3 and (p["mcs"], p["ms"]) in OLD_GRID,
    "mcs >= 3, ms 1": lambda p: p["mcs"] >= 3 and p["ms"] == 1,
    "mcs >= 3, ms 1 or mcs": lambda p: p["mcs"] >= 3 and p["ms"] in (1, p["mcs"]),
}


def grid_points(X, gold_labels) -> list:
    """Every grid point of ``X`` (raw vectors): settings, DBCV (scored by the step's own
    ``methods.hdbscan_grid``), ARI, clusters, speakers."""
    Xp = prepare_vectors(X)
    opts = ClusterOptions()
    labels_at = {}

    def run(Y, mcs, ms):
        labels_at[mcs, ms] = hdbscan_labels(Y, opts, mcs, ms)[0]
        return labels_at[mcs, ms]
    out = []
    for point in methods.hdbscan_grid(Xp, run, GRID)[1]["grid"]:
        labels = labels_at[point["min_cluster_size"], point["min_samples"]]
        ids = [f"c{lab}" if lab >= 0 else f"o{i}" for i, lab in enumerate(labels)]
        out.append({"mcs": point["min_cluster_size"], "ms": point["min_samples"], "dbcv": point["dbcv"],
                    "clusters": point["clusters"], "speakers": len(set(ids)),
                    "ari": scoring.cluster_scores(gold_labels, ids)["ari"]})
    return out


def pick(points, rule: str) -> dict:
    """The point a rule picks: best DBCV among those it allows (ties: the earlier), or best ARI (oracle)."""
    if rule == "oracle":
        return max((p for p in points if (p["mcs"], p["ms"]) in OLD_GRID), key=lambda p: p["ari"])
    return max((p for p in points if RULES[rule](p)), key=lambda p: p["dbcv"])


def vector_sets(args) -> list:
    """``[(corpus, vectors, keys, X, gold)]`` of every set found."""
    sets = []
    cv = os.path.join(args.clusterer_work, "cv")
    gold = {}
    for part in ("train", "test"):
        path = os.path.join(cv, "data", part, "utt2spk.gold")
        if os.path.isfile(path):
            gold.update(datadir.read_table(path))
    named = [spec.split("=", 1) for spec in args.unspeech]
    for g in args.num_gauss.split():
        named.append((f"Kaldi i-vector UBM {g}", os.path.join(args.ivectors_work, "exp", f"ivectors_ubm{g}")))
    for name, model in named:
        dirs = [os.path.join(model, f"{prefix}_{p}") for p in ("train", "test")
                for prefix in ("vectors", "ivectors") if os.path.isdir(os.path.join(model, f"{prefix}_{p}"))]
        if len(dirs) != 2 or not gold:
            print(f"SKIP {name}: no vectors_/ivectors_{{train,test}} in {model} or no cv_fa gold", flush=True)
            continue
        sets.append(("cv_fa", name, *_concat(dirs), gold))
    for corpus in ("demo", "fsdd"):
        base = os.path.join(BENCH, "work", f"vs_ivectors_{corpus}")
        gold_path = os.path.join(base, "data", "test", "utt2spk.gold")
        if not os.path.isfile(gold_path):
            print(f"SKIP {corpus}: run bench/bench_vs_ivectors.py --corpus {corpus} first", flush=True)
            continue
        for name, sub in (("unspeech", "ivectors/unspeech"), ("Kaldi i-vector", "ivectors/kaldi_per_utt")):
            keys, X, _ = read_utt_vectors(os.path.join(base, sub))
            sets.append((corpus, name, keys, X, datadir.read_table(gold_path)))
    return sets


def run(sets, seeds) -> list:
    rows = []
    for corpus, name, keys, X, gold in sets:
        index = {k: i for i, k in enumerate(keys)}
        subsets = ([("capped", s, capped(keys, gold, 5, 20, s)) for s in seeds] + [("uneven", 0, keys)]
                   if corpus == "cv_fa" else [("all", 0, keys)])
        for variant, seed, ks in subsets:
            points = grid_points(X[[index[k] for k in ks]], [gold[k] for k in ks])
            row = {"corpus": corpus, "variant": variant, "vectors": name, "seed": seed, "utts": len(ks),
                   "gold_speakers": len({gold[k] for k in ks}), "grid": points,
                   "picks": {rule: pick(points, rule) for rule in list(RULES) + ["oracle"]}}
            rows.append(row)
            print(f"{corpus} {variant} s{seed} {name}: " + " | ".join(
                f"{r} {p['ari']:.3f} ({p['mcs']},{p['ms']})" for r, p in row["picks"].items()), flush=True)
    return rows


def summarise(rows) -> list:
    groups = {}
    for r in rows:
        groups.setdefault((r["corpus"], r["variant"], r["vectors"]), []).append(r)
    out = []
    for (corpus, variant, vectors), rs in groups.items():
        s = {"corpus": corpus, "variant": variant, "vectors": vectors, "sets": len(rs), "utts": rs[0]["utts"],
             "gold_speakers": rs[0]["gold_speakers"]}
        for rule in list(RULES) + ["oracle"]:
            aris = [r["picks"][rule]["ari"] for r in rs]
            s[rule] = {"ari": float(np.mean(aris)), "sd": float(np.std(aris)), "min": float(np.min(aris)),
                       "speakers": float(np.mean([r["picks"][rule]["speakers"] for r in rs])),
                       "settings": sorted({f"{r['picks'][rule]['mcs']},{r['picks'][rule]['ms']}" for r in rs})}
        out.append(s)
    return out


def render(res) -> list:
    rules = list(RULES) + ["oracle"]
    out = ["# Automatic HDBSCAN: which grid point the cluster step picks", "",
           "Made by `bench/bench_hdbscan_grid.py`. " + res["description"], "",
           f"Machine: {res['machine']}. {res['note']} Date {res['date']}.", "",
           f"ARI (mean ± sd over the capped subset seeds {res['seeds']}, worst in brackets; other sets: one); "
           "speakers found below it. Bold: the best rule (oracle aside).", "",
           "| set | vectors | utts | gold spk | " + " | ".join(rules) + " |",
           "|---|---|---:|---:|" + "---:|" * len(rules)]
    for s in res["summary"]:
        best = max(s[r]["ari"] for r in RULES)
        cells = []
        for r in rules:
            v = s[r]
            text = f"{v['ari']:.3f}" + (f" ± {v['sd']:.3f} ({v['min']:.3f})" if s["sets"] > 1 else "")
            text = f"**{text}**" if r != "oracle" and v["ari"] == best else text
            cells.append(f"{text}<br>{v['speakers']:.0f} spk")
        out.append(f"| {s['corpus']} {s['variant']} | {s['vectors']} | {s['utts']} | {s['gold_speakers']} | "
                   + " | ".join(cells) + " |")
    out += ["", "## Settings picked (min_cluster_size,min_samples)", "",
            "| set | vectors | " + " | ".join(rules) + " |", "|---|---|" + "---|" * len(rules)]
    for s in res["summary"]:
        out.append(f"| {s['corpus']} {s['variant']} | {s['vectors']} | "
                   + " | ".join(" ".join(s[r]["settings"]) for r in rules) + " |")
    return out + ["", "## Notes", ""] + [f"- {line}" for line in res["notes"]]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clusterer-work", default=os.path.join(BENCH, "work", "clustering_methods"),
                   help="--work of bench_clustering_methods.py (cv/data/*/utt2spk.gold)")
    p.add_argument("--ivectors-work", default=os.path.join(BENCH, "work", "ivectors_cv"),
                   help="--work of bench_ivectors_cv.py (exp/ivectors_ubm<G>)")
    p.add_argument("--unspeech", nargs="*", default=[],
                   help="NAME=MODEL_DIR of unspeech models trained on cv_fa train, with vectors_{train,test}")
    p.add_argument("--num-gauss", default="128 256 512", help="Kaldi UBM sizes to include")
    p.add_argument("--seeds", default="0 1 2 3 4 5 6 7 8 9", help="capped subset seeds")
    p.add_argument("--note", default="", help="machine load etc., for the results file")
    p.add_argument("--out", default=os.path.join(BENCH, "results", "hdbscan_auto_grid"))
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split()]
    rows = run(vector_sets(args), seeds)
    notes = [
        "No labels in any rule but the oracle; DBCV of each clustering on the prepared vectors (euclidean), "
        "as `utils_py.cluster.methods.hdbscan_grid` computes it; a clustering of fewer than 2 clusters scores -1.",
        "cv_fa unspeech models: trained on cv_fa train without labels (see their names); Kaldi: 100-dim online "
        "i-vectors of bench_ivectors_cv.py, mean of the online rows; demo / FSDD: the test sets of "
        "bench_vs_ivectors.py.",
        "How the rule was found: the grid of unspeech models A and B and of Kaldi UBM 128 (capped seeds 0-9, "
        "uneven) showed DBCV's pairs and its 2-3-cluster picks; 'mcs >= 3, ms 1' then failed the uneven set of "
        "models C and D; 'ms 1 or mcs' was chosen on A-D; models E and F (trained afterwards), Kaldi UBM 256 / 512, "
        "demo and FSDD are its checks. On F (the conf before issue 17) it is worse than the former grid: there "
        "pairs were the best clusters.",
    ]
    res = {"description": __doc__.split("\n\n")[0].strip(), "machine": cpu_description(), "note": args.note,
           "date": datetime.date.today().isoformat(), "seeds": seeds, "grid": GRID, "rows": rows,
           "summary": summarise(rows), "notes": notes}
    write_results(res, args.out, render(res))


if __name__ == "__main__":
    main()
