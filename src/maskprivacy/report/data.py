"""The data report: what came in, what was verified, rejected and kept, and two pictures.

- :func:`near_duplicate_sheet` (download stage): a contact sheet of near-duplicate pairs on both
  sides of ``download.near_threshold``: the most distant pairs still called near duplicates, and
  the closest pairs kept as distinct images, so the threshold can be checked by eye.
- :func:`data_report` (split stage): ``results/data/report.json``: files found, verified,
  rejected by stage and reason, label defects, duplicate groups and conflicts, and the final
  counts per sex, race and age bucket (the paper's seven groups), overall and per split part;
  :func:`label_figure` draws those counts (``results/data/labels.png``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from maskprivacy.core.io import write_json
from maskprivacy.core.labels import AGE_BUCKETS, RACES, SEXES
from maskprivacy.core.plumbing import atomic_path

PARTS = ("train", "val", "test")
CELL = 96  # thumbnail side on the contact sheet


def near_duplicate_sheet(
    pairs: pd.DataFrame,
    images: str | os.PathLike,
    threshold: int,
    out: str | os.PathLike,
    per_panel: int = 16,
    demo: bool = False,
) -> Path:
    """Draw the pairs nearest the threshold, inside and outside it, as a PNG; return its path."""
    from PIL import Image, ImageDraw

    images = Path(images)
    inside = pairs[pairs["near"].astype(bool)].sort_values(
        ["distance", "file_a"], ascending=[False, True], kind="stable"
    )
    outside = pairs[~pairs["near"].astype(bool)].sort_values(["distance", "file_a"], kind="stable")
    panels = [
        (
            f"called near duplicates (distance <= {threshold}): the {min(per_panel, len(inside))} "
            f"most distant of {len(inside)} pairs",
            inside.head(per_panel),
        ),
        (
            f"kept as distinct images (distance > {threshold}): the "
            f"{min(per_panel, len(outside))} closest pairs",
            outside.head(per_panel),
        ),
    ]
    cols = 4
    pair_w = 2 * CELL + 12
    caption = 28
    title_h = 22
    font, small, big = sheet_fonts()
    height = 30 + (24 if demo else 0)
    for _, rows in panels:
        height += title_h + max(1, -(-len(rows) // cols)) * (CELL + caption) + 8
    sheet = Image.new("RGB", (cols * pair_w, height), "white")
    draw = ImageDraw.Draw(sheet)
    y = sheet_header(
        draw,
        f"Near duplicates: {len(inside)} pairs within {threshold} of 255 bits "
        "(255-bit DCT pHash); labels age/sex/race",
        demo,
        big,
        30,
    )
    for title, rows in panels:
        draw.text((6, y + 4), title, fill="navy", font=font)
        y += title_h
        if rows.empty:
            draw.text((6, y + 4), "(no pair)", fill="gray", font=font)
        for k, r in enumerate(rows.itertuples(index=False)):
            x0 = (k % cols) * pair_w + 4
            y0 = y + (k // cols) * (CELL + caption)
            for n, name in enumerate((r.file_a, r.file_b)):
                thumb = _thumb(images / name)
                sheet.paste(thumb, (x0 + n * CELL, y0))
            draw.text(
                (x0, y0 + CELL + 1),
                f"d={r.distance}  {r.labels_a} | {r.labels_b}",
                fill="black" if r.labels_a == r.labels_b else "firebrick",
                font=font,
            )
            for n, name in enumerate((r.file_a, r.file_b)):
                draw.text((x0 + n * CELL, y0 + CELL + 14), _short(name), fill="dimgray", font=small)
        y += max(1, -(-len(rows) // cols)) * (CELL + caption) + 8
    with atomic_path(out, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG")
    return Path(out)


def sheet_fonts() -> tuple[Any, Any, Any]:
    """The fonts of the contact sheets: text, small captions, titles."""
    from PIL import ImageFont

    try:
        return (
            ImageFont.load_default(size=11),
            ImageFont.load_default(size=8),
            ImageFont.load_default(size=14),
        )
    except TypeError:  # pragma: no cover - Pillow < 10.1
        f = ImageFont.load_default()
        return f, f, f


def sheet_header(draw: Any, title: str, demo: bool, big: Any, y: int) -> int:
    """A contact sheet's title line, then at ``y`` the DEMO DATA banner on demo data; returns
    the height where the sheet's content starts."""
    draw.text((6, 6), title, fill="black", font=big)
    if demo:
        draw.text((6, y), "DEMO DATA: synthetic faces, not UTKFace", fill="red", font=big)
        y += 24
    return y


def _thumb(path: Path) -> Any:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB").resize((CELL, CELL))
    except (OSError, ValueError):
        return Image.new("RGB", (CELL, CELL), "lightgray")


def _short(name: str) -> str:
    """A file name cut to fit under a thumbnail (labels and the start of the stamp)."""
    stem = name.replace(".jpg.chip.jpg", "")
    return stem if len(stem) <= 19 else stem[:18] + "~"


# --------------------------------------------------------------------------------------------
# The data report
# --------------------------------------------------------------------------------------------


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
        "rejected": int(len(rej)),
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "duplicates": dup,
        "split_method": (split_summary or {}).get("method"),
        "final": final,
        "accounting": {
            "found": n_inputs,
            "final": len(split),
            "rejected": int(len(rej)),
            "balanced": n_inputs == len(split) + len(rej),
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
