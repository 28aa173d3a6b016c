#!/usr/bin/env python3
"""Speaker-clustering scores of a trained model dir and its checkpoints on a test data dir.

For the final model and each of checkpoints/{best,last}.npz: utterance vectors
(mean unspeech row, period 10) of ``data_dir``'s utterances, clustered and
scored exactly as bench_train_efficiency.py does (the recipe's cluster step,
default options; ARI/NMI of the clusters and EER of cosine trials against
utt2spk.gold or utt2spk).  One JSON line per model dir on stdout.

    .venv/bin/python bench/score_model.py /tmp/bench/demo/data/test exp/unspeech_a exp/unspeech_b
"""
import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench_train_efficiency import unspeech_scores  # noqa: E402  (same directory)

KEEP = ("ari", "nmi", "eer", "num_clusters", "num_outliers")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir", help="test data dir with feats.scp and utt2spk(.gold)")
    p.add_argument("model_dirs", nargs="+")
    p.add_argument("--work-dir", default="/tmp/unspeech_score_model", help="vectors and cluster dirs go here")
    args = p.parse_args(argv)
    from utils_py.model.network import load_model_dir
    from utils_py.train.loop import read_checkpoint
    for model_dir in args.model_dirs:
        model = load_model_dir(model_dir)
        name = os.path.basename(os.path.abspath(model_dir))
        with open(os.path.join(model_dir, "metrics.json")) as f:
            final_step = json.load(f).get("final_model_step")
        result = {"model_dir": model_dir}
        for label, ckpt in (("final", None), ("best", "best.npz"), ("last", "last.npz")):
            if ckpt:
                path = os.path.join(model_dir, "checkpoints", ckpt)
                if not os.path.isfile(path):
                    continue
                weights, _, meta = read_checkpoint(path)
                model.set_weights(weights, path)
                step = meta["step"]
            else:
                step = final_step
            s = unspeech_scores(model, args.data_dir, os.path.join(args.work_dir, name, label))
            result[label] = {"step": step, **{k: s.get(k) for k in KEEP}}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
