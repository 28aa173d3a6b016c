"""Utterance clustering: utils_py.cluster.pipeline, utils_py.extract.utt_vectors, steps_unspeech/cluster_utts.{py,sh}."""
import json
import os

import numpy as np
import pytest
from conftest import REPO, run_cmd

from utils_py.kaldi import datadir
from utils_py.cluster.pipeline import ClusterOptions, cluster_utts, cluster_vectors, speaker_ids
from utils_py.kaldi.tables import MatrixWriter
from utils_py.log import UnspeechError
from utils_py.cluster.scoring import cluster_scores
from utils_py.extract.utt_vectors import read_utt_vectors, write_utt_vectors

SH = os.path.join(REPO, "steps_unspeech", "cluster_utts.sh")
PY = os.path.join(REPO, "steps_unspeech", "cluster_utts.py")


def blobs(n_per=40, k=5, dim=30, noise=0.25, seed=0):
    """k well separated Gaussian clusters; keys <spk>-<n> sort by speaker."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    labels = np.repeat(np.arange(k), n_per)
    X = centres[labels] + noise * rng.normal(size=(len(labels), dim))
    keys = [f"spk{lab}-utt{i:04d}" for i, lab in enumerate(labels)]
    return keys, X.astype(np.float32), [f"spk{lab}" for lab in labels]


def vector_dir(tmp_path, keys, X, gold=None, name="vec"):
    d = tmp_path / name
    write_utt_vectors(str(d), keys, X)
    if gold is not None:
        datadir.write_table(str(tmp_path / "gold"), dict(zip(keys, gold)))
    return str(d)


def ivector_dir(tmp_path, keys, X, rows=7, seed=0):
    """An online-ivector dir without utt_vectors.scp: rows scattered around each vector."""
    rng = np.random.default_rng(seed)
    d = tmp_path / "ivec"
    with MatrixWriter(str(d / "ivector_online.1.ark"), str(d / "ivector_online.scp")) as w:
        for key in datadir.c_sorted(keys):
            v = X[keys.index(key)]
            m = v + 0.01 * rng.normal(size=(rows, len(v)))
            w.write(key, (m - m.mean(axis=0) + v).astype(np.float32))     # mean of rows == v
    (d / "ivector_period").write_text("10\n")
    return str(d)


def run(out, *args):
    return run_cmd([SH, *args, str(out)])


def scores(out):
    with open(os.path.join(out, "scores.json")) as f:
        return json.load(f)


# --- library ---------------------------------------------------------------

def test_cluster_vectors_finds_blobs():
    keys, X, gold = blobs()
    result = cluster_vectors(X, ClusterOptions())
    assert result.num_clusters == 5 and result.num_outliers == 0
    assert cluster_scores(gold, result.labels)["ari"] == pytest.approx(1.0)


def test_two_stage_close_to_exact_and_outlier_modes():
    keys, X, gold = blobs(n_per=200, k=6, noise=0.6, seed=1)
    exact = cluster_vectors(X, ClusterOptions(max_exact=0))
    two = cluster_vectors(X, ClusterOptions(max_exact=300))
    assert two.sample_size == 300 and exact.sample_size == 1200
    assert cluster_scores(gold, two.labels)["ari"] >= cluster_scores(gold, exact.labels)["ari"] - 0.01
    near = cluster_vectors(X, ClusterOptions(max_exact=300, outliers="nearest"))
    assert (near.labels >= 0).all() and near.num_outliers <= two.num_outliers   # no radius test with nearest
    assert np.array_equal(near.labels[two.labels >= 0], two.labels[two.labels >= 0])


def test_outliers_nearest_attaches_to_nearest_centroid():
    keys, X, gold = blobs(n_per=30, k=3, seed=2)
    stray = (X[0] * 0.8 + X[-1] * 0.2)[None]          # between speaker 0 and 2, nearer 0
    far = np.full((1, X.shape[1]), 50.0, np.float32)
    Y = np.vstack([X, stray, far])
    own = cluster_vectors(Y, ClusterOptions(subtract_mean=False))
    near = cluster_vectors(Y, ClusterOptions(subtract_mean=False, outliers="nearest"))
    assert own.is_outlier[-1] and own.labels[-1] == -1
    assert near.is_outlier[-1] and near.labels[-1] >= 0
    assert (near.labels >= 0).all()
    assert near.labels[-2] == near.labels[0]


def test_speaker_ids_numbered_by_size_then_first_utt():
    keys = ["b1", "b2", "a1", "c1", "c2", "d", "e"]
    labels = np.array([5, 5, 9, 3, 3, -1, -1])
    ids = speaker_ids(keys, labels)
    assert ids["b1"] == ids["b2"] == "unspk0000001"    # size 2, first utt b1 < c1
    assert ids["c1"] == ids["c2"] == "unspk0000002"
    assert ids["a1"] == "unspk0000003"                  # size 1 clusters and outliers: by utt
    assert ids["d"] == "unspk0000004" and ids["e"] == "unspk0000005"


def test_read_utt_vectors_mean_of_ivector_rows_and_half_index(tmp_path):
    keys, X, _ = blobs(n_per=3, k=2, dim=8)
    d = ivector_dir(tmp_path, keys, X)
    got_keys, got, source = read_utt_vectors(d)
    assert source.endswith("ivector_online.scp") and got_keys == datadir.c_sorted(keys)
    np.testing.assert_allclose(got, X[[keys.index(k) for k in got_keys]], atol=1e-5)
    _, half, _ = read_utt_vectors(d, half_index=4)
    assert half.shape == (6, 4)
    np.testing.assert_allclose(half, got[:, :4])
    with pytest.raises(UnspeechError, match="half-index 9"):
        read_utt_vectors(d, half_index=9)
    write_utt_vectors(d, keys, X + 1)                    # utt_vectors.scp wins over ivector_online.scp
    _, preferred, source = read_utt_vectors(d)
    assert source.endswith("utt_vectors.scp")
    np.testing.assert_allclose(preferred, got + 1, atol=1e-5)


# --- the step --------------------------------------------------------------

def test_step_end_to_end_with_gold(tmp_path):
    keys, X, gold = blobs()
    src = vector_dir(tmp_path, keys, X, gold)
    out = tmp_path / "out"
    p = run(out, "--utt2spk", str(tmp_path / "gold"), src)
    assert p.returncode == 0, p.stderr
    assert "ARI 1.0000" in p.stdout
    utt2spk = datadir.read_table(str(out / "utt2spk"))
    assert sorted(set(utt2spk.values())) == [f"unspk000000{i}" for i in range(1, 6)]
    assert set(utt2spk) == set(keys)
    assert datadir.read_table(str(out / "spk2utt")) == datadir.spk2utt_from_utt2spk(utt2spk)
    s = scores(out)
    for key in ("ari", "nmi", "v_measure", "num_clusters", "num_outliers", "purity", "num_gold_speakers",
                "num_utts", "eer", "min_dcf_p0.01", "min_dcf_p0.05"):
        assert key in s, key
    assert s["ari"] == pytest.approx(1.0) and s["num_clusters"] == 5 and s["num_utts"] == 200
    assert s["eer"] < 0.01
    assert (out / "embedding_map.png").stat().st_size > 10_000
    assert "ARI 1.0000" in (out / "log" / "cluster.log").read_text()
    assert len((out / "clusters.txt").read_text().splitlines()) == 200


def test_step_rerun_skips_and_option_change_redoes(tmp_path):
    keys, X, gold = blobs(n_per=20, k=3)
    src = vector_dir(tmp_path, keys, X, gold)
    out = tmp_path / "out"
    assert run(out, "--plot", "false", src).returncode == 0
    first = (out / "utt2spk").read_bytes()
    p = run(out, "--plot", "false", src)
    assert p.returncode == 0 and "already done" in (out / "log" / "cluster.log").read_text()
    assert (out / "utt2spk").read_bytes() == first
    p = run(out, "--plot", "false", "--outliers", "nearest", src)
    assert p.returncode == 0 and "already done" not in (out / "log" / "cluster.log").read_text()
    assert (out / "utt2spk").read_bytes() == first        # same clustering: byte-identical


def test_step_max_exact_and_samedifferent_mode(tmp_path):
    keys, X, gold = blobs(n_per=60, k=4)
    src = vector_dir(tmp_path, keys, X, gold)
    p = run(tmp_path / "two", "--plot", "false", "--max-exact", "100", "--utt2spk", str(tmp_path / "gold"), src)
    assert p.returncode == 0, p.stderr
    s = scores(tmp_path / "two")
    assert s["sample_size"] == 100 and s["ari"] > 0.95
    p = run(tmp_path / "sd", "--mode", "samedifferent", "--max-pairs", "5000", "--utt2spk", str(tmp_path / "gold"), src)
    assert p.returncode == 0, p.stderr
    s = scores(tmp_path / "sd")
    assert s["num_trials"] == 5000 and s["eer"] < 0.01 and "ari" not in s
    assert not (tmp_path / "sd" / "utt2spk").exists()


@pytest.mark.parametrize("case", ["one", "two", "identical", "few", "all_outliers"])
def test_step_edge_cases(tmp_path, case):
    rng = np.random.default_rng(5)
    n = {"one": 1, "two": 2, "identical": 12, "few": 4, "all_outliers": 8}[case]
    X = rng.normal(size=(n, 10)).astype(np.float32)
    if case == "identical":
        X[:] = X[0]
    # all_outliers: 8 random points; HDBSCAN never returns one cluster of everything and
    # two clusters of >= 5 cannot form, so all 8 are outliers
    keys = [f"u{i:02d}" for i in range(n)]
    src = vector_dir(tmp_path, keys, X, gold=["g"] * n)
    out = tmp_path / "out"
    p = run(out, "--utt2spk", str(tmp_path / "gold"), src)
    assert p.returncode == 0, p.stderr
    utt2spk = datadir.read_table(str(out / "utt2spk"))
    if case == "identical":
        assert set(utt2spk.values()) == {"unspk0000001"}                    # one speaker
    else:
        assert len(set(utt2spk.values())) == n                              # every utt its own speaker
    s = scores(out)
    assert s["num_utts"] == n and s["eer"] is None                          # one gold speaker: no EER


def _one_line_error(p, *words):
    err = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode != 0
    assert len(err) == 1 and err[0].startswith("ERROR ("), p.stderr
    for w in words:
        assert w in err[0], err[0]


def test_bad_input_mixed_dims(tmp_path):
    d = tmp_path / "vec"
    with MatrixWriter(str(d / "utt_vectors.ark"), str(d / "utt_vectors.scp")) as w:
        w.write("a", np.zeros(4, np.float32))
        w.write("b", np.zeros(5, np.float32))
    out = tmp_path / "out"
    _one_line_error(run(out, str(d)), "utterance b", "dim 5")
    assert not (out / "utt2spk").exists() and not (out / ".done").exists()


def test_bad_input_nan_vector_names_utterance(tmp_path):
    keys, X, _ = blobs(n_per=5, k=2)
    X[3, 2] = np.nan
    src = vector_dir(tmp_path, keys, X)
    out = tmp_path / "out"
    _one_line_error(run_cmd([PY, src, str(out)]), keys[3], "NaN")
    _one_line_error(run(out, src), keys[3], "NaN")
    assert not (out / "utt2spk").exists()


def test_bad_input_gold_covers_other_utterances(tmp_path):
    keys, X, gold = blobs(n_per=5, k=2)
    src = vector_dir(tmp_path, keys, X, gold)
    datadir.write_table(str(tmp_path / "gold2"), {**dict(zip(keys[1:], gold[1:])), "zzz": "spk9"})
    out = tmp_path / "out"
    _one_line_error(run(out, "--utt2spk", str(tmp_path / "gold2"), src), keys[0], "gold")
    datadir.write_table(str(tmp_path / "gold3"), {**dict(zip(keys, gold)), "zzz": "spk9"})
    _one_line_error(run(out, "--utt2spk", str(tmp_path / "gold3"), src), "zzz")
    assert not (out / "utt2spk").exists() and not (out / "scores.json").exists()


def test_bad_input_unwritable_out_dir(tmp_path):
    keys, X, _ = blobs(n_per=5, k=2)
    src = vector_dir(tmp_path, keys, X)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_line_error(run(blocker / "out", src), str(blocker))
    _one_line_error(run_cmd([PY, src, str(blocker / "out")]), str(blocker))


def test_failed_rerun_leaves_nothing_complete(tmp_path):
    keys, X, gold = blobs(n_per=10, k=2)
    src = vector_dir(tmp_path, keys, X, gold)
    out = str(tmp_path / "out")
    cluster_utts(src, out, plot=False)
    assert os.path.isfile(os.path.join(out, "utt2spk"))
    datadir.write_table(str(tmp_path / "gold2"), dict(zip(keys[1:], gold[1:])))
    with pytest.raises(UnspeechError, match=keys[0]):
        cluster_utts(src, out, gold=str(tmp_path / "gold2"), plot=False)
    assert not os.path.exists(os.path.join(out, "utt2spk")) and not os.path.exists(os.path.join(out, ".done"))


def test_help_lists_defaults():
    p = run_cmd([SH, "--help"])
    assert p.returncode == 0 and "--max-exact <n>           (20000)" in p.stdout
    p = run_cmd([PY, "--help"])
    assert p.returncode == 0 and "--outliers" in p.stdout and "(default: own)" in p.stdout


# --- the BLAS minimum spanning tree ---------------------------------------

def _noisy(n=600, k=8, dim=20, noise=1.1, seed=7):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    X = centres[rng.integers(0, k, n)] + noise / np.sqrt(dim) * rng.normal(size=(n, dim))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_nearest_neighbours_match_sklearn():
    from sklearn.neighbors import NearestNeighbors
    from utils_py.cluster.pipeline import nearest_neighbours
    X = _noisy(n=500)
    dist, idx = nearest_neighbours(X, 6)
    ref_d, ref_i = NearestNeighbors(n_neighbors=7).fit(X).kneighbors(X)
    np.testing.assert_allclose(dist, ref_d[:, 1:], atol=1e-9)
    assert (idx == ref_i[:, 1:]).mean() > 0.999          # order may differ only at exact ties


@pytest.mark.parametrize("max_contracted", [4000, 3])
def test_mst_weight_equals_hdbscan_exact_mst(monkeypatch, max_contracted):
    """Same total weight as hdbscan's exact MST, also via the all-pairs Boruvka rounds."""
    import hdbscan
    from utils_py.cluster import pipeline
    monkeypatch.setattr(pipeline, "_MAX_CONTRACTED", max_contracted)
    X = _noisy()
    mst = pipeline.mutual_reachability_mst(X, 3, k=4)
    ref = hdbscan.HDBSCAN(min_cluster_size=5, min_samples=3, approx_min_span_tree=False,
                          gen_min_span_tree=True).fit(X).minimum_spanning_tree_._mst
    assert mst.shape == ref.shape
    assert mst[:, 2].sum() == pytest.approx(ref[:, 2].sum(), rel=1e-6)
    np.testing.assert_allclose(np.sort(mst[:, 2]), np.sort(ref[:, 2]), rtol=1e-5)
    # a spanning tree: n-1 edges joining everything
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    g = coo_matrix((np.ones(len(mst)), (mst[:, 0].astype(int), mst[:, 1].astype(int))), shape=(len(X), len(X)))
    assert connected_components(g, directed=False)[0] == 1


def test_blas_labels_equal_hdbscan_boruvka_on_clustered_data():
    import hdbscan
    keys, X, gold = blobs(n_per=60, k=8, dim=40, noise=0.6, seed=3)
    Xp = prepare_vectors_for_test(X)
    ours = cluster_vectors(X, ClusterOptions(algorithm="blas")).labels
    lib = cluster_vectors(X, ClusterOptions(algorithm="boruvka_kdtree")).labels
    ref = hdbscan.HDBSCAN(min_cluster_size=5, min_samples=3, algorithm="boruvka_kdtree").fit_predict(Xp)
    assert np.array_equal(lib, ref)
    assert cluster_scores(ours, ref)["ari"] == pytest.approx(1.0)


def prepare_vectors_for_test(X):
    from utils_py.cluster.pipeline import prepare_vectors
    return prepare_vectors(X).astype(np.float64)


def test_blas_needs_euclidean():
    with pytest.raises(UnspeechError, match="euclidean"):
        ClusterOptions(metric="manhattan", algorithm="blas").check()
    ClusterOptions(metric="manhattan").check()  # the default (hdbscan's boruvka_kdtree) takes any metric
