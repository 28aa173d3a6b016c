#!/usr/bin/env python3
"""fbank vs raw-waveform (``--end-to-end true``) unspeech models at the same CPU budget (issue 15).

Per corpus, two models trained on the same train set with the same ``--max-hours`` (one at
a time): fbank mode (``conf/train_<corpus>.conf``; cv_fa: ``train_cv.conf``) and the
raw-waveform mode (``conf/train_fsdd_e2e.conf`` at 8 kHz, ``train_demo_e2e.conf`` at 16 kHz;
``--cache-dir`` so the audio is decoded once). Measured per model:

- training: wall and CPU seconds of the training process (its children's user+sys), steps,
  pairs/s (median of metrics.json's log intervals), held-out context accuracy
  (metrics.json ``val_accuracy``; final model = best);
- extraction of the test set (``extract_unspeech.sh --nj <nj> --speaker-vectors true``):
  CPU seconds / audio seconds (x real time) and wall. fbank mode reads features computed
  beforehand, so the fbank computation of the same set (``make_fbank.sh --nj 1``, from the
  same wav.scp) is timed too; the raw-waveform mode reads (decodes) the audio itself;
- the test set's utterance vectors vs the gold speakers (``utt2spk.gold``, else ``utt2spk``):
  EER of cosine trials, ARI / NMI / speakers found of the cluster step's default
  ("hdbscan auto"), with ``bench_clustering_methods.evaluate``; cv_fa also ``capped``
  (train + test, speakers with >= 5 clips, each capped at a seeded 20; needs the train
  set extracted as well; ``--cv-capped false`` skips it).

Corpora: ``demo`` (``local/make_demo_corpus.py --size <demo-size>``), ``fsdd``
(``local/prepare_fsdd.py``), both prepared with fbank under ``--work`` by
``bench_quality.prepare_corpus``; ``cv_fa``: the prepared data dirs with fbank of
``--cv-data`` (``<dir>/{train,test}``, e.g. bench_clustering_methods' work dir), or, without
one, prepared under ``--work`` from ``--cv-root``. A corpus whose audio is absent is skipped,
saying so. Every step is skipped when its output and timing file exist (rerunnable); a model
without its timing file is trained again from scratch (a resumed run's CPU time would be partial).

    export KALDI_ROOT=/opt/kaldi
    bench/bench_end_to_end.py --note "2 shared cores, load 6-8 (other engineers' jobs)"

Writes ``<out>.md`` and ``<out>.json`` (default ``bench/results/bench_end_to_end``).
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)

from bench_clustering_methods import capped, evaluate, fmt  # noqa: E402
from bench_quality import FSDD_ROOT, env, prepare_corpus, sh  # noqa: E402
from bench_vs_ivectors import Runner, audio_seconds, copy_data_dir  # noqa: E402
from benchinfo import cpu_description  # noqa: E402
from utils_py.extract.utt_vectors import read_utt_vectors  # noqa: E402
from utils_py.kaldi import datadir  # noqa: E402

STEPS = os.path.join(REPO, "steps_unspeech")
CONF = os.path.join(REPO, "egs", "tedlium", "s5_unspeech", "conf")
CONFIGS = {  # corpus -> {mode: train config}
    "demo": {"fbank": "train_demo.conf", "e2e": "train_demo_e2e.conf"},
    "fsdd": {"fbank": "train_fsdd.conf", "e2e": "train_fsdd_e2e.conf"},
    "cv_fa": {"fbank": "train_cv.conf", "e2e": "train_demo_e2e.conf"},
}
CLUSTER_METHOD = "hdbscan auto"   # the cluster step's default


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_json(path, obj):
    """Write ``obj`` to ``path`` atomically (a timing file marks its step done)."""
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(path + ".tmp", path)


def prepare_cv(work, args):
    """cv_fa data dirs with fbank under ``work``: copies of ``--cv-data`` if given, else prepared."""
    data = os.path.join(work, "data")
    if args.cv_data:   # copied (split dirs of the extraction stay here), features and audio not
        for part in ("train", "test"):
            src = os.path.join(args.cv_data, part)
            if not os.path.isfile(os.path.join(src, "feats.scp")):
                raise SystemExit(f"ERROR (bench_end_to_end): --cv-data: no {src}/feats.scp")
            if not os.path.isfile(os.path.join(data, part, "feats.scp")):
                copy_data_dir(src, os.path.join(data, part), src)
        return data
    if not os.path.isdir(args.cv_root):
        print(f"SKIP cv_fa: no Common Voice release at {args.cv_root}", flush=True)
        return None
    sh(os.path.join(REPO, "local", "prepare_common_voice.py"), args.cv_root, data)
    for part in ("train", "test"):
        if not os.path.isfile(os.path.join(data, part, "feats.scp")):
            sh(os.path.join(STEPS, "make_fbank.sh"), "--nj", args.nj, "--fbank-config",
               os.path.join(CONF, "fbank.conf"), os.path.join(data, part),
               os.path.join(work, "log", f"fbank_{part}"), os.path.join(work, "fbank"))
    return data


def timed_once(runner, name, cmd, timing_file, clean=None):
    """Run ``cmd`` timed unless ``timing_file`` exists; ``clean`` (a dir) is removed first."""
    if os.path.isfile(timing_file):
        return read_json(timing_file)
    if clean:
        shutil.rmtree(clean, ignore_errors=True)
    t = runner.run(name, cmd, REPO, timed=True)
    os.makedirs(os.path.dirname(timing_file), exist_ok=True)
    write_json(timing_file, t)
    return t


def train(runner, corpus, mode, data, work, args):
    """Train one model at the budget; {config, timing, metrics summary}."""
    model = os.path.join(work, "exp", mode)
    config = os.path.join(CONF, CONFIGS[corpus][mode])
    cmd = [os.path.join(STEPS, "train_unspeech.sh"), "--config", config, "--max-hours", args.max_hours]
    if mode == "e2e":
        cmd += ["--cache-dir", os.path.join(work, "cache_e2e")]
    t = timed_once(runner, f"{corpus}_train_{mode}", cmd + [os.path.join(data, "train"), model],
                   os.path.join(work, f"timing_train_{mode}.json"), clean=model)
    m = read_json(os.path.join(model, "metrics.json"))
    history = m.get("history", [])
    rates = [h["pairs_per_second"] for h in history if "pairs_per_second" in h]
    curve = [[round(60 * h["elapsed_hours"], 2), h["val_accuracy"]] for h in history if "val_accuracy" in h]
    return model, {"config": os.path.relpath(config, REPO), "timing": t, "steps": m.get("step"),
                   "stop_reason": m.get("stop_reason"), "final_model_step": m.get("final_model_step"),
                   "val_accuracy": m.get("val_accuracy"), "elapsed_hours": m.get("elapsed_hours"),
                   "pairs_per_second": float(np.median(rates)) if rates else None, "val_curve": curve}


def minutes_to(curve, accuracy):
    """First training minute at which the held-out accuracy reached ``accuracy`` (``curve``:
    [minute, accuracy] pairs in time order); None if it never did."""
    return next((minute for minute, acc in curve if acc >= accuracy), None)


def extract(runner, corpus, mode, data, part, model, work, args):
    """Extract ``part`` with ``model``; (vectors dir, timing with audio seconds and x real time)."""
    out = os.path.join(model, f"vectors_{part}")
    t = timed_once(runner, f"{corpus}_extract_{mode}_{part}",
                   [os.path.join(STEPS, "extract_unspeech.sh"), "--nj", args.nj, "--speaker-vectors", "true",
                    os.path.join(data, part), model, out],
                   os.path.join(work, f"timing_extract_{mode}_{part}.json"), clean=out)
    audio = audio_seconds(os.path.join(data, part))
    return out, dict(t, audio_s=round(audio, 1), xrt_cpu=t["cpu_s"] / audio, xrt_wall=t["wall_s"] / audio)


def fbank_timing(runner, corpus, data, work):
    """make_fbank.sh --nj 1 of a copy of the test set (the features fbank mode extracts from)."""
    copy = os.path.join(work, "fbank_timing", "data")
    timing_file = os.path.join(work, "timing_fbank_test.json")
    if not os.path.isfile(timing_file):
        copy_data_dir(os.path.join(data, "test"), copy, os.path.join(data, "test"))
        for name in ("feats.scp", "utt2num_frames", "frame_shift"):
            if os.path.isfile(os.path.join(copy, name)):
                os.remove(os.path.join(copy, name))
    t = timed_once(runner, f"{corpus}_fbank_test",
                   [os.path.join(STEPS, "make_fbank.sh"), "--nj", "1", "--fbank-config",
                    os.path.join(CONF, "fbank.conf"), copy, os.path.join(work, "fbank_timing", "log"),
                    os.path.join(work, "fbank_timing", "fbank")], timing_file)
    audio = audio_seconds(os.path.join(data, "test"))
    return dict(t, audio_s=round(audio, 1), xrt_cpu=t["cpu_s"] / audio)


def gold_speakers(data, parts):
    """{utt: speaker} of ``utt2spk.gold`` (else ``utt2spk``) of the data dirs ``parts``."""
    gold = {}
    for part in parts:
        d = os.path.join(data, part)
        name = "utt2spk.gold" if os.path.isfile(os.path.join(d, "utt2spk.gold")) else "utt2spk"
        gold.update(datadir.read_table(os.path.join(d, name)))
    return gold


def scores(keys, X, gold, seed):
    """EER and the default clustering's ARI / NMI / speakers of one vector set (all methods in ``methods``)."""
    e = evaluate(keys, X, gold, seed)
    m = e["methods"][CLUSTER_METHOD]
    return {"utts": e["utts"], "gold_speakers": e["gold_speakers"], "eer": e["eer"], "ari": m["ari"],
            "nmi": m["nmi"], "speakers": m["speakers"], "methods": e["methods"]}


def run_corpus(corpus, runner, args):
    """Both modes on one corpus: {corpus, rows, fbank_features, capped}; None if its audio is absent."""
    work = os.path.join(args.work, corpus)
    if corpus == "cv_fa":
        data = prepare_cv(work, args)
    else:
        data = prepare_corpus(corpus, work, args)
    if data is None:
        return None
    res = {"corpus": corpus, "data": data, "train_utts": len(datadir.read_table(os.path.join(data, "train", "utt2spk"))),
           "train_audio_s": round(audio_seconds(os.path.join(data, "train")), 1),
           "fbank_features": fbank_timing(runner, corpus, data, work), "rows": {}, "capped": {}}
    gold = gold_speakers(data, ("train", "test"))
    for mode in ("fbank", "e2e"):
        model, row = train(runner, corpus, mode, data, work, args)
        vec, row["extract"] = extract(runner, corpus, mode, data, "test", model, work, args)
        keys, X, _ = read_utt_vectors(vec)
        print(f"== {corpus} {mode}: test, {len(keys)} utterances", flush=True)
        row["test"] = scores(keys, X, gold, args.seed)
        if corpus == "cv_fa" and args.cv_capped == "true":
            vtrain, row["extract_train"] = extract(runner, corpus, mode, data, "train", model, work, args)
            k2, X2, _ = read_utt_vectors(vtrain)
            keys, X = keys + k2, np.concatenate([X, X2])
            index = {k: i for i, k in enumerate(keys)}
            keep = capped(keys, gold, 5, 20, args.seed)
            print(f"== {corpus} {mode}: capped train+test, {len(keep)} utterances", flush=True)
            res["capped"][mode] = scores(keep, X[[index[k] for k in keep]], gold, args.seed)
        res["rows"][mode] = row
    common = min(r["val_accuracy"] for r in res["rows"].values())   # the accuracy both modes reached
    res["common_accuracy"] = common
    for row in res["rows"].values():
        row["minutes_to_common"] = minutes_to(row["val_curve"], common)
    return res


def render(res, path):
    out = ["# fbank vs raw-waveform (--end-to-end) unspeech at the same CPU budget", "",
           "Made by `bench/bench_end_to_end.py`. " + res["description"], "",
           f"Machine: {res['machine']}. {res['note']} Date {res['date']}, rendered at {res['commit']}.", "",
           "| corpus | mode | budget h | steps | train wall min | train CPU s | pairs/s | held-out acc | "
           "min to the lower acc | extract CPU s / audio s (x RT) | extract wall s | EER % | ARI | NMI | "
           "speakers / gold |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in res["corpora"]:
        for mode, r in c["rows"].items():
            t, x, s = r["timing"], r["extract"], r["test"]
            out.append(f"| {c['corpus']} | {mode} | {res['max_hours']} | {r['steps']} | {t['wall_s'] / 60:.1f} | "
                       f"{t['cpu_s']:.0f} | {fmt(r['pairs_per_second'], '.0f')} | {fmt(r['val_accuracy'], '.3f')} | "
                       f"{fmt(r['minutes_to_common'], '.1f')} ({c['common_accuracy']:.3f}) | "
                       f"{x['cpu_s']:.1f} / {x['audio_s']:.0f} ({x['xrt_cpu']:.3f}, {1 / x['xrt_cpu']:.0f}x) | "
                       f"{x['wall_s']:.1f} | "
                       f"{fmt(s['eer'] and 100 * s['eer'], '.2f')} | {s['ari']:.3f} | {s['nmi']:.3f} | "
                       f"{s['speakers']} / {s['gold_speakers']} |")
    capped_rows = [(c["corpus"], mode, s) for c in res["corpora"] for mode, s in c["capped"].items()]
    if capped_rows:
        out += ["", "## cv_fa capped (train + test, speakers with >= 5 clips, each capped at a seeded 20)", "",
                "| corpus | mode | utts | EER % | ARI | NMI | speakers / gold | train-set extraction x RT (CPU) |",
                "|---|---|---:|---:|---:|---:|---:|---:|"]
        for corpus, mode, s in capped_rows:
            xt = next(c for c in res["corpora"] if c["corpus"] == corpus)["rows"][mode].get("extract_train", {})
            out.append(f"| {corpus} | {mode} | {s['utts']} | {fmt(s['eer'] and 100 * s['eer'], '.2f')} | "
                       f"{s['ari']:.3f} | {s['nmi']:.3f} | {s['speakers']} / {s['gold_speakers']} | "
                       f"{fmt(xt.get('xrt_cpu'), '.3f')} |")
    out += ["", "## Per corpus", "",
            "| corpus | train utts | train audio min | fbank of the test set: CPU s / audio s (x RT) | "
            "stop reasons (fbank / e2e) | load (1-min) around the trainings |", "|---|---:|---:|---:|---|---|"]
    for c in res["corpora"]:
        f, rows = c["fbank_features"], c["rows"]
        loads = " / ".join(f"{r['timing']['load_before'][0]}-{r['timing']['load_after'][0]}" for r in rows.values())
        out.append(f"| {c['corpus']} | {c['train_utts']} | {c['train_audio_s'] / 60:.1f} | "
                   f"{f['cpu_s']:.1f} / {f['audio_s']:.0f} ({f['xrt_cpu']:.3f}, {1 / f['xrt_cpu']:.0f}x) | "
                   f"{' / '.join(str(r['stop_reason']) for r in rows.values())} | {loads} |")
    out += ["", "## Notes", ""] + [f"- {line}" for line in res["notes"]]
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpora", default="fsdd,demo,cv_fa", help="comma-separated: demo, fsdd, cv_fa")
    p.add_argument("--max-hours", default="0.1", help="training budget of every model (wall hours)")
    p.add_argument("--nj", default="1", help="jobs of fbank preparation and extraction")
    p.add_argument("--demo-size", default="small", help="local/make_demo_corpus.py --size (run.sh's default)")
    p.add_argument("--fsdd-root", default=FSDD_ROOT)
    p.add_argument("--cv-root", default=os.path.join(os.path.dirname(REPO), "shared", "data", "cv_fa"))
    p.add_argument("--cv-data", default="", help="prepared cv_fa data dirs with fbank (<dir>/{train,test})")
    p.add_argument("--cv-capped", default="true", choices=("true", "false"),
                   help="also extract cv_fa train and score the capped train+test set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--note", default="", help="machine load etc., for the results file")
    p.add_argument("--work", default=os.path.join(BENCH, "work", "end_to_end"))
    p.add_argument("--out", default=os.path.join(BENCH, "results", "bench_end_to_end"))
    args = p.parse_args(argv)
    unknown = set(args.corpora.split(",")) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"ERROR (bench_end_to_end): --corpora: unknown {sorted(unknown)} (known: {sorted(CONFIGS)})")
    runner = Runner(args.work, env())
    corpora = [r for r in (run_corpus(c, runner, args) for c in args.corpora.split(",")) if r]
    notes = [
        "Same budget: every model trained with its conf and `--max-hours` " + args.max_hours + " (wall time of "
        "the training loop, data loading excluded), one model at a time. Train CPU s: user+sys of the training "
        "process (all its threads), including the data loading (the raw-waveform mode's audio decoding into "
        "its `--cache-dir`).",
        "pairs/s: median over metrics.json's log intervals of (target, context) pairs scored per second. "
        "held-out acc: metrics.json val_accuracy of the final model (= best on the held-out utterances). "
        "min to the lower acc: training minutes (metrics.json elapsed_hours at the log interval) until the "
        "held-out accuracy first reached the lower of the two modes' final accuracies (in brackets).",
        f"Extraction: `extract_unspeech.sh --nj {args.nj} --speaker-vectors true` of the test set, CPU of all "
        "its processes; x RT = CPU s / audio s (and its inverse, times faster than real time). fbank mode reads the features made beforehand: add the "
        "`fbank of the test set` column (make_fbank.sh --nj 1 from the same wav.scp) for the whole path.",
        f"EER: cosine trials of all test utterance pairs; ARI / NMI / speakers: `{CLUSTER_METHOD}` (the "
        "cluster step's default), outliers each their own speaker. All methods of "
        "bench_clustering_methods are in the .json.",
        "Kernel (sys) share of the extraction CPU: " + "; ".join(
            f"{c['corpus']} " + ", ".join(f"{mode} {100 * r['extract']['sys_s'] / r['extract']['cpu_s']:.0f} %"
                                          for mode, r in c["rows"].items()) for c in corpora) + ".",
        "Train CPU s differ with the load (the budget is wall time; the other jobs took the rest of the cores).",
        "cv_fa capped (train + test): " + ("scored above." if args.cv_capped == "true" else
                                           "not run (--cv-capped false): the raw-waveform extraction of the whole "
                                           "train set was too slow for the time at hand."),
    ]
    res = {"description": "Each corpus: an fbank model and a raw-waveform model, same conf family, same "
           "training budget; test-set extraction speed and speaker scores of both.", "machine": cpu_description(), "note": args.note,
           "date": datetime.date.today().isoformat(), "max_hours": float(args.max_hours), "nj": args.nj,
           "commit": subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True).stdout.strip(), "corpora": corpora, "notes": notes}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    write_json(args.out + ".json", res)
    render(res, args.out + ".md")
    print(f"wrote {args.out}.md and .json")


if __name__ == "__main__":
    main()
