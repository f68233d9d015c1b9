"""Metrics of a model on an external test set: only for the labels the set gives.

The labels come from :mod:`maskprivacy.datasets.external` (``sex``, ``race``, ``age``,
``age_low``/``age_high``; empty where the set does not say), the predictions from the model
(``sex_pred``, ``race_pred``, ``age_pred``). Each attribute is scored on the faces that have its
label, each metric with a seeded percentile bootstrap 95% interval over those faces
(:func:`maskprivacy.analysis.stats.bootstrap_ci`):

- ``sex``, ``race``: accuracy and balanced accuracy (mean recall over the classes present),
  per-class recall and the confusion matrix;
- ``age`` (exact ages): MAE, RMSE and the mean signed error (predicted - true);
- ``age_range`` (a range such as ``20-29``): the group accuracy, the share of faces whose
  predicted age, rounded to whole years as ages are labelled, falls in the range; and the error to
  the range, 0 inside it, else the distance from the predicted age to the nearer bound (for a
  range of one year it is that face's absolute error, so it reads as an MAE).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from maskprivacy.analysis import stats
from maskprivacy.core.labels import RACES, SEXES

ATTRIBUTES = ("sex", "race", "age", "age_range")


def range_error(pred: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Per face: 0 when the predicted age lies in [low, high], else the distance to it."""
    return np.maximum(np.maximum(low - pred, pred - high), 0.0)


def in_range(pred: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Per face: does the predicted age, rounded to whole years (half up), fall in the range?"""
    years = np.floor(pred + 0.5)
    return (years >= low) & (years <= high)


def _mean(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=-1)


def _balanced(t: np.ndarray, p: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced accuracy along the last axis (resamples first): the mean recall over the classes
    present in each resample."""
    hit = t == p
    recalls = []
    for k in range(n_classes):
        of_k = t == k
        n = of_k.sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            recalls.append(np.where(n > 0, (hit & of_k).sum(axis=-1) / n, np.nan))
    return np.nanmean(np.stack(recalls), axis=0)


def _ci(fn: Any, arrays: tuple[np.ndarray, ...], n_boot: int, seed: int) -> dict[str, Any]:
    return stats.bootstrap_ci(fn, arrays, n_boot, seed, vectorized=True)


def _classification(t: np.ndarray, p: np.ndarray, names: tuple[str, ...], n_boot: int, seed: int):
    m = stats.classification_metrics(t, p, len(names))
    acc = _ci(lambda a, b: _mean(a == b), (t, p), n_boot, seed)
    bal = _ci(lambda a, b: _balanced(a, b, len(names)), (t, p), n_boot, seed)
    return {
        "n": m["n"],
        "accuracy": m["accuracy"],
        "accuracy_low": acc["low"],
        "accuracy_high": acc["high"],
        "balanced_accuracy": m["balanced_accuracy"],
        "balanced_accuracy_low": bal["low"],
        "balanced_accuracy_high": bal["high"],
        "per_class_recall": dict(zip(names, m["per_class_recall"], strict=True)),
        "confusion": m["confusion"],
    }


def external_metrics(
    labels: pd.DataFrame, preds: pd.DataFrame, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Metrics of ``preds`` on the faces of ``labels`` it covers (joined on ``file``), for each
    label the set gives (see the module docstring). ``n_faces``: the faces joined."""
    cols = ["file", "sex", "race", "age", "age_low", "age_high"]
    df = labels[cols].merge(preds[["file", "sex_pred", "race_pred", "age_pred"]], on="file")
    out: dict[str, Any] = {"n_faces": int(len(df))}
    for attr, names in (("sex", SEXES), ("race", RACES)):
        have = df[df[attr].notna()]
        if len(have):
            t = have[attr].to_numpy(np.int64)
            p = have[f"{attr}_pred"].to_numpy(np.int64)
            out[attr] = _classification(t, p, names, n_boot, seed)
    have = df[df["age"].notna()]
    if len(have):
        t, p = have["age"].to_numpy(float), have["age_pred"].to_numpy(float)
        r = stats.regression_metrics(t, p)
        mae = _ci(lambda a, b: _mean(np.abs(a - b)), (t, p), n_boot, seed)
        rmse = _ci(lambda a, b: np.sqrt(_mean((a - b) ** 2)), (t, p), n_boot, seed)
        out["age"] = {
            "n": r["n"],
            "mae": r["mae"],
            "mae_low": mae["low"],
            "mae_high": mae["high"],
            "rmse": r["rmse"],
            "rmse_low": rmse["low"],
            "rmse_high": rmse["high"],
            "mean_error": r["mean_error"],
        }
    have = df[df["age_low"].notna()]
    if len(have):
        p = have["age_pred"].to_numpy(float)
        lo, hi = have["age_low"].to_numpy(float), have["age_high"].to_numpy(float)
        acc = _ci(lambda a, b, c: _mean(in_range(a, b, c)), (p, lo, hi), n_boot, seed)
        err = _ci(lambda a, b, c: _mean(range_error(a, b, c)), (p, lo, hi), n_boot, seed)
        out["age_range"] = {
            "n": int(len(have)),
            "group_accuracy": float(in_range(p, lo, hi).mean()),
            "group_accuracy_low": acc["low"],
            "group_accuracy_high": acc["high"],
            "range_error": float(range_error(p, lo, hi).mean()),
            "range_error_low": err["low"],
            "range_error_high": err["high"],
        }
    return out


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The one number per label the set gives: sex and race accuracy, age MAE, age-range group
    accuracy and error to the range."""
    keys = {
        "sex": ("accuracy",),
        "race": ("accuracy",),
        "age": ("mae",),
        "age_range": ("group_accuracy", "range_error"),
    }
    return {
        f"{attr}_{k}": metrics[attr][k] for attr, ks in keys.items() if attr in metrics for k in ks
    }


def labels_present(manifest: pd.DataFrame) -> list[str]:
    """The labels a set gives for at least one face: of sex, race, age, age_range."""
    have = {
        "sex": manifest["sex"].notna().any(),
        "race": manifest["race"].notna().any(),
        "age": manifest["age"].notna().any(),
        "age_range": manifest["age_low"].notna().any(),
    }
    return [k for k, v in have.items() if v]


def faces_in_every_version(
    manifest: pd.DataFrame, version_tables: dict[str, list[pd.DataFrame]]
) -> pd.DataFrame:
    """The manifest's faces that every version has (each version: its per-shard tables with a
    ``file`` column, e.g. align's landmarks and mask's masks), so every model and version is
    scored on the same faces; in the manifest's order."""
    keep = pd.Series(True, index=manifest.index)
    for tables in version_tables.values():
        files = set().union(*(set(t["file"]) for t in tables)) if tables else set()
        keep &= manifest["file"].isin(files)
    return manifest[keep].reset_index(drop=True)


def summarise(
    manifest: pd.DataFrame,
    predictions: dict[tuple[str, str], dict[int, pd.DataFrame]],
    rejects: pd.DataFrame,
    ingest_report: dict[str, Any],
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """One external set: for each (version, training set) the seed ensemble's metrics (the mean
    of the seeds' outputs) with intervals, and the seeds' headline numbers with their mean and
    SD; the labels the set gives; and the accounting of its label rows and files (``rejects``:
    every stage's of this set)."""
    from maskprivacy.model.evaluate import ensemble_predictions

    results = []
    n_scored = None
    for (version, train), by_seed in predictions.items():
        seeds = sorted(by_seed)
        ens = ensemble_predictions([by_seed[s] for s in seeds])
        per_seed = {
            str(s): headline(external_metrics(manifest, by_seed[s], n_boot, seed)) for s in seeds
        }
        table = pd.DataFrame(per_seed.values())
        metrics = external_metrics(manifest, ens, n_boot, seed)
        n_scored = metrics["n_faces"]
        results.append(
            {
                "version": version,
                "train": train,
                "seeds": seeds,
                "ensemble": metrics,
                "per_seed": per_seed,
                "mean": {k: float(v) for k, v in table.mean().items()},
                "sd": {k: float(v) for k, v in table.std(ddof=1).items()} if len(seeds) > 1 else {},
            }
        )
    by = rejects.groupby(["stage", "reason"]).size()
    return {
        "labels": labels_present(manifest),
        "accounting": {
            "label_rows": ingest_report["n_rows"],
            "files": ingest_report["n_entries"],
            "images": int(len(manifest)),
            "scored": n_scored,
            "rejected_by_stage_and_reason": {f"{s}: {r}": int(n) for (s, r), n in by.items()},
        },
        "results": results,
    }
