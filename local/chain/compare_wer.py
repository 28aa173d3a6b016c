#!/usr/bin/env python3
"""The WER table of run.sh stage 12: one row per chain condition (and the GMM, --gmm),
WER of every test set with Kaldi's scoring (``scoring_kaldi/best_wer``), seconds of
chain training (egs + train.py) and of decoding (``times.json`` of run_tdnn.sh), and, with
Kaldi's ``compute-wer-bootci`` on PATH, a bootstrap 95 % confidence interval of each WER and
the probability that the condition is better than the first one (the baseline, e.g. no
speaker input) on the same utterances.

Writes ``<out>.md`` and ``<out>.json`` and prints the table. A condition that has
not been decoded yet is listed with its WER missing, never left out."""
import json
import os
import re
import shutil
import subprocess
import tempfile

from utils_py.kaldi import datadir
from utils_py.cli import parse_args, step_parser
from utils_py.fileio import atomic_write_text
from utils_py.log import UnspeechError, run_step

STEP = "compare_wer"
EPILOG = """Example (what run.sh stage 12 runs):
  local/chain/compare_wer.py --conditions "none:original unspeech:clustered" --test-sets test \\
    --corpus demo --out exp/chain_results ."""
BEST_WER = re.compile(r"%WER\s+([\d.]+)\s+\[\s*(\d+)\s*/\s*(\d+),\s*(\d+)\s+ins,\s*(\d+)\s+del,\s*(\d+)\s+sub\s*\]")
LABELS = {
    ("none", "original"): "no speaker input",
    ("ivector", "original"): "Kaldi i-vectors",
    ("unspeech", "original"): "unspeech",
    ("unspeech", "clustered"): "unspeech + clustered speakers",
    ("ivector", "clustered"): "Kaldi i-vectors + clustered speakers",
    ("none", "clustered"): "no speaker input, clustered-speaker CMVN",
}
GMM_LABELS = {"mono": "mono GMM", "tri1": "tri1 GMM (deltas)", "tri2": "tri2 GMM (LDA+MLLT)",
              "tri3": "tri3 GMM (SAT, fMLLR decode)"}


def read_best_wer(path: str):
    """``{"wer", "errors", "words", "ins", "del", "sub", "best"}`` from Kaldi's best_wer, None if absent.

    >>> import tempfile; f = tempfile.NamedTemporaryFile("w", suffix="best_wer", delete=False)
    >>> _ = f.write("%WER 12.50 [ 25 / 200, 3 ins, 2 del, 20 sub ] exp/x/wer_10_0.0\\n"); f.close()
    >>> read_best_wer(f.name)["wer"], read_best_wer(f.name)["errors"]
    (12.5, 25)
    """
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        line = f.read().strip()
    m = BEST_WER.search(line)
    if not m:
        raise UnspeechError(f"not a Kaldi best_wer line: {path}")
    wer, errors, words, ins, dels, sub = m.groups()
    return {"wer": float(wer), "errors": int(errors), "words": int(words), "ins": int(ins), "del": int(dels),
            "sub": int(sub), "best": line.split()[-1]}


BOOTCI_SET = re.compile(r"Set(\d): %WER ([\d.]+) 95% Conf Interval \[ (-?[\d.]+), (-?[\d.]+) \]")
BOOTCI_BETTER = re.compile(r"Probability of Set2 improving Set1: ([\d.]+)")
BEST_HYP = re.compile(r"wer_(\d+)_([\d.]+)$")


def hyp_and_ref(decode_dir: str, best: dict):
    """Kaldi's scoring_kaldi files of the best LM weight / penalty: (hyp, ref) paths or None."""
    m = BEST_HYP.search(best["best"]) if best else None
    if not m:
        return None
    scoring = os.path.join(decode_dir, "scoring_kaldi")
    hyp = os.path.join(scoring, f"penalty_{m.group(2)}", f"{m.group(1)}.txt")
    ref = os.path.join(scoring, "test_filt.txt")
    return (hyp, ref) if os.path.isfile(hyp) and os.path.isfile(ref) else None


def bootstrap(base_hyp: str, hyp: str, ref: str) -> dict:
    """``{"ci": [lo, hi], "p_better": %}`` of ``hyp`` against ``base_hyp`` (same utterance keys
    as ``ref``) with Kaldi's compute-wer-bootci; {} when it is not on PATH or fails."""
    tool = shutil.which("compute-wer-bootci")
    if not tool:
        return {}
    p = subprocess.run([tool, "--mode=present", f"ark:{ref}", f"ark:{base_hyp}", f"ark:{hyp}"],
                       capture_output=True, text=True)
    sets = {m.group(1): [float(m.group(3)), float(m.group(4))] for m in BOOTCI_SET.finditer(p.stdout + p.stderr)}
    better = BOOTCI_BETTER.search(p.stdout + p.stderr)
    if p.returncode != 0 or "2" not in sets or not better:
        return {}
    return {"ci": sets["2"], "p_better": float(better.group(1))}


def rekeyed(path: str, new2old: dict, out: str) -> str:
    """``path`` (Kaldi text: key words...) with keys mapped by ``new2old``, written to ``out``."""
    with open(path, encoding="utf-8") as f, open(out, "w", encoding="utf-8") as g:
        for line in f:
            key, _, rest = line.rstrip("\n").partition(" ")
            g.write(f"{new2old.get(key, key)} {rest}\n")
    return out


def read_times(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def collect(recipe: str, conditions: list, test_sets: list, affix: str, gmm_name: str = "tri3",
            data_suffix: str = "_hires") -> list:
    """One row per condition (and ``gmm:original`` for the GMM ``exp/<gmm_name>`` when decoded)."""
    rows = []
    gmm = {x: read_best_wer(os.path.join(recipe, "exp", gmm_name, f"decode_{x}", "scoring_kaldi", "best_wer"))
           for x in test_sets}
    if any(gmm.values()):
        rows.append({"condition": "gmm:original", "label": GMM_LABELS.get(gmm_name, f"{gmm_name} GMM"), "wer": gmm,
                     "times": {}})
    for cond in conditions:
        features, _, speakers = cond.partition(":")
        if not speakers:
            raise UnspeechError(f"condition must be <features>:<speakers>, got {cond}")
        d = os.path.join(recipe, "exp", f"chain_{features}_{speakers}", f"tdnn{affix}")
        rows.append({
            "condition": cond, "label": LABELS.get((features, speakers), cond), "dir": d,
            "wer": {x: read_best_wer(os.path.join(d, f"decode_{x}", "scoring_kaldi", "best_wer")) for x in test_sets},
            "times": read_times(os.path.join(d, "times.json")),
        })
    add_bootstrap(recipe, rows, test_sets, data_suffix)
    return rows


def add_bootstrap(recipe: str, rows: list, test_sets: list, data_suffix: str) -> None:
    """``row["bootstrap"][set]`` of every chain row against the first one, compared on the
    utterances' original ids (clustered conditions renamed them: ``data/<set><data-suffix>_unspk/utt_map``)."""
    chain = [r for r in rows if "dir" in r]
    if not chain:
        return
    with tempfile.TemporaryDirectory() as tmp:
        def scored(i, row, x):  # (hyp, ref) of a row's decode of set x, keyed by the original ids
            files = hyp_and_ref(os.path.join(row["dir"], f"decode_{x}"), row["wer"][x])
            utt_map = os.path.join(recipe, "data", f"{x}{data_suffix}_unspk", "utt_map")
            if not files or not row["condition"].endswith(":clustered") or not os.path.isfile(utt_map):
                return files
            new2old = datadir.read_table(utt_map, check_sorted=False)
            return tuple(rekeyed(f, new2old, os.path.join(tmp, f"{i}.{x}.{n}")) for n, f in enumerate(files))

        for x in test_sets:
            base = scored(0, chain[0], x)
            for i, r in enumerate(chain):
                files = scored(i, r, x)
                r.setdefault("bootstrap", {})[x] = bootstrap(base[0], files[0], base[1]) if files and base else {}


def markdown(rows: list, test_sets: list, corpus: str) -> str:
    base = next((r["label"] for r in rows if r["condition"] != "gmm:original"), "")
    head = ["condition"] + [f"WER {x} %" for x in test_sets] + [f"95% CI {x}" for x in test_sets] + \
        [f"P(better than {base}) {x}" for x in test_sets] + ["errors (ins/del/sub)", "train s"] + \
        [f"decode {x} s" for x in test_sets]
    lines = [f"Chain TDNN WERs, corpus {corpus} (Kaldi's steps/score_kaldi.sh, best LM weight / penalty; "
             f"95 % CI and P(better) by Kaldi's compute-wer-bootci on the same utterances)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        wers = [r["wer"][x] for x in test_sets]
        cells = [r["label"]] + [f"{w['wer']:.2f}" if w else "—" for w in wers]
        boot = [r.get("bootstrap", {}).get(x) or {} for x in test_sets]
        # Kaldi's interval is a normal approximation: shown clipped at 0
        cells += [f"{max(0.0, b['ci'][0]):.2f}–{b['ci'][1]:.2f}" if b else "—" for b in boot]
        cells += [f"{b['p_better']:.0f} %" if b and r["label"] != base else "—" for b in boot]
        cells.append(", ".join(f"{w['errors']}/{w['words']} ({w['ins']}/{w['del']}/{w['sub']})" if w else "—"
                               for w in wers))
        t = r["times"]
        cells.append(f"{t['train']:.0f}" if "train" in t else "—")
        cells += [f"{t[f'decode_{x}']:.0f}" if f"decode_{x}" in t else "—" for x in test_sets]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def build_parser():
    p = step_parser(__doc__, EPILOG)
    p.add_argument("--conditions", required=True, help="space-separated <features>:<speakers> of run_tdnn.sh")
    p.add_argument("--test-sets", required=True, help="space-separated test set names")
    p.add_argument("--affix", default="1a", help="run_tdnn.sh --affix (exp/chain_<f>_<s>/tdnn<affix>)")
    p.add_argument("--gmm", default="tri3", help="the GMM of run.sh stage 9 (exp/<gmm>/decode_<set>)")
    p.add_argument("--data-suffix", default="_hires",
                   help="run_tdnn.sh --data-suffix (clustered ids map back via data/<set><suffix>_unspk/utt_map)")
    p.add_argument("--corpus", default="", help="corpus name for the table's title")
    p.add_argument("--out", required=True, help="write <out>.md and <out>.json (relative to the recipe dir)")
    p.add_argument("recipe", help="recipe dir (holds exp/)")
    return p


def main(argv=None):
    args = parse_args(build_parser(), argv)
    test_sets = args.test_sets.split()
    rows = collect(args.recipe, args.conditions.split(), test_sets, args.affix, args.gmm, args.data_suffix)
    table = markdown(rows, test_sets, args.corpus)
    out = os.path.join(args.recipe, args.out)
    atomic_write_text(out + ".json", json.dumps({"corpus": args.corpus, "test_sets": test_sets, "rows": rows},
                                                indent=1) + "\n")
    atomic_write_text(out + ".md", table)
    print(table, end="")
    return 0


if __name__ == "__main__":
    run_step(STEP, main)
