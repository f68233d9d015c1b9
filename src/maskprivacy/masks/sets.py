"""Mask sets: several masked data sets drawn from the same aligned faces and landmarks.

``mask.sets`` names each masked data set and says which mask types it draws, with weights::

    sets:
      paper: {paper: 1}
      surgical: {surgical: 1}
      mixed: {surgical: 1, n95: 1, kn95: 1, cloth: 1}

Each set is its own ``mask`` job per shard (``data/mask/<set>/<shard>/``); every set reuses the
landmarks ``align`` computed once. A face's draw (type, colour, texture) depends on ``mask.seed``,
the file name and the set's weights, not on the set's name: a set ``{paper: 1}`` draws the same
images whatever it is called. The name ``unmasked`` is reserved for the aligned faces themselves;
``evaluate.conditions`` names training and test sets among ``unmasked`` and the sets
(:func:`data_sets`, :func:`check_conditions`; :func:`study_conditions` builds the full
train-set x test-set matrix).

How each type covers a face (:func:`coverage`, :func:`coverage_summary`): the share of each
landmark group (:data:`LANDMARK_GROUPS`) under the mask, the share of the face (the area inside
the jaw line and the brows) left visible, and the pass rate of the mask stage's geometry check
(:func:`maskprivacy.masks.draw.coverage_check`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from maskprivacy.masks.draw import (
    CHECK_TOLERANCE,
    MASK_TYPES,
    Box,
    coverage_check,
    mask_alpha,
    normalise_choice,
    validate_landmarks,
)

UNMASKED = "unmasked"  # the aligned faces: a data set name no mask set may take
# a set name is a path part and a Snakemake wildcard value: a letter, then letters, digits or _
NAME = re.compile(r"[a-z][a-z0-9_]*")

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


def parse_sets(spec: Any) -> dict[str, dict[str, float]]:
    """``mask.sets`` as ``{set name: {mask type: weight}}``, else ``ValueError`` saying what is
    wrong. A set's types are one name, a list (equally likely) or a mapping type -> weight > 0."""
    if not isinstance(spec, Mapping) or not spec:
        raise ValueError(
            "mask.sets: expected a mapping of set name -> mask types, e.g. {masked: {paper: 1}}"
        )
    out: dict[str, dict[str, float]] = {}
    for name, types in spec.items():
        name = str(name)
        if name == UNMASKED:
            raise ValueError(
                f"mask.sets: {UNMASKED!r} is reserved for the faces without a mask; "
                "name the set otherwise"
            )
        if not NAME.fullmatch(name):
            raise ValueError(
                f"mask.sets: set name {name!r} must be a lower-case letter followed by "
                "lower-case letters, digits or _ (it names folders and jobs)"
            )
        out[name] = normalise_choice(types, MASK_TYPES, f"mask.sets.{name}")
    return out


def set_params(mask: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The ``mask`` stage's parameters for one set: the section with ``sets`` replaced by that
    set's ``types`` (what one ``mask`` job draws)."""
    sets = parse_sets(mask["sets"])
    if name not in sets:
        raise ValueError(f"mask.sets has no set {name!r}; sets: {', '.join(sets)}")
    return {**{k: v for k, v in mask.items() if k != "sets"}, "types": sets[name]}


def data_sets(sets: Mapping[str, Any]) -> list[str]:
    """Every data set a model can be trained or tested on: ``unmasked``, then the mask sets."""
    return [UNMASKED, *parse_sets(sets)]


def check_conditions(conditions: Sequence[Mapping[str, str]], sets: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` when a condition trains or tests on a set ``mask.sets`` lacks."""
    known = data_sets(sets)
    for c in conditions:
        for role in ("train", "test"):
            if c[role] not in known:
                raise ValueError(
                    f"evaluate.conditions: {c['name']!r} {role}s on {c[role]!r}, which is not "
                    f"a data set; data sets: {', '.join(known)} (mask.sets names the masked ones)"
                )


def study_conditions(sets: Mapping[str, Any]) -> list[dict[str, str]]:
    """Every (training set, test set) pair of ``unmasked`` and the sets, as evaluate conditions:
    a pair of one set is named after it, others ``<train>_to_<test>``."""
    names = data_sets(sets)
    return [
        {"name": train if train == test else f"{train}_to_{test}", "train": train, "test": test}
        for train in names
        for test in names
    ]


# ---------------------------------------------------------------- how each type covers a face


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
    """Per mask set, the :func:`coverage_summary` figures of its types weighted as the set draws
    them (what a face of the set shows on average)."""
    out: dict[str, dict[str, Any]] = {}
    for name, weights in parse_sets(sets).items():
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
