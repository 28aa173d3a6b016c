#!/usr/bin/env python3
"""Cluster utterances into pseudo-speakers (one vector per utterance; HDBSCAN, spectral or AHC,
each choosing the number of speakers itself) and,
given gold speakers, score the clustering and same/different-speaker trials.
Python side of cluster_utts.sh; writes <out-dir>/{utt2spk,spk2utt,clusters.txt,
scores.json,embedding_map.png,.done}."""

import argparse
import dataclasses

from utils_py.cli import parse_args, step_parser, str2bool
from utils_py.fileio import refuse_overwrite
from utils_py.cluster.backend import BACKENDS
from utils_py.cluster.methods import HDBSCAN_SIZES
from utils_py.cluster.pipeline import (ALGORITHMS, CLUSTER_METHODS, EXACT_LIMITS, METRICS, MODES, OUTLIER_MODES,
                                      ClusterOptions, cluster_utts)
from utils_py.log import get_logger, run_step

EPILOG = """Input: an extraction dir (utt_vectors.scp if present, else the mean of each
utterance's ivector_online.scp rows) or an scp/ark of vectors or matrices.
Vectors: [first --half-index dims] -> [minus the set mean] -> L2 norm -> [PCA] -> [--backend lda:
first pass of --method, LDA on its clusters of >= 2 utterances, projected, mean and L2 again] -> --method:
  hdbscan   HDBSCAN (the original unspeech's); --min-cluster-size/--min-samples 0 (default):
            each chosen from a small grid by the density-based validity index (DBCV):
            min_cluster_size 3 5 10 20 40, min_samples 1 or = min_cluster_size
  spectral  spectral clustering; neighbours kept and speaker count from the normalised
            maximum eigengap (NME-SC)
  ahc       average-linkage AHC on cosine scores, stopped at --threshold (auto: where
            P(same speaker | score) = 0.5 in a same/different mixture fitted to the scores)
Size limits (O(n^2) memory or worse): spectral %(spectral)d, ahc %(ahc)d, hdbscan with a 0
(auto) setting %(hdbscan-auto)d utterances; above, and above --max-exact, a seeded sample of
that size is clustered and the rest go to the nearest centroid (the log says so).
Outputs (utt2spk keyed by the input utterance ids, speakers unspk0000001.. by size):
  utt2spk, spk2utt     clustered speakers (--mode cluster); outliers per --outliers
  clusters.txt         <utt> <cluster index, -1 = outlier>
  scores.json          with --utt2spk: ari nmi v_measure purity num_clusters ... eer min_dcf_p0.01 ...
                       and choice: the method's chosen count/threshold/settings and why
                       (the log's summary says it too)
  embedding_map.png    2-D PCA (+ t-SNE up to 2000 utts), by cluster and by gold speaker
  .done                written last; a rerun with the same inputs and options does nothing
Example:
  cluster_utts.py --utt2spk data/test/utt2spk.gold exp/unspeech/ivectors_test exp/unspeech/cluster_test"""


def _words(values) -> str:
    return " ".join(map(str, values))


def threshold_arg(text: str):
    """--threshold: auto (None) or a cosine score in [-1, 1]."""
    if text.lower() == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number, got {text!r}") from None
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a cosine score in [-1, 1], got {text}")
    return value


def build_parser():
    d = ClusterOptions()
    p = step_parser(__doc__, EPILOG % EXACT_LIMITS)
    p.add_argument("--utt2spk", default="none", help="gold utt2spk to score against, or none")
    p.add_argument("--mode", choices=MODES, default="cluster",
                   help="cluster: cluster (+ scores with gold); samedifferent: only same/different trials (needs gold)")
    p.add_argument("--half-index", type=int, default=0, help="keep the first N dims (target part); 0 = all")
    p.add_argument("--subtract-mean", type=str2bool, default=d.subtract_mean, help="subtract the mean over the set")
    p.add_argument("--l2-normalize", type=str2bool, default=d.l2_normalize, help="length-normalise the vectors")
    p.add_argument("--pca-dim", type=int, default=d.pca_dim, help="PCA to this many dims before clustering; 0 = off")
    p.add_argument("--backend", choices=BACKENDS, default=d.backend,
                   help="label-free back-end before clustering: none, or lda (LDA on the clusters of a first "
                        "pass of --method, outliers out; the vectors clustered and scored are its projection)")
    p.add_argument("--method", choices=CLUSTER_METHODS, default=d.method,
                   help="clustering method (see below); each chooses the number of speakers")
    p.add_argument("--min-cluster-size", type=int, default=d.min_cluster_size,
                   help=f"hdbscan: min_cluster_size (>= 2); 0 = auto (grid {_words(HDBSCAN_SIZES)}, best DBCV)")
    p.add_argument("--min-samples", type=int, default=d.min_samples,
                   help="hdbscan: min_samples (>= 1); 0 = auto (1 or = min_cluster_size, best DBCV)")
    p.add_argument("--threshold", type=threshold_arg, default="auto",
                   help="ahc: cosine score at which merging stops, or auto (from the scores' own "
                        "same/different mixture)")
    p.add_argument("--metric", choices=METRICS, default=d.metric, help="hdbscan metric")
    p.add_argument("--algorithm", choices=ALGORITHMS, default=d.algorithm,
                   help="minimum spanning tree: boruvka_kdtree (hdbscan's own, as the original; any metric) or "
                        "blas (the same exact tree from matrix products, 4-6x faster in 100 dims; euclidean only)")
    p.add_argument("--outliers", choices=OUTLIER_MODES, default=d.outliers,
                   help="own: each outlier its own speaker; nearest: attach to the nearest cluster centroid")
    p.add_argument("--max-exact", type=int, default=d.max_exact,
                   help="above N utterances cluster a seeded sample of N, assign the rest to the nearest "
                        "centroid; 0 = always exact")
    p.add_argument("--max-pairs", type=int, default=1_000_000,
                   help="trials for EER/minDCF: all pairs up to N, else a seeded sample of N")
    p.add_argument("--plot", type=str2bool, default=True, help="write embedding_map.png")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of every sample (PCA fit, two-stage, trials)")
    p.add_argument("--num-threads", type=int, default=d.num_threads, help="threads for HDBSCAN core distances")
    p.add_argument("vector_dir", help="extraction dir (utt_vectors.scp / ivector_online.scp) or scp/ark file")
    p.add_argument("out_dir", help="output dir")
    return p


def main(argv=None):
    args = parse_args(build_parser(), argv)
    refuse_overwrite(args.out_dir, [args.vector_dir, "" if args.utt2spk.lower() == "none" else args.utt2spk])
    opts = ClusterOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ClusterOptions)})
    gold = None if args.utt2spk.lower() in ("none", "") else args.utt2spk
    cluster_utts(args.vector_dir, args.out_dir, gold=gold, opts=opts, mode=args.mode, half_index=args.half_index,
                 max_pairs=args.max_pairs, plot=args.plot, log=get_logger("cluster_utts"))


if __name__ == "__main__":
    run_step("cluster_utts", main)
