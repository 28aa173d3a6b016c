#!/usr/bin/env python3
"""Kaldi's online i-vectors vs unspeech embeddings as utterance representations, side by side.

On one test set of a recipe dir where ``run.sh`` stages 0-10 ran, in one run:

1. **Kaldi i-vectors, each utterance its own speaker** (the comparison; no speaker labels
   used): a copy of ``data/<set>_hires`` with ``utt2spk`` = utt -> utt, extracted with Kaldi's own
   ``steps/online/nnet2/extract_ivectors_online.sh --nj 1`` and the recipe's
   ``exp/nnet3/extractor`` (timed: wall, CPU of the child processes).
2. **unspeech**: ``data/<set>`` (fbank) re-extracted with ``steps_unspeech/extract_unspeech.sh
   --nj 1 --period <p> --speaker-vectors true`` from ``exp/unspeech`` (as run.sh stage 4; timed
   the same way), plus a probe process that times TensorFlow's start-up (import, model load,
   first call) and then the embedding of the whole set alone (compute only); Kaldi's binary
   ``ivector-extract-online2`` is timed alone as well.
3. **Kaldi i-vectors per true speaker** (``utt2spk`` of ``data/<set>_hires``, as Kaldi's
   recipes extract test sets): LEAKS the speaker labels into the vectors (an online i-vector
   carries the statistics of the speaker's earlier utterances forward), reported as a
   labelled reference, not as the comparison.

Every vector set is clustered with ``steps_unspeech/cluster_utts.sh`` (its defaults,
``--utt2spk data/<set>/utt2spk.gold``, else ``data/<set>/utt2spk``); ARI, NMI, clusters vs
speakers, outliers, EER and minDCF come from its ``scores.json``. Utterance vectors: the
mean of the utterance's online rows for both kinds (what cluster_utts.sh does with an
online-ivector dir; unspeech's ``utt_vectors.scp`` is the same mean), plus the LAST online
i-vector row of each utterance (the i-vector of the whole utterance) and the fbank
mean / mean+std baselines of ``bench/bench_quality.py``.

Nothing is written into the recipe dir: data dirs are copied (relative scp paths made
absolute), the i-vector extractor is linked file by file into the work dir, and Kaldi's script
runs with the work dir as cwd (``steps``/``utils`` links, a ``path.sh`` that sources the
recipe's). Needs ``KALDI_ROOT`` (a compiled Kaldi).

    export KALDI_ROOT=/opt/kaldi
    bench/bench_vs_ivectors.py                                   # demo recipe, set test
    bench/bench_vs_ivectors.py --recipe egs/fsdd/s5 --corpus fsdd
    bench/bench_vs_ivectors.py --recipe egs/cv/s5 --corpus cv_fa --note "shared load: ..."

Writes ``<out>.md`` and ``<out>.json`` (default ``bench/results/vs_ivectors_<corpus>``);
all intermediate files (data copies, vectors, cluster dirs with ``embedding_map.png``, logs)
under ``--work`` (default ``bench/work/vs_ivectors_<corpus>``, emptied at the start).
"""
import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
if BENCH not in sys.path:  # benchinfo, also when imported by the tests
    sys.path.insert(0, BENCH)

from benchinfo import cpu_description  # noqa: E402
from utils_py.kaldi import datadir  # noqa: E402
from utils_py.kaldi.tables import iter_matrices, scp_shapes  # noqa: E402
from utils_py.extract.utt_vectors import write_utt_vectors  # noqa: E402

STEPS = os.path.join(REPO, "steps_unspeech")
# Files Kaldi's extract_ivectors_online.sh (and get_ivector_id.sh) read from the extractor dir.
EXTRACTOR_FILES = ("final.ie", "final.dubm", "global_cmvn.stats", "splice_opts", "online_cmvn.conf",
                   "final.mat", "final.ie.id", "online_cmvn_iextractor")
SCP_FILES = ("feats.scp", "cmvn.scp", "vad.scp")


# ------------------------------------------------------------------ data dirs (pure logic, tested)
def absolute_rxfilename(value: str, base: str) -> str:
    """``value`` of a Kaldi scp line with a relative file made absolute against ``base``.

    ``path[:offset]`` relative -> ``base/path[:offset]``; absolute paths, pipes (``... |``)
    and stdin (``-``) stay as they are.
    """
    v = value.strip()
    if not v or v.endswith("|") or v == "-" or os.path.isabs(v):
        return v
    return os.path.join(os.path.abspath(base), v)


def copy_data_dir(src: str, dst: str, base: str, per_utt_speakers: bool = False) -> dict:
    """Copy Kaldi data dir ``src`` to ``dst`` (plain files only; no split dirs, no hidden files).

    Relative paths in ``feats.scp``/``cmvn.scp``/``vad.scp`` become absolute against ``base``
    (the recipe dir Kaldi ran in). ``per_utt_speakers``: every utterance its own speaker
    (``utt2spk`` utt -> utt, ``spk2utt`` accordingly); per-speaker files (``cmvn.scp``,
    ``spk2gender``) are dropped. ``utt2spk.gold`` is copied untouched. The result is validated
    by Kaldi's rules; returns its ``utt2spk``.
    """
    if os.path.abspath(src) == os.path.abspath(dst):
        raise SystemExit(f"refusing to copy a data dir onto itself: {src}")
    if os.path.isdir(dst):
        shutil.rmtree(dst)
    os.makedirs(dst)
    utt2spk = datadir.read_table(os.path.join(src, "utt2spk"))
    for name in sorted(os.listdir(src)):
        sp, dp = os.path.join(src, name), os.path.join(dst, name)
        if name.startswith(".") or not os.path.isfile(sp) or name in ("utt2spk", "spk2utt"):
            continue
        if per_utt_speakers and name in datadir.PER_SPK_FILES:
            continue
        if name in SCP_FILES:
            table = datadir.read_table(sp)
            datadir.write_table(dp, {k: absolute_rxfilename(v, base) for k, v in table.items()})
        else:
            shutil.copyfile(sp, dp)
    new = {u: u for u in utt2spk} if per_utt_speakers else dict(utt2spk)
    datadir.write_table(os.path.join(dst, "utt2spk"), new)
    datadir.write_spk2utt(dst)
    return datadir.validate(dst)


def audio_seconds(data: str) -> float:
    """Total duration of a data dir: ``utt2dur``, else frames x ``frame_shift`` (default 0.01 s)."""
    if os.path.isfile(os.path.join(data, "utt2dur")):
        return float(sum(float(v) for v in datadir.read_table(os.path.join(data, "utt2dur")).values()))
    shift = 0.01
    if os.path.isfile(os.path.join(data, "frame_shift")):
        with open(os.path.join(data, "frame_shift")) as f:
            shift = float(f.read().split()[0])
    return float(sum(r for r, _ in scp_shapes(os.path.join(data, "feats.scp")).values()) * shift)


def last_row_vectors(ivector_dir: str, out: str) -> str:
    """``utt_vectors.scp`` of the last ``ivector_online.scp`` row of each utterance."""
    keys, rows = [], []
    for key, mat in iter_matrices(os.path.join(ivector_dir, "ivector_online.scp")):
        keys.append(key)
        rows.append(np.asarray(mat)[-1])
    write_utt_vectors(out, keys, np.asarray(rows, np.float32))
    return out


def compare_vectors(new_dir: str, old_dir: str):
    """Largest |difference| between the ``ivector_online.scp`` rows of two dirs (None if
    ``old_dir`` has none, or the utterances or shapes differ: then a string says so)."""
    old_scp = os.path.join(old_dir, "ivector_online.scp")
    if not os.path.isfile(old_scp):
        return None
    old = dict(iter_matrices(old_scp))
    worst, n = 0.0, 0
    for key, mat in iter_matrices(os.path.join(new_dir, "ivector_online.scp")):
        if key not in old or np.shape(old[key]) != np.shape(mat):
            return f"differs: utterance {key} missing or of another shape in {old_scp}"
        worst = max(worst, float(np.max(np.abs(np.asarray(mat, np.float64) - old[key]))))
        n += 1
    if n != len(old):
        return f"differs: {len(old)} utterances in {old_scp}, {n} here"
    return {"dir": old_dir, "utts": n, "max_abs_diff": worst}


# ------------------------------------------------------------------ running and timing
class Runner:
    def __init__(self, work, env):
        self.work, self.env, self.commands = work, env, []

    def run(self, name, cmd, cwd, timed=False):
        """Run ``cmd`` (list) in ``cwd``; output to ``<work>/log/<name>.log``. With ``timed``:
        ``{wall_s, cpu_s, user_s, sys_s, load_before, load_after}`` (CPU = children user+sys)."""
        log = os.path.join(self.work, "log", f"{name}.log")
        os.makedirs(os.path.dirname(log), exist_ok=True)
        line = " ".join(shlex.quote(str(c)) for c in cmd)
        self.commands.append({"name": name, "cwd": cwd, "command": line})
        print(f"+ (cd {cwd} && {line})", flush=True)
        load_before = os.getloadavg()
        t0, c0 = time.time(), os.times()
        with open(log, "w") as f:
            p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=self.env, stdout=f, stderr=subprocess.STDOUT)
        t1, c1 = time.time(), os.times()
        if p.returncode != 0:
            with open(log) as f:
                tail = f.read()[-4000:]
            raise SystemExit(f"ERROR (bench_vs_ivectors): {name} failed (exit {p.returncode}); log {log}:\n{tail}")
        user, sys_ = c1.children_user - c0.children_user, c1.children_system - c0.children_system
        return {"wall_s": round(t1 - t0, 2), "cpu_s": round(user + sys_, 2), "user_s": round(user, 2),
                "sys_s": round(sys_, 2), "load_before": [round(x, 2) for x in load_before],
                "load_after": [round(x, 2) for x in os.getloadavg()], "log": log} if timed else None


PROBE = r"""
import json, os, sys, time
def mark():
    t = os.times()
    return time.time(), t.user + t.system
w0, c0 = mark()
import tensorflow as tf
w1, c1 = mark()
import numpy as np
from utils_py.extract import extractor
from utils_py.kaldi.tables import iter_matrices
model_dir, period, threads, feats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
extractor.set_threads(threads)
model = extractor.load_model(model_dir)
w2, c2 = mark()
ex = extractor.Extractor(model, period=period)
ex.embed_utterance(np.zeros((int(model.config["window_length"]), int(model.config["feature_dim"])), np.float32))
w3, c3 = mark()
utts = [(k, np.asarray(m)) for k, m in iter_matrices(feats)]
w4, c4 = mark()
rows = sum(len(r) for _, r in ex.extract(utts, source=feats))
w5, c5 = mark()
print(json.dumps({"import_tf": [w1 - w0, c1 - c0], "load_model": [w2 - w1, c2 - c1],
                  "first_call": [w3 - w2, c3 - c2], "read_feats": [w4 - w3, c4 - c3],
                  "extract": [w5 - w4, c5 - c4], "rows": rows}))
"""


def tf_startup_probe(runner, model_dir, period, feats, work):
    """A fresh Python process: import TensorFlow, load the model, embed one window (the fixed
    start-up every extraction job pays), read the set's features, then embed the whole set
    in-process (compute only; nothing written). Wall/CPU of each part."""
    script = os.path.join(work, "tf_startup_probe.py")
    with open(script, "w") as f:
        f.write(PROBE)
    t = runner.run("unspeech_probe", [sys.executable, script, model_dir, period, 1, feats], work, timed=True)
    with open(t["log"]) as f:
        parts = json.loads([x for x in f.read().splitlines() if x.startswith("{")][-1])
    t["rows"] = parts.pop("rows")
    t["parts"] = {k: {"wall_s": round(v[0], 2), "cpu_s": round(v[1], 2)} for k, v in parts.items()}
    return t


def kaldi_workdir(work, recipe, kaldi_root):
    """A cwd for Kaldi's scripts: steps/utils links, path.sh sourcing the recipe's path.sh."""
    kdir = os.path.join(work, "kaldi")
    os.makedirs(kdir, exist_ok=True)
    for d in ("steps", "utils"):
        os.symlink(os.path.join(kaldi_root, "egs", "wsj", "s5", d), os.path.join(kdir, d))
    with open(os.path.join(kdir, "path.sh"), "w") as f:
        f.write(f"export KALDI_ROOT={shlex.quote(kaldi_root)}\n. {shlex.quote(os.path.join(recipe, 'path.sh'))}\n")
    return kdir


def link_extractor(src, dst):
    """The extractor's files linked into ``dst`` (Kaldi's get_ivector_id.sh may write final.ie.id)."""
    os.makedirs(dst)
    for name in EXTRACTOR_FILES:
        if os.path.isfile(os.path.join(src, name)):
            os.symlink(os.path.join(src, name), os.path.join(dst, name))
    missing = [n for n in EXTRACTOR_FILES[:6] if not os.path.isfile(os.path.join(dst, n))]
    if missing:
        raise SystemExit(f"ERROR (bench_vs_ivectors): extractor dir {src} lacks {', '.join(missing)} "
                         "(run.sh stage 10)")
    return dst


def extractor_info(extractor, recipe, env):
    """Best effort: Gaussians of the UBM, and the data dir and hours the extractor was trained on."""
    info = {}
    try:
        out = subprocess.run(["gmm-global-info", os.path.join(extractor, "final.dubm")], env=env,
                             capture_output=True, text=True).stdout
        m = re.search(r"number of gaussians (\d+)", out)
        info["ubm_gaussians"] = int(m.group(1)) if m else None
    except OSError:
        pass
    logs = os.path.join(extractor, "log")
    for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
        if name.startswith("acc."):
            with open(os.path.join(logs, name)) as f:
                m = re.search(r"scp:(\S+?)/split\d+\w*/\d+/feats\.scp", f.read(4000))
            if m:
                train = m.group(1)
                info["train_data"] = train
                path = train if os.path.isabs(train) else os.path.join(recipe, train)
                try:
                    info["train_hours"] = round(audio_seconds(path) / 3600, 3)
                except Exception:  # noqa: BLE001 - only informative
                    pass
            break
    return info


def cluster(runner, name, vec_dir, gold, work, opts):
    out = os.path.join(work, "cluster", name)
    runner.run(f"cluster_{name}", [os.path.join(STEPS, "cluster_utts.sh"), "--utt2spk", gold, *opts, vec_dir, out],
               REPO)
    with open(os.path.join(out, "scores.json")) as f:
        return json.load(f)


# ------------------------------------------------------------------ report
def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def render(res, path):
    t, rows = res["timings"], res["rows"]
    audio = res["audio_seconds"]
    lines = [
        f"# Kaldi online i-vectors vs unspeech embeddings: {res['corpus']}, set {res['set']}",
        "",
        "Made by `bench/bench_vs_ivectors.py`: both extracted from the same test set in one run, every vector "
        "set clustered by the same `steps_unspeech/cluster_utts.sh` (defaults: set-mean subtraction, L2 norm, "
        "HDBSCAN min_cluster_size 5, min_samples 3, boruvka_kdtree, outliers `own`) and scored against the "
        "gold speakers. EER and minDCF: same/different-speaker trials on cosine scores of all utterance pairs "
        "(after the same mean subtraction and length normalisation). Bold: the label-free rows being compared.",
        "",
        f"Recipe `{res['recipe_rel']}`, set `{res['set']}`: {res['num_utts']} utterances, "
        f"{res['num_gold_speakers']} gold speakers, {audio / 3600:.2f} h ({audio:.0f} s) of audio. "
        f"Date {res['date']}.",
        "",
        "## Clustering and speaker trials",
        "",
        "| vectors | speaker labels used | dim | utts | gold spk | clusters | outlier utts | ARI | NMI | purity "
        "| EER % | minDCF 0.01 | minDCF 0.05 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = r["scores"]
        name = f"**{r['vectors']}**" if r.get("main") else r["vectors"]
        eer = None if s.get("eer") is None else 100 * s["eer"]
        lines.append(
            f"| {name} | {r['labels']} | {s['dim']} | {s['num_utts']} | {s['num_gold_speakers']} | "
            f"{s['num_clusters']} | {s['num_outliers']} | {s['ari']:.4f} | {s['nmi']:.4f} | {s['purity']:.4f} | "
            f"{fmt(eer, '.2f')} | {fmt(s.get('min_dcf_p0.01'), '.3f')} | {fmt(s.get('min_dcf_p0.05'), '.3f')} |")
    lines += ["", "Vectors:", ""]
    lines += [f"- `{r['vectors']}`: {r['what']}" for r in rows]
    lines += [
        "",
        "## Extraction speed",
        "",
        "CPU = user+sys of all child processes (`os.times()`), wall = elapsed; × real time per core = audio "
        "seconds / CPU seconds. Steps: the whole step script with `--nj 1` and Kaldi's `run.pl`, as the recipe "
        "runs it. Compute only: Kaldi's binary alone on the same per-utterance data dir (`ark:/dev/null` out); "
        "unspeech embedding of the whole set inside one Python process after its start-up (nothing written). "
        "Feature extraction (hires MFCC for Kaldi, fbank for unspeech) is not included in either.",
        "",
        "| extraction | wall s | CPU s | × real time per core | load avg before → after (1 min) |",
        "|---|---:|---:|---:|---|",
    ]
    for key, label in (("kaldi_per_utt", "Kaldi step `extract_ivectors_online.sh`, per-utterance speakers"),
                       ("kaldi_per_spk", "Kaldi step `extract_ivectors_online.sh`, true speakers"),
                       ("unspeech", "unspeech step `extract_unspeech.sh` (incl. TensorFlow start-up)"),
                       ("kaldi_binary", "Kaldi compute only: `ivector-extract-online2`, per-utterance speakers")):
        if key in t:
            x = t[key]
            lines.append(f"| {label} | {x['wall_s']:.1f} | {x['cpu_s']:.1f} | {x['xrt_per_core']:.0f}× | "
                         f"{x['load_before'][0]:.2f} → {x['load_after'][0]:.2f} |")
    pr = t["unspeech_probe"]
    parts = pr["parts"]
    lines.append(f"| unspeech compute only: embedding all utterances in-process | {parts['extract']['wall_s']:.1f} | "
                 f"{parts['extract']['cpu_s']:.1f} | {parts['extract']['xrt_per_core']:.0f}× | "
                 f"{pr['load_before'][0]:.2f} → {pr['load_after'][0]:.2f} |")
    ws = lambda k: f"{parts[k]['wall_s']:.1f} s / {parts[k]['cpu_s']:.1f} s"  # noqa: E731
    lines += [
        "",
        f"TensorFlow start-up (wall / CPU), measured in the probe process before the step ran (so both saw a warm "
        f"file cache): import tensorflow {ws('import_tf')}, model load {ws('load_model')}, first forward call "
        f"{ws('first_call')}; together {ws('startup')}. The probe process in all: {pr['wall_s']:.1f} s / "
        f"{pr['cpu_s']:.1f} s (also reading the features: {ws('read_feats')}). `extract_unspeech.sh` starts "
        f"Python three times (prepare, job, finalize); only the job imports TensorFlow.",
    ]
    checks = res.get("checks") or {}
    if checks:
        lines += ["", "Re-extraction vs the recipe's own vectors (same model, same options):"]
        for key, c in checks.items():
            what = {"unspeech": "unspeech vs run.sh stage 4",
                    "kaldi_per_spk": "Kaldi per true speaker vs run.sh stage 10"}[key]
            if c is None:
                lines.append(f"- {what}: no such dir in the recipe, not compared.")
            elif isinstance(c, str):
                lines.append(f"- {what}: {c}.")
            else:
                lines.append(f"- {what} (`{os.path.relpath(c['dir'], REPO)}`): {c['utts']} utterances, largest "
                             f"|difference| of any row value {c['max_abs_diff']:.2g}.")
    lines += [
        "",
        "## Notes",
        "",
        "- An online i-vector row is estimated from the utterance's frames up to that row (with per-utterance "
        "speakers nothing carries over between utterances); early rows rest on few frames and stay near the "
        "prior (posterior scale 0.1). `kaldi-ivector-online` averages all rows, which is what `cluster_utts.sh` "
        "does with any online-ivector dir; `kaldi-ivector-last` takes only the last row, the i-vector of the "
        "whole utterance, and is the fairer label-free i-vector representation. unspeech rows are independent "
        "window embeddings, so their mean has no such bias.",
        "- One back-end for every row: set-mean subtraction, length normalisation, cosine / euclidean HDBSCAN. No "
        "LDA/PLDA: a Kaldi speaker-recognition back-end would add them, but they are trained with speaker labels.",
        "- Both extractors come from the recipe's own training data (Kaldi: the speed-perturbed hires set; "
        "unspeech: the unperturbed fbank set), no external data; Kaldi's own recipes train i-vector extractors "
        "on far more audio, so these i-vectors are those of a small-data extractor.",
        "- The true-speaker row uses the gold labels at extraction and is not a label-free result.",
        "- Timing: every process single-threaded (Kaldi's binaries; TensorFlow with 1 thread). On a short set the "
        "unspeech step is dominated by TensorFlow's start-up, paid once per job, so the compute-only rows are the "
        "throughput on long sets; the Kaldi step's extra over its binary is bash/perl script overhead.",
    ]
    for n in res.get("notes") or []:
        lines.append(f"- {n}")
    lines += ["", "## Models", ""]
    ki, um = res["kaldi_extractor"], res["unspeech_model"]
    lines.append(f"- Kaldi: `{ki['dir_rel']}` — online i-vector extractor of `local/run_kaldi_ivectors.sh` "
                 f"(PCA, diagonal UBM with {ki.get('ubm_gaussians', '?')} Gaussians, i-vector dim "
                 f"{ki.get('ivector_dim', '?')}), trained on `{ki.get('train_data', '?')}` "
                 f"({fmt(ki.get('train_hours'), '.2f')} h); extraction options are Kaldi's defaults (period 10, "
                 f"posterior scale 0.1, max-count 0), as run.sh stage 10.")
    lines.append(f"- unspeech: `{um['dir_rel']}` — {um.get('embedding_transformation', '?')}, window "
                 f"{um.get('window_length', '?')}, dim {um.get('embedding_size', '?')}, objective "
                 f"{um.get('objective', '?')}, {um.get('steps_done', '?')} steps, val accuracy "
                 f"{fmt(um.get('val_accuracy'), '.3f')}, trained on {um.get('train_utterances', '?')} utterances "
                 f"in {fmt(um.get('train_minutes'), '.1f')} min; extraction period {res['period']}.")
    lines += ["", "## Machine", "", f"{res['machine']}; 1/5/15-min load average at the start "
              f"{' '.join(map(str, res['load_start']))}, at the end {' '.join(map(str, res['load_end']))}."]
    lines += ["", "## Commands", "", "From the repository root (`$REPO`), in this order; Kaldi's binaries on PATH "
              "from the recipe's `path.sh`:", "", "```sh", res["invocation"], "# which ran:"]
    for c in res["commands"]:
        lines.append(c["command_rel"] if c["cwd_rel"] == "." else f"(cd {c['cwd_rel']} && {c['command_rel']})")
    lines += ["```", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


# ------------------------------------------------------------------ main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default=os.path.join(REPO, "egs", "tedlium", "s5_unspeech"),
                   help="recipe dir where run.sh stages 0-10 ran (read only) (default: %(default)s)")
    p.add_argument("--set", default="test", help="test set: data/<set> (fbank) and data/<set>_hires (MFCC)")
    p.add_argument("--corpus", default="demo", help="corpus name for the output files (default: %(default)s)")
    p.add_argument("--out", default=None, help="output prefix (default bench/results/vs_ivectors_<corpus>)")
    p.add_argument("--work", default=None, help="work dir, emptied first (default bench/work/vs_ivectors_<corpus>)")
    p.add_argument("--kaldi-root", default=os.environ.get("KALDI_ROOT", ""), help="compiled Kaldi ($KALDI_ROOT)")
    p.add_argument("--extractor", default=None, help="Kaldi extractor dir (default <recipe>/exp/nnet3/extractor)")
    p.add_argument("--model-dir", default=None, help="unspeech model dir (default <recipe>/exp/unspeech)")
    p.add_argument("--hires-suffix", default="_hires", help="Kaldi MFCC data dir = data/<set><suffix>")
    p.add_argument("--period", type=int, default=10, help="unspeech rows every N frames (run.sh --period)")
    p.add_argument("--per-speaker", default="true", choices=("true", "false"),
                   help="also extract Kaldi i-vectors per true speaker (labels leak; labelled reference)")
    p.add_argument("--cluster-opts", default="", help="more cluster_utts.sh options, the same for all vectors")
    p.add_argument("--note", action="append", default=[],
                   help="a note for the results file (repeatable), e.g. about the machine's load")
    args = p.parse_args(argv)

    recipe = os.path.abspath(args.recipe)
    out = os.path.abspath(args.out or os.path.join(BENCH, "results", f"vs_ivectors_{args.corpus}"))
    work = os.path.abspath(args.work or os.path.join(BENCH, "work", f"vs_ivectors_{args.corpus}"))
    kaldi_root = os.path.abspath(args.kaldi_root) if args.kaldi_root else ""
    extractor = os.path.abspath(args.extractor or os.path.join(recipe, "exp", "nnet3", "extractor"))
    model_dir = os.path.abspath(args.model_dir or os.path.join(recipe, "exp", "unspeech"))
    data_fbank = os.path.join(recipe, "data", args.set)
    data_hires = os.path.join(recipe, "data", args.set + args.hires_suffix)
    if not kaldi_root or not os.path.isfile(os.path.join(kaldi_root, "egs", "wsj", "s5", "utils", "run.pl")):
        raise SystemExit("ERROR (bench_vs_ivectors): needs a compiled Kaldi: export KALDI_ROOT=/path/to/kaldi "
                         f"or --kaldi-root (got '{kaldi_root}')")
    for path, what in ((os.path.join(data_fbank, "feats.scp"), "fbank features (run.sh stage 2)"),
                       (os.path.join(data_hires, "feats.scp"), "hires MFCC (run.sh stage 8)"),
                       (os.path.join(model_dir, "config.json"), "unspeech model (run.sh stage 3)"),
                       (os.path.join(extractor, "final.ie"), "Kaldi i-vector extractor (run.sh stage 10)")):
        if not os.path.isfile(path):
            raise SystemExit(f"ERROR (bench_vs_ivectors): missing {what}: {path}")
    for path in (work, out):
        if os.path.commonpath([path, recipe]) == recipe:
            raise SystemExit(f"ERROR (bench_vs_ivectors): {path} is inside the recipe dir; it is only read")
    if os.path.isdir(work):
        shutil.rmtree(work)
    os.makedirs(work)
    os.makedirs(os.path.dirname(out), exist_ok=True)

    env = dict(os.environ)
    env.update(KALDI_ROOT=kaldi_root, LC_ALL="C", PYTHONUNBUFFERED="1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    kaldi_bin = subprocess.run(["bash", "-c", f". {shlex.quote(os.path.join(recipe, 'path.sh'))} && echo $PATH"],
                               env=env, capture_output=True, text=True, cwd=recipe).stdout.strip()
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + (kaldi_bin or env["PATH"])
    runner = Runner(work, env)
    load_start = [round(x, 2) for x in os.getloadavg()]
    run_pl = os.path.join(kaldi_root, "egs", "wsj", "s5", "utils", "run.pl")

    # Data copies: fbank set (unspeech), hires per utterance and per true speaker (Kaldi).
    data = os.path.join(work, "data")
    utt2spk = copy_data_dir(data_fbank, os.path.join(data, args.set), recipe)
    copy_data_dir(data_hires, os.path.join(data, f"{args.set}_hires_per_utt"), recipe, per_utt_speakers=True)
    hires_spk = copy_data_dir(data_hires, os.path.join(data, f"{args.set}_hires_per_spk"), recipe)
    if set(hires_spk) != set(utt2spk):
        raise SystemExit(f"ERROR (bench_vs_ivectors): {data_fbank} and {data_hires} hold different utterances")
    gold_name = "utt2spk.gold" if os.path.isfile(os.path.join(data_fbank, "utt2spk.gold")) else "utt2spk"
    gold = os.path.join(data, args.set, gold_name)
    gold_table = datadir.read_table(gold)
    audio = audio_seconds(os.path.join(data, args.set))
    kdir = kaldi_workdir(work, recipe, kaldi_root)
    ext_link = link_extractor(extractor, os.path.join(kdir, "extractor"))
    timings = {}

    # 1. Kaldi, each utterance its own speaker; 3. per true speaker.
    variants = [("kaldi_per_utt", f"{args.set}_hires_per_utt")]
    if args.per_speaker == "true":
        variants.append(("kaldi_per_spk", f"{args.set}_hires_per_spk"))
    for key, dname in variants:
        timings[key] = runner.run(
            f"extract_{key}", ["steps/online/nnet2/extract_ivectors_online.sh", "--nj", "1", "--cmd", run_pl,
                               os.path.join(data, dname), ext_link, os.path.join(work, "ivectors", key)],
            kdir, timed=True)

    # Compute only: Kaldi's binary on the per-utterance set, without the scripts around it.
    ieconf = os.path.join(work, "ivectors", "kaldi_per_utt", "conf", "ivector_extractor.conf")
    per_utt = os.path.join(data, f"{args.set}_hires_per_utt")
    timings["kaldi_binary"] = runner.run(
        "kaldi_binary_only", ["ivector-extract-online2", f"--config={ieconf}", f"ark:{per_utt}/spk2utt",
                              f"scp:{per_utt}/feats.scp", "ark:/dev/null"], kdir, timed=True)

    # 2. unspeech: a probe (TensorFlow start-up, then compute only, in one process; it also warms
    # the file cache), then the recipe's step as run.sh stage 4 runs it.
    timings["unspeech_probe"] = tf_startup_probe(runner, model_dir, args.period,
                                                 os.path.join(data, args.set, "feats.scp"), work)
    timings["unspeech"] = runner.run(
        "extract_unspeech", [os.path.join(STEPS, "extract_unspeech.sh"), "--nj", "1", "--cmd", run_pl,
                             "--period", args.period, "--speaker-vectors", "true", os.path.join(data, args.set),
                             model_dir, os.path.join(work, "ivectors", "unspeech")], REPO, timed=True)
    for key in ("kaldi_per_utt", "kaldi_per_spk", "kaldi_binary", "unspeech"):
        if key in timings:
            timings[key]["xrt_per_core"] = round(audio / timings[key]["cpu_s"], 1)
    parts = timings["unspeech_probe"]["parts"]
    parts["startup"] = {k: round(sum(parts[x][k] for x in ("import_tf", "load_model", "first_call")), 2)
                        for k in ("wall_s", "cpu_s")}
    parts["extract"]["xrt_per_core"] = round(audio / parts["extract"]["cpu_s"], 1)

    # Do the re-extractions reproduce the recipe's own (run.sh stages 4 and 10)?
    checks = {"unspeech": compare_vectors(os.path.join(work, "ivectors", "unspeech"),
                                          os.path.join(model_dir, f"ivectors_{args.set}"))}
    if args.per_speaker == "true":
        checks["kaldi_per_spk"] = compare_vectors(os.path.join(work, "ivectors", "kaldi_per_spk"),
                                                  os.path.join(os.path.dirname(extractor), f"ivectors_{args.set}"))

    # Vector sets and clustering.
    vecs = os.path.join(work, "vectors")
    from bench_quality import fbank_vectors
    ivec = lambda k: os.path.join(work, "ivectors", k)  # noqa: E731
    sets = [
        dict(vectors="kaldi-ivector-online", labels="none (one speaker per utterance)", main=True,
             dir=ivec("kaldi_per_utt"),
             what="Kaldi online i-vectors, each utterance its own speaker; mean of the utterance's rows "
                  "(one per 10 frames; each row estimated from the utterance's frames so far)."),
        dict(vectors="kaldi-ivector-last", labels="none (one speaker per utterance)", main=True,
             dir=last_row_vectors(ivec("kaldi_per_utt"), os.path.join(vecs, "kaldi_per_utt_last")),
             what="the same extraction, last row of each utterance only: the i-vector of the whole utterance."),
        dict(vectors="unspeech", labels="none", main=True, dir=ivec("unspeech"),
             what="unspeech `utt_vectors.scp`: mean of the utterance's embedding rows (period "
                  f"{args.period})."),
        dict(vectors="fbank-mean", labels="none",
             dir=fbank_vectors(data, [args.set], os.path.join(vecs, "fbank_mean"), with_std=False),
             what="baseline: mean of the utterance's 40-dim fbank frames (`bench_quality.py`)."),
        dict(vectors="fbank-mean+std", labels="none",
             dir=fbank_vectors(data, [args.set], os.path.join(vecs, "fbank_mean_std"), with_std=True),
             what="baseline: fbank mean and standard deviation."),
    ]
    if args.per_speaker == "true":
        sets.append(dict(
            vectors="kaldi-ivector-online per true speaker (LEAKS LABELS)",
            labels=f"YES: utt2spk of data/{args.set}{args.hires_suffix}", dir=ivec("kaldi_per_spk"),
            what="Kaldi online i-vectors extracted per speaker of the data dir, as Kaldi's recipes do for test "
                 "sets: each utterance's rows continue from the statistics of the same speaker's earlier "
                 "utterances, so the gold labels are in the vectors. A reference, not the comparison."))
    rows = []
    for i, s in enumerate(sets):
        scores = cluster(runner, f"{i}_{re.sub(r'[^A-Za-z0-9+]+', '_', s['vectors']).strip('_')}", s["dir"], gold,
                         work, args.cluster_opts.split())
        row = {k: v for k, v in s.items() if k != "dir"}
        row.update(vector_dir=os.path.relpath(s["dir"], REPO), scores=scores)
        rows.append(row)
        print(f"{s['vectors']}: ARI {scores['ari']:.4f} NMI {scores['nmi']:.4f} clusters {scores['num_clusters']} "
              f"outliers {scores['num_outliers']} EER {scores.get('eer')}", flush=True)

    # Models and machine.
    ki = extractor_info(extractor, recipe, env)
    ki["dir_rel"] = os.path.relpath(extractor, REPO)
    ki["ivector_dim"] = rows[0]["scores"]["dim"]
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    um = {k: cfg.get(k) for k in ("embedding_transformation", "window_length", "embedding_size", "objective")}
    if os.path.isfile(os.path.join(model_dir, "metrics.json")):
        with open(os.path.join(model_dir, "metrics.json")) as f:
            m = json.load(f)
        um.update(steps_done=m.get("step"), val_accuracy=m.get("val_accuracy"),
                  train_utterances=m.get("train_utterances"),
                  train_minutes=round(60 * m["elapsed_hours"], 1) if m.get("elapsed_hours") else None)
    um["dir_rel"] = os.path.relpath(model_dir, REPO)
    rel = lambda x: x.replace(REPO + "/", "")  # noqa: E731
    for c in runner.commands:   # relative to the repo root; $REPO/... where the command runs elsewhere
        if c["cwd"] == REPO:
            c["cwd_rel"], c["command_rel"] = ".", rel(c["command"])
        else:
            c["cwd_rel"], c["command_rel"] = c["cwd"].replace(REPO, "$REPO"), c["command"].replace(REPO, "$REPO")
    for x in timings.values():
        if "log" in x:
            x["log"] = rel(x["log"])
    res = {
        "corpus": args.corpus, "set": args.set, "recipe": recipe, "recipe_rel": os.path.relpath(recipe, REPO),
        "date": datetime.date.today().isoformat(), "machine": cpu_description() + f", Python {sys.version.split()[0]}",
        "notes": args.note, "audio_seconds": round(audio, 2), "num_utts": len(utt2spk),
        "num_gold_speakers": len(set(gold_table.values())), "gold": gold_name, "period": args.period,
        "timings": timings, "rows": rows, "kaldi_extractor": ki, "unspeech_model": um,
        "commands": runner.commands, "kaldi_root": kaldi_root, "checks": checks,
        "load_start": load_start, "load_end": [round(x, 2) for x in os.getloadavg()],
        "invocation": "KALDI_ROOT=" + kaldi_root + " " + " ".join(
            shlex.quote(rel(os.path.abspath(a)) if os.path.exists(a) else a) for a in sys.argv),
    }
    with open(out + ".json", "w") as f:
        json.dump(res, f, indent=1)
    render(res, out + ".md")
    print(f"wrote {out}.md and {out}.json", flush=True)


if __name__ == "__main__":
    main()
