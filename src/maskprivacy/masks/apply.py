"""Masking the aligned faces of a shard: each face's type, colour and texture drawn from its own
generator (:mod:`.choice`), the mask rendered (:mod:`.paint`) and checked (:mod:`.check`),
the image written; one row per face for the masks table or the rejects."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from maskprivacy.core.pool import pool_map
from maskprivacy.masks.check import CHECK_TOLERANCE, coverage_check
from maskprivacy.masks.choice import choose, image_rng, normalise_choice
from maskprivacy.masks.geometry import MASK_TYPES, TEXTURES
from maskprivacy.masks.paint import render


def mask_file(args: tuple[str, str, np.ndarray, dict]) -> dict:
    """Mask one aligned face into ``out_dir``: its row of the masks table, or a reject row."""
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


def choices(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The ``mask`` params of one set (its ``types``) with the type and texture choices
    normalised to weights."""
    out = dict(cfg)
    out["_types"] = normalise_choice(cfg["types"], MASK_TYPES, "mask.sets")
    out["_textures"] = normalise_choice(cfg.get("textures", TEXTURES), TEXTURES, "mask.textures")
    out["_tolerance"] = float(cfg.get("check_tolerance", CHECK_TOLERANCE))
    return out


def mask_files(
    paths: list[Path],
    landmarks: np.ndarray,
    out_dir: Path,
    cfg: Mapping[str, Any],
    threads: int = 1,
) -> list[dict[str, Any]]:
    """Mask the aligned faces ``paths`` (their ``landmarks``, (N, 68, 2)) into ``out_dir``
    with the ``mask`` params ``cfg``: one row per face (:func:`mask_file`), in any order."""
    prepared = choices(cfg)
    jobs = [(str(p), str(out_dir), lm, prepared) for p, lm in zip(paths, landmarks, strict=True)]
    return pool_map(mask_file, jobs, threads, "mask")
