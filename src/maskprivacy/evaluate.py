"""The ``evaluate`` stage: test every condition, compare each with the baseline on the same images.

A condition is a model trained on one data set (``unmasked`` or ``masked``) tested on the test
part of another. Every condition is scored on the same test images (those of the shared split),
so differences between conditions are paired: McNemar's exact test for sex and race, Wilcoxon's
signed-rank test on per-image absolute age errors, and seeded bootstrap intervals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import plots, stats
from .io import read_table, write_json, write_table
from .labels import AGE_BUCKETS, RACES, SEXES
from .train import GPUAugment, TrainConfig, load_checkpoint, load_images, predict, resolve_device


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


def run(
    cfg: dict[str, Any],
    train_cfg: dict[str, Any],
    split_table: str | Path,
    models: dict[str, str | Path],
    histories: dict[str, str | Path],
    images: dict[str, str | Path],
    reject_tables: list[str | Path],
    n_inputs: int,
    data_source: str,
    out_metrics: str | Path,
    out_statistics: str | Path,
    out_predictions: str | Path,
    out_rejects: str | Path,
    out_plots: str | Path,
    out_groups: str | Path | None = None,
    out_report: str | Path | None = None,
    all_params: dict[str, Any] | None = None,
    threads: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    from .io import atomic_dir

    if threads:
        torch.set_num_threads(threads)
    demo = data_source == "demo"
    tc = TrainConfig.from_params(train_cfg)
    device = resolve_device(tc.device)
    split = read_table(split_table)
    test = split[split["split"] == "test"].reset_index(drop=True)
    if test.empty:
        raise ValueError(f"evaluate: no test images in {split_table}")
    cache: dict[str, torch.Tensor] = {}
    preds: dict[str, pd.DataFrame] = {}
    full: dict[str, Any] = {}
    for cond in cfg["conditions"]:
        name, tr, te = cond["name"], cond["train"], cond["test"]
        model, payload = load_checkpoint(models[tr], device)
        size = int(payload["image_size"])
        key = f"{te}@{size}"
        if key not in cache:
            cache[key] = load_images(images[te], test["file"].tolist(), size, threads, progress)
        aug = GPUAugment({}, size, device, 0)
        p = predict(model, cache[key], aug, device, tc.eval_batch_size, tc.precision)
        df = pd.DataFrame(
            {
                "file": test["file"],
                "condition": name,
                "sex_pred": p["sex_prob"].argmax(1),
                "race_pred": p["race_prob"].argmax(1),
                "age_pred": p["age"],
                "sex_prob_female": p["sex_prob"][:, 1],
            }
        )
        if "age_group_prob" in p:  # the paper protocol's 7-class age model
            df["age_group_pred"] = p["age_group_prob"].argmax(1)
        preds[name] = df
        full[name] = condition_metrics(test, df, int(cfg["bootstrap"]), int(cfg["seed"]))

    base = cfg["baseline"]
    comparisons: dict[str, Any] = {}
    for name in preds:
        if name == base:
            continue
        a, b = preds[base], preds[name]
        comparisons[f"{name}_vs_{base}"] = {
            attr: stats.paired_comparison(
                attr,
                test[attr].to_numpy(),
                a[f"{attr}_pred"].to_numpy(),
                b[f"{attr}_pred"].to_numpy(),
                n_resamples=int(cfg["bootstrap"]),
                seed=int(cfg["seed"]),
            )
            for attr in ("sex", "race", "age")
        }

    # Every input accounted for: outputs (the split) plus the rejects of every stage.
    rejects = pd.concat([read_table(t) for t in reject_tables], ignore_index=True)
    accounting = {
        "inputs": n_inputs,
        "in_split": int(len(split)),
        "rejected": int(len(rejects)),
        "rejected_by_stage_and_reason": {
            f"{s}/{r}": int(n) for (s, r), n in rejects.groupby(["stage", "reason"]).size().items()
        },
        "balanced": n_inputs == len(split) + len(rejects),
    }
    if not accounting["balanced"]:
        raise RuntimeError(f"evaluate: inputs are not all accounted for: {accounting}")

    metrics = {"data_source": data_source, **{n: headline(m) for n, m in full.items()}}
    for cmp_name, cmp in comparisons.items():
        metrics[cmp_name] = {
            "sex_mcnemar_p": cmp["sex"]["test"]["p_value"],
            "race_mcnemar_p": cmp["race"]["test"]["p_value"],
            "age_wilcoxon_p": cmp["age"]["test"]["p_value"],
        }
    statistics = {
        "data_source": data_source,
        "demo": demo,
        "baseline": base,
        "conditions": full,
        "comparisons": comparisons,
        "accounting": accounting,
        "split_counts": split["split"].value_counts().to_dict(),
    }
    with atomic_dir(out_plots) as tmp:
        for name, m in full.items():
            plots.confusion_matrix_png(
                m["sex"]["confusion"],
                list(SEXES),
                f"sex: {name}",
                tmp / f"confusion_sex_{name}.png",
                demo=demo,
            )
            plots.confusion_matrix_png(
                m["race"]["confusion"],
                list(RACES),
                f"race: {name}",
                tmp / f"confusion_race_{name}.png",
                demo=demo,
            )
            plots.age_scatter_png(
                test["age"].to_numpy(float),
                preds[name]["age_pred"].to_numpy(float),
                f"age: {name}",
                tmp / f"age_{name}.png",
                demo=demo,
            )
        plots.learning_curves_png(
            {d: read_table(h) for d, h in histories.items()}, tmp / "learning_curves.png", demo=demo
        )
        bars = []
        for name, m in full.items():
            bars.append(
                {
                    "condition": name,
                    "attribute": "sex",
                    "metric": "accuracy",
                    "estimate": m["sex"]["accuracy"],
                    "low": m["sex"]["accuracy_low"],
                    "high": m["sex"]["accuracy_high"],
                }
            )
            bars.append(
                {
                    "condition": name,
                    "attribute": "race",
                    "metric": "accuracy",
                    "estimate": m["race"]["accuracy"],
                    "low": m["race"]["accuracy_low"],
                    "high": m["race"]["accuracy_high"],
                }
            )
            bars.append(
                {
                    "condition": name,
                    "attribute": "age",
                    "metric": "mae",
                    "estimate": m["age"]["mae"],
                    "low": m["age"]["mae_low"],
                    "high": m["age"]["mae_high"],
                }
            )
        plots.comparison_bars_png(bars, tmp / "comparison.png", demo=demo)
        groups = group_table(test, preds)
        for name in preds:
            if name != base:
                diff = group_differences(groups, name, base)
                plots.group_heatmap_png(
                    diff,
                    f"{name} minus {base}, per race x age group",
                    tmp / f"groups_{name}_vs_{base}.png",
                    demo=demo,
                )
    write_table(out_predictions, pd.concat(preds.values(), ignore_index=True))
    write_table(out_rejects, rejects.sort_values(["stage", "file"], kind="stable"))
    if out_groups:
        write_table(out_groups, groups)
    write_json(out_statistics, statistics)
    if out_report:
        from . import html_report
        from .io import write_text

        write_text(out_report, html_report.render(statistics, all_params or {}, out_plots))
    write_json(out_metrics, metrics)
    return metrics
