"""One condition's test results (a model trained on one data set, tested on the test part of
another; every condition on the same test images): its metrics with seeded bootstrap intervals,
the seed ensemble of its models, per-group tables and the flat headline numbers."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from maskprivacy.analysis import stats
from maskprivacy.analysis.metrics import accuracy, balanced_accuracy, mae, rmse
from maskprivacy.core.io import read_table
from maskprivacy.core.labels import AGE_BUCKETS, RACES, SEXES


def condition_metrics(
    y: pd.DataFrame, pred: pd.DataFrame, n_boot: int, seed: int
) -> dict[str, Any]:
    """Headline metrics of one condition with bootstrap intervals."""
    out: dict[str, Any] = {}
    for attr, n_classes in (("sex", len(SEXES)), ("race", len(RACES))):
        t, p = y[attr].to_numpy(), pred[f"{attr}_pred"].to_numpy()
        out[attr] = classification_with_intervals(t, p, n_classes, n_boot, seed)
    t, p = y["age"].to_numpy(float), pred["age_pred"].to_numpy(float)
    out["age"] = {
        **stats.with_interval("mae", mae, (t, p), n_boot, seed),
        **stats.with_interval("rmse", rmse, (t, p), n_boot, seed),
    }
    if "age_group_pred" in pred:
        t, p = y["age_bucket"].to_numpy(), pred["age_group_pred"].to_numpy()
        m = stats.classification_metrics(t, p, len(AGE_BUCKETS))
        out["age_group"] = {
            **stats.with_interval("accuracy", accuracy, (t, p), n_boot, seed),
            "balanced_accuracy": m["balanced_accuracy"],
            "per_class_recall": m["per_class_recall"],
            "confusion": m["confusion"],
        }
    out["n_test"] = int(len(y))
    return out


def classification_with_intervals(
    t: np.ndarray, p: np.ndarray, n_classes: int, n_boot: int, seed: int
) -> dict[str, Any]:
    """Accuracy and balanced accuracy, each with a seeded bootstrap 95% interval over faces, the
    per-class recall and the confusion matrix of labels ``t`` and predictions ``p``."""
    m = stats.classification_metrics(t, p, n_classes)
    balanced = partial(balanced_accuracy, n_classes=n_classes)
    return {
        **stats.with_interval("accuracy", accuracy, (t, p), n_boot, seed),
        **stats.with_interval("balanced_accuracy", balanced, (t, p), n_boot, seed),
        "per_class_recall": m["per_class_recall"],
        "confusion": m["confusion"],
    }


def group_table(test: pd.DataFrame, preds: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per condition and sex x race x age-bucket group: n, sex and race accuracy, age MAE."""
    rows = []
    for name, df in preds.items():
        d = test[["sex", "race", "age", "age_bucket"]].assign(
            sex_ok=(df["sex_pred"].to_numpy() == test["sex"].to_numpy()),
            race_ok=(df["race_pred"].to_numpy() == test["race"].to_numpy()),
            age_err=np.abs(df["age_pred"].to_numpy() - test["age"].to_numpy()),
        )
        g = d.groupby(["sex", "race", "age_bucket"]).agg(
            n=("sex_ok", "size"),
            sex_acc=("sex_ok", "mean"),
            race_acc=("race_ok", "mean"),
            age_mae=("age_err", "mean"),
        )
        rows.append(g.reset_index().assign(condition=name))
    cols = ["condition", "sex", "race", "age_bucket", "n", "sex_acc", "race_acc", "age_mae"]
    return pd.concat(rows, ignore_index=True)[cols]


def group_differences(groups: pd.DataFrame, condition: str, baseline: str) -> pd.DataFrame:
    """Condition minus baseline per race x age bucket (pooled over sex, weighted by n)."""

    def pooled(name: str) -> pd.DataFrame:
        g = groups[groups["condition"] == name].copy()
        for c in ("sex_acc", "race_acc", "age_mae"):
            g[c] = g[c] * g["n"]
        s = g.groupby(["race", "age_bucket"])[["n", "sex_acc", "race_acc", "age_mae"]].sum()
        for c in ("sex_acc", "race_acc", "age_mae"):
            s[c] = s[c] / s["n"]
        return s

    a, b = pooled(baseline), pooled(condition)
    out = pd.DataFrame({"n": a["n"]})
    for c in ("sex_acc", "race_acc", "age_mae"):
        out[f"{c}_diff"] = b[c] - a[c]
    return out.reset_index()


def headline(full: dict[str, Any]) -> dict[str, Any]:
    """The flat part of a condition's metrics, for results/metrics.json and `dvc metrics diff`."""
    return {
        "sex": {k: full["sex"][k] for k in ("accuracy", "balanced_accuracy")},
        "race": {k: full["race"][k] for k in ("accuracy", "balanced_accuracy")},
        "age": {k: full["age"][k] for k in ("mae", "rmse")},
        **(
            {"age_group": {k: full["age_group"][k] for k in ("accuracy", "balanced_accuracy")}}
            if "age_group" in full
            else {}
        ),
        "n_test": full["n_test"],
    }


def _prob_columns(df: pd.DataFrame, attr: str) -> list[str]:
    return sorted(
        (c for c in df.columns if c.startswith(f"{attr}_prob_") and c[len(attr) + 6 :].isdigit()),
        key=lambda c: int(c[len(attr) + 6 :]),
    )


def ensemble_predictions(preds: list[pd.DataFrame]) -> pd.DataFrame:
    """The seed ensemble: the mean of the models' outputs (sex and race probabilities, age, and
    age-group probabilities for the paper protocol), and the predictions they give. Every table
    must be on the same files in the same order; an ensemble of one model is that model."""
    if not preds:
        raise ValueError("ensemble_predictions: no predictions")
    first = preds[0]
    for k, df in enumerate(preds[1:], 1):
        if df["file"].tolist() != first["file"].tolist():
            raise ValueError(f"ensemble_predictions: table {k} is not on the same files")
    if len(preds) == 1:
        return first.copy()
    out = first[["file", "condition"]].copy() if "condition" in first else first[["file"]].copy()
    female = np.mean([df["sex_prob_female"].to_numpy(float) for df in preds], axis=0)
    out["sex_pred"] = (female > 0.5).astype(int)
    race = np.mean([df[_prob_columns(df, "race")].to_numpy(float) for df in preds], axis=0)
    out["race_pred"] = race.argmax(1)
    out["age_pred"] = np.mean([df["age_pred"].to_numpy(float) for df in preds], axis=0)
    out["sex_prob_female"] = female
    for k in range(race.shape[1]):
        out[f"race_prob_{k}"] = race[:, k]
    if "age_group_pred" in first:
        group = np.mean([df[_prob_columns(df, "age_group")].to_numpy(float) for df in preds], 0)
        out["age_group_pred"] = group.argmax(1)
        for k in range(group.shape[1]):
            out[f"age_group_prob_{k}"] = group[:, k]
    return out


def test_part(split_table: str | Path) -> pd.DataFrame:
    split = read_table(split_table)
    test = split[split["split"] == "test"].reset_index(drop=True)
    if test.empty:
        raise ValueError(f"no test images in {split_table}")
    return test
