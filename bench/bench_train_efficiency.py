#!/usr/bin/env python3
"""Quality per CPU-minute: objective original vs inbatch at equal wall-clock budgets.

For each corpus (FSDD: utterances of 10 concatenated digits of one speaker, via
local/prepare_fsdd.py; demo: local/make_demo_corpus.py --size small) and each
objective, trains with the corpus's recipe conf (conf/train_<corpus>.conf)
under growing --max-hours budgets -- each budget resumes the previous one's
checkpoint, so a 15-minute row is the 5-minute run trained on -- and reports
the held-out context accuracy (balanced pair classification, majority 0.5, the
same metric for both objectives), its ROC AUC, steps done, and the clustering
ARI / NMI and the EER of the test set's utterance vectors (mean of the unspeech
rows of an utterance, clustered by the recipe's cluster step with its defaults)
against the true speakers, beside the mean-fbank and mean+std-fbank baselines.

    .venv/bin/python bench/bench_train_efficiency.py --budgets 5,15,30
    .venv/bin/python bench/bench_train_efficiency.py --corpora fsdd --budgets 3 \
        --variants "base=;vgg16=--embedding-transformation Vgg16" --out bench/results/bench_train_ablations.md
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RECIPE = os.path.join(REPO, "egs", "tedlium", "s5_unspeech")
FSDD = os.path.abspath(os.path.join(REPO, "..", "shared", "data", "fsdd"))
# test-set scores of every row (from utils_py.cluster.pipeline.cluster_utts)
SCORE_KEYS = ("ari", "nmi", "eer", "num_clusters", "num_outliers", "num_gold_speakers")


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
    e["PATH"] = os.path.dirname(sys.executable) + os.pathsep + e.get("PATH", "")
    e["LC_ALL"] = "C"
    return e


def sh(cmd, **kw):
    print("+ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True, env=env(), **kw)


def prepare(corpus, work):
    """Data dirs <work>/<corpus>/data/{train,test} with feats.scp (idempotent)."""
    root = os.path.join(work, corpus)
    data = os.path.join(root, "data")
    if not os.path.isfile(os.path.join(data, "test", "feats.scp")):
        if corpus == "fsdd":
            if not os.path.isdir(os.path.join(FSDD, "recordings")):
                sys.exit(f"FSDD not found at {FSDD}")
            sh([os.path.join(REPO, "local", "prepare_fsdd.py"), "--wav-dir", os.path.join(root, "wav"), FSDD, data])
        else:
            sh([os.path.join(REPO, "local", "make_demo_corpus.py"), "--size", "small", os.path.join(root, "wav"), data])
        for part in ("train", "test"):
            sh([os.path.join(REPO, "steps_unspeech", "make_fbank.sh"), "--nj", "2", "--fbank-config",
                os.path.join(RECIPE, "conf", "fbank.conf"), os.path.join(data, part),
                os.path.join(root, "log", part), os.path.join(root, "fbank")])
    return data


def score_vectors(vec_dir, data_dir):
    """Cluster the utterance vectors in ``vec_dir`` as the recipe's cluster step does
    (utils_py.cluster.pipeline.cluster_utts, default options) and score them against the true
    speakers of ``data_dir`` (utt2spk.gold or utt2spk): {"ari", "nmi", "eer", "num_clusters", ...}."""
    from bench_quality import gold_file  # same directory
    from utils_py.cluster import pipeline
    gold = gold_file(os.path.dirname(data_dir), [os.path.basename(data_dir)], os.path.join(vec_dir, "utt2spk.gold"))
    return pipeline.cluster_utts(vec_dir, os.path.join(vec_dir, "cluster"), gold=gold, plot=False)


def unspeech_scores(model, data_dir, out):
    """Scores of the test set's utterance vectors (mean unspeech row, period 10) of ``model``
    (a model dir or a loaded model); the vectors go to ``out``."""
    import numpy as np

    from utils_py.extract import extractor
    from utils_py.kaldi import tables
    from utils_py.model.network import load_model_dir
    from utils_py.extract.utt_vectors import write_utt_vectors
    ex = extractor.Extractor(load_model_dir(model) if isinstance(model, str) else model, period=10)
    feats = os.path.join(data_dir, "feats.scp")
    keys, vecs = [], []
    for key, rows in ex.extract(tables.iter_matrices(feats), feats):
        keys.append(key)
        vecs.append(np.asarray(rows).mean(axis=0))
    write_utt_vectors(out, keys, np.stack(vecs))
    return score_vectors(out, data_dir)


def baseline_rows(corpus, data, work):
    """Mean-fbank and mean+std-fbank utterance vectors of the test set, same clustering and scoring."""
    from bench_quality import fbank_vectors  # same directory
    rows = []
    for name, with_std in (("mean fbank", False), ("mean+std fbank", True)):
        out = os.path.join(work, corpus, "baseline_" + name.replace(" ", "_").replace("+", "_"))
        s = score_vectors(fbank_vectors(data, ["test"], out, with_std), os.path.join(data, "test"))
        rows.append({"corpus": corpus, "variant": name, "options": "", "minutes": None, "step": None,
                     "final_model_step": None, "val_accuracy": None, "val_auc": None, "windows_per_second": None,
                     **{k: s.get(k) for k in SCORE_KEYS}})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budgets", default="5,15,30", help="wall-clock minutes, comma-separated, ascending")
    p.add_argument("--corpora", default="fsdd,demo")
    p.add_argument("--variants", default="original=--objective original;inbatch=--objective inbatch",
                   help="';'-separated name=options runs on top of the corpus conf (ablations: e.g. "
                        "'base=;vgg16=--embedding-transformation Vgg16')")
    p.add_argument("--opts", default="", help="more train_unspeech options for every run")
    p.add_argument("--no-ari", action="store_true", help="skip the clustering of the test set (and the baselines)")
    p.add_argument("--work-dir", default="/tmp/unspeech_bench_efficiency")
    p.add_argument("--title", default="objective original vs inbatch at equal wall-clock budgets")
    p.add_argument("--note", default="", help="free text for the results file (e.g. other load)")
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "bench_train_efficiency.md"))
    p.add_argument("--report-only", action="store_true",
                   help="no training: rewrite --out from its .json and the model dirs in --work-dir")
    args = p.parse_args(argv)
    budgets = [float(b) for b in args.budgets.split(",")]
    variants = [v.split("=", 1) for v in args.variants.split(";") if v.strip()]
    if args.report_only:
        with open(os.path.splitext(args.out)[0] + ".json") as f:
            rows = json.load(f)
        return write_report(args, rows)
    rows = []
    for corpus in args.corpora.split(","):
        data = prepare(corpus, args.work_dir)
        conf = os.path.join(RECIPE, "conf", f"train_{corpus}.conf")
        if not args.no_ari:
            rows += baseline_rows(corpus, data, args.work_dir)
        for name, opts in variants:
            model_dir = os.path.join(args.work_dir, corpus, f"model_{name}")
            for minutes in budgets:
                t = time.time()
                sh([os.path.join(REPO, "steps_unspeech", "train_unspeech.py"), "--config", conf,
                    *shlex.split(opts), *shlex.split(args.opts), "--steps", "100000000",
                    "--max-hours", f"{minutes / 60:.6f}", os.path.join(data, "train"), model_dir])
                with open(os.path.join(model_dir, "metrics.json")) as f:
                    m = json.load(f)
                scores = {} if args.no_ari else unspeech_scores(
                    model_dir, os.path.join(data, "test"), os.path.join(model_dir, f"test_vectors_{minutes:g}min"))
                row = {"corpus": corpus, "variant": name, "options": opts, "minutes": minutes, "step": m["step"],
                       "final_model_step": m.get("final_model_step"), "val_accuracy": m["val_accuracy"],
                       "val_auc": m["val_auc"], "windows_per_second": m["windows_per_second"],
                       **{k: scores.get(k) for k in SCORE_KEYS}, "run_seconds": time.time() - t}
                rows.append(row)
                print(json.dumps(row), flush=True)
    write_report(args, rows)


def fmt(value, spec="{:.3f}"):
    """A table cell: ``spec`` of ``value``, blank for None (rows without that measure)."""
    return "" if value is None else spec.format(value)


def first_reaching(history, threshold):
    """The first history row whose held-out context accuracy reached ``threshold`` (None: never)."""
    return next((h for h in history if h.get("val_accuracy") is not None and h["val_accuracy"] >= threshold), None)


def write_report(args, rows):
    import tensorflow as tf
    from bench_train import machine  # same directory
    lines = [f"# bench_train_efficiency: {args.title}", "",
             f"Machine: {machine()}; TensorFlow {tf.__version__}, {time.strftime('%Y-%m-%d %H:%M')}.",
             "Each corpus trains with its recipe conf (egs/tedlium/s5_unspeech/conf/train_<corpus>.conf) plus "
             "the variant's options, --max-hours = budget (each budget resumes the previous one's checkpoint).",
             "Held-out context accuracy: fixed balanced sample (majority 0.5) of adjacent vs. random pairs from "
             "utterances not trained on, of the final model (--final-model of the conf). "
             "ARI / NMI / EER: test-set utterance vectors (mean unspeech row, period 10; baselines: mean, "
             "mean+std of the fbank frames) through the recipe's cluster step (utils_py.cluster.pipeline.cluster_utts, "
             "default options: set-mean subtraction, L2 norm, HDBSCAN min_cluster_size 5 / min_samples 3, "
             "outliers each their own speaker) vs the true speakers; EER of cosine scores of all test "
             "utterance pairs.", ""]
    if args.note:
        lines += [f"Note: {args.note}", ""]
    if args.opts:
        lines += [f"Extra options of every run: `{args.opts}`", ""]
    lines += ["| corpus | variant | options | budget (min) | steps (final model) | held-out context acc | "
              "val AUC | test ARI | test NMI | test EER % | clusters (outliers) / speakers | tower windows/s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(" | ".join([
            f"| {r['corpus']}", r["variant"], f"`{r['options']}`" if r["options"] else "",
            fmt(r["minutes"], "{:g}"),
            "" if r["step"] is None else f"{r['step']} ({r['final_model_step']})",
            fmt(r["val_accuracy"]), fmt(r["val_auc"]), fmt(r.get("ari")), fmt(r.get("nmi")),
            fmt(None if r.get("eer") is None else 100 * r["eer"], "{:.1f}"),
            "" if r.get("num_clusters") is None else
            f"{r['num_clusters']} ({r['num_outliers']}) / {r['num_gold_speakers']}",
            fmt(r["windows_per_second"], "{:.0f}")]) + " |")
    lines += ["", "Minutes (wall) and steps of training, from the longest run's log, until the held-out context "
                  "accuracy first reached a level (checked every --log-every steps); best accuracy seen. "
                  "Minutes depend on the load of the shared cores, steps do not.", "",
              "| corpus | variant | >= 0.90 min (steps) | >= 0.95 min (steps) | >= 0.98 min (steps) | "
              "best (at min) |", "|---|---|---|---|---|---|"]
    for corpus, name in dict.fromkeys((r["corpus"], r["variant"]) for r in rows if r["step"] is not None):
        with open(os.path.join(args.work_dir, corpus, f"model_{name}", "metrics.json")) as f:
            hist = json.load(f)["history"]
        best = max(hist, key=lambda h: h["val_accuracy"])
        reach = [first_reaching(hist, t) for t in (0.90, 0.95, 0.98)]
        lines.append(f"| {corpus} | {name} | " + " | ".join(
            "never" if h is None else f"{60 * h['elapsed_hours']:.1f} ({h['step']})" for h in reach)
            + f" | {best['val_accuracy']:.3f} ({60 * best['elapsed_hours']:.1f}) |")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(rows, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
