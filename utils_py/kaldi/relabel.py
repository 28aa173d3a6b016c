"""Give a Kaldi data dir (and its online-ivector dir) the clustered speakers.

Kaldi wants speaker ids as prefixes of utterance ids, so every utterance is
renamed ``<cluster-speaker>-<old-utt-id>`` in every per-utterance file:

- ``utt2spk`` = the clustered speakers, ``spk2utt`` rebuilt, ``utt_map`` =
  ``<new-utt> <old-utt>`` (to map results back);
- re-keyed: ``text segments feats.scp utt2num_frames utt2dur utt2uniq utt2lang
  utt2spk.gold``, any other ``utt2*`` file, ``wav.scp`` when there is no
  ``segments`` file, and any other table keyed by exactly the utterances;
- dropped (speakers changed): ``cmvn.scp`` (recompute it with
  ``steps/compute_cmvn_stats.sh``) and ``spk2gender``, each with a log line;
- copied: everything else (``frame_shift``, ``wav.scp`` with segments,
  ``reco2file_and_channel``, ...); sub-directories (``split*``) are not copied.

All tables are LC_ALL=C sorted and the result is checked with
``datadir.validate``.  The output dir is built under a temp name and renamed
into place, so it is either complete or absent.

Usage::

    from utils_py.kaldi.relabel import relabel_data_dir, relabel_ivector_dir

    old2new = relabel_data_dir("data/test", "exp/unspeech/cluster_test/utt2spk", "data/test_unspk")
    relabel_ivector_dir("exp/unspeech/ivectors_test", "exp/unspeech/ivectors_test_unspk", old2new)
"""
import logging
import os
import re
import shutil

from utils_py.kaldi import datadir
from utils_py.fileio import building_dir, open_text, refuse_overwrite
from utils_py.log import UnspeechError

UTT_MAP = "utt_map"
SPEAKER_FILES_DROPPED = datadir.PER_SPK_FILES          # cmvn.scp, spk2gender
IVECTOR_TABLES = ("ivector_online.scp", "utt_vectors.scp")
_JOB_PIECE = re.compile(r"^.+\.[0-9]+\.(ark|scp)$")      # ivector_online.3.scp, utt_vectors.1.ark


def new_utt_ids(utt2spk: dict) -> dict:
    """``{old_utt: "<spk>-<old_utt>"}`` for a ``{old_utt: spk}`` table."""
    return {utt: f"{spk}-{utt}" for utt, spk in utt2spk.items()}


def _check_same_utts(keys, expected: set, file: str, ref: str) -> None:
    keys = set(keys)
    if keys != expected:
        missing = datadir.c_sorted(expected - keys)
        extra = datadir.c_sorted(keys - expected)
        if missing:
            raise UnspeechError(f"utterance {missing[0]} ({len(missing)} in all) of {ref} is missing in: {file}")
        raise UnspeechError(f"utterance {extra[0]} ({len(extra)} in all) is not in {ref}: {file}")


def _table_keys(path: str):
    """Keys of ``path`` if it reads as a ``<key> <value>`` table, else None (never raises)."""
    keys = []
    try:
        with open_text(path) as f:
            for line in f:
                parts = line.split(maxsplit=1)
                if len(parts) != 2:
                    return None
                keys.append(parts[0])
    except (OSError, UnicodeDecodeError):
        return None
    return keys


def rekey_table(src: str, dst: str, old2new: dict, what: str) -> None:
    """Write table ``src`` to ``dst`` with keys renamed by ``old2new`` (must cover exactly its keys)."""
    table = datadir.read_table(src, check_sorted=False)
    _check_same_utts(table, set(old2new), src, what)
    datadir.write_table(dst, {old2new[k]: v for k, v in table.items()})


def relabel_data_dir(data_dir: str, clustered_utt2spk: str, out_dir: str, log: logging.Logger = None) -> dict:
    """Write ``out_dir``: ``data_dir`` with clustered speakers and renamed utterances; return old->new ids."""
    log = log or logging.getLogger("relabel_data_dir")
    if not os.path.isdir(data_dir):
        raise UnspeechError(f"data directory not found: {data_dir}")
    refuse_overwrite(out_dir, [data_dir, clustered_utt2spk], "output data dir")
    utts = set(datadir.read_table(os.path.join(data_dir, "utt2spk")))
    clustered = datadir.read_table(clustered_utt2spk)
    _check_same_utts(clustered, utts, clustered_utt2spk, f"{data_dir}/utt2spk")
    for utt, spk in clustered.items():
        if len(spk.split()) != 1:
            raise UnspeechError(f"utterance {utt} has no single speaker id: {clustered_utt2spk}")
    old2new = new_utt_ids(clustered)
    has_segments = os.path.isfile(os.path.join(data_dir, "segments"))
    src = lambda name: os.path.join(data_dir, name)  # noqa: E731
    with building_dir(out_dir, marker=UTT_MAP) as tmp:  # replaces only an earlier relabelled dir
        for name in sorted(os.listdir(data_dir)):
            if name.startswith(".") or name in ("utt2spk", "spk2utt", UTT_MAP):
                continue
            if os.path.isdir(src(name)):
                if not re.match(r"^split[0-9]+(utt)?$", name):
                    log.info(f"not copied (a directory): {src(name)}")
                continue
            dst = os.path.join(tmp, name)
            if name in SPEAKER_FILES_DROPPED:
                log.info(f"dropped {name}: speakers changed (recompute it, e.g. steps/compute_cmvn_stats.sh "
                         f"for cmvn.scp): {src(name)}")
            elif (name in datadir.PER_UTT_FILES or name.startswith("utt2")
                  or (name == "wav.scp" and not has_segments)):
                rekey_table(src(name), dst, old2new, f"{data_dir}/utt2spk")
            else:
                keys = _table_keys(src(name))
                if keys and name != "wav.scp" and set(keys) == utts:
                    log.info(f"re-keyed {name}: a table keyed by exactly the utterances")
                    rekey_table(src(name), dst, old2new, f"{data_dir}/utt2spk")
                else:
                    shutil.copyfile(src(name), dst)
        datadir.write_table(os.path.join(tmp, UTT_MAP), {new: old for old, new in old2new.items()})
        new_utt2spk = {old2new[u]: spk for u, spk in clustered.items()}
        datadir.write_table(os.path.join(tmp, "utt2spk"), new_utt2spk)
        datadir.write_table(os.path.join(tmp, "spk2utt"), datadir.spk2utt_from_utt2spk(new_utt2spk))
        datadir.validate(tmp)
    log.info(f"{len(old2new)} utterances, {len(set(clustered.values()))} speakers: {out_dir}")
    return old2new


def relabel_ivector_dir(ivector_dir: str, out_dir: str, old2new: dict, log: logging.Logger = None) -> None:
    """Copy an online-ivector dir to ``out_dir`` with ``ivector_online.scp`` / ``utt_vectors.scp`` re-keyed.

    The scps keep pointing at the original arks; other plain files
    (``ivector_period``, ``final.ie.id``, ``config.json``, ...) are copied;
    arks, per-job pieces, hidden files and sub-directories are not.
    """
    log = log or logging.getLogger("relabel_data_dir")
    scp = os.path.join(ivector_dir, IVECTOR_TABLES[0])
    if not os.path.isfile(scp):
        raise UnspeechError(f"no {IVECTOR_TABLES[0]} in online-ivector dir: {ivector_dir}")
    refuse_overwrite(out_dir, [ivector_dir], "--ivector-out-dir")
    with building_dir(out_dir) as tmp:
        for name in sorted(os.listdir(ivector_dir)):
            path = os.path.join(ivector_dir, name)
            if (name.startswith(".") or not os.path.isfile(path) or name.endswith(".ark")
                    or _JOB_PIECE.match(name)):
                continue
            if name in IVECTOR_TABLES:
                rekey_table(path, os.path.join(tmp, name), old2new, "the clustered utt2spk")
            else:
                shutil.copyfile(path, os.path.join(tmp, name))
    log.info(f"re-keyed {len(old2new)} utterances of {ivector_dir}: {out_dir}")
