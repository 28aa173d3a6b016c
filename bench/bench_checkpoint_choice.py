#!/usr/bin/env python3
"""Which checkpoint separates speakers best, and which label-free score finds it (issue 17).

Trains one model in-process (``utils_py.train.loop``: the same data, split, sampler and step as
``train_unspeech.py``) and every ``--eval-every`` steps measures:

- the label-free candidates, on the held-out utterances of the training split only:
  ``context_acc`` (held-out context accuracy, what ``--final-model best`` uses today);
  ``half_eer`` (each held-out utterance's first-half and second-half row means: same-utterance
  pairs vs pairs of different utterances, EER of cosine scores after the cluster step's
  preparation -- lower is better; different utterances may share a speaker, which only adds noise);
  ``dbcv`` (density-based cluster validity of the cluster step's automatic HDBSCAN on the held-out
  utterance means -- higher is better: how clearly the vectors form clusters at all);
- the label-based truth it should track: EER and ARI (the cluster step's default clustering) of
  utterance-mean vectors on a set with gold speakers (``--eval-data``, e.g. cv_fa train + test
  capped like ``bench_clustering_methods``: speakers with >= 5 clips, a seeded 20 each).

It then reports, per candidate, the checkpoint it would pick and that checkpoint's EER / ARI, next to
the best EER / ARI of any checkpoint, and the Spearman correlation of candidate and truth.

    bench/bench_checkpoint_choice.py --config egs/tedlium/s5_unspeech/conf/train_cv.conf \\
        --train /tmp/clusterer/cv/data/train --eval-data /tmp/clusterer/cv/data/train,/tmp/clusterer/cv/data/test \\
        --steps 10000 --eval-every 500 --note "..."

Writes ``<out>.md`` and ``<out>.json`` (default ``bench/results/checkpoint_choice_cv_fa``).
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
from benchinfo import cpu_description  # noqa: E402
from utils_py.cli import parse_args, step_parser  # noqa: E402
from utils_py.cluster import scoring  # noqa: E402
from utils_py.cluster.pipeline import ClusterOptions, cluster_vectors, prepare_vectors, speaker_ids  # noqa: E402
from utils_py.extract.extractor import Extractor  # noqa: E402
from utils_py.features.feature_set import load_features  # noqa: E402
from utils_py.kaldi import datadir  # noqa: E402
from utils_py.log import get_logger  # noqa: E402
from utils_py.train import loop  # noqa: E402


EVAL_SEED = 1


def utterance_rows(model, feats, keys, period):
    """{key: rows} of ``keys`` of FeatureSet ``feats`` with the live model (exact extraction)."""
    ex = Extractor(model, period=period)
    return dict(ex.extract(((k, np.asarray(feats[k])) for k in keys), source=feats.source))


def half_eer(rows: dict, seed: int) -> float:
    """EER of same-utterance (first half vs second half of its rows) vs different-utterance pairs."""
    keys = [k for k, r in rows.items() if len(r) >= 2]
    halves = [r[: len(r) // 2].mean(axis=0) for k, r in ((k, rows[k]) for k in keys)]
    halves += [r[len(r) // 2:].mean(axis=0) for k, r in ((k, rows[k]) for k in keys)]
    labels = keys + keys
    return scoring.trial_scores(prepare_vectors(np.stack(halves)), labels, 1_000_000, seed)["eer"]


def truth(rows: dict, gold: dict, seed: int) -> dict:
    keys = sorted(rows)
    X = np.stack([rows[k].mean(axis=0) for k in keys])
    labels = [gold[k] for k in keys]
    eer = scoring.trial_scores(prepare_vectors(X), labels, 1_000_000, seed)["eer"]
    out = {"eer": eer}
    for suffix, backend in (("", "none"), ("_lda", "lda")):
        result = cluster_vectors(X, ClusterOptions(seed=seed, backend=backend))
        spk = speaker_ids(keys, result.labels)
        out["ari" + suffix] = scoring.cluster_scores(labels, [spk[k] for k in keys])["ari"]
        out["speakers" + suffix] = len(set(spk.values()))
    return out


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="train_unspeech conf (the recipe's)")
    p.add_argument("--train", required=True, help="data dir with feats.scp to train on")
    p.add_argument("--eval-data", required=True, help="comma-separated data dirs with feats.scp + utt2spk.gold")
    p.add_argument("--steps", type=int, default=10000)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--period", type=int, default=10)
    p.add_argument("--seed", type=int, default=1, help="training seed (--seed of train_unspeech); the evaluation "
                   "set and its scoring always use seed EVAL_SEED")
    p.add_argument("--work", default="/tmp/bench_checkpoint_choice")
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "checkpoint_choice_cv_fa"))
    p.add_argument("--note", default="")
    args = p.parse_args(argv)
    log = get_logger("bench_checkpoint_choice")

    parser = step_parser("train_unspeech options")
    loop.add_options(parser)
    cfg = loop.options_of(parse_args(parser, ["--config", args.config, "--steps", str(args.steps),
                                              "--max-hours", "0", "--final-model", "last",
                                              "--seed", str(args.seed)]))
    loop.check_options(cfg)
    data = loop.prepare_data(os.path.join(args.train, "feats.scp"), cfg, log)
    trainer = loop.Trainer(data.cfg)
    state = loop.restore_or_initialise(trainer, data, args.work, log)
    val_keys = [data.feats.keys[i] for i in data.val_utts]

    gold, eval_sets = {}, []
    for d in args.eval_data.split(","):
        gold.update(datadir.read_table(os.path.join(d, "utt2spk.gold")))
        eval_sets.append(load_features(os.path.join(d, "feats.scp")))
    eval_keys = capped([k for fs in eval_sets for k in fs.keys], gold, 5, 20, EVAL_SEED)
    owner = {k: fs for fs in eval_sets for k in fs.keys}

    history = []
    make_batch = data.sampler.chunk_batch if cfg["objective"] == "inbatch" else data.sampler.pair_batch
    t_train = 0.0
    for step in range(state.step, args.steps):
        t0 = time.process_time()
        trainer.step(make_batch(step))
        t_train += time.process_time() - t0
        if (step + 1) % args.eval_every:
            continue
        t0 = time.time()
        acc, _ = loop.evaluate(trainer.model, data.val)
        val_rows = utterance_rows(trainer.model, data.feats, val_keys, args.period)
        rows = {}
        for k in eval_keys:
            rows.update(utterance_rows(trainer.model, owner[k], [k], args.period))
        val_X = np.stack([r.mean(axis=0) for r in val_rows.values()])
        row = {"step": step + 1, "train_cpu_s": t_train, "context_acc": acc,
               "half_eer": half_eer(val_rows, EVAL_SEED),
               "dbcv": cluster_vectors(val_X, ClusterOptions(seed=EVAL_SEED)).choice.get("dbcv"),
               **truth(rows, gold, EVAL_SEED)}
        history.append(row)
        log.info(f"step {row['step']}: context acc {acc:.3f} half-EER {row['half_eer']:.3f} "
                 f"DBCV {row['dbcv']:.3f} | "
                 f"EER {row['eer']:.3f} ARI {row['ari']:.3f} ({row['speakers']} spk) | eval {time.time() - t0:.0f} s")
        with open(args.out + ".json", "w") as f:
            json.dump({"history": history, "config": args.config, "eval_utts": len(eval_keys),
                       "val_utts": len(val_keys)}, f, indent=1)
    render(history, args, len(eval_keys), len(val_keys))


def render(history, args, n_eval, n_val):
    best_eer = min(history, key=lambda h: h["eer"])
    best_ari = max(history, key=lambda h: h["ari"])
    picks = {"context_acc (max)": max(history, key=lambda h: h["context_acc"]),
             "half_eer (min)": min(history, key=lambda h: h["half_eer"]),
             "dbcv (max)": max(history, key=lambda h: h["dbcv"]),
             "last step": history[-1]}
    eers, aris = [h["eer"] for h in history], [h["ari"] for h in history]
    lines = ["# Checkpoint choice: which label-free score finds the checkpoint that separates speakers",
             "", f"Made by `bench/bench_checkpoint_choice.py`. Machine: {cpu_description()}. "
             f"Date {datetime.date.today()}. {args.note}", "",
             f"Training: `{os.path.relpath(args.config, REPO)}` on `{args.train}` (its held-out split: {n_val} "
             f"utterances for the label-free scores), evaluated every {args.eval_every} steps. Truth: {n_eval} "
             f"utterances of `{args.eval_data}` (speakers with >= 5 clips, a seeded 20 each), utterance-mean "
             "vectors, EER of cosine trials and ARI of the cluster step's default clustering.", "",
             "| candidate | picks step | EER % there | ARI there | Spearman vs EER | Spearman vs ARI |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, h in picks.items():
        key = name.split()[0]
        if key == "last":
            corr = ("", "")
        else:   # each candidate oriented so that larger = better, against lower EER / higher ARI
            vals = [(-1 if key == "half_eer" else 1) * x[key] for x in history]
            corr = (f"{spearman(vals, [-e for e in eers]):+.2f}", f"{spearman(vals, aris):+.2f}")
        lines.append(f"| {name} | {h['step']} | {100 * h['eer']:.2f} | {h['ari']:.3f} | {corr[0]} | {corr[1]} |")
    late = history[len(history) // 2:]
    lines += ["", f"Mean of the later half of the evaluations (steps {late[0]['step']}-{late[-1]['step']}, "
              f"{len(late)} checkpoints; ARI swings between neighbours, so compare runs by these): EER "
              f"{100 * np.mean([h['eer'] for h in late]):.2f} %, ARI {np.mean([h['ari'] for h in late]):.3f} "
              f"(sd {np.std([h['ari'] for h in late]):.3f}), context acc {np.mean([h['context_acc'] for h in late]):.3f}"
              + (f"; ARI with the cluster step's --backend lda {np.mean([h['ari_lda'] for h in late]):.3f} "
                 f"(sd {np.std([h['ari_lda'] for h in late]):.3f})." if "ari_lda" in late[0] else ".")]
    lines += ["", f"Best of any checkpoint: EER {100 * best_eer['eer']:.2f} % at step {best_eer['step']}, ARI "
              f"{best_ari['ari']:.3f} at step {best_ari['step']}. Spearman: rank correlation of the candidate "
              "(oriented so that larger = better) with lower EER / higher ARI; +1 = tracks it perfectly.", "",
              "| step | train CPU s | context acc | half-EER % | DBCV | EER % | ARI | speakers found |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for h in history:
        lines.append(f"| {h['step']} | {h['train_cpu_s']:.0f} | {h['context_acc']:.3f} | {100 * h['half_eer']:.2f} | "
                     f"{h['dbcv']:.3f} | "
                     f"{100 * h['eer']:.2f} | {h['ari']:.3f} | {h['speakers']} |")
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
