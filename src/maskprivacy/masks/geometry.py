"""Face geometry for masks: landmark groups, :class:`FaceGeometry` (eye line, jaw, yaw, roll from
the 68 landmarks), curves, :class:`Box` (rasterising inside a bounding box) and each mask type's
outline and parts (:func:`paper_polygon`, :func:`surgical_parts`, ...). No colour, no image."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image, ImageDraw

MASK_TYPES: tuple[str, ...] = ("paper", "surgical", "n95", "kn95", "cloth")
TEXTURES: tuple[str, ...] = ("solid", "stripes", "check", "dots", "noise")

# Landmark groups (0-based iBUG 68-point indexing).
NOSE_BRIDGE = tuple(range(27, 31))
NOSE_LOWER = tuple(range(30, 36))  # nose tip (30) and nose bottom (31-35)
EYES = tuple(range(36, 48))
MOUTH = tuple(range(48, 68))
CHIN = tuple(range(6, 11))
COVERED = NOSE_LOWER + MOUTH + CHIN  # landmarks a mask must cover


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


def check_size(size: tuple[int, int]) -> tuple[int, int]:
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


def surgical_parts(geom: FaceGeometry) -> Parts:
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


def n95_parts(geom: FaceGeometry) -> Parts:
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


def kn95_parts(geom: FaceGeometry) -> Parts:
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


def cloth_parts(geom: FaceGeometry) -> Parts:
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
