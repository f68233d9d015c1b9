"""Known-answer tests for maskprivacy.stats (hand-computed values, no reference to scipy)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from maskprivacy import stats

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


# ----------------------------------------------------------------------------- McNemar


def _pairs(b: int, c: int, both_right: int = 3, both_wrong: int = 2):
    a = [True] * b + [False] * c + [True] * both_right + [False] * both_wrong
    bb = [False] * b + [True] * c + [True] * both_right + [False] * both_wrong
    return np.array(a), np.array(bb)


def test_mcnemar_b1_c9():
    r = stats.mcnemar_exact(*_pairs(1, 9))
    assert (r["b"], r["c"], r["n"]) == (1, 9, 15)
    # 2 * P(X <= 1), X ~ Bin(10, 1/2) = 2 * (1 + 10) / 1024
    assert r["p_value"] == pytest.approx(2 * 11 / 1024) == 0.021484375


def test_mcnemar_symmetric_and_no_discordance():
    assert stats.mcnemar_exact(*_pairs(4, 4))["p_value"] == 1.0
    r = stats.mcnemar_exact(*_pairs(0, 0))
    assert (r["b"], r["c"], r["p_value"]) == (0, 0, 1.0)
    # swapping A and B swaps b and c, not the p-value
    r1, r2 = stats.mcnemar_exact(*_pairs(2, 7)), stats.mcnemar_exact(*_pairs(7, 2))
    assert (r1["b"], r1["c"]) == (r2["c"], r2["b"]) and r1["p_value"] == r2["p_value"]


# ----------------------------------------------------------------------------- Wilcoxon


def _exact_signed_rank_p(d: list[float]) -> float:
    """Two-sided exact p by enumerating all 2**n sign patterns (distinct non-zero |d|)."""
    d = [x for x in d if x != 0]
    order = sorted(range(len(d)), key=lambda i: abs(d[i]))
    ranks = {i: r + 1 for r, i in enumerate(order)}
    w_minus = sum(ranks[i] for i in range(len(d)) if d[i] < 0)
    w_plus = sum(ranks.values()) - w_minus
    observed = min(w_plus, w_minus)
    count = 0
    for signs in itertools.product((0, 1), repeat=len(d)):
        wm = sum(r for r, s in zip(range(1, len(d) + 1), signs, strict=True) if s)
        total = len(d) * (len(d) + 1) // 2
        count += min(wm, total - wm) <= observed
    return count / 2 ** len(d)


def test_wilcoxon_all_positive_n6():
    x = np.array([11.0, 12, 13, 14, 15, 16])
    y = np.array([10.0, 10, 10, 10, 10, 10])  # differences 1..6, all positive
    r = stats.wilcoxon_paired(x, y)
    assert r["p_value"] == pytest.approx(2 / 64) == 0.03125
    assert r["p_value"] == pytest.approx(_exact_signed_rank_p((x - y).tolist()))
    assert r["statistic"] == 0.0
    assert r["n"] == 6 and r["n_nonzero"] == 6
    assert r["median_difference"] == pytest.approx(3.5)


def test_wilcoxon_mixed_signs_and_zero():
    d = [1.0, -2.0, 3.0, 4.0, 5.0, 6.0, 0.0]  # the zero is dropped (zero_method 'wilcox')
    r = stats.wilcoxon_paired(d, [0.0] * len(d))
    # W- = 2; sign patterns with min(W+, W-) <= 2: {}, {1}, {2} and mirrors -> 6 / 64
    assert r["p_value"] == pytest.approx(6 / 64)
    assert r["p_value"] == pytest.approx(_exact_signed_rank_p(d))
    assert r["statistic"] == 2.0
    assert (r["n"], r["n_nonzero"]) == (7, 6)
    assert r["median_difference"] == 3.0


def test_wilcoxon_all_zero_differences():
    r = stats.wilcoxon_paired([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert r == {
        "statistic": 0.0,
        "p_value": 1.0,
        "n": 3,
        "n_nonzero": 0,
        "median_difference": 0.0,
    }


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


# ----------------------------------------------------------------------------- paired comparison


def test_paired_comparison_classification():
    y = np.array([0, 1, 2, 3, 4] * 4)
    a = y.copy()  # baseline: all right
    b = y.copy()
    b[:6] = (b[:6] + 1) % 5  # other: 6 wrong -> b=6, c=0
    r = stats.paired_comparison("race", y, a, b, n_resamples=200, seed=0)
    assert r["kind"] == "classification" and r["metric"] == "accuracy"
    assert r["a"] == 1.0 and r["b"] == pytest.approx(14 / 20)
    assert r["difference"] == pytest.approx(-6 / 20)
    assert r["test"]["name"] == "mcnemar_exact"
    assert (r["test"]["b"], r["test"]["c"]) == (6, 0)
    assert r["test"]["p_value"] == pytest.approx(2 / 64)  # 2 * 0.5**6
    ci = r["ci"]
    assert ci["low"] <= ci["estimate"] <= ci["high"] <= 0.0
    assert ci["estimate"] == pytest.approx(r["difference"])
    json.dumps(r, allow_nan=False)


def test_paired_comparison_age():
    y = np.array([20.0, 30.0, 40.0, 50.0, 60.0, 70.0])
    a = y + np.array([1.0, -1, 1, -1, 1, -1])  # |err| = 1 each
    b = y + np.array([2.0, -3, 4, -5, 6, -7])  # |err| = 2..7
    r = stats.paired_comparison("age", y, a, b, n_resamples=200, seed=0)
    assert r["kind"] == "regression" and r["metric"] == "mae"
    assert r["a"] == pytest.approx(1.0) and r["b"] == pytest.approx(4.5)
    assert r["difference"] == pytest.approx(3.5)
    t = r["test"]
    assert t["name"] == "wilcoxon_signed_rank"
    assert t["p_value"] == pytest.approx(2 / 64)  # |B| - |A| = 1..6, all positive
    assert t["median_difference"] == pytest.approx(3.5)
    assert 0.0 < r["ci"]["low"] <= r["ci"]["estimate"] <= r["ci"]["high"]
    json.dumps(r, allow_nan=False)


def test_paired_comparison_bad_kind():
    with pytest.raises(ValueError):
        stats.paired_comparison("sex", [0, 1], [0, 1], [1, 0], kind="ranking")
