"""The ``align`` stage: detect, find 68 landmarks, warp each face so the eyes sit at fixed places.

A similarity transform (rotation, uniform scale, translation) maps the two eye centres onto
``EYE_LEFT``/``EYE_RIGHT`` (fractions of the output size); the face is resampled into a square
crop of ``size`` pixels and the landmarks are carried into that frame.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from . import faces
from .io import atomic_dir, rejects_frame, write_table

# Where the eye centres land in the aligned crop, as fractions of its side.
EYE_LEFT = (0.35, 0.40)  # image-left eye (the subject's right eye)
EYE_RIGHT = (0.65, 0.40)
LANDMARK_COLUMNS = [f"{axis}{i}" for i in range(68) for axis in ("x", "y")]


def similarity_from_eyes(left: np.ndarray, right: np.ndarray, size: int) -> np.ndarray:
    """2x3 matrix mapping source (x, y) to aligned (x, y) so the eyes land on the targets."""
    src = np.asarray(right, float) - np.asarray(left, float)
    dst = (np.array(EYE_RIGHT) - np.array(EYE_LEFT)) * size
    scale = np.hypot(*dst) / max(np.hypot(*src), 1e-9)
    angle = np.arctan2(dst[1], dst[0]) - np.arctan2(src[1], src[0])
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    t = np.array(EYE_LEFT) * size - rot @ np.asarray(left, float)
    return np.hstack([rot, t[:, None]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp(image: Image.Image, matrix: np.ndarray, size: int) -> Image.Image:
    """Resample ``image`` into the aligned ``size`` x ``size`` frame given by ``matrix``."""
    full = np.vstack([matrix, [0, 0, 1]])
    inv = np.linalg.inv(full)
    # PIL wants the output->input map; sample pixel centres.
    a, b, c = inv[0]
    d, e, f = inv[1]
    c += 0.5 * (a + b) - 0.5
    f += 0.5 * (d + e) - 0.5
    return image.transform(
        (size, size), Image.Transform.AFFINE, (a, b, c, d, e, f), resample=Image.Resampling.BILINEAR
    )


def load_rgb(path: str | Path) -> Image.Image:
    """Decode an image fully (raises on truncated or non-image files)."""
    with Image.open(path) as im:
        im.load()
        return im.convert("RGB")


def align_one(path: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """Align one file. Returns {'ok': True, image, landmarks, route} or {'ok': False, reason}."""
    try:
        if path.stat().st_size == 0:
            return {"ok": False, "reason": "decode_error", "detail": "empty file (0 bytes)"}
        image = load_rgb(path)
    except Exception as exc:  # PIL raises many types for broken files
        return {"ok": False, "reason": "decode_error", "detail": f"{type(exc).__name__}: {exc}"}
    rgb = np.asarray(image)
    pts, route = faces.detect_landmarks(rgb, tuple(cfg["upsample"]), cfg.get("predictor") or None)
    if pts is None:
        return {
            "ok": False,
            "reason": "no_face",
            "detail": f"no frontal face at upsample {list(cfg['upsample'])}",
        }
    size = int(cfg["size"])
    matrix = similarity_from_eyes(*faces.eye_centres(pts), size)
    return {
        "ok": True,
        "image": warp(image, matrix, size),
        "landmarks": apply_affine(matrix, pts),
        "route": route,
    }


def _work(args: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    src, out_dir, cfg = args
    path = Path(src)
    res = align_one(path, cfg)
    row: dict[str, Any] = {"file": path.name, "ok": res["ok"]}
    if res["ok"]:
        res["image"].save(Path(out_dir) / path.name, quality=int(cfg["jpeg_quality"]))
        row["route"] = res["route"]
        row["landmarks"] = res["landmarks"].ravel().round(2).tolist()
    else:
        row["reason"], row["detail"] = res["reason"], res["detail"]
    return row


def run(
    cfg: dict[str, Any],
    images_in: Path,
    manifest: Path,
    images_out: Path,
    landmarks_out: Path,
    rejects_out: Path,
    threads: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Align every image of the manifest; each ends in the landmarks table or in rejects."""
    from .io import read_table

    files = read_table(manifest)["file"].tolist()
    rows: list[dict[str, Any]] = []
    with atomic_dir(images_out) as tmp:
        jobs = [(str(Path(images_in) / f), str(tmp), cfg) for f in files]
        bar = tqdm(total=len(jobs), desc="align", unit="img", disable=not progress)
        if threads > 1 and len(jobs) > 1:
            ctx = mp.get_context("fork")
            with ctx.Pool(threads) as pool:
                for row in pool.imap_unordered(_work, jobs, chunksize=16):
                    rows.append(row)
                    bar.update()
        else:
            for job in jobs:
                rows.append(_work(job))
                bar.update()
        bar.close()
    ok = [r for r in rows if r["ok"]]
    table = pd.DataFrame(
        [[r["file"], r["route"], *r["landmarks"]] for r in ok],
        columns=["file", "route", *LANDMARK_COLUMNS],
    ).sort_values("file", kind="stable")
    rejects = rejects_frame(
        [
            {"file": r["file"], "stage": "align", "reason": r["reason"], "detail": r["detail"]}
            for r in rows
            if not r["ok"]
        ]
    )
    write_table(landmarks_out, table)
    write_table(rejects_out, rejects)
    routes = table["route"].value_counts().to_dict()
    return {
        "n_inputs": len(files),
        "n_aligned": len(ok),
        "n_rejects": len(rejects),
        "routes": routes,
        "rejects_by_reason": rejects["reason"].value_counts().to_dict(),
    }


def landmarks_array(table: pd.DataFrame) -> np.ndarray:
    """(N, 68, 2) landmarks from a landmarks table."""
    return table[LANDMARK_COLUMNS].to_numpy(dtype=np.float64).reshape(-1, 68, 2)
