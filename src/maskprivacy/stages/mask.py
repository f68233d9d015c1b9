"""The ``mask`` stage: a synthetic mask on every aligned face of one shard, for one set of
``mask.sets`` (:mod:`maskprivacy.masks.sets`), drawn from its landmarks (:mod:`maskprivacy.masks`);
each face ends in the masks table or in rejects with a reason; a contact sheet of a few faces
with every mask type (the set's types starred). An external set's photos that wear a real mask
(its manifest's ``worn``, the rule's ``manifest`` input) are not painted: they are the set's
``worn`` version, scored as they are."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from maskprivacy.core.io import read_table, rejects_frame, write_table
from maskprivacy.core.plumbing import atomic_dir, atomic_path
from maskprivacy.datasets.worn import worn_files
from maskprivacy.faces.landmarks import landmarks_array
from maskprivacy.masks import apply
from maskprivacy.masks.sheet import contact_sheet
from maskprivacy.stages.entry import Files, StageConfig

SHEET_FACES = 5  # faces on the contact sheet
FALLBACK_SHEET_FACES = 10  # and up to this many of the faces the CNN fallback found


def sheet_rows(table: pd.DataFrame, masked: np.ndarray, picks) -> list[int]:
    """The contact sheet's rows: ``picks`` (faces spread over the table), then up to
    :data:`FALLBACK_SHEET_FACES` masked faces the CNN fallback found (route ``cnn_*``), so the
    faces the cascade missed can be checked by eye with their masks."""
    rows = [int(i) for i in picks]
    if "route" in table.columns:
        cnn = [int(i) for i in masked if str(table["route"].iloc[i]).startswith("cnn")]
        rows += [i for i in cnn if i not in rows][:FALLBACK_SHEET_FACES]
    return rows


def sheet_label(table: pd.DataFrame, i: int) -> str:
    """A face's caption on the contact sheet: its file, after its route if the CNN found it."""
    route = str(table["route"].iloc[i]) if "route" in table.columns else ""
    name = table["file"].iloc[i]
    return f"{route.replace('_upsample', '')}: {name}" if route.startswith("cnn") else name


def run(config: StageConfig, inputs: Files, outputs: Files, log: logging.Logger) -> dict[str, Any]:
    """Mask every aligned face with the types of this job's set (``config.extra["maskset"]``:
    ``{name: {type: weight}}``; the other keys from ``config.params``, the ``mask`` section but
    its sets); each face ends in the masks table or in rejects with a reason.

    The landmarks come from the align stage (computed once, reused by every set and type). The
    contact sheet (``outputs.sheet``, PNG) shows :data:`SHEET_FACES` faces with every type, and
    up to :data:`FALLBACK_SHEET_FACES` of the faces the CNN fallback found (captioned ``cnn0:``).
    """
    ((name, types),) = config.extra["maskset"].items()  # this job's set of mask.sets
    cfg = {**config.params, "types": types}
    choices = apply.choices(cfg)
    table = read_table(inputs.landmarks)
    worn = worn_files(read_table(inputs.manifest)) if inputs.get("manifest") else frozenset()
    if worn:  # an external set's photos that wear a real mask: never painted over
        table = table[~table["file"].isin(worn)].reset_index(drop=True)
    lms = landmarks_array(table)
    with atomic_dir(outputs.images) as tmp:
        paths = [Path(inputs.images) / f for f in table["file"]]
        rows = apply.mask_files(paths, lms, tmp, cfg, config.compute.threads)
    ok = [r for r in rows if r["ok"]]
    masks = pd.DataFrame(
        [{k: r[k] for k in apply.MASK_COLUMNS} for r in ok], columns=apply.MASK_COLUMNS
    )
    masks = masks.sort_values("file", kind="stable").reset_index(drop=True)
    rejects = rejects_frame(
        [
            {"file": r["file"], "stage": "mask", "reason": r["reason"], "detail": r["detail"]}
            for r in rows
            if not r["ok"]
        ]
    )
    write_table(outputs.masks, masks)
    write_table(outputs.rejects, rejects)
    per_type = {
        t: {
            "n": int(len(g)),
            "geometry_pass_fraction": round(float(g["geometry_ok"].mean()), 6),
            "eyes_clear_fraction": round(float(g["eyes_clear"].mean()), 6),
            "covered_fraction_mean": round(float(g["covered_fraction"].mean()), 6),
        }
        for t, g in masks.groupby("mask_type", sort=True)
    }
    summary = {
        "n_inputs": len(table),
        **({"n_worn_not_painted": len(worn)} if worn else {}),
        "n_masked": len(masks),
        "n_rejects": len(rejects),
        "types": masks["mask_type"].value_counts().sort_index().to_dict(),
        "textures": masks["texture"].value_counts().sort_index().to_dict(),
        "geometry_pass_fraction": float(masks["geometry_ok"].mean()) if len(masks) else None,
        "geometry_tolerance_iod": choices["_tolerance"],
        "per_type": per_type,
        "rejects_by_reason": rejects["reason"].value_counts().to_dict(),
    }
    masked = np.flatnonzero(table["file"].isin(masks["file"]))  # a reject's face is not shown
    picks = masked[
        np.unique(
            np.linspace(0, len(masked) - 1, min(SHEET_FACES, len(masked))).round().astype(int)
        )
    ]
    faces = []
    for i in sheet_rows(table, masked, picks if len(masked) else []):
        f = table["file"].iloc[i]
        with Image.open(Path(inputs.images) / f) as im:
            faces.append((sheet_label(table, i), im.convert("RGB"), lms[i]))
    sheet = (
        contact_sheet(faces, choices["_types"], int(cfg["seed"]))
        if faces
        else Image.new("RGB", (320, 40), (255, 255, 255))
    )
    with atomic_path(outputs.sheet, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG", compress_level=1)
    summary["contact_sheet"] = str(outputs.sheet)
    return summary
