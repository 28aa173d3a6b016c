#!/usr/bin/env python3
"""Fbank speed in x real time per core (single process, one thread): wav reading vs feature computation.

  bench/bench_fbank.py                  # demo corpus (or ~5 min of espeak-ng speech) + FSDD
  bench/bench_fbank.py --repeats 5 --out bench/results/bench_fbank

Corpora: the demo corpus ``egs/tedlium/s5_unspeech/data/train`` when it exists,
else ~5 minutes of 16 kHz espeak-ng speech generated into a temp dir; and FSDD
(8 kHz, ../shared/data/fsdd; skipped with a message when absent).  Per corpus
the best of ``--repeats`` passes is reported, timed with the process CPU clock
(robust to other jobs on the machine) and the wall clock; the target is
>= 1000x real time per core.  Writes ``<out>.json`` and ``<out>.md``.
"""
from benchinfo import cpu_description  # noqa: E402  (bench/ is sys.path[0])
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import kaldi_native_fbank as knf  # noqa: E402
import numpy as np  # noqa: E402

from utils_py.features import audio  # noqa: E402
from utils_py.kaldi import datadir  # noqa: E402
from utils_py.features.fbank import FbankConfig, FbankExtractor  # noqa: E402

DEMO = os.path.join(REPO, "egs", "tedlium", "s5_unspeech", "data", "train")
FSDD = os.path.abspath(os.path.join(REPO, "..", "shared", "data", "fsdd", "recordings"))
CONF = os.path.join(REPO, "egs", "tedlium", "s5_unspeech", "conf", "fbank.conf")
TARGET = 1000.0

SENTENCES = [
    "the quick brown fox jumps over the lazy dog near the river bank",
    "speech recognition systems learn from many hours of transcribed audio",
    "please call stella and ask her to bring these things with her from the store",
    "six spoons of fresh snow peas five thick slabs of blue cheese and maybe a snack",
    "we also need a small plastic snake and a big toy frog for the kids",
    "she can scoop these things into three red bags and we will go meet her",
]
VOICES = ["en-us+m3", "en-gb+f2", "en-us+f4", "en+m7", "en-gb-x-rp+m1", "en-us+f1"]


def machine() -> dict:
    return {"cpu": cpu_description(), "python": platform.python_version(),
            "kaldi_native_fbank": getattr(knf, "__version__", "1.23")}

def load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def espeak_corpus(root: str, minutes: float = 5.0) -> dict:
    """~``minutes`` of 16 kHz espeak-ng speech as ``{utt: wav path}``."""
    rng = random.Random(0)
    wavs, total, i = {}, 0.0, 0
    while total < minutes * 60:
        text = " ".join(rng.sample(SENTENCES, 3))
        raw, wav = os.path.join(root, f"{i}.raw.wav"), os.path.join(root, f"utt{i:03d}.wav")
        subprocess.run(["espeak-ng", "-v", VOICES[i % len(VOICES)], "-s", str(rng.randint(140, 190)),
                        "-w", raw, text], check=True, capture_output=True)
        subprocess.run(["sox", raw, "-r", "16000", "-b", "16", wav], check=True, capture_output=True)
        os.remove(raw)
        import soundfile as sf
        total += sf.info(wav).duration
        wavs[f"utt{i:03d}"] = wav
        i += 1
    return wavs


def bench(name: str, entries: dict, repeats: int) -> dict:
    """Time reading (audio.read_audio) and fbank (FbankExtractor) of every entry; best of ``repeats``."""
    extract = FbankExtractor(FbankConfig.from_file(CONF))
    audio_seconds, frames = 0.0, 0
    best = None
    for _ in range(repeats):
        t = {"read_cpu": 0.0, "fbank_cpu": 0.0, "read_wall": 0.0, "fbank_wall": 0.0}
        audio_seconds, frames = 0.0, 0
        for utt, rx in entries.items():
            c0, w0 = time.process_time(), time.perf_counter()
            samples, rate = audio.read_audio(rx, utt)
            c1, w1 = time.process_time(), time.perf_counter()
            feats = extract(samples, rate, utt)
            c2, w2 = time.process_time(), time.perf_counter()
            t["read_cpu"] += c1 - c0
            t["fbank_cpu"] += c2 - c1
            t["read_wall"] += w1 - w0
            t["fbank_wall"] += w2 - w1
            audio_seconds += len(samples) / rate
            frames += len(feats)
        if best is None or t["read_cpu"] + t["fbank_cpu"] < best["read_cpu"] + best["fbank_cpu"]:
            best = t
    cpu = best["read_cpu"] + best["fbank_cpu"]
    wall = best["read_wall"] + best["fbank_wall"]
    result = {
        "corpus": name, "utterances": len(entries), "audio_seconds": round(audio_seconds, 1), "frames": frames,
        "cpu_seconds": round(cpu, 3), "wall_seconds": round(wall, 3),
        "x_real_time_cpu": round(audio_seconds / cpu, 1), "x_real_time_wall": round(audio_seconds / wall, 1),
        "read_share_cpu": round(best["read_cpu"] / cpu, 3),
        "fbank_only_x_real_time_cpu": round(audio_seconds / best["fbank_cpu"], 1),
        "read_only_x_real_time_cpu": round(audio_seconds / best["read_cpu"], 1),
    }
    result["breakdown"] = breakdown(entries, extract)
    return result


def breakdown(entries: dict, extract) -> dict:
    """Where fbank time goes for one pass: samples to a buffer, knf accept_waveform (incl. the
    binding's element-wise conversion), frame copy-out -- the same calls FbankExtractor makes."""
    conv = accept = copy = 0.0
    seconds = 0.0
    for utt, rx in entries.items():
        samples, rate = audio.read_audio(rx, utt)
        opts = extract._options(rate, utt, rx)
        c0 = time.process_time()
        values = memoryview(np.ascontiguousarray(samples, dtype=np.float32))
        c1 = time.process_time()
        fb = knf.OnlineFbank(opts)
        chunk = int(extract.CHUNK_SECONDS * rate)
        for start in range(0, len(values), chunk):
            fb.accept_waveform(rate, values[start:start + chunk])
        fb.input_finished()
        c2 = time.process_time()
        out = np.empty((fb.num_frames_ready, extract.config.dim), np.float32)
        for i in range(len(out)):
            out[i] = fb.get_frame(i)
        c3 = time.process_time()
        conv, accept, copy = conv + c1 - c0, accept + c2 - c1, copy + c3 - c2
        seconds += len(samples) / rate
    total = conv + accept + copy
    return {"to_buffer_share": round(conv / total, 3), "knf_compute_share": round(accept / total, 3),
            "frame_copy_share": round(copy / total, 3),
            "knf_compute_only_x_real_time": round(seconds / accept, 1)}


def end_to_end(entries: dict, audio_seconds: float, tmp: str, name: str) -> dict:
    """Wall time of ``make_fbank.sh --nj 1`` (startup, reading, fbank, ark writing, merging) on ``entries``."""
    data = os.path.join(tmp, "e2e", name)
    os.makedirs(data, exist_ok=True)
    datadir.write_table(os.path.join(data, "wav.scp"), entries)
    datadir.write_table(os.path.join(data, "utt2spk"), {u: u for u in entries})
    datadir.write_spk2utt(data)
    env = dict(os.environ, PYTHONPATH=REPO, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
               LC_ALL="C")
    def children_cpu():
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    c0, t0 = children_cpu(), time.perf_counter()
    subprocess.run(["bash", os.path.join(REPO, "steps_unspeech", "make_fbank.sh"), "--nj", "1",
                    "--fbank-config", CONF, data], check=True, env=env, capture_output=True)
    wall, cpu = time.perf_counter() - t0, children_cpu() - c0
    return {"wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
            "x_real_time_wall": round(audio_seconds / wall, 1), "x_real_time_cpu": round(audio_seconds / cpu, 1)}


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Fbank speed (bench/bench_fbank.py)", "",
        f"Machine: {m['cpu']}, Python {m['python']}, kaldi-native-fbank {m['kaldi_native_fbank']}. "
        "Single process, one thread, 40-dim fbank (conf/fbank.conf), best of "
        f"{report['repeats']} passes; x real time = audio seconds / CPU seconds of this process "
        "(wall clock in brackets). Reading = `utils_py.features.audio.read_audio` (soundfile), "
        "fbank = `utils_py.features.fbank.FbankExtractor` (kaldi-native-fbank).", "",
        f"Load: {report['load_note']}", "",
        "| corpus | utts | audio | x real time per core (wall) | read share | fbank only | knf compute only | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        ok = "met" if r["x_real_time_cpu"] >= TARGET else "NOT met"
        lines.append(
            f"| {r['corpus']} | {r['utterances']} | {r['audio_seconds'] / 60:.1f} min | "
            f"{r['x_real_time_cpu']:.0f}x ({r['x_real_time_wall']:.0f}x) | {100 * r['read_share_cpu']:.0f}% | "
            f"{r['fbank_only_x_real_time_cpu']:.0f}x | {r['breakdown']['knf_compute_only_x_real_time']:.0f}x | "
            f">= {TARGET:.0f}x {ok} |")
    for note in report["notes"]:
        lines.append(f"\nNote: {note}")
    e2e = [(r["corpus"], r["make_fbank_nj1"]) for r in report["results"] if "make_fbank_nj1" in r]
    lines += ["", "End to end, `steps_unspeech/make_fbank.sh --nj 1` (one job; bash + 3 Python start-ups, "
              "validation, ark writing and merging included): " + "; ".join(
                  f"{corpus}: {e['x_real_time_cpu']:.0f}x per core by CPU time, {e['x_real_time_wall']:.0f}x "
                  f"wall ({e['cpu_seconds']:.1f} s CPU, {e['wall_seconds']:.1f} s wall)" for corpus, e in e2e)]
    lines += ["", "Fbank time split (one pass): " + "; ".join(
        f"{r['corpus']}: knf compute {100 * r['breakdown']['knf_compute_share']:.0f}%, "
        f"samples to buffer {100 * r['breakdown']['to_buffer_share']:.0f}%, "
        f"frame copy-out {100 * r['breakdown']['frame_copy_share']:.0f}%" for r in report["results"]), ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="passes per corpus; the best counts")
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "bench_fbank"),
                   help="output prefix (.json and .md)")
    args = p.parse_args(argv)
    load_before = load_average()
    results, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        if os.path.isfile(os.path.join(DEMO, "wav.scp")):
            if os.path.isfile(os.path.join(DEMO, "segments")):
                notes.append("demo corpus has segments: timed per whole recording")
            entries = datadir.read_table(os.path.join(DEMO, "wav.scp"))
            name = "demo corpus (data/train)"
        else:
            print("demo corpus not found; generating ~5 min of espeak-ng speech", file=sys.stderr)
            notes.append(f"{os.path.relpath(DEMO, REPO)} not found (run.sh stage 0 not run): timed ~5 min of "
                         "espeak-ng speech (6 voices, 16 kHz, 16 bit) generated for the benchmark instead")
            entries = espeak_corpus(tmp)
            name = "espeak-ng 16 kHz"
        print(f"benchmarking {name}: {len(entries)} files", file=sys.stderr)
        results.append(bench(name, entries, args.repeats))
        results[-1]["make_fbank_nj1"] = end_to_end(entries, results[-1]["audio_seconds"], tmp, "demo")
        fsdd = sorted(glob.glob(os.path.join(FSDD, "*.wav")))
        if fsdd:
            print(f"benchmarking FSDD: {len(fsdd)} files", file=sys.stderr)
            entries = {os.path.basename(f)[:-4]: f for f in fsdd}
            results.append(bench("FSDD 8 kHz", entries, args.repeats))
            results[-1]["make_fbank_nj1"] = end_to_end(entries, results[-1]["audio_seconds"], tmp, "fsdd")
        else:
            msg = f"FSDD not found at {FSDD}: skipped"
            print(msg, file=sys.stderr)
            notes.append(msg)
    load_after = load_average()
    busy = max((load_before or [0])[0], (load_after or [0])[0])
    note = (f"load average {load_before} before, {load_after} after (1/5/15 min) on {os.cpu_count()} cores"
            + ("; other jobs were sharing the cores, CPU-clock numbers are the reliable ones" if busy > 0.5
               else "; machine otherwise idle"))
    report = {"machine": machine(), "repeats": args.repeats, "target_x_real_time": TARGET,
              "load_note": note, "results": results, "notes": notes,
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    with open(args.out + ".md", "w") as f:
        f.write(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
