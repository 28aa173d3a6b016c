"""utils_py.cluster.scoring: clustering scores, EER, minDCF, trial sampling."""
import math

import numpy as np
import pytest

from utils_py.cluster import scoring


def test_cluster_scores_perfect_and_permutation_invariant():
    gold = ["a", "a", "b", "b", "c", "c"]
    s = scoring.cluster_scores(gold, [7, 7, 3, 3, 9, 9])
    for key in ("ari", "nmi", "v_measure", "purity", "inverse_purity", "homogeneity", "completeness"):
        assert s[key] == pytest.approx(1.0), key


def test_purity_and_inverse_purity_by_hand():
    gold = ["a", "a", "a", "b", "b", "b"]
    s = scoring.cluster_scores(gold, [1, 1, 2, 2, 2, 2])
    assert s["purity"] == pytest.approx(5 / 6)         # cluster 1: a a; cluster 2: a b b b
    assert s["inverse_purity"] == pytest.approx(5 / 6)
    one = scoring.cluster_scores(gold, [0] * 6)
    assert one["purity"] == pytest.approx(0.5) and one["inverse_purity"] == pytest.approx(1.0)
    assert one["ari"] == pytest.approx(0.0)
    singletons = scoring.cluster_scores(gold, list(range(6)))
    assert singletons["purity"] == pytest.approx(1.0) and singletons["inverse_purity"] == pytest.approx(2 / 6)


def test_eer_by_hand():
    scores = [0.9, 0.8, 0.3, 0.7, 0.2, 0.1]
    target = [True, True, True, False, False, False]
    rate, threshold = scoring.eer(scores, target)
    assert rate == pytest.approx(1 / 3)        # accepting >= 0.7: 1 of 3 targets missed, 1 of 3 non-targets accepted
    assert threshold == pytest.approx(0.7)
    assert scoring.eer([3, 2, 1, 0], [True, True, False, False])[0] == pytest.approx(0.0)
    assert scoring.eer([0, 1, 2, 3], [True, True, False, False])[0] == pytest.approx(1.0)
    assert scoring.eer([1, 1, 1, 1], [True, False, True, False])[0] == pytest.approx(0.5)   # all tied


def test_eer_of_two_gaussians_matches_theory():
    rng = np.random.default_rng(1)
    n = 200_000
    scores = np.r_[rng.normal(1.0, 1.0, n), rng.normal(0.0, 1.0, n)]
    target = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    rate, threshold = scoring.eer(scores, target)
    assert rate == pytest.approx(0.5 * math.erfc(0.5 / math.sqrt(2)), abs=0.004)   # Phi(-0.5) = 0.3085
    assert threshold == pytest.approx(0.5, abs=0.02)


def _min_dcf_brute_force(scores, target, p):
    scores, target = np.asarray(scores), np.asarray(target)
    best = math.inf
    for thr in np.r_[np.unique(scores), np.inf]:
        accept = scores >= thr
        p_miss = np.mean(~accept[target])
        p_fa = np.mean(accept[~target])
        best = min(best, (p_miss * p + p_fa * (1 - p)) / min(p, 1 - p))
    return best


@pytest.mark.parametrize("p_target", [0.01, 0.05, 0.5])
def test_min_dcf_matches_brute_force(p_target):
    rng = np.random.default_rng(2)
    scores = np.round(np.r_[rng.normal(2, 1, 300), rng.normal(0, 1, 3000)], 1)   # rounded: many ties
    target = np.r_[np.ones(300, bool), np.zeros(3000, bool)]
    value, threshold = scoring.min_dcf(scores, target, p_target)
    assert value == pytest.approx(_min_dcf_brute_force(scores, target, p_target))
    assert 0 < value < 1


def test_min_dcf_limits():
    assert scoring.min_dcf([3, 2, 1, 0], [True, True, False, False], 0.01)[0] == pytest.approx(0.0)
    assert scoring.min_dcf([1, 1, 1, 1], [True, False, True, False], 0.01)[0] == pytest.approx(1.0)


def test_error_rates_need_both_kinds_of_trials():
    with pytest.raises(ValueError):
        scoring.eer([1, 2], [True, True])


def test_sample_trials_all_pairs_when_few():
    i, j = scoring.sample_trials(["a", "a", "b", "c"], max_pairs=100)
    assert len(i) == 6 and np.all(i < j)
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]


def test_sample_trials_sampled_half_target_and_seeded():
    labels = np.repeat(np.arange(200), 10)                 # 2000 utts, 199,000 pairs, 9,000 target
    i, j = scoring.sample_trials(labels, max_pairs=10_000, seed=3)
    assert len(i) == 10_000 and np.all(i < j)
    same = labels[i] == labels[j]
    assert same.sum() == 5_000
    i2, j2 = scoring.sample_trials(labels, max_pairs=10_000, seed=3)
    assert np.array_equal(i, i2) and np.array_equal(j, j2)


def test_trial_scores_on_separable_vectors_and_single_speaker():
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(3, 20))
    labels = np.repeat(np.arange(3), 30)
    X = centres[labels] + 0.05 * rng.normal(size=(90, 20))
    s = scoring.trial_scores(X, labels)
    assert s["num_trials"] == 90 * 89 // 2 and s["num_target_trials"] == 3 * 30 * 29 // 2
    assert s["eer"] == pytest.approx(0.0) and s["min_dcf_p0.01"] == pytest.approx(0.0)
    assert s["average_precision"] == pytest.approx(1.0)
    assert scoring.trial_scores(X, np.zeros(90))["eer"] is None
