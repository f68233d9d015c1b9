"""Synthetic face masks drawn procedurally from 68 dlib landmarks on an aligned face.

Landmarks are a ``(68, 2)`` float array of ``(x, y)`` pixel coordinates (0-based iBUG indexing:
jaw 0-16, brows 17-26, nose bridge 27-30, nose bottom 31-35, eyes 36-47, mouth 48-67) in the
frame of the image the mask is drawn on; integer coordinates are pixel centres, as dlib gives
them. No template images are used: every mask is built from the landmarks (outlines, seams,
pleats, straps, textures), so it follows the face through roll, yaw, scale and any crop size.

Mask types (:data:`MASK_TYPES`):

- ``paper``: the authors' own polygon from Seneviratne et al. (2021), "Does a Face Mask Protect my
  Privacy?" (their mask type ``a``): a flat white ``(255, 255, 255)`` polygon through jaw points
  1..15, then (x of 42, y of 15), the nose bridge point 27 and (x of 39, y of 1)
  (:func:`paper_polygon`): its top edge crosses the cheeks at the height of jaw points 1 and 15.
  Its edge is anti-aliased (supersampled coverage) instead of the original hard edge; pixels
  fully inside are exactly white and pixels fully outside are untouched.
- ``surgical``: pleated rectangle-ish mask from near the ears, along and a little below the
  jaw, up to the nose bridge with a gentle curve under the eyes; three soft pleats that follow
  the mask's curvature; thin ear loops.
- ``n95``: a moulded cup from the nose bridge to under the chin, resting on the cheeks; dome
  shading (brighter in the middle, darker where it curves away), a nose clip strip and two head
  straps.
- ``kn95``: a folded flat respirator: pointed top over the nose and pointed bottom under the
  chin, a vertical centre fold along the face's midline (panels lit differently), a heat-welded
  edge band, ear loops.
- ``cloth``: a fabric mask, deeper under the chin, with a centre seam, thicker ear loops and a
  procedural texture (:data:`TEXTURES`: ``solid``, ``stripes``, ``check``, ``dots``, ``noise``).

Every type but ``paper`` has a colour palette, a softly blurred edge, shading from the face's own
low-frequency luminance (so the mask is lit like the face), a darkening towards the sides where
the mask turns away, and follows yaw: the side of the face the landmarks show narrower (turned
away) is darker, textures are foreshortened there and its ear loop or straps are hidden when the
head is turned far enough.

:func:`render` draws a mask and returns its alpha too (the stage reuses it for
:func:`coverage_check` instead of rasterising twice); :func:`draw_mask` and :func:`mask_alpha`
are the simple entry points. Work is confined to the bounding box of what is drawn.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image, ImageDraw
from scipy import ndimage

MASK_TYPES: tuple[str, ...] = ("paper", "surgical", "n95", "kn95", "cloth")
TEXTURES: tuple[str, ...] = ("solid", "stripes", "check", "dots", "noise")

# Landmark groups (0-based iBUG 68-point indexing).
JAW = tuple(range(0, 17))
NOSE_BRIDGE = tuple(range(27, 31))
NOSE_LOWER = tuple(range(30, 36))  # nose tip (30) and nose bottom (31-35)
EYES = tuple(range(36, 48))
MOUTH = tuple(range(48, 68))
CHIN = tuple(range(6, 11))
COVERED = NOSE_LOWER + MOUTH + CHIN  # landmarks a mask must cover

# Geometry check tolerance, as a share of the inter-ocular distance (see coverage_check).
CHECK_TOLERANCE = 0.05

RGB = tuple[int, int, int]


# --------------------------------------------------------------------------------------------
# Face geometry


@dataclass(frozen=True)
class FaceGeometry:
    """Landmarks plus the face's own axes, scale and turn, so shapes follow roll, yaw and size.

    Attributes:
        lm: the ``(68, 2)`` landmarks (float64).
        iod: inter-ocular distance (between the eye centres), the unit for sizes and offsets.
        ex: unit vector from the image-left eye to the image-right eye ("face right").
        ey: unit vector perpendicular to ``ex`` pointing down the face (towards the chin).
        centre: a point inside the face (mean of the nose and mouth landmarks).
        half_left, half_right: distance (px, along ``ex``) from the nose tip to the jaw side on
            the image left and right.
        yaw: ``(half_right - half_left) / (half_right + half_left)``, in (-1, 1): 0 frontal,
            > 0 when the image-left half looks narrower (turned away from the camera).
        roll: angle of the eye line, degrees (clockwise on screen positive).
    """

    lm: np.ndarray
    iod: float
    ex: np.ndarray
    ey: np.ndarray
    centre: np.ndarray
    half_left: float
    half_right: float
    yaw: float
    roll: float

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray) -> FaceGeometry:
        """Build the geometry from validated landmarks."""
        left = landmarks[36:42].mean(axis=0)
        right = landmarks[42:48].mean(axis=0)
        d = right - left
        iod = float(np.hypot(*d))
        if not iod > 1e-6:
            raise ValueError("landmarks: the two eye centres coincide; not a usable face")
        ex = d / iod
        ey = np.array([-ex[1], ex[0]])  # +90 degrees in image coordinates (y down)
        centre = landmarks[list(NOSE_BRIDGE + NOSE_LOWER + MOUTH)].mean(axis=0)
        nose = landmarks[30]
        hl = max(float((nose - landmarks[0:4].mean(axis=0)) @ ex), 0.05 * iod)
        hr = max(float((landmarks[13:17].mean(axis=0) - nose) @ ex), 0.05 * iod)
        yaw = (hr - hl) / (hr + hl)
        roll = float(np.degrees(np.arctan2(d[1], d[0])))
        return cls(landmarks, iod, ex, ey, centre, hl, hr, yaw, roll)

    def jaw(self, t: ArrayLike, offset: ArrayLike = 0.0) -> np.ndarray:
        """Jaw points at (fractional) indices ``t``, moved ``offset`` px outward: ``(n, 2)``."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        off = np.broadcast_to(np.asarray(offset, dtype=np.float64), t.shape)
        jaw = self.lm[:17]
        lo = np.clip(np.floor(t).astype(int), 0, 15)
        frac = (t - lo)[:, None]
        p = (1 - frac) * jaw[lo] + frac * jaw[lo + 1]
        tan = jaw[np.minimum(lo + 2, 16)] - jaw[np.maximum(lo - 1, 0)]
        n = np.column_stack([-tan[:, 1], tan[:, 0]])
        n /= np.maximum(np.hypot(n[:, 0], n[:, 1]), 1e-9)[:, None]
        n[((p - self.centre) * n).sum(axis=1) < 0] *= -1
        return p + off[:, None] * n

    def jaw_offset(self, i: float, distance: float) -> np.ndarray:
        """Jaw point ``i`` (fractional allowed) moved ``distance`` px outward along the normal."""
        return self.jaw(i, distance)[0]

    def lid(self, side: str, below: float) -> np.ndarray:
        """A point ``below`` nose-bridge lengths under the lower lid of the ``side`` eye."""
        idx = [40, 41] if side == "left" else [46, 47]
        return self.lm[idx].mean(axis=0) + below * (self.lm[30] - self.lm[27])

    def bridge(self, f: float) -> np.ndarray:
        """A point on the nose bridge: 0 = point 27 (between the eyes), 1 = 28, 2 = 29, 3 = 30."""
        i = int(np.clip(np.floor(f), 0, 2))
        return self.lm[27 + i] + (f - i) * (self.lm[28 + i] - self.lm[27 + i])


def validate_landmarks(landmarks: ArrayLike) -> np.ndarray:
    """Return the landmarks as a finite float64 ``(68, 2)`` array, else raise ``ValueError``."""
    try:
        lm = np.asarray(landmarks, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"landmarks: not numeric ({exc})") from exc
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks: expected shape (68, 2) of (x, y), got {lm.shape}")
    if not np.isfinite(lm).all():
        bad = sorted(set(np.flatnonzero(~np.isfinite(lm).all(axis=1)).tolist()))
        raise ValueError(f"landmarks: non-finite (NaN/inf) values at points {bad}")
    return lm


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"size: expected (width, height), got {size!r}") from exc
    if w < 1 or h < 1:
        raise ValueError(f"size: width and height must be positive, got {size!r}")
    return w, h


# --------------------------------------------------------------------------------------------
# Curves


@functools.lru_cache(maxsize=8)
def _cr_basis(n: int) -> np.ndarray:
    """Catmull-Rom weights of the 4 control points at ``n`` steps along a segment: (n, 4)."""
    t = np.linspace(0.0, 1.0, n + 1)[1:, None]
    return 0.5 * np.hstack(
        [-t + 2 * t**2 - t**3, 2 - 5 * t**2 + 3 * t**3, t + 4 * t**2 - 3 * t**3, -(t**2) + t**3]
    )


def _catmull_rom(points: ArrayLike, samples_per_segment: int = 8) -> np.ndarray:
    """A (uniform) Catmull-Rom spline through ``points`` (end points included), vectorised."""
    p = np.asarray(points, dtype=np.float64)
    if len(p) < 3:
        return p
    ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    idx = np.arange(len(p) - 1)[:, None] + np.arange(4)[None, :]  # (segments, 4)
    curve = np.einsum("nk,skd->snd", _cr_basis(samples_per_segment), ext[idx])
    return np.vstack([p[:1], curve.reshape(-1, 2)])


def _resample(curve: np.ndarray, n: int) -> np.ndarray:
    """``n`` points evenly spaced by arc length along a polyline."""
    seg = np.hypot(*np.diff(curve, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    u = np.linspace(0.0, s[-1], n)
    return np.column_stack([np.interp(u, s, curve[:, 0]), np.interp(u, s, curve[:, 1])])


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int = 16) -> np.ndarray:
    """A quadratic Bezier curve from ``p0`` to ``p2`` with control point ``p1``."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


# --------------------------------------------------------------------------------------------
# Rasterisation inside a box


@dataclass(frozen=True)
class Box:
    """An integer pixel box ``[x0, x1) x [y0, y1)`` of an image."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def w(self) -> int:
        return self.x1 - self.x0

    @property
    def h(self) -> int:
        return self.y1 - self.y0

    @property
    def empty(self) -> bool:
        return self.w <= 0 or self.h <= 0

    @classmethod
    def around(cls, curves: Iterable[np.ndarray], size: tuple[int, int], pad: float) -> Box:
        pts = np.vstack([np.asarray(c, float).reshape(-1, 2) for c in curves])
        lo = np.floor(pts.min(axis=0) - pad).astype(int)
        hi = np.ceil(pts.max(axis=0) + pad).astype(int) + 1
        w, h = size
        return cls(max(lo[0], 0), max(lo[1], 0), min(hi[0], w), min(hi[1], h))

    def union(self, other: Box) -> Box:
        if other.empty:
            return self
        if self.empty:
            return other
        return Box(
            min(self.x0, other.x0),
            min(self.y0, other.y0),
            max(self.x1, other.x1),
            max(self.y1, other.y1),
        )

    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def _hires(self, points: np.ndarray, ss: int) -> list[float]:
        # Pixel centres are integers in both frames: x_hi = (x - x0 + 0.5) * ss - 0.5.
        hi = (np.asarray(points, float) - (self.x0, self.y0) + 0.5) * ss - 0.5
        return hi.ravel().tolist()

    def raster(
        self, ss: int, paint: Callable[[ImageDraw.ImageDraw, Callable], None]
    ) -> Image.Image:
        """Coverage (a PIL ``L`` image of the box, 255 = covered) of what ``paint`` draws.

        ``paint(draw, to_canvas)`` draws with fill 255 on a canvas ``ss`` times larger than the
        box (``to_canvas`` maps image points onto it); each pixel gets the fraction of its
        ``ss * ss`` sub-pixels painted (a box filter, quantised to 1/255).
        """
        canvas = Image.new("L", (self.w * ss, self.h * ss), 0)
        paint(ImageDraw.Draw(canvas), lambda pts: self._hires(pts, ss))
        return canvas.reduce(ss) if ss > 1 else canvas

    def polygon(self, polygon: np.ndarray, ss: int) -> Image.Image:
        return self.raster(ss, lambda d, tc: d.polygon(tc(polygon), fill=255))

    def lines(self, lines: list[np.ndarray], width: float, ss: int) -> Image.Image:
        wpx = max(1, round(width * ss))

        def paint(d: ImageDraw.ImageDraw, tc: Callable) -> None:
            for line in lines:
                d.line(tc(line), fill=255, width=wpx)

        return self.raster(ss, paint)

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates (x, y) of the box, float32, shapes ``(1, w)`` and ``(h, 1)``."""
        xs = np.arange(self.x0, self.x1, dtype=np.float32)[None, :]
        ys = np.arange(self.y0, self.y1, dtype=np.float32)[:, None]
        return xs, ys


# --------------------------------------------------------------------------------------------
# Outlines and parts of each type


Parts = dict[str, Any]


def paper_polygon(geom: FaceGeometry) -> np.ndarray:
    """Seneviratne et al.'s polygon (their ``masked_face_creator.py``, mask type ``a``), closed.

    Through, in order: jaw points 1, 2, ..., 15; the point with the x of landmark 42 (inner
    corner of the image-right eye) and the y of jaw point 15; the nose bridge point 27; the
    point with the x of landmark 39 (inner corner of the image-left eye) and the y of jaw point
    1. The top edge thus runs across the cheeks at the height of points 1 and 15 and rises to
    the nose bridge only between the inner eye corners. The two corner points use image axes
    (x and y of the image, not of the face), as the authors' code does.
    """
    lm = geom.lm
    return np.vstack(
        [
            lm[1:16],
            [lm[42, 0], lm[15, 1]],
            lm[27],
            [lm[39, 0], lm[1, 1]],
        ]
    )


def _ears(geom: FaceGeometry) -> tuple[np.ndarray, np.ndarray]:
    lm, iod, ex, ey = geom.lm, geom.iod, geom.ex, geom.ey
    return lm[0] - 0.10 * iod * ex - 0.12 * iod * ey, lm[16] + 0.10 * iod * ex - 0.12 * iod * ey


def _loops(geom: FaceGeometry, top: tuple, low: tuple) -> list[np.ndarray]:
    """Ear loops from each side's top and lower corner, bowing out to a point by the ear.

    The loop on a side turned well away from the camera (``|yaw| > 0.35``) is hidden.
    """
    ear_l, ear_r = _ears(geom)
    iod, ex, ey = geom.iod, geom.ex, geom.ey
    loops = []
    if geom.yaw < 0.35:  # image-left side visible
        loops += [
            _bezier(top[0], 0.5 * (top[0] + ear_l) - 0.05 * iod * ey, ear_l),
            _bezier(low[0], 0.5 * (low[0] + ear_l) - 0.18 * iod * ex, ear_l),
        ]
    if geom.yaw > -0.35:
        loops += [
            _bezier(top[1], 0.5 * (top[1] + ear_r) - 0.05 * iod * ey, ear_r),
            _bezier(low[1], 0.5 * (low[1] + ear_r) + 0.18 * iod * ex, ear_r),
        ]
    return loops


def _surgical_parts(geom: FaceGeometry) -> Parts:
    """Outline along/below the jaw and over the nose bridge; pleat guides; ear loops."""
    iod = geom.iod
    # Outward offset below the jaw: ~2% of the IOD at the sides, ~6% at the chin.
    idx = np.arange(2, 15, dtype=float)
    jaw = geom.jaw(idx, iod * (0.02 + 0.04 * np.exp(-(((idx - 8) / 2.5) ** 2))))
    corner_l, corner_r = geom.jaw([1.5, 14.5], 0.04 * iod)
    lower = _catmull_rom(np.vstack([corner_l, jaw, corner_r]))
    # Top: between nose points 28 and 29, and under each eye at ~45% of the nose-bridge length
    # below the lower lid; a smooth curve through them gives the gentle bump over the nose.
    under_l, under_r = geom.lid("left", 0.45), geom.lid("right", 0.45)
    top = _catmull_rom(np.vstack([corner_l, under_l, geom.bridge(1.4), under_r, corner_r]))
    low_l, low_r = geom.jaw([4.0, 12.0], 0.03 * iod)
    # Pleats between the top edge and the chin, following both; trimmed at the ends.
    top64 = _resample(top, 64)
    bottom64 = _resample(_catmull_rom(jaw[2:11]), 64)  # below the jaw from point 4 to 12
    pleats = [((1 - f) * top64 + f * bottom64)[3:-3] for f in np.linspace(0.22, 0.62, 3)]
    return {
        "outline": np.vstack([lower, top[::-1][1:-1]]),
        "pleats": pleats,
        "loops": _loops(geom, (corner_l, corner_r), (low_l, low_r)),
    }


def surgical_outline(geom: FaceGeometry) -> np.ndarray:
    """Closed outline of a surgical mask: along/below the jaw, then back over the nose bridge."""
    return _surgical_parts(geom)["outline"]


def _n95_parts(geom: FaceGeometry) -> Parts:
    """A moulded cup: closed spline over the nose bridge, the cheeks and under the chin."""
    iod, ex, ey, lm = geom.iod, geom.ex, geom.ey, geom.lm
    top = geom.bridge(1.45)
    upper_l = geom.lid("left", 0.50) - 0.14 * iod * ex
    upper_r = geom.lid("right", 0.50) + 0.14 * iod * ex
    side_l, low_l, bot_l, bot_r, low_r, side_r = geom.jaw(
        [2.6, 5.0, 6.8, 9.2, 11.0, 13.4], iod * np.array([0.0, 0.04, 0.08, 0.08, 0.04, 0.0])
    )
    bottom = lm[8] + 0.10 * iod * ey
    ring = np.vstack([top, upper_r, side_r, low_r, bot_r, bottom, bot_l, low_l, side_l, upper_l])
    # A closed spline: wrap the neighbours so the curve is smooth everywhere.
    ext = np.vstack([ring[-1], ring, ring[:2]])
    outline = _catmull_rom(ext, 8)[8:-8]
    # The nose clip: a short strip following the top edge, just under it.
    clip = _catmull_rom(
        np.vstack(
            [
                top - 0.30 * iod * ex + 0.12 * iod * ey,
                top + 0.07 * iod * ey,
                top + 0.30 * iod * ex + 0.12 * iod * ey,
            ]
        )
    )
    # Head straps: from the cup's sides round the face, passing above and below the ears.
    straps = []
    ear_l, ear_r = _ears(geom)
    if geom.yaw < 0.35:
        a, b = 0.5 * (upper_l + side_l), low_l
        straps += [
            _bezier(a, 0.5 * (a + ear_l) - 0.20 * iod * ey, ear_l - 0.35 * iod * ey),
            _bezier(b, 0.5 * (b + lm[2]) - 0.10 * iod * ex, lm[2] - 0.08 * iod * ex),
        ]
    if geom.yaw > -0.35:
        a, b = 0.5 * (upper_r + side_r), low_r
        straps += [
            _bezier(a, 0.5 * (a + ear_r) - 0.20 * iod * ey, ear_r - 0.35 * iod * ey),
            _bezier(b, 0.5 * (b + lm[14]) + 0.10 * iod * ex, lm[14] + 0.08 * iod * ex),
        ]
    return {"outline": outline, "clip": [clip], "loops": straps, "dome": 0.5 * (lm[33] + lm[57])}


def _kn95_parts(geom: FaceGeometry) -> Parts:
    """A folded respirator: straight top edges to a peak over the nose, pointed chin, a fold."""
    iod, ey, lm = geom.iod, geom.ey, geom.lm
    corner_l, corner_r = geom.jaw([1.8, 14.2], 0.03 * iod)
    peak = geom.bridge(1.25)
    under_l, under_r = geom.lid("left", 0.50), geom.lid("right", 0.50)
    idx_l = np.arange(2.0, 8.0)
    idx_r = np.arange(9.0, 15.0)
    side_l = geom.jaw(idx_l, iod * (0.02 + 0.05 * (idx_l - 2) / 6))
    side_r = geom.jaw(idx_r, iod * (0.07 - 0.05 * (idx_r - 9) / 6))
    tip = lm[8] + 0.14 * iod * ey
    lower_l = _catmull_rom(np.vstack([corner_l, side_l, tip]))
    lower_r = _catmull_rom(np.vstack([tip, side_r, corner_r]))
    top = np.vstack([corner_r, under_r, peak, under_l])
    outline = np.vstack([lower_l, lower_r[1:], top[1:]])
    fold = _catmull_rom(
        np.vstack([peak, lm[30], 0.5 * (lm[33] + lm[51]), 0.5 * (lm[57] + lm[8]), tip])
    )
    return {
        "outline": outline,
        "fold": fold,
        "loops": _loops(geom, (corner_l, corner_r), tuple(geom.jaw([4.5, 11.5], 0.04 * iod))),
    }


def _cloth_parts(geom: FaceGeometry) -> Parts:
    """A fabric mask: rounded over the nose, deep under the chin, a centre seam, thick loops."""
    iod, lm = geom.iod, geom.lm
    idx = np.arange(2, 15, dtype=float)
    jaw = geom.jaw(idx, iod * (0.03 + 0.09 * np.exp(-(((idx - 8) / 2.8) ** 2))))
    corner_l, corner_r = geom.jaw([1.3, 14.7], 0.04 * iod)
    lower = _catmull_rom(np.vstack([corner_l, jaw, corner_r]))
    top = _catmull_rom(
        np.vstack(
            [corner_l, geom.lid("left", 0.42), geom.bridge(1.15), geom.lid("right", 0.42), corner_r]
        )
    )
    bottom = jaw[6]
    seam = _catmull_rom(
        np.vstack([geom.bridge(1.15), lm[30], 0.5 * (lm[33] + lm[51]), lm[57], bottom])
    )
    return {
        "outline": np.vstack([lower, top[::-1][1:-1]]),
        "seam": seam,
        "loops": _loops(geom, (corner_l, corner_r), tuple(geom.jaw([4.0, 12.0], 0.04 * iod))),
    }


# --------------------------------------------------------------------------------------------
# Mask types


@dataclass(frozen=True)
class MaskSpec:
    """How one mask type is drawn.

    Attributes:
        parts: ``geometry -> {"outline": closed polygon, "loops": polylines, ...}``.
        palette: colour name -> RGB; one is drawn with the rng (or named by the caller).
        edge_sigma: Gaussian blur of the alpha edge, as a fraction of the IOD (0 = crisp).
        shading: strength of the face-luminance shading (0 = flat colour).
        falloff: darkening towards the sides, where the mask turns away from the camera.
        noise: amplitude of a faint fabric noise (fraction of the colour; 0 = none).
        loop_width: width of the ear loops / straps, fraction of the IOD.
        loop_tint: loops are the mask colour mixed with this share of light grey (235); a
            negative share darkens the mask colour instead.
        texture: the texture name recorded for this type (``cloth`` draws one of TEXTURES).
    """

    parts: Callable[[FaceGeometry], Parts]
    palette: Mapping[str, RGB]
    edge_sigma: float = 0.0
    shading: float = 0.0
    falloff: float = 0.0
    noise: float = 0.0
    loop_width: float = 0.025
    loop_tint: float = 0.45
    texture: str = "flat"


SURGICAL_PALETTE: dict[str, RGB] = {
    "light_blue": (126, 184, 220),
    "white": (236, 238, 240),
    "black": (40, 40, 44),
    "pink": (238, 172, 194),
    "green": (122, 192, 164),
}
N95_PALETTE: dict[str, RGB] = {
    "white": (238, 238, 234),
    "off_white": (232, 226, 210),
    "grey": (178, 180, 182),
    "blue_grey": (168, 186, 202),
}
KN95_PALETTE: dict[str, RGB] = {
    "white": (240, 240, 240),
    "black": (36, 36, 40),
    "grey": (150, 152, 158),
    "pink": (232, 178, 190),
    "navy": (44, 54, 92),
}
CLOTH_PALETTE: dict[str, RGB] = {
    "navy": (38, 52, 96),
    "black": (34, 34, 36),
    "grey": (120, 122, 128),
    "red": (168, 42, 48),
    "denim": (72, 102, 140),
    "olive": (108, 114, 68),
    "beige": (206, 186, 152),
    "pink": (226, 150, 170),
    "teal": (40, 120, 124),
}

_SPECS: dict[str, MaskSpec] = {
    "paper": MaskSpec(
        parts=lambda g: {"outline": paper_polygon(g), "loops": []},
        palette={"white": (255, 255, 255)},
        texture="flat",
    ),
    "surgical": MaskSpec(
        parts=_surgical_parts,
        palette=SURGICAL_PALETTE,
        edge_sigma=0.02,
        shading=1.0,
        falloff=0.18,
        noise=0.015,
        texture="pleated",
    ),
    "n95": MaskSpec(
        parts=_n95_parts,
        palette=N95_PALETTE,
        edge_sigma=0.02,
        shading=0.9,
        falloff=0.10,
        noise=0.02,
        loop_width=0.035,
        loop_tint=-0.25,
        texture="moulded",
    ),
    "kn95": MaskSpec(
        parts=_kn95_parts,
        palette=KN95_PALETTE,
        edge_sigma=0.015,
        shading=1.0,
        falloff=0.15,
        noise=0.012,
        texture="folded",
    ),
    "cloth": MaskSpec(
        parts=_cloth_parts,
        palette=CLOTH_PALETTE,
        edge_sigma=0.025,
        shading=1.0,
        falloff=0.20,
        noise=0.03,
        loop_width=0.045,
        loop_tint=-0.1,
        texture="solid",
    ),
}
if tuple(_SPECS) != MASK_TYPES:  # pragma: no cover - a guard for whoever adds a type
    raise RuntimeError("masks: MASK_TYPES and _SPECS disagree")


def _check_type(mask_type: str) -> MaskSpec:
    if mask_type not in _SPECS:
        raise ValueError(f"unknown mask_type {mask_type!r}; valid types: {', '.join(MASK_TYPES)}")
    return _SPECS[mask_type]


def palette(mask_type: str) -> dict[str, str]:
    """Colour names of ``mask_type`` and their hex RGB (``#rrggbb``)."""
    return {k: _hex(v) for k, v in _check_type(mask_type).palette.items()}


def _hex(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def outline(landmarks: ArrayLike, mask_type: str) -> np.ndarray:
    """The closed outline polygon of ``mask_type`` on these landmarks (image coordinates)."""
    spec = _check_type(mask_type)
    return spec.parts(FaceGeometry.from_landmarks(validate_landmarks(landmarks)))["outline"]


# --------------------------------------------------------------------------------------------
# Painting helpers (all on float32 arrays of the body box)


def _f32(image: Image.Image) -> np.ndarray:
    """A PIL ``L`` coverage image as float32 in [0, 1]."""
    return np.asarray(image, dtype=np.float32) * np.float32(1 / 255)


def _blur(image: Image.Image, sigma: float) -> Image.Image:
    """A fast Gaussian-like blur of a PIL ``L`` image, ``sigma`` px.

    Box-reduce by ``k ~ 1.2 sigma`` and resize back bilinearly: a separable tent of width
    ``2k`` (close to a Gaussian of that sigma), computed in C on a ``k * k`` times smaller image;
    several times cheaper than a true Gaussian at these sizes. Flat regions keep their value.
    """
    if sigma < 0.6:
        return image
    k = max(2, int(round(1.2 * sigma)))
    w, h = image.size
    pw, ph = -(-w // k) * k, -(-h // k) * k
    if (pw, ph) != (w, h):  # pad to whole blocks so block centres map back exactly
        padded = Image.new(image.mode, (pw, ph), 0)
        padded.paste(image, (0, 0))
        image = padded
    out = image.reduce(k).resize((pw, ph), Image.Resampling.BILINEAR)
    return out.crop((0, 0, w, h)) if (pw, ph) != (w, h) else out


def _tone_layer(tone: np.ndarray, rgb: np.ndarray) -> Image.Image:
    """An RGB image ``rgb * tone`` (tone in [0, 1.5]) through a lookup table (tone in 1/170)."""
    t = np.clip(tone * np.float32(170.0) + np.float32(0.5), 0, 255).astype(np.uint8)
    lut = np.clip(np.rint(np.arange(256)[:, None] / 170.0 * rgb[None, :]), 0, 255).astype(np.uint8)
    return Image.fromarray(np.take(lut, t, axis=0), "RGB")


def _resize(arr: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    return np.asarray(
        Image.fromarray(np.ascontiguousarray(arr, dtype=np.float32), "F").resize(size, resample)
    )


@functools.lru_cache(maxsize=4)
def _noise_tile(sigma: float, n: int = 384) -> np.ndarray:
    """A fixed tile of smooth Gaussian noise (std 1), made once per process; images take
    windows of it at offsets their rng draws (cheaper than fresh noise per image)."""
    rng = np.random.default_rng(20210101)
    tile = ndimage.gaussian_filter(rng.standard_normal((n, n)), sigma, mode="wrap")
    return (tile / tile.std()).astype(np.float32)


def _noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator, scale: float = 1.0):
    """Smooth noise of ``shape`` (std ~1, correlation ``sigma * scale`` px) from the tile."""
    tile = _noise_tile(float(sigma))
    n = tile.shape[0]
    h, w = shape
    if scale == 1.0 and h <= n and w <= n:
        y, x = (int(v) for v in rng.integers(0, n - np.array([h, w]) + 1))
        return tile[y : y + h, x : x + w]
    y0, x0 = (int(v) for v in rng.integers(0, n, 2))
    rows = (y0 + (np.arange(h) / scale).astype(int)) % n
    cols = (x0 + (np.arange(w) / scale).astype(int)) % n
    return tile[np.ix_(rows, cols)]


def _shading(grey: np.ndarray, alpha: np.ndarray, sigma: float, strength: float) -> np.ndarray:
    """Low-frequency face luminance under the mask, normalised to mean 1 over the mask.

    A normalised convolution (blur of ``grey * alpha`` over blur of ``alpha``) so the background
    around the mask does not leak in; computed at ``1/k`` resolution (it is low-frequency by
    construction) and resized back; clipped to [0.55, 1.45] to keep extremes plausible.
    """
    h, w = alpha.shape
    k = max(1, int(sigma / 3))
    ga, aa = grey * alpha, alpha
    if k > 1:
        small = (max(1, -(-w // k)), max(1, -(-h // k)))
        ga = _resize(ga, small, Image.Resampling.BOX)
        aa = _resize(aa, small, Image.Resampling.BOX)
    num = ndimage.gaussian_filter(ga, sigma / k, mode="nearest")
    den = ndimage.gaussian_filter(aa, sigma / k, mode="nearest")
    low = num / np.maximum(den, 1e-4)
    if k > 1:
        low = _resize(low, (w, h), Image.Resampling.BILINEAR)
    weight = float(alpha.sum())
    mean = float((low * alpha).sum() / weight) if weight > 0 else 1.0
    s = low / max(mean, 1e-6)
    return np.clip(1.0 + strength * (s - 1.0), 0.55, 1.45).astype(np.float32, copy=False)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


@dataclass
class _Canvas:
    """The body box of one render: coordinates in the face's frame and the body's coverage."""

    geom: FaceGeometry
    box: Box
    u: np.ndarray  # across the face, IOD units, 0 at the nose tip, foreshortened by yaw
    v: np.ndarray  # down the face, IOD units, 0 at the nose tip
    un: np.ndarray  # across, normalised so each jaw side is at -1 / +1
    alpha: np.ndarray  # the body's coverage, float32
    alpha_img: Image.Image  # the same as a PIL L image

    @classmethod
    def make(cls, geom: FaceGeometry, box: Box, alpha_img: Image.Image) -> _Canvas:
        xs, ys = box.grid()
        dx, dy = xs - np.float32(geom.lm[30, 0]), ys - np.float32(geom.lm[30, 1])
        ex, ey = geom.ex.astype(np.float32), geom.ey.astype(np.float32)
        across = dx * ex[0] + dy * ex[1]
        down = dx * ey[0] + dy * ey[1]
        un = np.where(
            across < 0,
            across * np.float32(1 / geom.half_left),
            across * np.float32(1 / geom.half_right),
        )
        mean_half = np.float32(0.5 * (geom.half_left + geom.half_right) / geom.iod)
        return cls(
            geom,
            box,
            un * mean_half,
            down * np.float32(1 / geom.iod),
            un,
            _f32(alpha_img),
            alpha_img,
        )

    def lines(self, lines: list[np.ndarray], width: float, blur: float = 0.0) -> np.ndarray:
        """Coverage of polylines of ``width`` px, blurred by ``blur`` px, float32."""
        return _f32(_blur(self.box.lines(lines, width, 2 if width < 3 else 1), blur))


def _turn_falloff(c: _Canvas, strength: float) -> np.ndarray:
    """Darker towards the sides, and more on the side turned away (from the landmarks' yaw)."""
    side = np.where(c.un < 0, 1.0 + 0.8 * c.geom.yaw, 1.0 - 0.8 * c.geom.yaw).astype(np.float32)
    return 1.0 - strength * np.minimum(c.un * c.un, 1.5) * side


def _paint_surgical(
    c: _Canvas, parts: Parts, tone: np.ndarray, rgb: np.ndarray, rng, tex
) -> np.ndarray:
    iod = c.geom.iod
    shadow = c.lines(parts["pleats"], 0.03 * iod, 0.025 * iod + 0.3)
    # A light fold edge just above each shadow line gives the pleat relief: the shadow layer
    # moved up the face by ~4.5% of the IOD (whole pixels: the layer is soft anyway).
    dx, dy = (int(round(v)) for v in -0.045 * iod * c.geom.ey)
    light = np.zeros_like(shadow)
    h, w = shadow.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    light[yd, xd] = shadow[ys, xs]
    tone *= 1.0 - 0.35 * shadow + 0.12 * light
    return rgb


def _paint_n95(c: _Canvas, parts: Parts, tone: np.ndarray, rgb: np.ndarray, rng, tex) -> np.ndarray:
    g = c.geom
    # Dome: brightest a little towards the side facing the camera, darker where it curves away.
    cx = float((parts["dome"] - g.lm[30]) @ g.ex) / g.iod + 0.25 * g.yaw
    cy = float((parts["dome"] - g.lm[30]) @ g.ey) / g.iod
    r2 = ((c.u - cx) / 0.95) ** 2 + ((c.v - cy) / 0.75) ** 2
    tone *= 1.06 - 0.22 * np.minimum(r2, 1.6)
    clip = c.lines(parts["clip"], 0.06 * g.iod, 0.01 * g.iod + 0.3)
    tone *= 1.0 - 0.10 * clip
    seam = c.lines(parts["clip"], 0.012 * g.iod, 0.3)
    tone *= 1.0 + 0.08 * seam
    return rgb


def _face_uv(c: _Canvas, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points in the canvas's (u, v) face frame (u foreshortened like the canvas's)."""
    g = c.geom
    across = (pts - g.lm[30]) @ g.ex
    un = np.where(across < 0, across / g.half_left, across / g.half_right)
    return un * 0.5 * (g.half_left + g.half_right) / g.iod, (pts - g.lm[30]) @ g.ey / g.iod


def _paint_kn95(
    c: _Canvas, parts: Parts, tone: np.ndarray, rgb: np.ndarray, rng, tex
) -> np.ndarray:
    g = c.geom
    fold = parts["fold"]
    fu, fv = _face_uv(c, fold)
    order = np.argsort(fv)
    left = c.u < np.interp(c.v, fv[order], fu[order]).astype(np.float32)
    # Panels either side of the fold face different ways: one darker, more so when turned.
    tone *= np.where(left, 0.95 - 0.10 * g.yaw, 0.98 + 0.10 * g.yaw).astype(np.float32)
    crease = c.lines([fold], 0.018 * g.iod, 0.3)
    hi = c.lines([fold + 0.03 * g.iod * g.ex], 0.02 * g.iod, 0.5)
    tone *= 1.0 - 0.30 * crease + 0.10 * hi
    # Heat-welded band just inside the edge, with a row of small embossed dots.
    inner = _f32(_blur(c.alpha_img, 0.035 * g.iod))
    band = c.alpha * (1.0 - _smoothstep(0.80, 0.97, inner))
    t = (c.u + c.v) / 0.05
    dots = 0.5 + 0.5 * np.cos(2 * np.pi * t).astype(np.float32)
    tone *= 1.0 - band * (0.07 + 0.06 * dots)
    return rgb


def _texture(c: _Canvas, name: str, rng: np.random.Generator) -> np.ndarray:
    """Pattern amount in [0, 1] (0 = base colour, 1 = accent) in the face's own frame."""
    px = 1.0 / c.geom.iod  # one pixel, in IOD units (for anti-aliased pattern edges)
    u, v = c.u, c.v
    if name == "solid":
        return np.zeros_like(u)
    if name == "stripes":
        period = float(rng.uniform(0.14, 0.26))
        ang = float(rng.choice([0.0, np.pi / 4, -np.pi / 4]))
        t = (v * np.cos(ang) + u * np.sin(ang)) / period
        d = np.abs(t - np.floor(t) - 0.5) * period  # distance to the stripe centre line
        return 1.0 - _smoothstep(0.22 * period - px, 0.22 * period + px, d)
    if name == "check":
        period = float(rng.uniform(0.16, 0.26))
        a = np.abs(u / period - np.floor(u / period) - 0.5) * period
        b = np.abs(v / period - np.floor(v / period) - 0.5) * period
        sa = 1.0 - _smoothstep(0.25 * period - px, 0.25 * period + px, a)
        sb = 1.0 - _smoothstep(0.25 * period - px, 0.25 * period + px, b)
        return 0.5 * (sa + sb)  # gingham: 0, 1/2 where one band crosses, 1 where both do
    if name == "dots":
        period = float(rng.uniform(0.16, 0.24))
        row = np.floor(v / period)
        uu = u / period + 0.5 * (row % 2)  # staggered rows
        du = (uu - np.floor(uu) - 0.5) * period
        dv = (v / period - row - 0.5) * period
        d = np.sqrt(du * du + dv * dv)
        return 1.0 - _smoothstep(0.26 * period - px, 0.26 * period + px, d)
    if name == "noise":  # heathered fabric: coarse blotches and fine grain (IOD-scaled)
        scale = c.geom.iod / 80.0
        n = _noise(u.shape, 6.0, rng, scale) + 0.5 * _noise(u.shape, 1.5, rng, scale)
        return np.clip(0.45 + 0.16 * n, 0.0, 1.0)
    raise ValueError(f"unknown texture {name!r}; valid: {', '.join(TEXTURES)}")


def _accent(rgb: np.ndarray) -> np.ndarray:
    lum = float(rgb @ np.array([0.299, 0.587, 0.114]))
    return (
        np.array([236, 232, 222], np.float32) if lum < 150 else np.array([46, 44, 48], np.float32)
    )


def _paint_cloth(
    c: _Canvas, parts: Parts, tone: np.ndarray, rgb: np.ndarray, rng, tex
) -> np.ndarray:
    g = c.geom
    amount = _texture(c, tex, rng)
    colour = rgb[None, None, :] + amount[..., None] * (_accent(rgb) - rgb)[None, None, :]
    seam = c.lines([parts["seam"]], 0.02 * g.iod, 0.4)
    tone *= 1.0 - 0.28 * seam
    return colour


_PAINT = {
    "surgical": _paint_surgical,
    "n95": _paint_n95,
    "kn95": _paint_kn95,
    "cloth": _paint_cloth,
}


# --------------------------------------------------------------------------------------------
# Public API


@dataclass
class Rendered:
    """A drawn mask: the image, the body's alpha inside ``box`` and what was drawn."""

    image: Image.Image
    box: Box
    alpha: np.ndarray  # float32 (box.h, box.w)
    info: dict[str, Any]
    geom: FaceGeometry

    def full_alpha(self) -> np.ndarray:
        """The body alpha over the whole image, float32 ``(height, width)``."""
        w, h = self.image.size
        out = np.zeros((h, w), np.float32)
        if not self.box.empty:
            out[self.box.slices()] = self.alpha
        return out


def _body(
    spec: MaskSpec, geom: FaceGeometry, parts: Parts, size: tuple[int, int], ss: int
) -> tuple[Box, Image.Image | None]:
    """The body's box and its coverage there (PIL ``L``), soft edge included.

    Types with a soft edge are drawn with at most 2x supersampling: their Gaussian edge (a
    couple of pixels wide) is smoother than what finer supersampling would add.
    """
    sigma = spec.edge_sigma * geom.iod
    box = Box.around([parts["outline"]], size, 3 * sigma + 2)
    if box.empty:
        return box, None
    alpha = box.polygon(parts["outline"], min(ss, 2) if sigma > 0.5 else ss)
    return box, _blur(alpha, sigma)


def mask_alpha(
    landmarks: ArrayLike, size: tuple[int, int], mask_type: str, supersample: int = 4
) -> np.ndarray:
    """Anti-aliased coverage of the mask body: float32 ``(height, width)`` in [0, 1].

    Args:
        landmarks: ``(68, 2)`` ``(x, y)`` landmarks in the image frame.
        size: ``(width, height)`` of the image, as PIL's ``Image.size``.
        mask_type: one of :data:`MASK_TYPES`.
        supersample: the outline is drawn at this many times the resolution and box-filtered
            down, so edge pixels hold their covered fraction (1 = hard edge).

    The type's soft edge is included, so this is the alpha that :func:`draw_mask` composites;
    ear loops and straps are not (they are not coverage).
    """
    spec = _check_type(mask_type)
    lm = validate_landmarks(landmarks)
    w, h = _check_size(size)
    if int(supersample) != supersample or supersample < 1:
        raise ValueError(f"supersample must be a positive integer, got {supersample!r}")
    geom = FaceGeometry.from_landmarks(lm)
    box, alpha = _body(spec, geom, spec.parts(geom), (w, h), int(supersample))
    out = np.zeros((h, w), np.float32)
    if alpha is not None:
        out[box.slices()] = _f32(alpha)
    return out


def _pick(
    options: Iterable[str], given: str | None, rng: np.random.Generator, what: str, where: str
) -> str:
    names = list(options)
    if given is None:
        return names[int(rng.integers(len(names)))] if len(names) > 1 else names[0]
    if given not in names:
        raise ValueError(f"{what} {given!r} is not in the {where}; valid: {', '.join(names)}")
    return given


def render(
    image: Image.Image,
    landmarks: ArrayLike,
    mask_type: str,
    rng: np.random.Generator,
    colour: str | None = None,
    texture: str | None = None,
    textures: Iterable[str] | Mapping[str, float] | None = None,
    supersample: int = 4,
) -> Rendered:
    """Draw a mask of ``mask_type`` on ``image``; also return its alpha (see :class:`Rendered`).

    Args:
        image: the (aligned) face; converted to RGB. Any size.
        landmarks: ``(68, 2)`` ``(x, y)`` landmarks in ``image``'s frame.
        mask_type: one of :data:`MASK_TYPES`.
        rng: draws the colour, the texture and its parameters and the fabric noise; the same
            seed gives the same image.
        colour: a colour name from the type's palette (see :func:`palette`), or None to draw one.
        texture: for ``cloth``, one of :data:`TEXTURES`, or None to draw one from ``textures``
            (a list, or a mapping name -> weight; default all, equally likely). Other types
            record their fixed texture (``flat``, ``pleated``, ``moulded``, ``folded``).
        supersample: supersampling of the outline (1 = hard edge).

    Raises:
        ValueError: unknown ``mask_type``, colour or texture, or landmarks not a finite
            ``(68, 2)`` array, or eyes in one place.
    """
    spec = _check_type(mask_type)
    lm = validate_landmarks(landmarks)
    name = _pick(spec.palette, colour, rng, "colour", f"{mask_type} palette")
    if mask_type == "cloth":
        if texture is None:
            choice = normalise_choice(
                textures if textures is not None else TEXTURES, TEXTURES, "textures"
            )
            tex = choose(choice, rng)
        else:
            tex = _pick(TEXTURES, texture, rng, "texture", "cloth textures")
    else:
        tex = spec.texture
    rgb = spec.palette[name]
    geom = FaceGeometry.from_landmarks(lm)
    info = {
        "mask_type": mask_type,
        "colour": name,
        "rgb": _hex(rgb),
        "texture": tex,
        "yaw": round(geom.yaw, 3),
        "roll": round(geom.roll, 2),
    }
    out = image.convert("RGB") if image.mode != "RGB" else image.copy()
    size = out.size
    parts = spec.parts(geom)
    box, alpha_img = _body(spec, geom, parts, size, int(supersample))
    base = np.array(rgb, dtype=np.float32)

    loops = parts.get("loops") or []
    if loops:
        loop_box = Box.around(loops, size, spec.loop_width * geom.iod + 2)
        if not loop_box.empty:
            k = spec.loop_tint
            loop_rgb = (1 - k) * base + k * 235.0 if k >= 0 else (1 + k) * base
            cov = loop_box.lines(loops, spec.loop_width * geom.iod, 2)
            out.paste(
                tuple(int(round(v)) for v in loop_rgb),
                (loop_box.x0, loop_box.y0, loop_box.x1, loop_box.y1),
                cov,
            )

    if alpha_img is None:
        return Rendered(out, box, np.zeros((0, 0), np.float32), info, geom)
    xy = (box.x0, box.y0, box.x1, box.y1)
    if mask_type == "paper":
        out.paste(rgb, xy, alpha_img)
        return Rendered(out, box, _f32(alpha_img), info, geom)
    c = _Canvas.make(geom, box, alpha_img)
    tone = np.ones(c.alpha.shape, np.float32)
    if spec.shading > 0:
        grey = np.asarray(image.convert("L").crop(xy), dtype=np.float32)
        tone *= _shading(grey, c.alpha, 0.25 * geom.iod, spec.shading)
    if spec.falloff > 0:
        tone *= _turn_falloff(c, spec.falloff)
    colour_map = _PAINT[mask_type](c, parts, tone, base, rng, tex)
    if spec.noise > 0:
        tone *= 1.0 + spec.noise * _noise(c.alpha.shape, 0.6, rng)
    if colour_map.ndim == 1:
        layer_img = _tone_layer(tone, colour_map)
    else:
        layer = colour_map * tone[..., None]
        np.clip(layer, 0.0, 255.0, out=layer)
        layer_img = Image.fromarray(np.rint(layer).astype(np.uint8), "RGB")
    out.paste(layer_img, xy, alpha_img)
    return Rendered(out, box, c.alpha, info, geom)


def draw_mask(
    image: Image.Image,
    landmarks: ArrayLike,
    mask_type: str,
    rng: np.random.Generator,
    colour: str | None = None,
    texture: str | None = None,
) -> tuple[Image.Image, dict[str, Any]]:
    """Draw a synthetic mask of ``mask_type`` on ``image`` (see :func:`render`).

    Returns:
        ``(masked RGB image, {"mask_type", "colour" (name), "rgb" ("#rrggbb"), "texture",
        "yaw", "roll"})``.
    """
    r = render(image, landmarks, mask_type, rng, colour=colour, texture=texture)
    return r.image, r.info


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
        w, h = _check_size(size)
        if box.empty:  # nothing drawn: zero everywhere
            alpha = np.zeros((0, 0), np.float32)
        elif alpha.shape != (box.h, box.w):
            raise ValueError(f"alpha: shape {alpha.shape} does not match box {box}")
        x0, y0 = box.x0, box.y0
    # one pixel of zeros around, so bilinear samples next to the box see the zeros outside it
    padded = np.pad(alpha.astype(np.float32, copy=False), 1)
    iod = float(np.hypot(*(lm[42:48].mean(axis=0) - lm[36:42].mean(axis=0))))
    r = max(1.0, tolerance * iod)
    ang = np.linspace(0.0, 2 * np.pi, 16, endpoint=False)
    ring = np.column_stack([np.cos(ang), np.sin(ang)])
    offsets = np.vstack([[0.0, 0.0], r * ring, 0.5 * r * ring])

    def sample(points: np.ndarray) -> np.ndarray:
        pts = (points[:, None, :] + offsets[None]).reshape(-1, 2)
        # outside the image: the nearest border pixel; then into the padded box's frame
        px = np.clip(pts[:, 0], 0, w - 1) - x0 + 1
        py = np.clip(pts[:, 1], 0, h - 1) - y0 + 1
        vals = ndimage.map_coordinates(padded, [py, px], order=1, mode="constant", cval=0.0)
        return vals.reshape(len(points), len(offsets))

    covered = sample(lm[list(COVERED)]).max(axis=1) >= threshold
    eyes_clear = bool((sample(lm[list(EYES)]).min(axis=1) < threshold).all())
    return {
        "ok": bool(covered.all() and eyes_clear),
        "covered_fraction": float(covered.mean()),
        "eyes_clear": eyes_clear,
    }


# ---------------------------------------------------------------- choosing types and textures


def normalise_choice(
    spec: str | Iterable[str] | Mapping[str, float], valid: tuple[str, ...], what: str
) -> dict[str, float]:
    """One name, a list of names (equally likely) or a mapping name -> weight, as weights."""
    if isinstance(spec, str):
        weights = {spec: 1.0}
    elif isinstance(spec, Mapping):
        weights = {str(k): float(v) for k, v in spec.items()}
    else:
        names = list(spec)
        if len(set(names)) != len(names):
            raise ValueError(f"{what}: names repeat in {names}")
        weights = {str(n): 1.0 for n in names}
    if not weights:
        raise ValueError(f"{what}: empty; valid: {', '.join(valid)}")
    for name, w in weights.items():
        if name not in valid:
            raise ValueError(f"{what}: unknown {name!r}; valid: {', '.join(valid)}")
        if not w > 0:
            raise ValueError(f"{what}: weight of {name!r} must be > 0, got {w}")
    return weights


def choose(weights: Mapping[str, float], rng: np.random.Generator) -> str:
    """One name drawn with the given weights (a single name is returned without drawing)."""
    names = sorted(weights)
    if len(names) == 1:
        return names[0]
    p = np.array([weights[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def choose_type(types: str | Iterable[str] | Mapping[str, float], rng: np.random.Generator) -> str:
    """One mask type from ``mask.types`` (a name, a list or a mapping type -> weight)."""
    return choose(normalise_choice(types, MASK_TYPES, "mask.types"), rng)


def image_rng(seed: int, name: str) -> np.random.Generator:
    """A generator per image, from the stage seed and the file name (order-free, repeatable)."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


# ---------------------------------------------------------------- contact sheet


def contact_sheet(
    faces: list[tuple[str, Image.Image, np.ndarray]],
    configured: Iterable[str] = (),
    seed: int = 0,
    thumb: int = 160,
) -> Image.Image:
    """A picture for people: one row per face, the input then every mask type drawn on it.

    Columns: the input, then each of :data:`MASK_TYPES` (configured types are marked ``*``);
    the same landmarks serve every type. Cloth rows cycle through :data:`TEXTURES`. Each cell is
    captioned with its colour and texture.
    """
    from PIL import ImageFont

    configured = set(configured)
    font = ImageFont.load_default(size=max(10, thumb // 12))
    head, cap = thumb // 6, thumb // 8
    cols = ["input", *MASK_TYPES]
    sheet = Image.new(
        "RGB", (thumb * len(cols), head + len(faces) * (thumb + cap)), (255, 255, 255)
    )
    draw = ImageDraw.Draw(sheet)
    for j, name in enumerate(cols):
        label = f"{name}*" if name in configured else name
        draw.text((j * thumb + 4, 2), label, fill=(0, 0, 0), font=font)
    for i, (fname, img, lm) in enumerate(faces):
        y = head + i * (thumb + cap)
        label = fname
        while len(label) > 4 and draw.textlength(label, font=font) > thumb - 6:
            label = label[:-2]
        cells = [(img, label if label == fname else label + "~")]
        for t in MASK_TYPES:
            rng = image_rng(seed, f"contact_sheet:{fname}:{t}")
            tex = TEXTURES[i % len(TEXTURES)] if t == "cloth" else None
            r = render(img, lm, t, rng, texture=tex)
            cells.append((r.image, f"{r.info['colour']} {r.info['texture']}"))
        for j, (im, text) in enumerate(cells):
            sheet.paste(im.resize((thumb, thumb), Image.Resampling.LANCZOS), (j * thumb, y))
            draw.text((j * thumb + 3, y + thumb + 1), text, fill=(60, 60, 60), font=font)
    return sheet


# ---------------------------------------------------------------- the ``mask`` stage


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


def run(
    cfg: dict,
    images_in,
    landmarks_table,
    images_out,
    masks_out,
    rejects_out,
    threads: int = 1,
    progress: bool = True,
    contact_sheet_out=None,
    sheet_faces: int = 5,
) -> dict:
    """Mask every aligned face; each ends in the masks table or in rejects with a reason.

    The landmarks come from the align stage (computed once, reused by every mask type). With
    ``contact_sheet_out``, a PNG of ``sheet_faces`` faces with every mask type is written there.
    """
    import multiprocessing as mp

    import pandas as pd
    from tqdm import tqdm

    from maskprivacy.core.io import read_table, rejects_frame, write_table
    from maskprivacy.core.plumbing import atomic_dir, atomic_path, no_bar
    from maskprivacy.faces.align import landmarks_array

    scfg = stage_config(cfg)
    table = read_table(landmarks_table)
    lms = landmarks_array(table)
    rows: list[dict] = []
    with atomic_dir(images_out) as tmp:
        jobs = [
            (str(Path(images_in) / f), str(tmp), lm, scfg)
            for f, lm in zip(table["file"], lms, strict=True)
        ]
        bar = tqdm(total=len(jobs), desc="mask", unit="img", disable=no_bar(progress))
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
    write_table(masks_out, masks)
    write_table(rejects_out, rejects)
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
    if contact_sheet_out is not None:
        picks = np.unique(
            np.linspace(0, len(table) - 1, min(sheet_faces, len(table))).round().astype(int)
        )
        faces = []
        for i in picks if len(table) else []:
            f = table["file"].iloc[i]
            with Image.open(Path(images_in) / f) as im:
                faces.append((f, im.convert("RGB"), lms[i]))
        sheet = (
            contact_sheet(faces, scfg["_types"], int(cfg["seed"]))
            if faces
            else Image.new("RGB", (320, 40), (255, 255, 255))
        )
        with atomic_path(contact_sheet_out, suffix=".png") as tmp:
            sheet.save(tmp, format="PNG", compress_level=1)
        summary["contact_sheet"] = str(contact_sheet_out)
    return summary
