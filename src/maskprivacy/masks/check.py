"""The geometry check of a drawn mask: does its body cover the lower nose, mouth and chin
landmarks and leave the eyes clear (:func:`coverage_check`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from maskprivacy.masks.geometry import COVERED, EYES, Box, check_size, validate_landmarks

# Geometry check tolerance, as a share of the inter-ocular distance (see coverage_check).
CHECK_TOLERANCE = 0.05

_COVERED = np.array(COVERED)
_EYES = np.array(EYES)
_ANGLES = np.linspace(0.0, 2 * np.pi, 16, endpoint=False)
_RING = np.column_stack([np.cos(_ANGLES), np.sin(_ANGLES)])
# sample offsets in units of the tolerance r: the point, then rings of radius r and r / 2
_UNIT_OFFSETS = np.vstack([[0.0, 0.0], _RING, 0.5 * _RING])


def _bilinear(a: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``a`` at ``(x, y)`` (pixel centres at integers), coordinates clamped
    into ``a``: its border must be zeros for points outside it to read zero."""
    h, w = a.shape
    x = np.clip(x, 0.0, w - 1.0)
    y = np.clip(y, 0.0, h - 1.0)
    x0 = np.minimum(x.astype(np.intp), w - 2)
    y0 = np.minimum(y.astype(np.intp), h - 2)
    fx, fy = x - x0, y - y0
    top = a[y0, x0] * (1 - fx) + a[y0, x0 + 1] * fx
    bottom = a[y0 + 1, x0] * (1 - fx) + a[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


# --------------------------------------------------------------------------------------------
# Geometry check


def coverage_check(
    landmarks: ArrayLike,
    alpha: np.ndarray,
    threshold: float = 0.5,
    tolerance: float = CHECK_TOLERANCE,
    box: Box | None = None,
    size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Does ``alpha`` cover the nose, mouth and chin and leave the eyes clear?

    ``alpha`` is the mask's coverage over the whole image, or, with ``box`` and the image
    ``size`` (width, height), only inside ``box`` (as :class:`Rendered` keeps it: zero outside),
    which gives the same answer without building the full-size array.

    Each landmark is judged with a tolerance ``r = max(1 px, tolerance * IOD)`` (IOD: distance
    between the eye centres; 5% by default, about dlib's own landmark error), the same both ways:

    - a *covered* landmark (nose tip and bottom 30-35, mouth 48-67, chin 6-10) passes when the
      alpha reaches ``threshold`` somewhere within ``r`` of it (bilinear samples at the point and
      on rings of radius ``r`` and ``r / 2``): a landmark on the mask's edge passes (``paper``'s
      chin points 6-10 are polygon vertices), a mask missing the mouth by more than ``r`` fails;
    - an *eye* landmark (36-47) passes when the alpha is below ``threshold`` somewhere within
      ``r``: an edge grazing the eye passes, a mask over the eye fails.

    Landmarks outside the image are judged at the nearest pixel of the border (covered as far as
    the image shows: UTKFace crops cut the chin off some faces).

    Returns:
        ``{"ok": all covered and eyes clear, "covered_fraction": share of covered landmarks
        that pass, "eyes_clear": bool}``.
    """
    lm = validate_landmarks(landmarks)
    alpha = np.asarray(alpha)
    if alpha.ndim != 2:
        raise ValueError(f"alpha: expected a 2-D (height, width) array, got shape {alpha.shape}")
    if box is None:
        h, w = alpha.shape
        x0 = y0 = 0
    else:  # alpha covers only ``box``: zero elsewhere, judged exactly as the full image
        w, h = check_size(size)
        if box.empty:  # nothing drawn: zero everywhere
            alpha = np.zeros((0, 0), np.float32)
        elif alpha.shape != (box.h, box.w):
            raise ValueError(f"alpha: shape {alpha.shape} does not match box {box}")
        x0, y0 = box.x0, box.y0
    # one pixel of zeros around, so bilinear samples next to the box see the zeros outside it
    padded = np.zeros((alpha.shape[0] + 2, alpha.shape[1] + 2), np.float32)
    padded[1:-1, 1:-1] = alpha
    iod = float(np.hypot(*(lm[42:48].mean(axis=0) - lm[36:42].mean(axis=0))))
    r = max(1.0, tolerance * iod)
    offsets = r * _UNIT_OFFSETS

    def sample(points: np.ndarray) -> np.ndarray:
        pts = (points[:, None, :] + offsets[None]).reshape(-1, 2)
        # outside the image: the nearest border pixel; then into the padded box's frame, where
        # a point outside the box reads the zeros of the padding
        px = np.clip(pts[:, 0], 0, w - 1) - x0 + 1
        py = np.clip(pts[:, 1], 0, h - 1) - y0 + 1
        return _bilinear(padded, px, py).reshape(len(points), len(offsets))

    covered = sample(lm[_COVERED]).max(axis=1) >= threshold
    eyes_clear = bool((sample(lm[_EYES]).min(axis=1) < threshold).all())
    return {
        "ok": bool(covered.all() and eyes_clear),
        "covered_fraction": float(covered.mean()),
        "eyes_clear": eyes_clear,
    }
