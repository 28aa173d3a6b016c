#!/usr/bin/env python3
"""Kaldi's online i-vectors (UBM 128 / 256 / 512) vs unspeech on cv_fa, all unsupervised in-domain.

The cv_fa part of issue 17, on the work dir of ``bench/bench_clustering_methods.py``
(``--clusterer-work``: its ``cv/data/{train,test}`` and the unspeech model trained there on
cv_fa train without labels, with its vectors ``cv/exp/unspeech/vectors_{train,test}``):

1. Hires MFCC (``conf/mfcc_hires.conf``, 16 kHz) copies of ``data/{train,test}`` in
   ``--work/data/*_hires`` with EVERY UTTERANCE ITS OWN SPEAKER (``utt2spk`` utt -> utt), so
   no speaker label reaches training (online CMVN) or extraction.
2. Per ``--num-gauss`` G: ``local/run_kaldi_ivectors.sh --num-gauss G`` (Kaldi's PCA,
   ``train_diag_ubm.sh``, ``train_ivector_extractor.sh``) trained on all of train, timed
   (wall, CPU of the children); then the same script extracts Kaldi's online i-vectors of
   train and test (each utterance its own speaker), timed separately. The PCA transform is
   made once (first G, its time in that row) and linked for the others.
3. Vectors per utterance: Kaldi's online mean (mean of the online rows, as the cluster step
   reads an online-ivector dir) and the last online row; unspeech's utterance means, of the
   model of that bench or of every ``--unspeech NAME=MODEL_DIR`` (trained on cv_fa train without
   labels, with ``vectors_{train,test}``). Scored with ``bench_clustering_methods.evaluate``
   (EER of cosine trials, ARI / NMI of its clustering methods, ``hdbscan auto`` being the
   cluster step's default) on the two cv_fa variants of that bench (``capped``: speakers with
   >= 5 clips capped at a seeded 20, for every subset seed of ``--seeds``: mean and spread;
   ``uneven``: all).

    export KALDI_ROOT=/opt/kaldi
    bench/bench_ivectors_cv.py --clusterer-work /tmp/clusterer --work /tmp/ivcv --note "..."

Writes ``<out>.md`` and ``<out>.json`` (default ``bench/results/vs_ivectors_cv_fa``).
Steps whose outputs exist in ``--work`` are kept (delete them to redo); their times are then
those the run that did them stored in ``exp/ivectors_ubm<G>/bench_times.json`` (missing
without it), and the notes say so.
"""
import argparse
import datetime
import json
import os
import shlex
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)

from bench_clustering_methods import METHODS, _concat, capped, evaluate, fmt  # noqa: E402
from bench_vs_ivectors import Runner, copy_data_dir, last_row_vectors  # noqa: E402
from benchinfo import cpu_description  # noqa: E402
from utils_py.kaldi import datadir  # noqa: E402

RECIPE = os.path.join(REPO, "egs", "tedlium", "s5_unspeech")
DEFAULT_METHOD = "hdbscan auto"
TIMES = "bench_times.json"   # in each exp/ivectors_ubm<G>: the times of the run that trained / extracted


def kaldi_env(kaldi_root: str) -> dict:
    env = dict(os.environ, KALDI_ROOT=kaldi_root)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def bash(runner, name, script, cwd, timed=False):
    """``script`` in bash in ``cwd`` (the scratch recipe dir) after its path.sh and cmd.sh."""
    return runner.run(name, ["bash", "-c", f"set -e; . ./path.sh; . ./cmd.sh; {script}"], cwd, timed)


def scratch_recipe(work: str, kaldi_root: str):
    """``work`` as a recipe dir: links to Kaldi's steps/utils and to the recipe's local, conf, path.sh, cmd.sh."""
    os.makedirs(work, exist_ok=True)
    links = {"steps": os.path.join(kaldi_root, "egs", "wsj", "s5", "steps"),
             "utils": os.path.join(kaldi_root, "egs", "wsj", "s5", "utils"),
             **{n: os.path.join(RECIPE, n) for n in ("local", "steps_unspeech", "conf", "path.sh", "cmd.sh")}}
    for name, target in links.items():
        if not os.path.lexists(os.path.join(work, name)):
            os.symlink(os.path.realpath(target), os.path.join(work, name))


def hires_data(runner, src_data: str, base: str, work: str, nj: int):
    """``work/data/{train,test}_hires``: per-utterance speakers, hires MFCC (kept when done)."""
    for part in ("train", "test"):
        dst = os.path.join(work, "data", f"{part}_hires")
        if os.path.isfile(os.path.join(dst, "cmvn.scp")) and not os.path.exists(os.path.join(dst, "text")):
            continue
        copy_data_dir(os.path.join(src_data, part), dst, base, per_utt_speakers=True)
        for name in ("feats.scp", "text"):  # fbank (MFCC replaces it); Persian text Kaldi's validator rejects
            os.remove(os.path.join(dst, name))
        bash(runner, f"mfcc_{part}", f"steps/make_mfcc.sh --nj {nj} --cmd \"$train_cmd\" --mfcc-config "
             f"conf/mfcc_hires.conf data/{part}_hires exp/make_mfcc/{part} mfcc && "
             f"steps/compute_cmvn_stats.sh data/{part}_hires exp/make_mfcc/{part} mfcc", work)


def kaldi_ivectors(runner, work: str, gauss: int, dim: int, nj: int, pca_from) -> dict:
    """Train (timed) and extract (timed) Kaldi's online i-vectors with a ``gauss`` UBM."""
    exp = os.path.join(work, "exp", f"ivectors_ubm{gauss}")
    os.makedirs(exp, exist_ok=True)
    if pca_from and not os.path.lexists(os.path.join(exp, "pca_transform")):
        os.symlink(pca_from, os.path.join(exp, "pca_transform"))
    base = (f"local/run_kaldi_ivectors.sh --nj {nj} --train-set train --test-sets test --data-suffix _hires "
            f"--num-gauss {gauss} --ivector-dim {dim}")
    times_path = os.path.join(exp, TIMES)          # times of the run that did each step
    stored = {}
    if os.path.isfile(times_path):
        with open(times_path) as f:
            stored = json.load(f)
    row = {"num_gauss": gauss, "ivector_dim": dim, "dir": exp, "train": stored.get("train"),
           "extract": stored.get("extract")}
    if not os.path.isfile(os.path.join(exp, "extractor", "final.ie")):
        row["train"] = bash(runner, f"train_ubm{gauss}", f"{base} --speakers '' {shlex.quote(exp)}", work, True)
    if not all(os.path.isfile(os.path.join(exp, f"ivectors_{p}", "ivector_online.scp")) for p in ("train", "test")):
        row["extract"] = bash(runner, f"extract_ubm{gauss}", f"{base} --speakers original {shlex.quote(exp)}",
                              work, True)
    row["times_stored"] = [k for k in ("train", "extract") if k in stored and row[k] is stored[k]]
    with open(times_path, "w") as f:
        json.dump({k: row[k] for k in ("train", "extract") if row[k]}, f, indent=1)
    dirs = [os.path.join(exp, f"ivectors_{p}") for p in ("train", "test")]
    for d in dirs:
        last_row_vectors(d, os.path.join(d, "last_row"))
    row["sets"] = {f"Kaldi i-vector UBM {gauss} (online mean)": dirs,
                   f"Kaldi i-vector UBM {gauss} (last row)": [os.path.join(d, "last_row") for d in dirs]}
    return row


def pooled(corpus, name, runs) -> dict:
    """One table row from the ``evaluate`` results of one or more subsets: means, with spreads (std)."""
    row = {"corpus": corpus, "vectors": name, "subsets": len(runs), "utts": runs[0]["utts"],
           "gold_speakers": runs[0]["gold_speakers"], "eer": float(np.mean([r["eer"] for r in runs])),
           "eer_sd": float(np.std([r["eer"] for r in runs])), "methods": {}, "per_subset": runs}
    for label, _ in METHODS:
        ms = [r["methods"][label] for r in runs]
        row["methods"][label] = {k: float(np.mean([m[k] for m in ms])) for k in ("ari", "nmi", "speakers")}
        row["methods"][label].update(ari_sd=float(np.std([m["ari"] for m in ms])),
                                     ari_min=float(np.min([m["ari"] for m in ms])))
    return row


def _pm(mean, sd, spec):
    return format(mean, spec) + (f" ± {format(sd, spec)}" if sd else "")


def render(res, path):
    labels = [m for m, _ in METHODS]
    out = ["# Kaldi online i-vectors (UBM 128 / 256 / 512) vs unspeech on cv_fa, unsupervised in-domain", "",
           "Made by `bench/bench_ivectors_cv.py`. " + res["description"], "",
           f"Machine: {res['machine']}. {res['note']} Date {res['date']}.", "",
           f"## EER and the cluster step's default clustering ({DEFAULT_METHOD})", "",
           f"capped: mean ± spread (std) over the subset seeds {res['seeds']} (worst ARI in brackets); uneven: "
           "every clip, once.", "",
           "| corpus | vectors | utts | gold spk | EER % | ARI | NMI | speakers found |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    for s in res["sets"]:
        m = s["methods"][DEFAULT_METHOD]
        worst = f" ({m['ari_min']:.3f})" if s["subsets"] > 1 else ""
        out.append(f"| {s['corpus']} | {s['vectors']} | {s['utts']} | {s['gold_speakers']} | "
                   f"{_pm(100 * s['eer'], 100 * s['eer_sd'], '.2f')} | {_pm(m['ari'], m['ari_sd'], '.3f')}{worst} | "
                   f"{m['nmi']:.3f} | {m['speakers']:.0f} |")
    for g in res["missing"]:
        out.append(f"| cv_fa | Kaldi i-vector UBM {g} | | | not run (time) | | | |")
    out += ["", "## ARI of every clustering method (speakers found in brackets)", "",
            "| corpus | vectors | " + " | ".join(labels) + " |", "|---|---|" + "---:|" * len(labels)]
    for s in res["sets"]:
        cells = [f"{m['ari']:.3f} ({m['speakers']:.0f})" for m in (s["methods"][lab] for lab in labels)]
        out.append(f"| {s['corpus']} | {s['vectors']} | " + " | ".join(cells) + " |")
    out += ["", "## Training and extraction time (Kaldi, 2 jobs)", "",
            "| UBM | train wall s | train CPU s | extract wall s | extract CPU s | extract CPU ms / audio s |",
            "|---:|---:|---:|---:|---:|---:|"]
    for k in res["kaldi"]:
        t, e = k["train"] or {}, k["extract"] or {}
        per = e.get("cpu_s") and 1000 * e["cpu_s"] / res["audio_seconds"]
        out.append(f"| {k['num_gauss']} | {fmt(t.get('wall_s'), '.0f')} | {fmt(t.get('cpu_s'), '.0f')} | "
                   f"{fmt(e.get('wall_s'), '.0f')} | {fmt(e.get('cpu_s'), '.0f')} | {fmt(per, '.2f')} |")
    out += ["", "## Notes", ""] + [f"- {line}" for line in res["notes"]]
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clusterer-work", default=os.path.join(BENCH, "work", "clustering_methods"),
                   help="--work of bench_clustering_methods.py (its cv/ data and unspeech model)")
    p.add_argument("--work", default=os.path.join(BENCH, "work", "ivectors_cv"), help="scratch recipe dir")
    p.add_argument("--kaldi-root", default=os.environ.get("KALDI_ROOT", ""), help="compiled Kaldi ($KALDI_ROOT)")
    p.add_argument("--num-gauss", default="128 256 512", help="UBM sizes, each reported")
    p.add_argument("--ivector-dim", type=int, default=100)
    p.add_argument("--nj", type=int, default=2)
    p.add_argument("--skip-gauss", default="", help="UBM sizes reported as 'not run (time)'")
    p.add_argument("--unspeech", nargs="*", default=[],
                   help="NAME=MODEL_DIR of unspeech models (vectors_{train,test} in each); default: the model of "
                        "bench_clustering_methods (<clusterer-work>/cv/exp/unspeech)")
    p.add_argument("--seeds", default="0 1 2 3 4 5 6 7 8 9", help="capped subset seeds")
    p.add_argument("--seed", type=int, default=0, help="seed of the uneven set's trials and clustering")
    p.add_argument("--note", default="", help="machine load etc., for the results file")
    p.add_argument("--out", default=os.path.join(BENCH, "results", "vs_ivectors_cv_fa"))
    args = p.parse_args(argv)
    cv = os.path.join(args.clusterer_work, "cv")
    seeds = [int(x) for x in args.seeds.split()]
    unspeech_models = dict(spec.split("=", 1) for spec in args.unspeech) or {
        "unspeech": os.path.join(cv, "exp", "unspeech")}
    for need in [os.path.join(cv, "data", "train", "feats.scp")] + [
            os.path.join(d, "vectors_test") for d in unspeech_models.values()]:
        if not os.path.exists(need):
            raise SystemExit(f"ERROR (bench_ivectors_cv): {need} missing: run bench/bench_clustering_methods.py "
                             f"--work {args.clusterer_work} first")
    if not os.path.isfile(os.path.join(args.kaldi_root, "src", "online2bin", "ivector-extract-online2")):
        raise SystemExit(f"ERROR (bench_ivectors_cv): --kaldi-root '{args.kaldi_root}' is not a compiled Kaldi")

    work = os.path.abspath(args.work)
    scratch_recipe(work, args.kaldi_root)
    runner = Runner(work, kaldi_env(args.kaldi_root))
    hires_data(runner, os.path.join(cv, "data"), cv, work, args.nj)
    sizes = [int(g) for g in args.num_gauss.split()]
    skip = {int(g) for g in args.skip_gauss.split()}
    kaldi, pca = [], None
    for g in sizes:
        if g in skip:
            continue
        kaldi.append(kaldi_ivectors(runner, work, g, args.ivector_dim, args.nj, pca))
        pca = pca or os.path.join(kaldi[-1]["dir"], "pca_transform")

    gold = {}
    for part in ("train", "test"):
        gold.update(datadir.read_table(os.path.join(cv, "data", part, "utt2spk.gold")))
    vector_sets = {name: [os.path.join(d, f"vectors_{p}") for p in ("train", "test")]
                   for name, d in unspeech_models.items()}
    for k in kaldi:
        vector_sets.update(k.pop("sets"))
    sets = []
    for name, dirs in vector_sets.items():
        keys, X = _concat(dirs)
        index = {k: i for i, k in enumerate(keys)}
        runs = []
        for seed in seeds:
            keep = capped(keys, gold, 5, 20, seed)
            print(f"== cv_fa capped (seed {seed}) / {name}: {len(keep)} utterances", flush=True)
            runs.append(evaluate(keep, X[[index[k] for k in keep]], gold, seed))
        sets.append(pooled("cv_fa capped", name, runs))
        print(f"== cv_fa uneven / {name}: {len(keys)} utterances", flush=True)
        sets.append(pooled("cv_fa uneven", name, [evaluate(keys, X, gold, args.seed)]))
    sets.sort(key=lambda s: s["corpus"])

    seconds = sum(float(v) for part in ("train", "test")
                  for v in datadir.read_table(os.path.join(cv, "data", part, "utt2dur")).values())
    about = []
    for name, d in unspeech_models.items():
        with open(os.path.join(d, "metrics.json")) as f:
            metrics = json.load(f)
        with open(os.path.join(d, "config.json")) as f:
            config = json.load(f)
        about.append(f"{name}: seed {config.get('seed')}, {metrics.get('step')} steps "
                     f"(final model step {metrics.get('final_model_step', metrics.get('step'))}), "
                     f"{fmt(metrics.get('elapsed_hours'), '.2f')} h of training wall time, held-out context "
                     f"accuracy {fmt(metrics.get('val_accuracy'), '.3f')}")
    notes = [
        "No speaker labels anywhere in training or extraction: the Kaldi data dirs have utt2spk utt -> utt "
        "(online CMVN and i-vector extraction per utterance); the gold speakers are used for scoring only.",
        f"Kaldi: {args.ivector_dim}-dim online i-vectors from local/run_kaldi_ivectors.sh (Kaldi's "
        "steps/online/nnet2 get_pca_transform / train_diag_ubm / train_ivector_extractor / "
        "extract_ivectors_online with their defaults: 700k UBM frames, 10 extractor iterations) trained on "
        "all of cv_fa train (2077 utterances), hires MFCC 40. Train time of the first UBM size includes the "
        "PCA transform, shared by the others. Extraction: train + test, each utterance its own speaker.",
        "unspeech (cv_fa train, no labels; utterance means of the rows): " + "; ".join(about) + ".",
        "EER: cosine scores of all utterance pairs after the cluster step's preparation (set mean subtracted, "
        "L2 norm), 1M seeded pairs if more. ARI / NMI: gold speakers vs the clustering (outliers each their own "
        f"speaker). {DEFAULT_METHOD} is the cluster step's default; the other methods for reference.",
        f"Times: wall and CPU (children user+sys) of the Kaldi scripts with --nj {args.nj}, on a shared "
        f"machine; audio {seconds / 3600:.2f} h (train + test).",
    ]
    kept = [f"UBM {k['num_gauss']} {step}" for k in kaldi for step in k.pop("times_stored")]
    if kept:
        notes.append(f"Kaldi times kept from the earlier run that did these steps ({TIMES}; this run found their "
                     f"outputs in --work): {', '.join(kept)}.")
    res = {"description": "Unsupervised in-domain speaker-similarity of utterance vectors on cv_fa "
                          "(Common Voice Persian): Kaldi online i-vectors at three UBM sizes vs unspeech.",
           "machine": cpu_description(), "note": args.note, "date": datetime.date.today().isoformat(),
           "audio_seconds": seconds, "seeds": seeds, "unspeech_models": unspeech_models, "kaldi": kaldi,
           "missing": sorted(skip), "sets": sets, "notes": notes, "commands": runner.commands}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(res, f, indent=1)
    render(res, args.out + ".md")
    print(f"wrote {args.out}.md and .json")


if __name__ == "__main__":
    main()
