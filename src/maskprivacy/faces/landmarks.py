"""Landmark tables: the 68-point format, without any detection code (no dlib).

Two tables hold landmarks as ``x0, y0, ..., x67, y67`` columns (:data:`LANDMARK_COLUMNS`):

- the ``align`` stage's ``landmarks.csv`` (``file``, ``route``, points in the *aligned* frame),
  read by ``mask`` and ``identity`` through :func:`landmarks_array`;
- a *landmarks table* for ``align.landmarks`` (``sha256``, ``route``, ``detail``, points in the
  frame of the *input* image), made where dlib is (a CPU cluster) by
  :mod:`maskprivacy.faces.find_landmarks` (``align``'s detection cascade run on each input).
  ``align`` with ``align.landmarks`` set looks each input up by the sha256 of its bytes (renamed
  files still match) instead of detecting: the warp, the tables and everything after are the
  same as with detection. A ``no_face``, ``landmarks_implausible`` or ``decode_error`` row replays
  that reject. An input
  the table lacks stops ``align`` with an error naming it (the table was made from other
  files), so a GPU node without dlib never falls back to detection unnoticed.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

LANDMARK_COLUMNS = [f"{axis}{i}" for i in range(68) for axis in ("x", "y")]
TABLE_COLUMNS = ["sha256", "route", "detail", *LANDMARK_COLUMNS]
# routes of rows without landmarks: align's rejects
NOT_FOUND = ("no_face", "landmarks_implausible", "decode_error")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

# one input's face: its (68, 2) landmarks or None, the route that found them, why not
Face = tuple[np.ndarray | None, str, str]


def landmarks_array(table: pd.DataFrame) -> np.ndarray:
    """(N, 68, 2) landmarks from a table with :data:`LANDMARK_COLUMNS`."""
    return table[LANDMARK_COLUMNS].to_numpy(dtype=np.float64).reshape(-1, 68, 2)


def file_sha256(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_table(path: str | os.PathLike) -> dict[str, Face]:
    """A landmarks table (``align.landmarks``) as sha256 -> face; refuses a malformed one."""
    where = f"align.landmarks: {path}"
    try:
        table = pd.read_csv(path, dtype={"sha256": str, "route": str, "detail": str})
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{where}: not a readable CSV table ({type(exc).__name__}: {exc})"
        ) from exc
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(
            f"{where}: not a landmarks table, lacks column(s) {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''} (make one with "
            "`python -m maskprivacy.faces.find_landmarks`)"
        )
    bad = table.index[~table["sha256"].fillna("").str.fullmatch(_SHA256)]
    if len(bad):
        raise ValueError(
            f"{where}: row {bad[0] + 2}: sha256 {table['sha256'][bad[0]]!r} is not 64 hex digits"
        )
    dup = table["sha256"].duplicated()
    if dup.any():
        raise ValueError(f"{where}: sha256 {table['sha256'][dup].iloc[0]} is listed twice")
    try:
        points = landmarks_array(table)
    except ValueError as exc:
        raise ValueError(f"{where}: landmarks are not numbers ({exc})") from exc
    face = ~table["route"].fillna("").isin(NOT_FOUND)
    broken = table.index[face & ~np.isfinite(points).all(axis=(1, 2))]
    if len(broken):
        raise ValueError(
            f"{where}: row {broken[0] + 2} (sha256 {table['sha256'][broken[0]]}): route "
            f"{table['route'][broken[0]]!r} without 68 finite landmarks"
        )
    return {
        sha: (pts if ok else None, str(route), "" if pd.isna(detail) else str(detail))
        for sha, route, detail, pts, ok in zip(
            table["sha256"], table["route"], table["detail"], points, face, strict=True
        )
    }


def write_table(path: str | os.PathLike, faces: Iterable[tuple[str, Face]]) -> pd.DataFrame:
    """Write (sha256, face) pairs as a landmarks table; floats in full (they round-trip)."""
    from maskprivacy.core.io import write_table as write

    rows = [
        [sha, route, detail, *(np.full(136, np.nan) if pts is None else np.ravel(pts))]
        for sha, (pts, route, detail) in faces
    ]
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS).drop_duplicates("sha256")
    table = table.sort_values("sha256", kind="stable")
    write(path, table)
    return table


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the subject's right eye (image left, points 36-41) and left eye (42-47)."""
    return landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)
