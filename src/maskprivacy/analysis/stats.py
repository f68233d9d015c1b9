"""Metrics, paired tests, seeded bootstrap intervals and multiple-testing control.

Every condition is scored on the same test images, and every training set is trained once per
seed of ``train.seeds`` (seed ``s`` of one training set paired with seed ``s`` of another: the
same initial weights, augmentation stream and batch order). Two conditions A (baseline) and B are
compared on the quantity that is reported, the difference of the mean per-image score (accuracy:
1 right / 0 wrong; age: absolute error in years), averaged over the seeds:

- over test images: ``d_i`` = the image's score under B minus under A, each averaged over the
  seeds; the reported difference is ``mean(d)`` (= the mean over seeds of the per-seed metric
  differences), its interval a percentile bootstrap over images, its test a paired sign-flip
  permutation test of ``mean(d) = 0`` (:func:`sign_flip_test`). The test and the interval are of
  the very number reported, so the sentence's direction is the tested direction (a Wilcoxon test,
  which is about the median, could disagree in sign with the mean: see the tests).
- over training runs: a paired t-test and t-interval on the per-seed differences
  (:func:`t_across_seeds`), which measures how much the gap moves when the recipe is trained again
  (the test over images conditions on the trained models and cannot see that).

:func:`holm` adjusts a family of p-values (Holm-Bonferroni). Bootstrap intervals are percentile
intervals over images (rows), drawn with ``numpy.random.default_rng(seed)``, so a given seed
always gives the same interval. All public functions return plain Python
``float``/``int``/``list``/``dict``/``None`` values, ready for ``json.dumps``; no NaN is ever
returned (an undefined value is ``None``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

from maskprivacy.analysis.metrics import accuracy, balanced_accuracy, mae, per_class_recall, rmse

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
    return {
        "accuracy": accuracy(t, p),
        "balanced_accuracy": balanced_accuracy(t, p, n_classes),
        "per_class_recall": per_class_recall(t, p, n_classes),
        "support": confusion.sum(axis=1).tolist(),
        "confusion": confusion.tolist(),
        "n": int(len(t)),
    }


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """Mean absolute error, root mean squared error and mean signed error (pred - true)."""
    t, p = _paired(y_true, y_pred, ("y_true", "y_pred"))
    t, p = _finite(t, "y_true"), _finite(p, "y_pred")
    return {
        "mae": mae(t, p),
        "rmse": rmse(t, p),
        "mean_error": float(np.mean(p - t)),
        "n": int(len(t)),
    }


def bootstrap_ci(
    metric_fn: Callable[..., Any],
    arrays: Sequence[np.ndarray],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    vectorized: bool = False,
) -> dict[str, float | None]:
    """Percentile bootstrap interval of ``metric_fn(*arrays)``, resampling rows.

    The resamples are ``scipy.stats.bootstrap``'s (``paired=True``: every resample draws ``n``
    row indices with replacement and applies the *same* indices to every array, so pairing is
    kept; ``rng=seed``, in batches that hold at most 2**24 indices). ``estimate`` is the metric
    on the original data, ``low`` and ``high`` the ``(1 - level) / 2`` and ``(1 + level) / 2``
    quantiles (``numpy.quantile``, linear) of the resampled metric. Deterministic for a given
    ``seed``. (scipy's own percentile interval of the same resamples can differ from these in
    the last bit: ``scipy.stats.quantile`` interpolates in another order; and it is NaN where a
    resample's metric is.)

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

    def statistic(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        if not vectorized:
            return np.asarray(float(metric_fn(*resampled)))
        v = np.asarray(metric_fn(*resampled), dtype=float).reshape(-1)
        if len(v) != len(resampled[0]):
            raise ValueError(
                f"vectorized metric_fn returned {len(v)} values for {len(resampled[0])}"
            )
        return v

    if n == 1:  # every resample is the one row (scipy wants two or more)
        return {"estimate": _defined(estimate), **_interval(np.array([estimate]), level)}
    with warnings.catch_warnings():
        # scipy's own interval and standard error, unused here, warn of a NaN resample (left
        # out below) and of a single resample
        warnings.simplefilter("ignore", sps.DegenerateDataWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"numpy\._core\._methods")
        res = sps.bootstrap(
            arrs,
            statistic,
            n_resamples=n_resamples,
            batch=max(1, min(n_resamples, _MAX_CHUNK_CELLS // n)),
            vectorized=vectorized,
            paired=True,
            axis=0,
            method="percentile",
            rng=seed,
        )
    return {"estimate": _defined(estimate), **_interval(res.bootstrap_distribution, level)}


def with_interval(
    name: str, metric: Callable[..., float], arrays: tuple[Any, ...], n_boot: int, seed: int
) -> dict[str, float | None]:
    """``{name: metric(*arrays), name_low: ..., name_high: ...}``: the estimate and the bounds of
    a seeded bootstrap 95% interval over rows (:func:`bootstrap_ci`)."""
    ci = bootstrap_ci(metric, arrays, n_boot, seed)
    return {name: ci["estimate"], f"{name}_low": ci["low"], f"{name}_high": ci["high"]}


def _defined(x: float) -> float | None:
    return x if np.isfinite(x) else None


def _interval(dist: np.ndarray, level: float) -> dict[str, float | None]:
    """The percentile interval of the defined (finite) values of a bootstrap distribution."""
    dist = np.asarray(dist, dtype=float)
    dist = dist[np.isfinite(dist)]
    if dist.size == 0:
        return {"low": None, "high": None}
    alpha = (1.0 - level) / 2.0
    low, high = (float(q) for q in np.quantile(dist, [alpha, 1.0 - alpha]))
    return {"low": low, "high": high}


def sign_flip_test(d: Any, n_resamples: int = 9999, seed: int = 0) -> dict[str, Any]:
    """Paired permutation test (two-sided) of ``mean(d) = 0`` for paired differences ``d``.

    Under the null hypothesis each pair's difference is as likely to have either sign, so the
    null distribution of the mean flips the signs independently (``scipy.stats.permutation_test``
    with ``permutation_type="samples"`` and one sample). Zero differences are set aside: they do
    not move the sum. Exact when the ``2**n_nonzero`` sign patterns are at most ``n_resamples``;
    otherwise ``n_resamples`` random patterns from ``seed``, and scipy's p-value (twice the
    smaller tail's ``(k + 1) / (n_resamples + 1)``), never below ``2 / (n_resamples + 1)``. With one seed and a
    right/wrong score this is McNemar's test of the discordant pairs in permutation form.
    """
    arr = _finite(_as_1d(d, "d"), "d")
    if arr.size == 0:
        raise ValueError("d is empty")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    nz = arr[arr != 0]
    # integer powers: 2.0**n overflows a float past n = 1023 (every real test set reaches it)
    exact = nz.size == 0 or nz.size < 64 and 2**nz.size <= n_resamples
    if nz.size <= 1:  # no difference, or one: its two sign patterns are equally extreme
        p = 1.0
    else:
        res = sps.permutation_test(
            (nz,),
            lambda x, axis: np.sum(x, axis=axis),
            permutation_type="samples",
            vectorized=True,
            n_resamples=n_resamples,
            batch=max(1, _MAX_CHUNK_CELLS // nz.size),
            alternative="two-sided",
            rng=seed,
        )
        p = min(1.0, float(res.pvalue))
    return {
        "name": "sign_flip_permutation",
        "p_value": p,
        "mean_difference": float(arr.mean()),
        "n": int(arr.size),
        "n_nonzero": int(nz.size),
        "n_resamples": int(n_resamples),
        "exact": bool(exact),
    }


def t_across_seeds(differences: Any, level: float = 0.95) -> dict[str, Any]:
    """Paired t-test (two-sided) and t-interval of the mean of per-seed differences.

    ``differences[k]`` is the metric of condition B minus that of A, both from seed ``k``.
    With fewer than two seeds there is no spread to test against: ``p_value``, ``low`` and
    ``high`` are ``None`` and ``note`` says why. When every seed gives the same difference the
    t statistic is undefined: zero differences give ``p_value`` 1.0 and the interval [0, 0];
    equal non-zero ones give ``None`` with a note.
    """
    d = _finite(np.atleast_1d(np.asarray(differences, dtype=float)), "differences")
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"differences must be a non-empty 1-D list, got shape {d.shape}")
    out: dict[str, Any] = {
        "name": "paired_t_across_seeds",
        "n_seeds": int(d.size),
        "mean": float(d.mean()),
        "sd": float(d.std(ddof=1)) if d.size > 1 else None,
        "df": int(d.size - 1),
        "level": float(level),
        "low": None,
        "high": None,
        "p_value": None,
        "note": None,
    }
    if d.size < 2:
        out["note"] = (
            "one training run per training set: the test across seeds needs two or more "
            "(train.seeds)"
        )
    elif np.all(d == d[0]):
        if d[0] == 0:
            out.update(low=0.0, high=0.0, p_value=1.0)
        else:
            out["note"] = "every seed gave the same difference: no spread, the t-test is undefined"
    else:
        res = sps.ttest_1samp(d, 0.0)
        ci = res.confidence_interval(level)
        out.update(low=float(ci.low), high=float(ci.high), p_value=min(1.0, float(res.pvalue)))
    return out


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values, in the input order (``None`` stays ``None``, uncounted).

    With the ``m`` p-values sorted ascending, the ``j``-th (from 1) is adjusted to
    ``max over i <= j of min(1, (m - i + 1) * p_(i))``. Rejecting where the adjusted value is
    below alpha keeps the chance of any false rejection in the family at most alpha.
    """
    idx = [i for i, p in enumerate(p_values) if p is not None]
    for i in idx:
        if not 0.0 <= float(p_values[i]) <= 1.0:
            raise ValueError(f"p-values must lie in [0, 1], got {p_values[i]}")
    m = len(idx)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: float(p_values[i]))):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        out[i] = running
    return out


def _scores(kind: str, y: np.ndarray, preds: Sequence[Any], name: str) -> np.ndarray:
    """Per-image scores, shape (seeds, images): 1/0 right (classification), |error| (age)."""
    if len(preds) == 0:
        raise ValueError(f"{name}: no predictions (one array per seed expected)")
    rows = []
    for k, p in enumerate(preds):
        t, q = _paired(y, p, ("y_true", f"{name}[{k}]"))
        if kind == "classification":
            rows.append((q == t).astype(float))
        elif kind == "regression":
            rows.append(np.abs(_finite(q, f"{name}[{k}]") - _finite(t, "y_true")))
        else:
            raise ValueError(f"kind must be 'classification' or 'regression', got {kind!r}")
    return np.vstack(rows)


def _kind(attribute: str, kind: str | None) -> str:
    return kind or ("regression" if attribute in REGRESSION_ATTRIBUTES else "classification")


def _mean_last(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=-1)


def seed_averaged_metric(
    attribute: str,
    y_true: Any,
    preds: Sequence[Any],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    kind: str | None = None,
) -> dict[str, Any]:
    """A condition's metric (accuracy, or age MAE) averaged over its seeds' models, with a
    percentile bootstrap interval over test images (each image's score averaged over seeds)."""
    kind = _kind(attribute, kind)
    s = _scores(kind, _as_1d(y_true, "y_true"), preds, "preds")
    ci = bootstrap_ci(_mean_last, (s.mean(axis=0),), n_resamples, seed, level, vectorized=True)
    return {
        "metric": "accuracy" if kind == "classification" else "mae",
        "estimate": float(s.mean()),
        "low": ci["low"],
        "high": ci["high"],
        "level": float(level),
        "per_seed": [float(v) for v in s.mean(axis=1)],
        "n_seeds": int(s.shape[0]),
    }


def paired_difference(
    attribute: str,
    y_true: Any,
    preds_a: Sequence[Any],
    preds_b: Sequence[Any],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    permutations: int = 9999,
    kind: str | None = None,
    test: bool = True,
) -> dict[str, Any]:
    """Compare condition B with baseline A on the same images, each from the same seeds.

    ``preds_a[k]`` and ``preds_b[k]`` are the predictions of seed ``k``'s models (one array per
    seed, in the same order; a single model is a list of one). ``kind`` is ``"classification"``
    (metric: accuracy) or ``"regression"`` (metric: MAE); by default ``age`` is regression and
    anything else classification. Returns::

        {"attribute", "kind", "metric", "n", "n_seeds",
         "a", "b": the metrics averaged over seeds, "difference": b - a,
         "ci": {"estimate", "low", "high", "level"},   # bootstrap over images
         "test": sign_flip_test of the per-image differences (None with test=False),
         "per_seed": [{"a", "b", "difference"}, ...],
         "across_seeds": t_across_seeds of the per-seed differences (None with test=False)}

    A negative ``difference`` means B is less accurate (classification) or more accurate
    (regression: lower MAE) than A; ``difference`` is the tested number in both tests.
    """
    kind = _kind(attribute, kind)
    if len(preds_a) != len(preds_b):
        raise ValueError(f"preds_a and preds_b hold {len(preds_a)} and {len(preds_b)} seeds")
    y = _as_1d(y_true, "y_true")
    sa, sb = _scores(kind, y, preds_a, "preds_a"), _scores(kind, y, preds_b, "preds_b")
    d = sb.mean(axis=0) - sa.mean(axis=0)
    ci = bootstrap_ci(_mean_last, (d,), n_resamples, seed, level, vectorized=True)
    va, vb = sa.mean(axis=1), sb.mean(axis=1)
    return {
        "attribute": attribute,
        "kind": kind,
        "metric": "accuracy" if kind == "classification" else "mae",
        "n": int(len(y)),
        "n_seeds": int(len(va)),
        "a": float(va.mean()),
        "b": float(vb.mean()),
        "difference": float(d.mean()),
        "ci": {**ci, "level": float(level)},
        "test": sign_flip_test(d, permutations, seed) if test else None,
        "per_seed": [
            {"a": float(x), "b": float(z), "difference": float(z - x)}
            for x, z in zip(va, vb, strict=True)
        ],
        "across_seeds": t_across_seeds(vb - va, level) if test else None,
    }
