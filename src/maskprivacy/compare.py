"""The ``compare`` stage: every condition against the baseline, on the same test images.

Pairs the per-image predictions of the ``evaluate`` jobs: McNemar's exact test on per-image
correctness (sex, race), Wilcoxon's signed-rank test on per-image absolute age errors, seeded
bootstrap intervals of every difference; a per-group table (sex x race x age bucket) and heat
maps; a breakdown by mask type; the input accounting (inputs = images in the split + rejects of
every stage); ``results/metrics.json`` flat for ``dvc metrics diff``; and one self-contained HTML
report that states the answer first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from . import html_report, plots, stats
from .evaluate import group_differences, group_table, headline, test_part
from .io import atomic_dir, read_table, write_json, write_table, write_text

ATTRS = ("sex", "race", "age")


def accounting(n_inputs: int, split: pd.DataFrame, rejects: pd.DataFrame) -> dict[str, Any]:
    """Inputs against outputs plus rejects; raises when they do not balance."""
    acc = {
        "inputs": int(n_inputs),
        "in_split": int(len(split)),
        "rejected": int(len(rejects)),
        "rejected_by_stage_and_reason": {
            f"{s}/{r}": int(n) for (s, r), n in rejects.groupby(["stage", "reason"]).size().items()
        },
    }
    acc["balanced"] = acc["inputs"] == acc["in_split"] + acc["rejected"]
    if not acc["balanced"]:
        raise RuntimeError(f"compare: inputs are not all accounted for: {acc}")
    return acc


def by_mask_type(
    test: pd.DataFrame, preds: dict[str, pd.DataFrame], conditions: list[dict], masks: pd.DataFrame
) -> dict:
    """Metrics per mask type for every condition tested on masked faces."""
    if masks is None or masks.empty:
        return {}
    types = masks.set_index("file")["mask_type"]
    out: dict[str, Any] = {}
    for cond in conditions:
        if cond["test"] != "masked":
            continue
        df = preds[cond["name"]].assign(mask_type=test["file"].map(types).to_numpy())
        t = test.assign(mask_type=df["mask_type"].to_numpy())
        rows = {}
        for mtype, idx in t.groupby("mask_type").groups.items():
            tt, pp = t.loc[idx], df.loc[idx]
            rows[str(mtype)] = {
                "n": int(len(idx)),
                "sex_accuracy": float((pp["sex_pred"].to_numpy() == tt["sex"].to_numpy()).mean()),
                "race_accuracy": float(
                    (pp["race_pred"].to_numpy() == tt["race"].to_numpy()).mean()
                ),
                "age_mae": float((pp["age_pred"] - tt["age"]).abs().mean()),
            }
        out[cond["name"]] = rows
    return out


def run(
    cfg: dict[str, Any],
    conditions: list[dict[str, str]],
    split_table: str | Path,
    predictions: dict[str, str | Path],
    condition_metrics: dict[str, str | Path],
    condition_plots: dict[str, str | Path],
    histories: dict[str, str | Path],
    reject_tables: list[str | Path],
    masks_table: list[str | Path] | None,
    n_inputs: int,
    data_source: str,
    all_params: dict[str, Any],
    out_metrics: str | Path,
    out_statistics: str | Path,
    out_groups: str | Path,
    out_rejects: str | Path,
    out_plots: str | Path,
    out_report: str | Path,
    contact_sheets: list[str | Path] = (),
    data_report: str | Path | None = None,
    identity_sheet: str | Path | None = None,
) -> dict[str, Any]:
    demo = data_source == "demo"
    split = read_table(split_table)
    test = test_part(split_table)
    preds = {c["name"]: read_table(predictions[c["name"]]) for c in conditions}
    for name, df in preds.items():
        if df["file"].tolist() != test["file"].tolist():
            raise ValueError(f"compare: predictions of {name!r} are not on the split's test images")
    full = {
        c["name"]: json.loads(Path(condition_metrics[c["name"]]).read_text()) for c in conditions
    }
    base = cfg["baseline"]
    n_boot, seed = int(cfg["bootstrap"]), int(cfg["seed"])
    comparisons = {
        f"{name}_vs_{base}": {
            attr: stats.paired_comparison(
                attr,
                test[attr].to_numpy(),
                preds[base][f"{attr}_pred"].to_numpy(),
                preds[name][f"{attr}_pred"].to_numpy(),
                n_resamples=n_boot,
                seed=seed,
            )
            for attr in ATTRS
        }
        for name in preds
        if name != base
    }
    rejects = pd.concat([read_table(t) for t in reject_tables], ignore_index=True)
    masks = (  # one table per shard
        pd.concat([read_table(t) for t in masks_table], ignore_index=True) if masks_table else None
    )
    groups = group_table(test, preds)
    statistics = {
        "data_source": data_source,
        "demo": demo,
        "alpha": float(cfg["alpha"]),
        "baseline": base,
        "conditions": {
            n: {k: v for k, v in m.items() if k not in ("condition", "data_source")}
            for n, m in full.items()
        },
        "condition_definitions": conditions,
        "comparisons": comparisons,
        "by_mask_type": by_mask_type(test, preds, conditions, masks),
        "accounting": accounting(n_inputs, split, rejects),
        "split_counts": split["split"].value_counts().to_dict(),
    }
    metrics: dict[str, Any] = {"data_source": data_source}
    metrics.update({n: headline(m) for n, m in statistics["conditions"].items()})
    for cname, cmp in comparisons.items():
        metrics[cname] = {
            "sex_accuracy_diff": cmp["sex"]["difference"],
            "race_accuracy_diff": cmp["race"]["difference"],
            "age_mae_diff": cmp["age"]["difference"],
            "sex_mcnemar_p": cmp["sex"]["test"]["p_value"],
            "race_mcnemar_p": cmp["race"]["test"]["p_value"],
            "age_wilcoxon_p": cmp["age"]["test"]["p_value"],
        }
    with atomic_dir(out_plots) as tmp:
        plots.learning_curves_png(
            {d: read_table(h) for d, h in histories.items()}, tmp / "learning_curves.png", demo=demo
        )
        bars = []
        for name, m in statistics["conditions"].items():
            for attr, metric in (("sex", "accuracy"), ("race", "accuracy"), ("age", "mae")):
                bars.append(
                    {
                        "condition": name,
                        "attribute": attr,
                        "metric": metric,
                        "estimate": m[attr][metric],
                        "low": m[attr][f"{metric}_low"],
                        "high": m[attr][f"{metric}_high"],
                    }
                )
        plots.comparison_bars_png(bars, tmp / "comparison.png", demo=demo)
        for name in preds:
            if name != base:
                plots.group_heatmap_png(
                    group_differences(groups, name, base),
                    f"{name} minus {base}, per race x age group",
                    tmp / f"groups_{name}_vs_{base}.png",
                    demo=demo,
                )
    write_table(out_groups, groups)
    write_table(out_rejects, rejects.sort_values(["stage", "file"], kind="stable"))
    write_json(out_statistics, statistics)
    plot_dirs = [Path(out_plots), *[Path(condition_plots[c["name"]]) for c in conditions]]
    data = json.loads(Path(data_report).read_text()) if data_report else None
    write_text(
        out_report,
        html_report.render(
            statistics, all_params, plot_dirs, list(contact_sheets), data, identity_sheet
        ),
    )
    write_json(out_metrics, metrics)
    return metrics
