"""The ``mask`` stage: a synthetic mask on every aligned face of one shard, drawn from its
landmarks (:mod:`maskprivacy.masks`); each face ends in the masks table or in rejects with a
reason; a contact sheet of a few faces with every mask type."""

from __future__ import annotations

import logging
import multiprocessing as mp
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from maskprivacy.core.io import (
    atomic_dir,
    atomic_path,
    no_bar,
    read_table,
    rejects_frame,
    write_table,
)
from maskprivacy.faces.landmarks import landmarks_array
from maskprivacy.masks.check import CHECK_TOLERANCE, coverage_check
from maskprivacy.masks.choice import choose, image_rng, normalise_choice
from maskprivacy.masks.geometry import MASK_TYPES, TEXTURES
from maskprivacy.masks.paint import render
from maskprivacy.masks.sheet import contact_sheet
from maskprivacy.stages.entry import Files, StageConfig

SHEET_FACES = 5  # faces on the contact sheet


def _mask_one(args: tuple[str, str, np.ndarray, dict]) -> dict:
    src, out_dir, landmarks, cfg = args
    name = Path(src).name
    try:
        image = Image.open(src)
        image.load()
        rng = image_rng(int(cfg["seed"]), name)
        mask_type = choose(cfg["_types"], rng)
        r = render(image, landmarks, mask_type, rng, textures=cfg["_textures"])
        check = coverage_check(
            landmarks,
            r.alpha,
            tolerance=float(cfg["_tolerance"]),
            box=r.box,
            size=r.image.size,
        )
        r.image.save(Path(out_dir) / name, format="JPEG", quality=int(cfg["jpeg_quality"]))
    except Exception as exc:  # one bad face must not stop the run: it becomes a reject row
        return {
            "file": name,
            "ok": False,
            "reason": "mask_error",
            "detail": f"{type(exc).__name__}: {exc}",
        }
    return {
        "file": name,
        "ok": True,
        **{k: r.info[k] for k in ("mask_type", "colour", "rgb", "texture", "yaw", "roll")},
        "geometry_ok": bool(check["ok"]),
        "covered_fraction": float(check["covered_fraction"]),
        "eyes_clear": bool(check["eyes_clear"]),
    }


MASK_COLUMNS = [
    "file",
    "mask_type",
    "colour",
    "rgb",
    "texture",
    "yaw",
    "roll",
    "geometry_ok",
    "covered_fraction",
    "eyes_clear",
]


def stage_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The ``mask`` params with the type and texture choices normalised to weights."""
    out = dict(cfg)
    out["_types"] = normalise_choice(cfg["types"], MASK_TYPES, "mask.types")
    out["_textures"] = normalise_choice(cfg.get("textures", TEXTURES), TEXTURES, "mask.textures")
    out["_tolerance"] = float(cfg.get("check_tolerance", CHECK_TOLERANCE))
    return out


def run(config: StageConfig, inputs: Files, outputs: Files, log: logging.Logger) -> dict[str, Any]:
    """Mask every aligned face; each ends in the masks table or in rejects with a reason.

    The landmarks come from the align stage (computed once, reused by every mask type). The
    contact sheet (``outputs.sheet``, PNG) shows :data:`SHEET_FACES` faces with every type.
    """
    cfg = dict(config.params)
    threads = config.compute.threads
    scfg = stage_config(cfg)
    table = read_table(inputs.landmarks)
    lms = landmarks_array(table)
    rows: list[dict] = []
    with atomic_dir(outputs.images) as tmp:
        jobs = [
            (str(Path(inputs.images) / f), str(tmp), lm, scfg)
            for f, lm in zip(table["file"], lms, strict=True)
        ]
        bar = tqdm(total=len(jobs), desc="mask", unit="img", disable=no_bar(True))
        if threads > 1 and len(jobs) > 1:
            with mp.get_context("fork").Pool(threads) as pool:
                for row in pool.imap_unordered(_mask_one, jobs, chunksize=16):
                    rows.append(row)
                    bar.update()
        else:
            for job in jobs:
                rows.append(_mask_one(job))
                bar.update()
        bar.close()
    ok = [r for r in rows if r["ok"]]
    masks = pd.DataFrame([{k: r[k] for k in MASK_COLUMNS} for r in ok], columns=MASK_COLUMNS)
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
        "n_masked": len(masks),
        "n_rejects": len(rejects),
        "types": masks["mask_type"].value_counts().sort_index().to_dict(),
        "textures": masks["texture"].value_counts().sort_index().to_dict(),
        "geometry_pass_fraction": float(masks["geometry_ok"].mean()) if len(masks) else None,
        "geometry_tolerance_iod": scfg["_tolerance"],
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
    for i in picks if len(masked) else []:
        f = table["file"].iloc[i]
        with Image.open(Path(inputs.images) / f) as im:
            faces.append((f, im.convert("RGB"), lms[i]))
    sheet = (
        contact_sheet(faces, scfg["_types"], int(cfg["seed"]))
        if faces
        else Image.new("RGB", (320, 40), (255, 255, 255))
    )
    with atomic_path(outputs.sheet, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG", compress_level=1)
    summary["contact_sheet"] = str(outputs.sheet)
    return summary
