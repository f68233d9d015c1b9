"""Known-answer tests for maskprivacy.analysis.stats (hand-computed values, no reference to scipy)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from maskprivacy.analysis import stats

# ----------------------------------------------------------------------------- classification


def test_classification_metrics_by_hand_with_absent_class():
    # 3 classes; class 2 never occurs in y_true but is predicted once.
    y_true = [0, 0, 0, 0, 1, 1]
    y_pred = [0, 0, 0, 1, 1, 2]
    m = stats.classification_metrics(y_true, y_pred, 3)
    assert m["confusion"] == [[3, 1, 0], [0, 1, 1], [0, 0, 0]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class_recall"] == [pytest.approx(0.75), pytest.approx(0.5), None]
    # Mean recall over present classes only: (3/4 + 1/2) / 2.
    assert m["balanced_accuracy"] == pytest.approx(0.625)
    assert m["support"] == [4, 2, 0]
    assert m["n"] == 6
    json.dumps(m, allow_nan=False)  # plain, NaN-free
    assert isinstance(m["accuracy"], float) and isinstance(m["n"], int)


def test_classification_metrics_perfect_and_validation():
    m = stats.classification_metrics(np.array([1, 0, 1]), np.array([1, 0, 1]), 2)
    assert m["accuracy"] == 1.0 and m["balanced_accuracy"] == 1.0
    with pytest.raises(ValueError):
        stats.classification_metrics([0, 2], [0, 1], 2)  # class 2 out of range
    with pytest.raises(ValueError):
        stats.classification_metrics([0, 1], [0], 2)  # length mismatch
    with pytest.raises(ValueError):
        stats.classification_metrics([], [], 2)


# ----------------------------------------------------------------------------- regression


def test_regression_metrics_by_hand():
    # errors (pred - true): +2, -1, 0, -3
    m = stats.regression_metrics([10, 20, 30, 40], [12.0, 19.0, 30.0, 37.0])
    assert m["mae"] == pytest.approx(6 / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((4 + 1 + 0 + 9) / 4))
    assert m["mean_error"] == pytest.approx(-2 / 4)
    assert m["n"] == 4
    with pytest.raises(ValueError):
        stats.regression_metrics([1.0, np.nan], [1.0, 2.0])


# ----------------------------------------------------------------------------- sign-flip test


def _exact_sign_flip_p(d: list[float]) -> float:
    """Two-sided exact p of the mean by enumerating all 2**n sign patterns of the differences."""
    observed = abs(sum(d))
    count = sum(
        abs(sum(s * x for s, x in zip(signs, d, strict=True))) >= observed - 1e-12
        for signs in itertools.product((1, -1), repeat=len(d))
    )
    return count / 2 ** len(d)


def test_sign_flip_all_positive_n6():
    r = stats.sign_flip_test([1.0, 2, 3, 4, 5, 6])
    # only the observed pattern and its mirror are as extreme: 2 / 64
    assert r["p_value"] == pytest.approx(2 / 64) == 0.03125
    assert r["exact"] and (r["n"], r["n_nonzero"]) == (6, 6)
    assert r["mean_difference"] == pytest.approx(3.5)


def test_sign_flip_mixed_signs_by_enumeration():
    d = [1.0, -2.0, 3.0, 4.0, -0.5, 6.0, 0.0]  # the zero cannot move the sum
    r = stats.sign_flip_test(d)
    assert r["p_value"] == pytest.approx(_exact_sign_flip_p(d[:-1]))
    assert (r["n"], r["n_nonzero"]) == (7, 6)
    assert r["mean_difference"] == pytest.approx(11.5 / 7)


def test_sign_flip_on_right_wrong_is_mcnemar():
    # one model each: 9 images right only under A (-1), 1 only under B (+1), 5 ties (0)
    d = [-1.0] * 9 + [1.0] + [0.0] * 5
    # McNemar exact: 2 * P(X <= 1), X ~ Bin(10, 1/2) = 2 * 11 / 1024
    assert stats.sign_flip_test(d)["p_value"] == pytest.approx(2 * 11 / 1024)
    assert stats.sign_flip_test([0.0, 0.0])["p_value"] == 1.0
    # one discordant image: both of its sign patterns are as extreme
    assert stats.sign_flip_test([0.0, -1.0, 0.0])["p_value"] == 1.0


def test_sign_flip_monte_carlo_is_seeded_and_floored():
    d = np.full(50, 1.0)  # 2**50 patterns: random ones, none as extreme as the data
    r = stats.sign_flip_test(d, n_resamples=999, seed=3)
    # two-sided: twice scipy's (0 + 1) / (999 + 1)
    assert not r["exact"] and r["p_value"] == pytest.approx(2 / 1000)
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, 200)
    a = stats.sign_flip_test(noise, n_resamples=999, seed=1)
    assert a == stats.sign_flip_test(noise, n_resamples=999, seed=1)
    assert a["p_value"] > 0.05 or abs(noise.mean()) > 0.1


def test_skewed_age_case_mean_and_median_disagree():
    """The issue's case: 400 faces, 80% get 0.5 years better, 20% get 3 years worse under B.

    The mean error rises by 0.2 years while most faces got better: a test of the median
    (Wilcoxon) rejects in the other direction; the test of the reported mean must follow the
    mean, and its sign is the mean's."""
    d = np.array([-0.5] * 320 + [3.0] * 80)
    assert d.mean() == pytest.approx(0.2) and np.median(d) == -0.5
    r = stats.sign_flip_test(d, n_resamples=9999, seed=0)
    assert r["mean_difference"] == pytest.approx(0.2)
    # sum of squares 320 * 0.25 + 80 * 9 = 800 -> z = 80 / sqrt(800) = 2.83, p about 0.005
    assert 0.001 < r["p_value"] < 0.02


# ----------------------------------------------------------------------------- across seeds


def test_t_across_seeds_by_hand():
    r = stats.t_across_seeds([1.0, 2.0, 3.0])
    # mean 2, sd 1, se 1/sqrt(3), t = 3.4641 with 2 df: p = 1 - 2/sqrt(3)... by the t(2) cdf:
    # P(|T| > t) = 1 - t / sqrt(t**2 + 2) for 2 df
    t = 2 / (1 / math.sqrt(3))
    assert r["p_value"] == pytest.approx(1 - t / math.sqrt(t**2 + 2))
    assert (r["mean"], r["sd"], r["df"], r["n_seeds"]) == (2.0, 1.0, 2, 3)
    q = 4.302652729911275  # t(2) 97.5% quantile
    assert r["low"] == pytest.approx(2 - q / math.sqrt(3))
    assert r["high"] == pytest.approx(2 + q / math.sqrt(3))


def test_t_across_seeds_undefined_cases():
    one = stats.t_across_seeds([0.02])
    assert one["p_value"] is None and "train.seeds" in one["note"] and one["sd"] is None
    zero = stats.t_across_seeds([0.0, 0.0])
    assert (zero["p_value"], zero["low"], zero["high"]) == (1.0, 0.0, 0.0)
    same = stats.t_across_seeds([0.1, 0.1, 0.1])
    assert same["p_value"] is None and "no spread" in same["note"]
    json.dumps(one, allow_nan=False)


# ----------------------------------------------------------------------------- Holm


def test_holm_known_vector():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    got = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert got == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.01, None, 0.04]) == [pytest.approx(0.02), None, pytest.approx(0.04)]
    assert stats.holm([0.5, 0.9]) == [1.0, 1.0]
    assert stats.holm([]) == []
    with pytest.raises(ValueError):
        stats.holm([1.5])


# ----------------------------------------------------------------------------- bootstrap


def _acc(a: np.ndarray, b: np.ndarray) -> float:
    return float((a == b).mean())


def _data(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, n)
    p = np.where(rng.random(n) < 0.8, t, 1 - t)
    return t, p


def test_bootstrap_deterministic_and_seed_dependent():
    t, p = _data(200)
    r1 = stats.bootstrap_ci(_acc, (t, p), n_resamples=300, seed=5)
    r2 = stats.bootstrap_ci(_acc, (t, p), n_resamples=300, seed=5)
    r3 = stats.bootstrap_ci(_acc, (t, p), n_resamples=300, seed=6)
    assert r1 == r2
    assert (r1["low"], r1["high"]) != (r3["low"], r3["high"])
    assert r1["estimate"] == r3["estimate"] == _acc(t, p)
    assert r1["low"] <= r1["estimate"] <= r1["high"]
    json.dumps(r1, allow_nan=False)


def test_bootstrap_vectorized_matches_loop():
    t, p = _data(150)
    loop = stats.bootstrap_ci(_acc, (t, p), n_resamples=200, seed=3)
    vec = stats.bootstrap_ci(
        lambda a, b: (a == b).mean(axis=-1), (t, p), n_resamples=200, seed=3, vectorized=True
    )
    assert vec == pytest.approx(loop)


def test_bootstrap_narrower_with_more_data():
    small = stats.bootstrap_ci(_acc, _data(100), n_resamples=500, seed=0)
    large = stats.bootstrap_ci(_acc, _data(2000), n_resamples=500, seed=0)
    assert large["high"] - large["low"] < 0.5 * (small["high"] - small["low"])
    assert large["low"] <= large["estimate"] <= large["high"]


def test_bootstrap_keeps_rows_paired():
    x = np.arange(50.0)
    # resampling the same rows in both arrays keeps x - x == 0 in every resample
    r = stats.bootstrap_ci(lambda a, b: float(np.abs(a - b).max()), (x, x.copy()), 100, 0)
    assert r == {"estimate": 0.0, "low": 0.0, "high": 0.0}


def test_bootstrap_validation():
    with pytest.raises(ValueError):
        stats.bootstrap_ci(_acc, (np.zeros(3), np.zeros(4)))
    with pytest.raises(ValueError):
        stats.bootstrap_ci(_acc, (np.zeros(3), np.zeros(3)), level=1.5)


# ----------------------------------------------------------------------------- paired difference


def test_paired_difference_classification_one_seed():
    y = np.array([0, 1, 2, 3, 4] * 4)
    a = y.copy()  # baseline: all right
    b = y.copy()
    b[:6] = (b[:6] + 1) % 5  # other: 6 wrong
    r = stats.paired_difference("race", y, [a], [b], n_resamples=200, seed=0)
    assert r["kind"] == "classification" and r["metric"] == "accuracy"
    assert r["a"] == 1.0 and r["b"] == pytest.approx(14 / 20)
    assert r["difference"] == pytest.approx(-6 / 20)
    assert r["test"]["name"] == "sign_flip_permutation"
    assert r["test"]["p_value"] == pytest.approx(2 / 64)  # 6 discordant, all one way
    assert r["across_seeds"]["p_value"] is None  # one seed: no test across seeds
    ci = r["ci"]
    assert ci["low"] <= ci["estimate"] <= ci["high"] <= 0.0
    assert ci["estimate"] == pytest.approx(r["difference"])
    json.dumps(r, allow_nan=False)


def test_paired_difference_age_one_seed():
    y = np.array([20.0, 30.0, 40.0, 50.0, 60.0, 70.0])
    a = y + np.array([1.0, -1, 1, -1, 1, -1])  # |err| = 1 each
    b = y + np.array([2.0, -3, 4, -5, 6, -7])  # |err| = 2..7
    r = stats.paired_difference("age", y, [a], [b], n_resamples=200, seed=0)
    assert r["kind"] == "regression" and r["metric"] == "mae"
    assert r["a"] == pytest.approx(1.0) and r["b"] == pytest.approx(4.5)
    assert r["difference"] == pytest.approx(3.5)
    assert r["test"]["p_value"] == pytest.approx(2 / 64)  # |B| - |A| = 1..6, all positive
    assert 0.0 < r["ci"]["low"] <= r["ci"]["estimate"] <= r["ci"]["high"]


def test_paired_difference_over_seeds():
    y = np.zeros(10, dtype=int)
    right, wrong = np.zeros(10, dtype=int), np.ones(10, dtype=int)
    # seed 0: A 10/10, B 7/10; seed 1: A 9/10, B 8/10 -> differences -0.3, -0.1
    a = [right, np.r_[wrong[:1], right[1:]]]
    b = [np.r_[wrong[:3], right[3:]], np.r_[right[:8], wrong[8:]]]
    r = stats.paired_difference("sex", y, a, b, n_resamples=200, seed=0)
    assert [s["difference"] for s in r["per_seed"]] == pytest.approx([-0.3, -0.1])
    assert r["difference"] == pytest.approx(-0.2)  # = the mean of the seeds' differences
    assert (r["a"], r["b"]) == (pytest.approx(0.95), pytest.approx(0.75))
    t = r["across_seeds"]
    assert t["n_seeds"] == 2 and t["mean"] == pytest.approx(-0.2)
    assert t["sd"] == pytest.approx(math.sqrt(0.02))
    # 2 seeds: t = -0.2 / 0.1 = -2 with 1 df: p = 1 - 2 * atan(2) / pi
    assert t["p_value"] == pytest.approx(1 - 2 * math.atan(2) / math.pi)
    # per image, B minus A averaged over seeds: images 1, 2, 8, 9 -0.5, the rest 0 (image 0 is
    # wrong once under each) -> 4 non-zero differences all one way: exact p = 2 / 16
    assert r["test"]["n_nonzero"] == 4 and r["test"]["exact"]
    assert r["test"]["p_value"] == pytest.approx(2 / 16)
    with pytest.raises(ValueError):
        stats.paired_difference("sex", y, a, b[:1])


def test_seed_averaged_metric():
    y = np.array([10.0, 20.0, 30.0, 40.0])
    r = stats.seed_averaged_metric("age", y, [y + 1, y - 3], n_resamples=200, seed=0)
    assert r["metric"] == "mae" and r["estimate"] == pytest.approx(2.0)
    assert r["per_seed"] == pytest.approx([1.0, 3.0]) and r["low"] == r["high"] == 2.0


def test_paired_difference_bad_kind():
    with pytest.raises(ValueError):
        stats.paired_difference("sex", [0, 1], [[0, 1]], [[1, 0]], kind="ranking")
