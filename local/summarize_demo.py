#!/usr/bin/env python3
"""Summarize what a run of the recipe made: data, features, model, embeddings, clusters, WERs.

Printed at the end of `make demo`; reads only, never writes.  Absent parts are
shown as "(stage N not run)".
"""
import json
import os

from utils_py.kaldi import datadir
from utils_py.kaldi import tables
from utils_py.cli import parse_args, step_parser
from utils_py.log import UnspeechError, run_step

EPILOG = """Example:
  local/summarize_demo.py egs/tedlium/s5_unspeech
Reads data/<set>/{utt2spk,utt2dur|segments,feats.scp,utt2num_frames}, exp/unspeech/metrics.json,
exp/unspeech/ivectors_<set>/{ivector_period,ivector_online.scp},
exp/unspeech/cluster_<set>/{scores.json,embedding_map.png}, data/<set>_unspk and
exp/chain_results.json (the WER table of stage 12)."""

SET_ORDER = ("train", "train_sp", "dev", "test")
# copies of a set made by later stages (clustered speakers, Kaldi's MFCC, pseudo-speakers)
DERIVED_SUFFIXES = ("_unspk", "_mfcc", "_hires", "_max2")
# metrics.json names the summary understands (first one present wins)
METRIC_KEYS = (("val_accuracy", ("val_accuracy", "val_acc")),
               ("steps", ("step", "steps", "train_steps")),
               ("pairs/s", ("pairs_per_second", "pairs_per_sec")))
SCORE_KEYS = (("ari", "ARI"), ("nmi", "NMI"), ("num_clusters", "clusters"), ("num_outliers", "outliers"))


def _first(table: dict, names):
    return next((table[n] for n in names if n in table), None)


def _fmt(value, digits=3) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def data_sets(recipe: str) -> list:
    """Data dirs of the recipe (not *_unspk, not split dirs), train first, then dev/test, then the rest."""
    root = os.path.join(recipe, "data")
    if not os.path.isdir(root):
        return []
    names = [n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n, "utt2spk"))
             and not n.endswith(DERIVED_SUFFIXES)]
    return sorted(names, key=lambda n: (SET_ORDER.index(n) if n in SET_ORDER else len(SET_ORDER), n))


def hours_of(d: str):
    """Audio hours from utt2dur, else segments, else None."""
    if os.path.isfile(os.path.join(d, "utt2dur")):
        return sum(float(v) for v in datadir.read_table(os.path.join(d, "utt2dur")).values()) / 3600
    if os.path.isfile(os.path.join(d, "segments")):
        return sum(float(v.split()[2]) - float(v.split()[1])
                   for v in datadir.read_table(os.path.join(d, "segments")).values()) / 3600
    return None


def first_matrix_dim(scp: str) -> int:
    """Columns of the first matrix of an scp (reads just that one)."""
    key = tables.scp_keys(scp)[0]
    with open(scp, encoding="utf-8") as f:
        rx = f.readline().split(maxsplit=1)[1].strip()
    mat = tables.read_matrix(rx, f"matrix of {key} in {scp}")
    return int(mat.shape[-1])


def describe_set(recipe: str, name: str) -> str:
    d = os.path.join(recipe, "data", name)
    utt2spk = datadir.read_table(os.path.join(d, "utt2spk"))
    hours = hours_of(d)
    line = (f"  {name:10s} {len(utt2spk):6d} utts {len(set(utt2spk.values())):4d} spk "
            f"{'?' if hours is None else f'{hours:6.2f}'} h")
    feats = os.path.join(d, "feats.scp")
    if os.path.isfile(feats):
        frames_file = os.path.join(d, "utt2num_frames")
        frames = (sum(int(v) for v in datadir.read_table(frames_file).values())
                  if os.path.isfile(frames_file) else None)
        line += f"   fbank {first_matrix_dim(feats)}-dim, {'?' if frames is None else f'{frames:,}'} frames"
    else:
        line += "   fbank (stage 2 not run)"
    return line


def summarize(recipe: str) -> list:
    model = os.path.join(recipe, "exp", "unspeech")
    sets = data_sets(recipe)
    out = [f"unspeech summary of {recipe}"]
    out.append("Data (stage 0; train_sp: stage 1; fbank: stage 2):")
    out += [describe_set(recipe, s) for s in sets] or ["  (stage 0 not run)"]

    metrics_path = os.path.join(model, "metrics.json")
    if os.path.isfile(metrics_path):
        try:
            with open(metrics_path, encoding="utf-8") as f:
                metrics = json.load(f)
        except (OSError, ValueError) as e:
            raise UnspeechError(f"cannot read {metrics_path} ({e})") from None
        parts = [f"{label} {_fmt(v)}" for label, names in METRIC_KEYS
                 if (v := _first(metrics, names)) is not None]
        if isinstance(metrics.get("elapsed_hours"), (int, float)):
            parts.append(f"{60.0 * metrics['elapsed_hours']:.1f} min")
        out.append(f"Model (stage 3): {', '.join(parts) or 'no known metrics'}  [{metrics_path}]")
    else:
        out.append("Model: (stage 3 not run)")

    emb, clus = [], []
    for s in sets:
        ivec = os.path.join(model, f"ivectors_{s}")
        scp = os.path.join(ivec, "ivector_online.scp")
        if os.path.isfile(scp):
            period_file = os.path.join(ivec, "ivector_period")
            period = "?"
            if os.path.isfile(period_file):
                with open(period_file, encoding="utf-8") as f:
                    period = f.read().strip()
            emb.append(f"  {s:10s} {first_matrix_dim(scp)}-dim, one row per {period} frames   {ivec}")
        scores_path = os.path.join(model, f"cluster_{s}", "scores.json")
        if os.path.isfile(scores_path):
            with open(scores_path, encoding="utf-8") as f:
                scores = json.load(f)
            line = "  " + f"{s:10s} " + "  ".join(
                f"{label} {_fmt(scores[k])}" for k, label in SCORE_KEYS if k in scores)
            picture = os.path.join(model, f"cluster_{s}", "embedding_map.png")
            if os.path.isfile(picture):
                line += f"   {picture}"
            clus.append(line)
        elif os.path.isfile(os.path.join(model, f"cluster_{s}", "utt2spk")):
            utt2spk = datadir.read_table(os.path.join(model, f"cluster_{s}", "utt2spk"))
            clus.append(f"  {s:10s} {len(set(utt2spk.values()))} speakers (no utt2spk.gold: not scored)")
    out.append("Embeddings as online i-vectors (stage 4):")
    out += emb or ["  (stage 4 not run)"]
    out.append("Clustering by context (stage 5):")
    out += clus or ["  (stage 5 not run)"]

    unspk = []
    for s in sets:
        d = os.path.join(recipe, "data", f"{s}_unspk")
        if os.path.isfile(os.path.join(d, "utt2spk")):
            utt2spk = datadir.read_table(os.path.join(d, "utt2spk"))
            unspk.append(f"  {d}: {len(utt2spk)} utts, {len(set(utt2spk.values()))} clustered speakers")
    out.append("Relabelled data dirs (stage 6):")
    out += unspk or ["  (stage 6 not run)"]
    out.append("Kaldi chain TDNNs (stages 7-12), WER %:")
    out += wer_lines(os.path.join(recipe, "exp", "chain_results.json")) or ["  (stage 12 not run)"]
    return out


def wer_lines(results_path: str) -> list:
    """One line per condition of local/chain/compare_wer.py's table."""
    if not os.path.isfile(results_path):
        return []
    with open(results_path, encoding="utf-8") as f:
        results = json.load(f)
    lines = []
    for row in results["rows"]:
        wers = "  ".join(f"{x} {row['wer'][x]['wer']:5.2f}" if row["wer"].get(x) else f"{x}     —"
                         for x in results["test_sets"])
        lines.append(f"  {row['label']:38s} {wers}")
    return lines


def main(argv=None):
    p = step_parser(__doc__.strip().splitlines()[0], EPILOG)
    p.add_argument("recipe_dir", help="the recipe dir, e.g. egs/tedlium/s5_unspeech")
    args = parse_args(p, argv)
    if not os.path.isdir(args.recipe_dir):
        raise UnspeechError(f"recipe directory not found: {args.recipe_dir}")
    print("\n".join(summarize(args.recipe_dir)))


if __name__ == "__main__":
    run_step("summarize_demo", main)
