#!/usr/bin/env python3
"""Results file of a whole recipe run with Kaldi: the chain WER table (run.sh stage 12's
``exp/chain_results.json``) with the data and model sizes it came from, and the
speed/quality pair of Kaldi's i-vectors and unspeech on the same test set
(``bench/results/vs_ivectors_<corpus>.json`` of ``bench_vs_ivectors.py``, when present).

Usage (after ``./run.sh --corpus demo`` ran to stage 12 and bench_vs_ivectors.py ran)::

    bench/chain_report.py --recipe egs/tedlium/s5_unspeech --corpus demo
    # -> bench/results/chain_demo.md and .json
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchinfo import cpu_description  # noqa: E402
from utils_py.kaldi import datadir  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def data_facts(recipe: str, name: str) -> dict:
    d = os.path.join(recipe, "data", name)
    if not os.path.isfile(os.path.join(d, "utt2spk")):
        return {}
    utt2spk = datadir.read_table(os.path.join(d, "utt2spk"))
    facts = {"utts": len(utt2spk), "speakers": len(set(utt2spk.values()))}
    if os.path.isfile(os.path.join(d, "utt2dur")):
        facts["hours"] = round(sum(float(v) for v in datadir.read_table(os.path.join(d, "utt2dur")).values()) / 3600, 3)
    return facts


def read_json(path: str):
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def chain_settings(recipe: str, corpus: str) -> list:
    """The non-comment lines of conf/chain_<corpus>.conf."""
    path = os.path.join(recipe, "conf", f"chain_{corpus}.conf")
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [line.split("#")[0].strip() for line in f if line.split("#")[0].strip()]


def pair_rows(vs: dict) -> list:
    """The label-free rows of bench_vs_ivectors.py with the extraction speed of their step."""
    if not vs:
        return []
    t = vs["timings"]
    speed = {"kaldi": t.get("kaldi_per_utt", {}).get("xrt_per_core"),
             "unspeech": t.get("unspeech", {}).get("xrt_per_core")}
    compute = {"kaldi": t.get("kaldi_binary", {}).get("xrt_per_core"),
               "unspeech": t.get("unspeech_probe", {}).get("parts", {}).get("extract", {}).get("xrt_per_core")}
    out = []
    for row in vs["rows"]:
        name, sc = row["vectors"], row["scores"]
        if not row.get("main"):
            continue
        out.append({"vectors": name, "ari": sc["ari"], "nmi": sc["nmi"], "eer": 100 * sc["eer"],
                    "clusters": sc["num_clusters"],
                    "xrt_per_core": speed["kaldi" if name.startswith("kaldi") else "unspeech"],
                    "compute_xrt_per_core": compute["kaldi" if name.startswith("kaldi") else "unspeech"]})
    return out


def markdown(report: dict) -> str:
    r = report
    lines = [f"# Kaldi chain TDNNs on {r['corpus']}: WER by speaker/context input", "",
             f"Machine: {r['machine']}. Date {r['date']}. Made by `bench/chain_report.py` from run.sh stage 12's "
             f"`exp/chain_results.json` (recipe `{r['recipe']}`).", ""]
    lines.append("Data: " + "; ".join(f"{k} {v['utts']} utts, {v['speakers']} speakers"
                                       + (f", {v['hours']:.2f} h" if "hours" in v else "")
                                       for k, v in r["data"].items() if v) + ".")
    lines.append("")
    lines.append("Chain settings (`conf/chain_" + r["corpus"] + ".conf`): `" + "; ".join(r["chain_settings"]) + "`.")
    lines.append("")
    lines.append(r["wer_table"].rstrip())
    lines.append("")
    if r["pair"]:
        lines += ["## Kaldi i-vectors vs unspeech on the same test set (label-free clustering)", "",
                  f"From `{r['pair_source']}`: extraction speed of the whole step (`--nj 1`, for unspeech "
                  "including TensorFlow's start-up, ~6 s a job) and of the computation alone (Kaldi's binary; "
                  "unspeech's embedding after start-up); see there for the details.", "",
                  "| vectors | ARI | NMI | clusters | EER % | step × real time per core | compute only |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        fmt = lambda v: f"{v:.0f}×" if v else "—"  # noqa: E731
        for p in r["pair"]:
            lines.append(f"| {p['vectors']} | {p['ari']:.3f} | {p['nmi']:.3f} | {p['clusters']} | {p['eer']:.2f} | "
                         f"{fmt(p['xrt_per_core'])} | {fmt(p.get('compute_xrt_per_core'))} |")
        lines.append("")
    if r["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in r["notes"]] + [""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--recipe", default="egs/tedlium/s5_unspeech", help="recipe dir that ran stages 0-12")
    p.add_argument("--corpus", required=True, help="corpus name (file names and title)")
    p.add_argument("--train-set", default="train_sp")
    p.add_argument("--test-set", default="test")
    p.add_argument("--note", action="append", default=[], help="a line for the Notes section (repeatable)")
    p.add_argument("--out", default=None, help="output prefix (default bench/results/chain_<corpus>)")
    args = p.parse_args(argv)
    results = read_json(os.path.join(args.recipe, "exp", "chain_results.json"))
    if results is None:
        sys.exit(f"ERROR (chain_report): no exp/chain_results.json in {args.recipe} (run.sh stage 12 not run)")
    with open(os.path.join(args.recipe, "exp", "chain_results.md"), encoding="utf-8") as f:
        wer_table = f.read()
    vs_path = os.path.join(HERE, "results", f"vs_ivectors_{args.corpus}.json")
    import datetime
    report = {
        "corpus": args.corpus, "recipe": os.path.relpath(args.recipe, os.path.dirname(HERE)),
        "machine": cpu_description(), "date": datetime.date.today().isoformat(),
        "data": {x: data_facts(args.recipe, x) for x in ("train", args.train_set, args.test_set)},
        "chain_settings": chain_settings(args.recipe, args.corpus),
        "wer_table": wer_table, "rows": results["rows"],
        "pair": pair_rows(read_json(vs_path)), "pair_source": os.path.relpath(vs_path, os.path.dirname(HERE)),
        "notes": args.note,
    }
    out = args.out or os.path.join(HERE, "results", f"chain_{args.corpus}")
    with open(out + ".json", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    with open(out + ".md", "w", encoding="utf-8") as f:
        f.write(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
