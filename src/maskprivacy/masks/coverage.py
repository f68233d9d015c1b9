"""How each mask type covers a face: which landmarks lie under it and how much of the face it
leaves visible, per face and averaged over faces, per type and per mask set.

- :data:`LANDMARK_GROUPS`: the 68 landmarks (iBUG, 0-based) in groups, each landmark in one;
  a landmark is under the mask when the mask reaches it within the geometry check's tolerance
  (:func:`maskprivacy.masks.check.coverage_check`; a landmark on the mask's edge counts).
- the face's visible share: the area inside the jaw line closed over the brows that the mask
  (its anti-aliased alpha) leaves uncovered.
- the geometry check's verdict (nose, mouth and chin covered, eyes clear).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from maskprivacy.masks.check import CHECK_TOLERANCE, coverage_check
from maskprivacy.masks.choice import normalise_choice
from maskprivacy.masks.geometry import MASK_TYPES, Box, validate_landmarks
from maskprivacy.masks.paint import mask_alpha

# Landmark groups of the 68-point (iBUG, 0-based) layout, top of the face to bottom; each
# landmark in exactly one group.
LANDMARK_GROUPS: dict[str, tuple[int, ...]] = {
    "brows": tuple(range(17, 27)),
    "eyes": tuple(range(36, 48)),
    "nose_bridge": tuple(range(27, 30)),
    "nose_tip": tuple(range(30, 36)),  # tip (30) and base (31-35)
    "mouth": tuple(range(48, 68)),
    "jaw_sides": (*range(0, 6), *range(11, 17)),
    "chin": tuple(range(6, 11)),
}
# The face area judged for visibility: inside the jaw line (0-16) closed over the brows (26-17).
FACE_OUTLINE = (*range(0, 17), *range(26, 16, -1))


def _reach(alpha: np.ndarray, points: np.ndarray, radius: float) -> np.ndarray:
    """The most ``alpha`` within ``radius`` px of each point (x, y), bilinear between pixels;
    a point outside the image is judged at the nearest pixel of the border (as the geometry
    check judges it)."""
    k = int(np.floor(radius))
    yy, xx = np.mgrid[-k : k + 1, -k : k + 1]
    near = ndimage.grey_dilation(alpha, footprint=xx**2 + yy**2 <= radius**2)
    h, w = alpha.shape
    px, py = np.clip(points[:, 0], 0, w - 1), np.clip(points[:, 1], 0, h - 1)
    return ndimage.map_coordinates(near, [py, px], order=1, mode="nearest")


def coverage(
    landmarks: ArrayLike,
    size: tuple[int, int],
    mask_type: str,
    threshold: float = 0.5,
    tolerance: float = CHECK_TOLERANCE,
) -> dict[str, Any]:
    """How a mask of ``mask_type`` covers this face (landmarks in an image of ``size``).

    Returns ``{"groups": {group: share of its landmarks under the mask}, "face_visible": share
    of the face area (inside the jaw line and the brows) the mask leaves uncovered,
    "geometry_ok": the mask stage's geometry check}``. A landmark is under the mask when the
    mask's alpha reaches ``threshold`` within the geometry check's tolerance of it
    (``max(1 px, tolerance x eye distance)``): a landmark on the mask's edge counts, as in the
    check (``paper``'s outline runs through jaw points 1-15).
    """
    lm = validate_landmarks(landmarks)
    alpha = mask_alpha(lm, size, mask_type)
    iod = float(np.hypot(*(lm[42:48].mean(axis=0) - lm[36:42].mean(axis=0))))
    under = _reach(alpha, lm, max(1.0, tolerance * iod)) >= threshold
    groups = {g: float(under[list(idx)].mean()) for g, idx in LANDMARK_GROUPS.items()}
    w, h = size
    face = np.asarray(Box(0, 0, w, h).polygon(lm[list(FACE_OUTLINE)], 2), np.float32) / 255.0
    area = float(face.sum())
    visible = 1.0 - float((face * alpha).sum()) / area if area > 0 else 1.0
    check = coverage_check(lm, alpha, threshold, tolerance)
    return {"groups": groups, "face_visible": visible, "geometry_ok": bool(check["ok"])}


def coverage_summary(
    faces: Iterable[ArrayLike],
    size: tuple[int, int],
    types: Iterable[str] = MASK_TYPES,
    tolerance: float = CHECK_TOLERANCE,
) -> dict[str, dict[str, Any]]:
    """:func:`coverage` averaged over ``faces`` (landmark arrays), per mask type: ``{type: {"n",
    "groups": {group: mean share covered}, "face_visible": mean, "geometry_pass": share}}``."""
    faces = [validate_landmarks(f) for f in faces]
    if not faces:
        raise ValueError("coverage_summary: no faces")
    out: dict[str, dict[str, Any]] = {}
    for t in types:
        per_face = [coverage(f, size, t, tolerance=tolerance) for f in faces]
        out[t] = {
            "n": len(per_face),
            "groups": {
                g: float(np.mean([c["groups"][g] for c in per_face])) for g in LANDMARK_GROUPS
            },
            "face_visible": float(np.mean([c["face_visible"] for c in per_face])),
            "geometry_pass": float(np.mean([c["geometry_ok"] for c in per_face])),
        }
    return out


def set_coverage(
    summary: Mapping[str, Mapping[str, Any]], sets: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Per mask set (``mask.sets``), the :func:`coverage_summary` figures of its types weighted
    as the set draws them (what a face of the set shows on average)."""
    out: dict[str, dict[str, Any]] = {}
    for name, types in sets.items():
        weights = normalise_choice(types, MASK_TYPES, f"mask.sets.{name}")
        missing = [t for t in weights if t not in summary]
        if missing:
            raise ValueError(f"set_coverage: no coverage of {', '.join(missing)} (set {name!r})")
        total = sum(weights.values())
        share = {t: w / total for t, w in weights.items()}
        out[name] = {
            "types": share,
            "groups": {
                g: sum(p * summary[t]["groups"][g] for t, p in share.items())
                for g in LANDMARK_GROUPS
            },
            "face_visible": sum(p * summary[t]["face_visible"] for t, p in share.items()),
            "geometry_pass": sum(p * summary[t]["geometry_pass"] for t, p in share.items()),
        }
    return out
