#!/usr/bin/env python3
"""Speaker-clustering quality of unspeech utterance vectors against two fbank baselines.

Every kind of vector goes through the SAME code path, ``steps_unspeech/cluster_utts.sh``
(set-mean subtraction, L2 norm, HDBSCAN, scores.json), with the same options:

- ``fbank-mean``: mean of the utterance's 40-dim fbank frames;
- ``fbank-mean+std``: mean and standard deviation (80 dims);
- ``unspeech``: ``utt_vectors.scp`` of ``steps_unspeech/extract_unspeech.sh --speaker-vectors true``
  with a trained model (``--model-dir CORPUS=DIR``; trained first with
  ``steps_unspeech/train_unspeech.sh`` when ``--train-config CORPUS=FILE`` is given
  and DIR has no model). Without a model the unspeech rows are skipped, saying so.

Corpora (prepared with the recipe's own scripts under ``--work``):

- ``fsdd``: ``local/prepare_fsdd.py`` (FSDD, 6 speakers, utterances of >= 10
  concatenated digits); evaluated on train+test together (``all``) and on ``test``;
- ``demo``: ``local/make_demo_corpus.py --size small`` (synthetic espeak-ng voices), ``test``.

    bench/bench_quality.py                                   # baselines on fsdd and demo
    bench/bench_quality.py --model-dir fsdd=egs/tedlium/s5_unspeech/exp/unspeech
    bench/bench_quality.py --corpora fsdd --model-dir fsdd=bench/work/quality/fsdd/model \\
        --train-config fsdd=egs/tedlium/s5_unspeech/conf/train_fsdd.conf

Writes ``<out>.json`` and ``<out>.md``; every cluster dir (scores.json,
embedding_map.png) stays under ``--work``.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from utils_py.kaldi import datadir  # noqa: E402
from utils_py.kaldi.tables import iter_matrices, merge_scps  # noqa: E402
from utils_py.extract.utt_vectors import UTT_VECTORS, write_utt_vectors  # noqa: E402

RECIPE = os.path.join(REPO, "egs", "tedlium", "s5_unspeech")
STEPS = os.path.join(REPO, "steps_unspeech")
FSDD_ROOT = os.path.abspath(os.path.join(REPO, "..", "shared", "data", "fsdd"))
EVAL_SETS = {"fsdd": {"all": ["train", "test"], "test": ["test"]}, "demo": {"test": ["test"]}}
FEATURES = ("fbank-mean", "fbank-mean+std", "unspeech")


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
    e["PATH"] = os.path.dirname(sys.executable) + os.pathsep + e["PATH"]
    e["LC_ALL"] = "C"
    e.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return e


def sh(*cmd, cwd=None):
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env(), capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(map(str, cmd))}\n{p.stdout[-3000:]}"
                         f"\n{p.stderr[-3000:]}")
    return p.stdout


def prepare_corpus(corpus, work, args):
    """Data dirs <work>/data/{train,test} with feats.scp (recipe scripts; skipped when done)."""
    data = os.path.join(work, "data")
    if corpus == "fsdd":
        if not os.path.isdir(os.path.join(args.fsdd_root, "recordings")):
            print(f"SKIP fsdd: FSDD recordings not found at {args.fsdd_root}", flush=True)
            return None
        sh(os.path.join(REPO, "local", "prepare_fsdd.py"), "--wav-dir", os.path.join(work, "db"),
           args.fsdd_root, data)
    else:
        sh(os.path.join(REPO, "local", "make_demo_corpus.py"), "--size", args.demo_size,
           os.path.join(work, "db"), data)
    for part in ("train", "test"):
        if not os.path.isfile(os.path.join(data, part, "feats.scp")):
            sh(os.path.join(STEPS, "make_fbank.sh"), "--nj", args.nj,
               "--fbank-config", os.path.join(RECIPE, "conf", "fbank.conf"),
               os.path.join(data, part), os.path.join(work, "exp", "make_fbank", part), os.path.join(work, "fbank"))
    return data


def fbank_vectors(data, parts, out, with_std):
    """utt_vectors.scp of the per-utterance fbank mean (and std) of the data dirs ``parts``."""
    if os.path.isfile(os.path.join(out, UTT_VECTORS)):
        return out
    keys, rows = [], []
    for part in parts:
        for key, mat in iter_matrices(os.path.join(data, part, "feats.scp")):
            keys.append(key)
            rows.append(np.r_[mat.mean(axis=0), mat.std(axis=0)] if with_std else mat.mean(axis=0))
    write_utt_vectors(out, keys, np.asarray(rows, np.float32))
    return out


def model_ready(model_dir):
    return all(os.path.isfile(os.path.join(model_dir, f)) for f in ("config.json", "final.weights.npz"))


def unspeech_vectors(corpus, data, parts, out, work, args):
    """utt_vectors.scp from extraction with the corpus's model; None (with a message) if there is none."""
    model_dir = args.model_dir.get(corpus)
    if not model_dir:
        print(f"SKIP unspeech rows for {corpus}: no --model-dir {corpus}=DIR given", flush=True)
        return None
    if not model_ready(model_dir):
        config = args.train_config.get(corpus)
        if not config:
            print(f"SKIP unspeech rows for {corpus}: no trained model in {model_dir} (config.json + "
                  f"final.weights.npz) and no --train-config {corpus}=FILE to train one", flush=True)
            return None
        sh(os.path.join(STEPS, "train_unspeech.sh"), "--config", config, os.path.join(data, "train"), model_dir)
    if os.path.isfile(os.path.join(out, UTT_VECTORS)):
        return out
    scps = []
    for part in parts:
        ivec = os.path.join(work, "exp", f"ivectors_{part}")
        sh(os.path.join(STEPS, "extract_unspeech.sh"), "--nj", args.nj, "--speaker-vectors", "true",
           os.path.join(data, part), model_dir, ivec)
        scps.append(os.path.join(ivec, UTT_VECTORS))
    os.makedirs(out, exist_ok=True)
    merge_scps(scps, os.path.join(out, UTT_VECTORS))
    return out


def gold_file(data, parts, path):
    table = {}
    for part in parts:
        d = os.path.join(data, part)
        name = "utt2spk.gold" if os.path.isfile(os.path.join(d, "utt2spk.gold")) else "utt2spk"
        table.update(datadir.read_table(os.path.join(d, name)))
    datadir.write_table(path, table)
    return path


def cluster(vec_dir, gold, out, opts):
    start = time.time()
    sh(os.path.join(STEPS, "cluster_utts.sh"), "--utt2spk", gold, *opts, vec_dir, out)
    with open(os.path.join(out, "scores.json")) as f:
        s = json.load(f)
    s["seconds"] = round(time.time() - start, 1)
    return s


def render(rows, path, note):
    lines = [
        "# bench_quality: speaker clustering of utterance vectors",
        "",
        "Made by `bench/bench_quality.py`: every vector kind through the same `steps_unspeech/cluster_utts.sh` "
        "(set-mean subtraction, L2 norm, HDBSCAN min_cluster_size 5, min_samples 3). ARI/NMI/purity on the "
        "resulting speakers (outliers: `own` = each its own speaker, `nearest` = attached to the nearest "
        "cluster); EER and minDCF (p_target 0.01) on cosine scores of all utterance pairs. `algorithm`: how "
        "HDBSCAN's spanning tree is built, `blas` (ours, the default) or `boruvka_kdtree` (the hdbscan "
        "library's kd-tree Boruvka); ours is an exact minimum spanning tree (tested against hdbscan's exact one), "
        "but mutual-reachability distances have many ties and HDBSCAN's cluster selection depends on how a "
        "tree breaks them, so results on borderline vectors can differ.",
        "",
        "| corpus | set | vectors | dim | algorithm | outliers | utts | gold spk | clusters | outlier utts | ARI | NMI "
        "| purity | EER % | minDCF 0.01 |",
        "|---|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        eer = f"{100 * r['eer']:.2f}" if r.get("eer") is not None else "-"
        dcf = f"{r['min_dcf_p0.01']:.3f}" if r.get("eer") is not None else "-"
        lines.append(f"| {r['corpus']} | {r['set']} | {r['vectors']} | {r['dim']} | {r['algorithm']} | "
                     f"{r['outliers']} | {r['num_utts']} | "
                     f"{r['num_gold_speakers']} | {r['num_clusters']} | {r['num_outliers']} | {r['ari']:.4f} | "
                     f"{r['nmi']:.4f} | {r['purity']:.4f} | {eer} | {dcf} |")
    lines += ["", note, ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def pairs(values, what):
    out = {}
    for v in values or []:
        if "=" not in v:
            raise SystemExit(f"{what} needs CORPUS=VALUE, got {v}")
        k, x = v.split("=", 1)
        out[k] = os.path.abspath(x)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpora", default="fsdd,demo")
    p.add_argument("--model-dir", action="append", help="CORPUS=DIR: trained unspeech model for CORPUS")
    p.add_argument("--train-config", action="append", help="CORPUS=FILE: train the model first if missing")
    p.add_argument("--fsdd-root", default=FSDD_ROOT)
    p.add_argument("--demo-size", default="small")
    p.add_argument("--nj", type=int, default=2)
    p.add_argument("--outliers", default="own,nearest", help="--outliers modes to report")
    p.add_argument("--algorithms", default="blas,boruvka_kdtree", help="--algorithm values to report")
    p.add_argument("--note", default="", help="a line for the results file, e.g. where the models come from")
    p.add_argument("--cluster-opts", default="", help="more cluster_utts.sh options, the same for all vectors")
    p.add_argument("--work", default=os.path.join(REPO, "bench", "work", "quality"))
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "bench_quality"))
    args = p.parse_args()
    args.model_dir = pairs(args.model_dir, "--model-dir")
    args.train_config = pairs(args.train_config, "--train-config")
    rows = []
    for corpus in [c for c in args.corpora.split(",") if c]:
        work = os.path.join(args.work, corpus)
        data = prepare_corpus(corpus, work, args)
        if data is None:
            continue
        for set_name, parts in EVAL_SETS[corpus].items():
            gold = gold_file(data, parts, os.path.join(work, f"gold_{set_name}"))
            for vectors in FEATURES:
                vec_dir = os.path.join(work, "vectors", f"{set_name}_{vectors}")
                if vectors == "unspeech":
                    shutil.rmtree(vec_dir, ignore_errors=True)       # always from the current model
                    got = unspeech_vectors(corpus, data, parts, vec_dir, work, args)
                else:
                    got = fbank_vectors(data, parts, vec_dir, with_std=vectors.endswith("std"))
                if got is None:
                    continue
                for algorithm in [a for a in args.algorithms.split(",") if a]:
                    for outliers in [o for o in args.outliers.split(",") if o]:
                        out = os.path.join(work, "cluster", f"{set_name}_{vectors}_{algorithm}_{outliers}")
                        s = cluster(got, gold, out, ["--outliers", outliers, "--algorithm", algorithm]
                                    + args.cluster_opts.split())
                        s.update(corpus=corpus, set=set_name, vectors=vectors, outliers=outliers, algorithm=algorithm)
                        print(f"{corpus} {set_name} {vectors} {algorithm} {outliers}: ARI {s['ari']:.4f} "
                              f"NMI {s['nmi']:.4f} clusters {s['num_clusters']} outliers {s['num_outliers']} "
                              f"EER {s.get('eer')}", flush=True)
                        rows.append(s)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((x.split(":", 1)[1].strip() for x in cpu.splitlines() if x.startswith("Model name")), "?")
    note = (f"Machine: {os.cpu_count()}-core CPU ({model}), {platform.python_implementation()} "
            f"{platform.python_version()}; unspeech models: "
            + (", ".join(f"{k}={os.path.relpath(v, REPO)}" for k, v in args.model_dir.items()) or "none given") + "."
            + (f"\n\n{args.note}" if args.note else ""))
    with open(args.out + ".json", "w") as f:
        json.dump(rows, f, indent=1)
    render(rows, args.out + ".md", note)


if __name__ == "__main__":
    main()
