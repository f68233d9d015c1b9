"""The data report: what came in, what was verified, rejected and kept, and two pictures.

- :func:`data_report` (split stage): ``results/data/report.json``: files found, verified,
  rejected by stage and reason, label defects, duplicate groups and conflicts, and the final
  counts per sex, race and age bucket (the paper's seven groups), overall and per split part;
  :func:`label_figure` draws those counts (``results/data/labels.png``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from maskprivacy.core.io import n_rejected, write_json
from maskprivacy.core.labels import AGE_BUCKETS, RACES, SEXES
from maskprivacy.datasets.split import PARTS


def label_counts(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Counts per sex, race and age bucket, with the label names."""
    return {
        "sex": {s: int((table["sex"] == i).sum()) for i, s in enumerate(SEXES)},
        "race": {r: int((table["race"] == i).sum()) for i, r in enumerate(RACES)},
        "age_bucket": {
            f"{name} ({lo}-{hi})": int((table["age_bucket"] == i).sum())
            for i, (name, lo, hi) in enumerate(AGE_BUCKETS)
        },
    }


def data_report(
    download: Mapping[str, Any],
    split: pd.DataFrame,
    rejects: Sequence[pd.DataFrame],
    groups: pd.DataFrame | None = None,
    split_summary: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The data report as a dict (see the module docstring).

    ``split_summary`` (the split stage's summary) adds the split method and how many images
    keeping duplicate groups on one side moved from the part the method gave them.
    """
    rej = pd.concat(list(rejects), ignore_index=True) if rejects else pd.DataFrame()
    by_reason = (
        {f"{s}/{r}": int(n) for (s, r), n in rej.groupby(["stage", "reason"]).size().items()}
        if len(rej)
        else {}
    )
    dup = dict(download.get("duplicates", {}))
    if groups is not None and len(groups):
        kept = groups[groups["file"].isin(split["file"])]
        multi = kept.groupby("group")["file"].size()
        dup["final_groups_with_several_files"] = int((multi > 1).sum())
        crossing = 0
        if (multi > 1).any():
            parts = kept.merge(split[["file", "split"]], on="file")
            crossing = int((parts.groupby("group")["split"].nunique() > 1).sum())
        dup["groups_across_split_parts"] = crossing
    if split_summary is not None:
        dup["files_moved_by_split_to_keep_groups"] = split_summary.get("files_moved_to_keep_groups")
    n_inputs = int(download.get("n_inputs", 0))
    final = {
        "n_images": len(split),
        **label_counts(split),
        "by_split": {
            p: {
                "n_images": int((split["split"] == p).sum()),
                **label_counts(split[split["split"] == p]),
            }
            for p in PARTS
        },
    }
    return {
        "source": download.get("source"),
        "variant": download.get("variant"),
        "inputs": download.get("inputs"),
        "files_found": n_inputs,
        "verification": download.get("verification"),
        "label_defects_policy": download.get("label_defects_policy"),
        "label_defects": download.get("label_defects", []),
        "rejected": n_rejected(rej),
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "duplicates": dup,
        "split_method": (split_summary or {}).get("method"),
        "final": final,
        "accounting": {
            "found": n_inputs,
            "final": len(split),
            "rejected": n_rejected(rej),
            "balanced": n_inputs == len(split) + n_rejected(rej),
        },
    }


def label_figure(report: Mapping[str, Any], demo: bool = False) -> Any:
    """Bars of the final counts per sex, race and age bucket, stacked by split part."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.2), layout="constrained")
    axes = fig.subplots(1, 3, width_ratios=[2, 5, 7])
    colours = {"train": "#4c72b0", "val": "#dd8452", "test": "#55a868"}
    for ax, key, title in zip(
        axes, ("sex", "race", "age_bucket"), ("sex", "race", "age bucket (paper)"), strict=True
    ):
        names = list(report["final"][key])
        bottom = np.zeros(len(names))
        for p in PARTS:
            vals = np.array([report["final"]["by_split"][p][key][n] for n in names], float)
            ax.bar(range(len(names)), vals, bottom=bottom, color=colours[p], label=p)
            bottom += vals
        for i, v in enumerate(bottom):
            ax.text(i, v, f"{int(v):,}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(names)), [n.split(" (")[0] for n in names], rotation=30)
        ax.set_title(title)
        ax.set_ylim(0, max(bottom.max(), 1) * 1.12)
    axes[0].set_ylabel("images")
    axes[-1].legend(title="split", fontsize=8)
    acc = report["accounting"]
    fig.suptitle(
        f"{report['final']['n_images']:,} images kept of {acc['found']:,} found "
        f"({acc['rejected']:,} rejected); source {report['source']}, "
        f"{(report.get('verification') or {}).get('status', 'not verified')}",
        fontsize=11,
    )
    if demo:
        fig.text(
            0.5,
            0.5,
            "DEMO DATA: synthetic labels, not UTKFace",
            color="red",
            alpha=0.4,
            fontsize=22,
            ha="center",
            va="center",
            rotation=15,
        )
    return fig


def write_data_report(
    report: Mapping[str, Any], json_out: str | os.PathLike, png_out: str | os.PathLike
) -> None:
    from maskprivacy.core.io import save_figure

    write_json(json_out, report)
    save_figure(label_figure(report, demo=report.get("source") == "demo"), png_out)
