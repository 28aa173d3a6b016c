"""Pre-flight of the Kaldi chain hand-off (``local/chain/run_tdnn.sh``, run.sh stage 11).

Before anything of Kaldi's runs, check everything the chain recipe will need
and report every problem as one clear line saying what to do:

- ``KALDI_ROOT`` set, holding ``egs/wsj/s5/{steps,utils}`` and the compiled
  binaries of :data:`KALDI_BINARIES`;
- the Kaldi GMM system (TED-LIUM ``s5_r3`` run.sh up to tri3, and its
  ``local/nnet3/run_ivector_common.sh`` for the speed-perturbed alignments):
  GMM dir, alignment dir, low-resolution (MFCC) training data dir, lang dir;
- our data dirs and online-ivector dirs: every utterance covered,
  ``|T - rows * period| <= period``, one dim and one ``final.ie.id`` for all
  sets (Kaldi's decoding refuses mixed ids);
- for clustered speakers: every utterance of ``data/<set>_unspk`` maps to an
  utterance of ``data/<set>`` (same feature entry) that the alignments cover.

Usage::

    from utils_py.kaldi.handoff import Handoff

    h = Handoff(kaldi_root=os.environ.get("KALDI_ROOT"), features="unspeech")
    h.check_gmm(gmm_dir, ali_dir, lores_train_dir, lang_dir)
    info = h.check_sets([("data/train_sp_unspk", "exp/unspeech/ivectors_train_sp_unspk"), ...])
    h.check_alignment_coverage("data/train_sp_unspk", lores_train_dir, original="data/train_sp")
    h.problems        # [] when everything is ready
"""
import os

from utils_py.kaldi import datadir
from utils_py.kaldi import tables
from utils_py.kaldi.ivector_dir import check_ivector_dir, data_dir_frames
from utils_py.log import UnspeechError

# Compiled Kaldi programs the chain recipe calls (directly or through Kaldi's scripts), by src/ dir.
KALDI_BINARIES = {
    "featbin": ["feat-to-dim", "compute-cmvn-stats", "apply-cmvn", "copy-feats"],
    "gmmbin": ["gmm-latgen-faster", "gmm-est-fmllr", "gmm-align-compiled"],
    "bin": ["compile-train-graphs", "ali-to-phones", "build-tree", "tree-info", "compute-wer"],
    "latbin": ["lattice-copy", "lattice-best-path", "lattice-scale"],
    "fstbin": ["fsttablecompose", "fstdeterminizestar"],
    "nnet3bin": ["nnet3-init", "nnet3-latgen-faster", "nnet3-info"],
    "chainbin": ["nnet3-chain-train", "nnet3-chain-get-egs", "chain-est-phone-lm"],
}
# Only for --features ivector (Kaldi's own online i-vectors as the baseline).
KALDI_IVECTOR_BINARIES = {
    "gmmbin": ["gmm-global-init-from-feats"],
    "ivectorbin": ["ivector-extractor-init"],
    "online2bin": ["ivector-extract-online2"],
}
KALDI_SCRIPTS = [
    "steps/nnet3/chain/train.py", "steps/nnet3/chain/build_tree.sh", "steps/nnet3/chain/gen_topo.py",
    "steps/nnet3/xconfig_to_configs.py", "steps/nnet3/decode.sh", "steps/align_fmllr_lats.sh",
    "steps/compute_cmvn_stats.sh", "steps/score_kaldi.sh", "steps/lmrescore_const_arpa.sh", "utils/mkgraph.sh",
    "utils/split_data.sh", "utils/copy_data_dir.sh", "utils/run.pl", "utils/parse_options.sh",
    "utils/filter_scp.pl", "utils/apply_map.pl",
]
KALDI_IVECTOR_SCRIPTS = [
    "steps/online/nnet2/get_pca_transform.sh", "steps/online/nnet2/train_diag_ubm.sh",
    "steps/online/nnet2/train_ivector_extractor.sh", "steps/online/nnet2/extract_ivectors_online.sh",
]
KALDI_HOWTO = ("install and compile Kaldi (git clone https://github.com/kaldi-asr/kaldi; "
               "cd kaldi/tools && make; cd ../src && ./configure --shared && make depend -j 8 && make -j 8), "
               "then export KALDI_ROOT=/path/to/kaldi and rerun: ./run.sh --stage 7")
GMM_HOWTO = ("make it with Kaldi's TED-LIUM recipe: in $KALDI_ROOT/egs/tedlium/s5_r3 run run.sh stages 0-15 "
             "(data, lang, MFCC, mono ... tri3), then local/nnet3/run_ivector_common.sh --train-set train "
             "--gmm tri3 --nnet3-affix '' --stage 6 (speed-perturbed MFCC data/train_sp and alignments "
             "exp/tri3_ali_train_sp); or point --gmm-dir/--ali-dir/--lores-train-dir/--lang-dir at yours")
# What the chain TDNN gets as its "ivector" input: nothing, Kaldi's online i-vectors, or ours.
FEATURES = ("none", "ivector", "unspeech")
FRAME_TOLERANCE = 2  # |frames of our features - frames of Kaldi's alignment features|


class Handoff:
    """Collects the problems of a planned chain run; ``problems`` lists one line each."""

    def __init__(self, kaldi_root: str = None, features: str = "unspeech"):
        if features not in FEATURES:
            raise UnspeechError(f"--features must be one of {' | '.join(FEATURES)}, got {features}")
        self.kaldi_root = kaldi_root or None
        self.features = features
        self.problems = []

    def problem(self, message: str) -> None:
        self.problems.append(message)

    # ------------------------------------------------------------- Kaldi
    def check_kaldi(self) -> bool:
        """KALDI_ROOT set, scripts and compiled binaries present."""
        root = self.kaldi_root
        if not root:
            self.problem(f"KALDI_ROOT is not set (stage 11 trains a Kaldi chain model): {KALDI_HOWTO}")
            return False
        if not os.path.isdir(root):
            self.problem(f"KALDI_ROOT is not a directory: {root}: {KALDI_HOWTO}")
            return False
        s5 = os.path.join(root, "egs", "wsj", "s5")
        scripts = KALDI_SCRIPTS + (KALDI_IVECTOR_SCRIPTS if self.features == "ivector" else [])
        for sub in ("steps", "utils"):
            if not os.path.isdir(os.path.join(s5, sub)):
                self.problem(f"KALDI_ROOT has no egs/wsj/s5/{sub} (not a Kaldi checkout?): {root}: {KALDI_HOWTO}")
                return False
        for script in scripts:
            if not os.path.isfile(os.path.join(s5, script)):
                self.problem(f"Kaldi script {script} missing under {s5} (Kaldi too old? update it): {root}")
        missing = [name for name in self.binaries() if not self.find_binary(name)]
        if missing:
            self.problem(f"{len(missing)} compiled Kaldi program(s) not found under {root}/src/*bin, first "
                         f"{missing[0]} (Kaldi not compiled?): {KALDI_HOWTO}")
        return not self.problems

    def binaries(self) -> list:
        groups = [KALDI_BINARIES] + ([KALDI_IVECTOR_BINARIES] if self.features == "ivector" else [])
        names = []
        for group in groups:
            for progs in group.values():
                names += [p for p in progs if p not in names]
        return names

    def find_binary(self, name: str):
        src = os.path.join(self.kaldi_root, "src")
        dirs = sorted(os.path.join(src, d) for d in os.listdir(src) if d.endswith("bin")) \
            if os.path.isdir(src) else []
        for d in dirs:
            path = os.path.join(d, name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
        return None

    # ------------------------------------------------------- GMM system
    def check_gmm(self, gmm_dir: str, ali_dir: str, lores_train_dir: str, lang_dir: str,
                  lang_rescore_dir: str = None) -> None:
        """The Kaldi GMM system the chain recipe builds on."""
        need = [
            (gmm_dir, ("final.mdl", "tree"), "GMM dir"),
            (ali_dir, ("final.mdl", "ali.1.gz", "num_jobs"), "GMM alignment dir"),
            (lores_train_dir, ("feats.scp", "utt2spk", "spk2utt"), "low-resolution training data dir"),
            (lang_dir, ("L.fst", "G.fst", "words.txt", "phones.txt", "topo", "phones/silence.csl",
                        "phones/nonsilence.csl"), "lang dir"),
        ]
        if lang_rescore_dir:
            need.append((lang_rescore_dir, ("G.carpa",), "rescoring lang dir"))
        before = len(self.problems)
        for path, files, what in need:
            if not path or not os.path.isdir(path):
                self.problem(f"{what} not found: {path or '(not given)'}")
                continue
            absent = [f for f in files if not os.path.isfile(os.path.join(path, f))]
            if absent:
                self.problem(f"{what} has no {absent[0]}: {path}")
        if len(self.problems) > before:
            self.problem(f"the Kaldi GMM system is incomplete: {GMM_HOWTO}")

    # --------------------------------------------------- our data + ivectors
    def check_sets(self, pairs, check_ivectors: bool = True) -> dict:
        """``pairs``: [(data_dir, ivector_dir)], training set first.

        Returns ``{"feat_dim", "ivector_dim", "ivector_period", "speakers": {data_dir: n}}``
        (ivector values None when not checked or broken).
        """
        info = {"feat_dim": None, "ivector_dim": None, "ivector_period": None, "speakers": {}}
        ids = {}
        for data_dir, ivector_dir in pairs:
            try:
                datadir.validate(data_dir, need=("feats.scp",))
                dims = {cols for _, cols in tables.scp_shapes(os.path.join(data_dir, "feats.scp")).values()}
                if len(dims) != 1 or (info["feat_dim"] not in (None, *dims)):
                    self.problem(f"features of mixed dims {sorted(dims | {info['feat_dim']} - {None})}: "
                                 f"{data_dir}/feats.scp")
                info["feat_dim"] = info["feat_dim"] or min(dims)
                info["speakers"][data_dir] = len(datadir.read_table(os.path.join(data_dir, "spk2utt")))
            except UnspeechError as e:
                self.problem(f"data dir not usable: {e}")
                continue
            if not check_ivectors:
                continue
            try:
                iv = check_ivector_dir(ivector_dir, data_dir, dim=info["ivector_dim"],
                                       period=info["ivector_period"])
            except UnspeechError as e:
                self.problem(f"{self.features} features not usable for {data_dir}: {e}"
                             + ("" if os.path.isdir(ivector_dir) else
                                " (run stages 4 and 6 of run.sh)" if self.features == "unspeech" else ""))
                continue
            info["ivector_dim"], info["ivector_period"] = iv.dim, iv.period
            ids[ivector_dir] = iv.ie_id
        if len(set(ids.values())) > 1:
            first, other = list(ids)[0], next(d for d in ids if ids[d] != ids[list(ids)[0]])
            self.problem(f"online-ivector dirs come from different models (final.ie.id {ids[first]} in {first}, "
                         f"{ids[other]} in {other}); Kaldi refuses to decode with them: re-extract all sets "
                         f"with one model")
        return info

    # ------------------------------------------- alignment coverage / ids
    def check_alignment_coverage(self, train_data: str, lores_train_dir: str, original: str = None) -> dict:
        """Map every utterance of ``train_data`` to one of the GMM's training data.

        ``original``: for clustered speakers, the data dir ``train_data`` was
        relabelled from; utterances are matched by their feature entry.
        Returns ``{train_utt: lores_utt}`` ({} on problems).
        """
        try:
            utt_map = utterance_map(train_data, original) if original else \
                {u: u for u in datadir.read_table(os.path.join(train_data, "utt2spk"))}
            ours = data_dir_frames(train_data)
            theirs = data_dir_frames(lores_train_dir)
        except UnspeechError as e:
            self.problem(f"cannot match training utterances to the GMM alignments: {e}")
            return {}
        missing = [u for u, o in utt_map.items() if o not in theirs]
        if missing:
            self.problem(f"{len(missing)} of {len(utt_map)} training utterance(s) are not in the GMM's training "
                         f"data, first {utt_map[missing[0]]} ({missing[0]}): {lores_train_dir} (utterance ids of "
                         f"data/ must match Kaldi's; align the same data: {GMM_HOWTO})")
            return {}
        off = [u for u, o in utt_map.items() if abs(ours[u] - theirs[o]) > FRAME_TOLERANCE]
        if off:
            u = off[0]
            self.problem(f"utterance {u} has {ours[u]} frames in {train_data} but {theirs[utt_map[u]]} in "
                         f"{lores_train_dir} ({len(off)} such; same audio, 10 ms frames and snip-edges needed)")
            return {}
        return utt_map


def utterance_map(relabelled: str, original: str) -> dict:
    """``{utt of relabelled: utt of original}`` for a relabelled copy of a data dir.

    Read from ``<relabelled>/utt_map`` (``<new-utt> <old-utt>``, written by
    ``steps_unspeech/relabel_data_dir.sh``) when present; otherwise matched by
    identical ``feats.scp`` entries (a relabelled dir points at the same
    matrices), else by the original id being a ``-``-separated suffix of the new
    id (``<speaker>-<old utt id>``).
    """
    new_utts = datadir.read_table(os.path.join(relabelled, "utt2spk"))
    old_feats = datadir.read_table(os.path.join(original, "feats.scp"))
    map_file = os.path.join(relabelled, "utt_map")
    if os.path.isfile(map_file):
        out = datadir.read_table(map_file, check_sorted=False)
        bad = next((u for u in new_utts if out.get(u) not in old_feats), None)
        if bad is not None:
            raise UnspeechError(f"utterance {bad} of {relabelled} has no utterance of {original} in: {map_file}")
        return {u: out[u] for u in new_utts}
    new_feats = datadir.read_table(os.path.join(relabelled, "feats.scp"))
    by_entry = {}
    for utt, rx in old_feats.items():
        by_entry.setdefault(rx, []).append(utt)
    out = {}
    for utt in new_utts:
        match = by_entry.get(new_feats.get(utt), [])
        if len(match) != 1:
            match = [utt[i + 1:] for i, c in enumerate(utt) if c == "-" and utt[i + 1:] in old_feats]
        if len(match) != 1:
            raise UnspeechError(f"utterance {utt} of {relabelled} matches {len(match)} utterances of {original} "
                                f"(by feats.scp entry or id suffix)")
        out[utt] = match[0]
    if len(set(out.values())) != len(out):
        raise UnspeechError(f"two utterances of {relabelled} map to the same utterance of {original}")
    return out
