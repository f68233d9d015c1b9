"""The ``evaluate`` stage: one condition (a model trained on one data set, tested on the test
part of another), on the test images of the shared split.

Writes the per-image predictions, the condition's metrics with seeded bootstrap intervals and its
plots. Every condition is scored on the same test images, so the ``compare`` stage can pair them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from maskprivacy.analysis import stats
from maskprivacy.core.io import read_table, write_json, write_table
from maskprivacy.core.labels import AGE_BUCKETS, RACES, SEXES
from maskprivacy.model.train import (
    GPUAugment,
    TrainConfig,
    load_checkpoint,
    load_images,
    predict,
    resolve_device,
)
from maskprivacy.report import plots


def condition_metrics(
    y: pd.DataFrame, pred: pd.DataFrame, n_boot: int, seed: int
) -> dict[str, Any]:
    """Headline metrics of one condition with bootstrap intervals."""
    out: dict[str, Any] = {}
    for attr, n_classes in (("sex", len(SEXES)), ("race", len(RACES))):
        t, p = y[attr].to_numpy(), pred[f"{attr}_pred"].to_numpy()
        m = stats.classification_metrics(t, p, n_classes)
        ci = stats.bootstrap_ci(lambda a, b: float((a == b).mean()), (t, p), n_boot, seed)
        bci = stats.bootstrap_ci(
            lambda a, b, k=n_classes: _balanced_accuracy(a, b, k), (t, p), n_boot, seed
        )
        out[attr] = {
            "accuracy": m["accuracy"],
            "accuracy_low": ci["low"],
            "accuracy_high": ci["high"],
            "balanced_accuracy": m["balanced_accuracy"],
            "balanced_accuracy_low": bci["low"],
            "balanced_accuracy_high": bci["high"],
            "per_class_recall": m["per_class_recall"],
            "confusion": m["confusion"],
        }
    t, p = y["age"].to_numpy(float), pred["age_pred"].to_numpy(float)
    r = stats.regression_metrics(t, p)
    ci = stats.bootstrap_ci(lambda a, b: float(np.abs(a - b).mean()), (t, p), n_boot, seed)
    rci = stats.bootstrap_ci(
        lambda a, b: float(np.sqrt(((a - b) ** 2).mean())), (t, p), n_boot, seed
    )
    out["age"] = {
        "mae": r["mae"],
        "mae_low": ci["low"],
        "mae_high": ci["high"],
        "rmse": r["rmse"],
        "rmse_low": rci["low"],
        "rmse_high": rci["high"],
    }
    if "age_group_pred" in pred:
        t, p = y["age_bucket"].to_numpy(), pred["age_group_pred"].to_numpy()
        m = stats.classification_metrics(t, p, len(AGE_BUCKETS))
        ci = stats.bootstrap_ci(lambda a, b: float((a == b).mean()), (t, p), n_boot, seed)
        out["age_group"] = {
            "accuracy": m["accuracy"],
            "accuracy_low": ci["low"],
            "accuracy_high": ci["high"],
            "balanced_accuracy": m["balanced_accuracy"],
            "per_class_recall": m["per_class_recall"],
            "confusion": m["confusion"],
        }
    out["n_test"] = int(len(y))
    return out


def _balanced_accuracy(t: np.ndarray, p: np.ndarray, n_classes: int) -> float:
    recalls = [float((p[t == k] == k).mean()) for k in range(n_classes) if (t == k).any()]
    return float(np.mean(recalls)) if recalls else float("nan")


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


def predict_condition(
    cond: dict[str, str],
    train_cfg: dict[str, Any],
    test: pd.DataFrame,
    model_path: str | Path,
    images_dir: str | Path | list[str | Path],
    threads: int = 1,
    progress: bool = True,
) -> pd.DataFrame:
    """Per-image predictions of the condition's model(s) on its test images."""
    tc = TrainConfig.from_params(train_cfg)
    device = resolve_device(tc.device)
    models, payload = load_checkpoint(model_path, device)
    size = int(payload["image_size"])
    images = load_images(images_dir, test["file"].tolist(), size, threads, progress)
    p = predict(
        models, images, GPUAugment({}, size, device, 0), device, tc.eval_batch_size, tc.precision
    )
    df = pd.DataFrame(
        {
            "file": test["file"],
            "condition": cond["name"],
            "sex_pred": p["sex_prob"].argmax(1),
            "race_pred": p["race_prob"].argmax(1),
            "age_pred": p["age"],
            "sex_prob_female": p["sex_prob"][:, 1],
        }
    )
    # the class probabilities, so that compare can average the seeds' models (the ensemble)
    for k in range(p["race_prob"].shape[1]):
        df[f"race_prob_{k}"] = p["race_prob"][:, k]
    if "age_group_prob" in p:  # the paper protocol's 7-class age model
        df["age_group_pred"] = p["age_group_prob"].argmax(1)
        for k in range(p["age_group_prob"].shape[1]):
            df[f"age_group_prob_{k}"] = p["age_group_prob"][:, k]
    return df


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


def run(
    cfg: dict[str, Any],
    condition: str,
    train_cfg: dict[str, Any],
    split_table: str | Path,
    model_path: str | Path,
    images_dir: str | Path | list[str | Path],
    data_source: str,
    out_predictions: str | Path,
    out_metrics: str | Path,
    out_plots: str | Path,
    threads: int = 1,
    progress: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate one condition of ``evaluate.conditions`` with the model of training seed
    ``seed``; write predictions, metrics, plots."""
    from maskprivacy.core.plumbing import atomic_dir

    if threads:
        torch.set_num_threads(threads)
    conds = {c["name"]: c for c in cfg["conditions"]}
    if condition not in conds:
        raise ValueError(
            f"evaluate: no condition {condition!r} in evaluate.conditions ({sorted(conds)})"
        )
    cond = conds[condition]
    demo = data_source == "demo"
    test = test_part(split_table)
    preds = predict_condition(cond, train_cfg, test, model_path, images_dir, threads, progress)
    full = condition_metrics(test, preds, int(cfg["bootstrap"]), int(cfg["seed"]))
    tag = f"{condition}_seed{seed}"
    with atomic_dir(out_plots) as tmp:
        for attr, names in (
            ("sex", SEXES),
            ("race", RACES),
            ("age_group", [b[0] for b in AGE_BUCKETS]),
        ):
            if attr in full:
                plots.confusion_matrix_png(
                    full[attr]["confusion"],
                    list(names),
                    f"{attr}: {condition}, seed {seed}",
                    tmp / f"confusion_{attr}_{tag}.png",
                    demo=demo,
                )
        plots.age_scatter_png(
            test["age"].to_numpy(float),
            preds["age_pred"].to_numpy(float),
            f"age: {condition}, seed {seed}",
            tmp / f"age_{tag}.png",
            demo=demo,
        )
    write_table(out_predictions, preds)
    write_json(out_metrics, {"condition": cond, "seed": seed, "data_source": data_source, **full})
    return headline(full)
