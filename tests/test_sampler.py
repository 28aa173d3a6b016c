"""Sampler: window geometry, labels, speakers, determinism, prefetching (NumPy only, fast)."""
import numpy as np
import pytest

from utils_py.features.feature_set import FeatureSet
from utils_py.log import UnspeechError
from utils_py.model.sampler import ContextSampler, Prefetcher, chunk_length


def coded_feats(lengths, dim=3):
    """Frame t of utterance u holds (u, t, 0...): windows reveal where they came from."""
    mats = []
    for u, n in enumerate(lengths):
        m = np.zeros((n, dim), np.float32)
        m[:, 0] = u
        m[:, 1] = np.arange(n)
        mats.append(m)
    return FeatureSet([f"u{u:02d}" for u in range(len(lengths))], lengths, np.concatenate(mats))


def origin(window):
    """(utterance, first frame) of a window; asserts it is one contiguous piece."""
    u, t = window[:, 0], window[:, 1]
    assert np.all(u == u[0]), "window spans utterances"
    assert np.all(np.diff(t) == 1), "window is not contiguous"
    return int(u[0]), int(t[0])


def sampler(feats, **kw):
    args = dict(window_length=6, window_neg_length=4, left_contexts=2, right_contexts=1,
                negative_samples=3, batch_size=5, seed=3)
    args.update(kw)
    return ContextSampler(feats, np.arange(feats.num_utts), **args)


def test_chunk_length():
    assert chunk_length(64, 64, 2, 2) == 320
    assert chunk_length(6, 4, 2, 1) == 18


def test_pair_batch_geometry_and_labels():
    feats = coded_feats([18, 25, 40, 30])
    s = sampler(feats)
    t, c, y = s.pair_batch(0)
    b, K, k = 5, 3, 3
    assert t.shape == (b * (K + k), 6, 3) and c.shape == (b * (K + k), 4, 3) and t.dtype == np.float32
    assert y.tolist() == [1.0] * (b * K) + [0.0] * (b * k)
    for i in range(b):  # positives: contexts of chunk i are adjacent to its target
        tu, tt = origin(t[i * K])
        offsets = []
        for j in range(K):
            assert origin(t[i * K + j]) == (tu, tt), "target repeated for each of its contexts"
            cu, ct = origin(c[i * K + j])
            assert cu == tu
            offsets.append(ct - tt)
        assert offsets == [-8, -4, 6], "left contexts end where the target starts, right starts at its end"
    for i in range(b * K, len(y)):  # negatives: valid windows of some utterance
        for w in (t[i], c[i]):
            u, start = origin(w)
            assert start + len(w) <= feats.lengths[u]


def test_chunk_batch_grouped_by_target():
    feats = coded_feats([20, 30, 40])
    s = sampler(feats, batch_size=4)
    t, c, utts = s.chunk_batch(7)
    assert t.shape == (4, 6, 3) and c.shape == (4 * 3, 4, 3) and utts.shape == (4,)
    for i in range(4):
        tu, tt = origin(t[i])
        assert tu == utts[i]
        assert [origin(c[i * 3 + j]) for j in range(3)] == [(tu, tt - 8), (tu, tt - 4), (tu, tt + 6)]


def test_chunk_batch_chunks_per_utt():
    feats = coded_feats([60, 70, 80, 90, 100])
    s = sampler(feats, batch_size=6, chunks_per_utt=3)
    t, c, utts = s.chunk_batch(2)
    assert t.shape == (6, 6, 3) and c.shape == (6 * 3, 4, 3)
    assert [origin(w)[0] for w in t] == utts.tolist()
    assert utts[0] == utts[1] == utts[2] and utts[3] == utts[4] == utts[5]
    for _ in range(20):  # positions drawn independently within the utterance
        t, _, utts = s.chunk_batch(_)
        if len({origin(w)[1] for w in t[:3]}) > 1:
            break
    else:
        pytest.fail("chunks of one utterance always start at the same frame")
    with pytest.raises(UnspeechError, match="must divide the batch size"):
        sampler(feats, batch_size=6, chunks_per_utt=4)


def test_level_jitter_moves_each_window_by_its_own_constant():
    feats = coded_feats([60, 70, 80])
    plain_t, plain_c, _ = sampler(feats, batch_size=4).chunk_batch(3)
    t, c, _ = sampler(feats, batch_size=4, level_jitter_db=3.0).chunk_batch(3)  # same positions, then offsets
    limit = 3.0 * np.log(10) / 10
    for a, b in ((t, plain_t), (c, plain_c)):
        d = (a - b).reshape(len(a), -1)
        assert np.allclose(d, d[:, :1], atol=1e-5), "one offset per window"
        assert np.all(np.abs(d) <= limit + 1e-6) and len(np.unique(d[:, 0].round(6))) == len(d)


def test_batches_are_deterministic_per_step():
    feats = coded_feats([30, 31, 32, 33])
    a, b = sampler(feats), sampler(feats)
    for x, y in zip(a.pair_batch(5), b.pair_batch(5)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.pair_batch(5)[0], a.pair_batch(6)[0])
    assert not np.array_equal(sampler(feats, seed=4).pair_batch(5)[0], a.pair_batch(5)[0])


def test_uniform_coverage_of_positions():
    feats = coded_feats([100])
    s = sampler(feats, batch_size=3000)
    starts = np.array([origin(w)[1] for w in s.chunk_batch(0)[0]]) - 8
    assert starts.min() == 0 and starts.max() == 100 - 18  # every valid start is possible


def test_negatives_from_same_speaker_with_spk2utt():
    feats = coded_feats([20] * 8)
    speakers = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    s = sampler(feats, batch_size=16, speakers=speakers)
    t, c, y = s.pair_batch(1)
    K, k = 3, 3
    for i in range(16):
        spk = speakers[origin(t[i * K])[0]]
        for j in range(k):
            n = 16 * K + i * k + j
            assert speakers[origin(t[n])[0]] == spk and speakers[origin(c[n])[0]] == spk


def test_validation_pairs_balanced_and_fixed():
    feats = coded_feats([20, 25, 30])
    s = sampler(feats)
    t, c, y = s.validation_pairs(11, seed=1)
    assert len(t) == len(c) == len(y) == 11 and y.sum() == 5
    np.testing.assert_array_equal(t, s.validation_pairs(11, seed=1)[0])
    for i in range(5):   # positives: adjacent windows of one utterance
        assert origin(t[i])[0] == origin(c[i])[0]
    for i in range(5, 11):  # negatives: two different utterances
        assert origin(t[i])[0] != origin(c[i])[0]


def test_too_short_utterance_is_an_error():
    feats = coded_feats([18, 17])
    with pytest.raises(UnspeechError, match="u01 has 17 frames"):
        sampler(feats)


def test_prefetcher_order_and_errors():
    with Prefetcher(lambda step: step * 10, start=3, stop=8, depth=2) as p:
        assert [(s, v) for s, v in p] == [(s, s * 10) for s in range(3, 8)]

    def boom(step):
        if step == 2:
            raise UnspeechError("bad batch")
        return step
    with pytest.raises(UnspeechError, match="bad batch"):
        with Prefetcher(boom, 0, 5) as p:
            list(p)
    p = Prefetcher(lambda s: s, 0, 10 ** 9, depth=2)  # closing an unfinished producer stops it
    next(iter(p))
    p.close()
    assert not p._thread.is_alive()
