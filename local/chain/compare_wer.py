#!/usr/bin/env python3
"""The WER table of run.sh stage 12: one row per chain condition (and the GMM, --gmm),
WER of every test set with Kaldi's scoring (``scoring_kaldi/best_wer``), seconds of
chain training (egs + train.py) and of decoding (``times.json`` of run_tdnn.sh).

Writes ``<out>.md`` and ``<out>.json`` and prints the table. A condition that has
not been decoded yet is listed with its WER missing, never left out."""
import json
import os
import re
import sys

try:
    import utils_py  # noqa: F401
except ImportError:  # run directly, not via path.sh
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))))

from utils_py.cli import parse_args, step_parser  # noqa: E402
from utils_py.fileio import atomic_write_text  # noqa: E402
from utils_py.log import UnspeechError, run_step  # noqa: E402

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


def read_times(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def collect(recipe: str, conditions: list, test_sets: list, affix: str, gmm_name: str = "tri3") -> list:
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
    return rows


def markdown(rows: list, test_sets: list, corpus: str) -> str:
    head = ["condition"] + [f"WER {x} %" for x in test_sets] + ["errors (ins/del/sub)", "train s"] + \
        [f"decode {x} s" for x in test_sets]
    lines = [f"Chain TDNN WERs, corpus {corpus} (Kaldi's steps/score_kaldi.sh, best LM weight / penalty)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        wers = [r["wer"][x] for x in test_sets]
        cells = [r["label"]] + [f"{w['wer']:.2f}" if w else "—" for w in wers]
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
    p.add_argument("--corpus", default="", help="corpus name for the table's title")
    p.add_argument("--out", required=True, help="write <out>.md and <out>.json (relative to the recipe dir)")
    p.add_argument("recipe", help="recipe dir (holds exp/)")
    return p


def main(argv=None):
    args = parse_args(build_parser(), argv)
    test_sets = args.test_sets.split()
    rows = collect(args.recipe, args.conditions.split(), test_sets, args.affix, args.gmm)
    table = markdown(rows, test_sets, args.corpus)
    out = os.path.join(args.recipe, args.out)
    atomic_write_text(out + ".json", json.dumps({"corpus": args.corpus, "test_sets": test_sets, "rows": rows},
                                                indent=1) + "\n")
    atomic_write_text(out + ".md", table)
    print(table, end="")
    return 0


if __name__ == "__main__":
    run_step(STEP, main)
