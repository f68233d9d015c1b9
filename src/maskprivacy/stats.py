"""Metrics, paired tests and seeded bootstrap intervals for the evaluation stage.

Every condition is scored on the same test images, so two conditions are compared *paired*:

- sex and race (classification): McNemar's exact test on the discordant pairs, and a bootstrap
  interval for the difference in accuracy;
- age (regression): Wilcoxon's signed-rank test on the per-image absolute errors, and a
  bootstrap interval for the difference in mean absolute error.

Bootstrap intervals are percentile intervals over images (rows), drawn with
``numpy.random.default_rng(seed)``, so a given seed always gives the same interval. All public
functions return plain Python ``float``/``int``/``list``/``dict``/``None`` values, ready for
``json.dumps``; no NaN is ever returned (an undefined value is ``None``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

CLASSIFICATION_ATTRIBUTES = ("sex", "race")
REGRESSION_ATTRIBUTES = ("age",)
# Upper bound on resampled index values held in memory at once (int64): 2**24 -> 128 MiB.
_MAX_CHUNK_CELLS = 1 << 24


def _as_1d(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _paired(a: Any, b: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_1d(a, names[0]), _as_1d(b, names[1])
    if len(x) != len(y):
        raise ValueError(f"{names[0]} and {names[1]} differ in length: {len(x)} != {len(y)}")
    if len(x) == 0:
        raise ValueError(f"{names[0]} and {names[1]} are empty")
    return x, y


def _finite(a: np.ndarray, name: str) -> np.ndarray:
    out = a.astype(float)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return out


def _labels(a: np.ndarray, n_classes: int, name: str) -> np.ndarray:
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError(f"{name} must hold whole class indices")
    elif a.dtype.kind not in "iub":
        raise ValueError(f"{name} must hold integer class indices, got dtype {a.dtype}")
    out = a.astype(np.int64)
    if out.size and (out.min() < 0 or out.max() >= n_classes):
        raise ValueError(f"{name} has class indices outside 0-{n_classes - 1}")
    return out


def classification_metrics(y_true: Any, y_pred: Any, n_classes: int) -> dict[str, Any]:
    """Accuracy, balanced accuracy, per-class recall and the confusion matrix.

    ``y_true`` and ``y_pred`` hold class indices ``0 .. n_classes-1``. ``confusion[i][j]``
    counts images of true class ``i`` predicted as ``j`` (rows true, columns predicted).
    ``per_class_recall[i]`` is ``None`` for a class absent from ``y_true``; balanced accuracy is
    the mean recall over the classes present (as scikit-learn's ``balanced_accuracy_score``).
    ``support`` is the number of true images per class.
    """
    if n_classes < 1:
        raise ValueError(f"n_classes must be positive, got {n_classes}")
    t, p = _paired(y_true, y_pred, ("y_true", "y_pred"))
    t, p = _labels(t, n_classes, "y_true"), _labels(p, n_classes, "y_pred")
    confusion = np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )
    support = confusion.sum(axis=1)
    diag = np.diag(confusion)
    recall: list[float | None] = [
        float(diag[i] / support[i]) if support[i] else None for i in range(n_classes)
    ]
    present = [r for r in recall if r is not None]
    return {
        "accuracy": float(diag.sum() / len(t)),
        "balanced_accuracy": float(np.mean(present)),
        "per_class_recall": recall,
        "support": support.tolist(),
        "confusion": confusion.tolist(),
        "n": int(len(t)),
    }


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """Mean absolute error, root mean squared error and mean signed error (pred - true)."""
    t, p = _paired(y_true, y_pred, ("y_true", "y_pred"))
    err = _finite(p, "y_pred") - _finite(t, "y_true")
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mean_error": float(np.mean(err)),
        "n": int(len(err)),
    }


def mcnemar_exact(correct_a: Any, correct_b: Any) -> dict[str, Any]:
    """McNemar's exact (binomial) test on paired right/wrong outcomes of two classifiers.

    ``b`` counts images A got right and B wrong, ``c`` the reverse. Under the null hypothesis
    (equal accuracy) ``b ~ Binomial(b + c, 1/2)``; the two-sided p-value is
    ``min(1, 2 * P(X <= min(b, c)))``, and 1.0 when there are no discordant pairs.
    """
    a, b_ = _paired(correct_a, correct_b, ("correct_a", "correct_b"))
    a, b_ = a.astype(bool), b_.astype(bool)
    b = int(np.count_nonzero(a & ~b_))
    c = int(np.count_nonzero(~a & b_))
    if b + c == 0:
        p = 1.0
    else:
        p = min(1.0, 2.0 * float(sps.binom.cdf(min(b, c), b + c, 0.5)))
    return {"b": b, "c": c, "p_value": p, "n": int(len(a))}


def wilcoxon_paired(x: Any, y: Any) -> dict[str, Any]:
    """Wilcoxon's signed-rank test (two-sided) on the paired differences ``x - y``.

    Zero differences are dropped (``zero_method="wilcox"``); when every difference is zero the
    test is undefined and ``statistic`` is 0.0 with ``p_value`` 1.0. scipy picks the exact null
    distribution for small samples and the normal approximation otherwise. ``statistic`` is
    scipy's (the smaller of the positive and negative rank sums), ``n`` the number of pairs,
    ``n_nonzero`` those with a non-zero difference, ``median_difference`` the median of ``x - y``.
    """
    a, b = _paired(x, y, ("x", "y"))
    d = _finite(a, "x") - _finite(b, "y")
    n_nonzero = int(np.count_nonzero(d))
    if n_nonzero == 0:
        statistic, p = 0.0, 1.0
    else:
        res = sps.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        statistic, p = float(res.statistic), min(1.0, float(res.pvalue))
    return {
        "statistic": statistic,
        "p_value": p,
        "n": int(len(d)),
        "n_nonzero": n_nonzero,
        "median_difference": float(np.median(d)),
    }


def _resample_chunks(n: int, n_resamples: int, seed: int) -> list[np.ndarray]:
    """Bootstrap row indices, shape (k, n) per chunk; the same for a given (n, n_resamples, seed)."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, min(n_resamples, _MAX_CHUNK_CELLS // max(1, n)))
    chunks = []
    done = 0
    while done < n_resamples:
        k = min(per_chunk, n_resamples - done)
        chunks.append(rng.integers(0, n, size=(k, n)))
        done += k
    return chunks


def bootstrap_ci(
    metric_fn: Callable[..., Any],
    arrays: Sequence[np.ndarray],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    vectorized: bool = False,
) -> dict[str, float | None]:
    """Percentile bootstrap interval of ``metric_fn(*arrays)``, resampling rows.

    Every resample draws ``n`` row indices with replacement and applies the *same* indices to
    every array (so pairing is kept). ``estimate`` is the metric on the original data, ``low``
    and ``high`` the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the resampled
    metric. Deterministic for a given ``seed``.

    With ``vectorized=False`` ``metric_fn`` takes 1-D arrays and returns a number, and is called
    once per resample. With ``vectorized=True`` it receives arrays with a leading resample axis,
    shape ``(k, n, ...)``, and must return ``k`` values (one call per chunk of resamples, much
    faster); it is called with ``k = 1`` for the estimate.

    Resamples where the metric is undefined (NaN) are left out of the quantiles; bounds are
    ``None`` when no resample gives a defined value.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    arrs = [np.asarray(a) for a in arrays]
    if not arrs:
        raise ValueError("bootstrap_ci needs at least one array")
    n = len(arrs[0])
    if n == 0 or any(len(a) != n for a in arrs):
        raise ValueError(f"arrays must be non-empty and of equal length: {[len(a) for a in arrs]}")

    if vectorized:
        estimate = float(
            np.asarray(metric_fn(*(a[None] for a in arrs)), dtype=float).reshape(-1)[0]
        )
    else:
        estimate = float(metric_fn(*arrs))
    values = []
    for idx in _resample_chunks(n, n_resamples, seed):
        if vectorized:
            v = np.asarray(metric_fn(*(a[idx] for a in arrs)), dtype=float).reshape(-1)
            if len(v) != len(idx):
                raise ValueError(f"vectorized metric_fn returned {len(v)} values for {len(idx)}")
        else:
            v = np.array([float(metric_fn(*(a[row] for a in arrs))) for row in idx])
        values.append(v)
    dist = np.concatenate(values)
    dist = dist[np.isfinite(dist)]
    alpha = (1.0 - level) / 2.0
    if dist.size == 0:
        low = high = None
    else:
        low, high = (float(q) for q in np.quantile(dist, [alpha, 1.0 - alpha]))
    return {
        "estimate": estimate if np.isfinite(estimate) else None,
        "low": low,
        "high": high,
    }


def _accuracy_difference(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """accuracy(b) - accuracy(a) along the last axis (vectorised over resamples)."""
    return (b == t).mean(axis=-1) - (a == t).mean(axis=-1)


def _mae_difference(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MAE(b) - MAE(a) along the last axis (vectorised over resamples)."""
    return np.abs(b - t).mean(axis=-1) - np.abs(a - t).mean(axis=-1)


def paired_comparison(
    attribute: str,
    y_true: Any,
    pred_a: Any,
    pred_b: Any,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    kind: str | None = None,
) -> dict[str, Any]:
    """Compare two conditions' predictions (A = baseline, B = other) on the same images.

    ``kind`` is ``"classification"`` or ``"regression"``; by default ``age`` is regression and
    anything else classification. Returns::

        {"attribute", "kind", "metric": "accuracy" | "mae", "n",
         "a": metric of A, "b": metric of B, "difference": b - a,
         "ci": {"estimate", "low", "high", "level"}   # bootstrap interval of the difference
         "test": {"name": "mcnemar_exact" | "wilcoxon_signed_rank", "p_value", ...}}

    Classification: accuracy, McNemar's exact test on per-image correctness. Regression: mean
    absolute error, Wilcoxon's signed-rank test on per-image absolute errors (``|B| - |A|``).
    A negative ``difference`` means B is less accurate (classification) or more accurate
    (regression: lower MAE) than A.
    """
    kind = kind or ("regression" if attribute in REGRESSION_ATTRIBUTES else "classification")
    t, a = _paired(y_true, pred_a, ("y_true", "pred_a"))
    _, b = _paired(y_true, pred_b, ("y_true", "pred_b"))
    if kind == "classification":
        metric = "accuracy"
        ra, rb = a == t, b == t
        va, vb = float(ra.mean()), float(rb.mean())
        test = {"name": "mcnemar_exact", **mcnemar_exact(ra, rb)}
        diff_fn = _accuracy_difference
    elif kind == "regression":
        metric = "mae"
        t, a, b = _finite(t, "y_true"), _finite(a, "pred_a"), _finite(b, "pred_b")
        ea, eb = np.abs(a - t), np.abs(b - t)
        va, vb = float(ea.mean()), float(eb.mean())
        test = {"name": "wilcoxon_signed_rank", **wilcoxon_paired(eb, ea)}
        diff_fn = _mae_difference
    else:
        raise ValueError(f"kind must be 'classification' or 'regression', got {kind!r}")
    ci = bootstrap_ci(diff_fn, (t, a, b), n_resamples, seed, level, vectorized=True)
    return {
        "attribute": attribute,
        "kind": kind,
        "metric": metric,
        "n": int(len(t)),
        "a": va,
        "b": vb,
        "difference": vb - va,
        "ci": {**ci, "level": float(level)},
        "test": test,
    }
