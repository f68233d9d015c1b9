"""Synthetic face masks drawn procedurally from 68 dlib landmarks on an aligned face.

Landmarks are a ``(68, 2)`` float array of ``(x, y)`` pixel coordinates (0-based iBUG indexing:
jaw 0-16, brows 17-26, nose bridge 27-30, nose bottom 31-35, eyes 36-47, mouth 48-67) in the
frame of the image the mask is drawn on; integer coordinates are pixel centres, as dlib gives
them. No template images are used: every mask is a polygon built from the landmarks, so it
follows the face through roll, scale and any crop size.

Mask types (:data:`MASK_TYPES`):

- ``paper``: faithful to Seneviratne et al. (2021), "Does a Face Mask Protect my Privacy?": a
  flat white ``(255, 255, 255)`` polygon through jaw points 1..15 and the nose bridge point 27.
  Its edge is anti-aliased (supersampled coverage) instead of the original hard edge; pixels
  fully inside are exactly white and pixels fully outside are untouched.
- ``surgical``: a pleated surgical mask: from near the ears (jaw ~1.5 / ~14.5) along and a little
  below the jaw, up to the nose bridge (between points 28 and 29) with a gentle curve under the
  eyes; colour drawn from a small palette; three soft pleats that follow the mask's curvature;
  a slightly blurred edge; shading taken from the face's own low-frequency luminance (and a
  little darker towards the sides, where the mask turns away); thin ear loops from the side
  corners towards the ears.

A type is a :class:`MaskSpec` (outline builder, palette, edge softness, pleats, shading, texture,
ear loops) in ``_SPECS``; new types (``n95``, ``kn95``, ``cloth``) need an outline function and a
spec there, plus their name in :data:`MASK_TYPES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image, ImageDraw
from scipy import ndimage

MASK_TYPES: tuple[str, ...] = ("paper", "surgical")

# Landmark groups (0-based iBUG 68-point indexing).
JAW = tuple(range(0, 17))
NOSE_BRIDGE = tuple(range(27, 31))
NOSE_LOWER = tuple(range(30, 36))  # nose tip (30) and nose bottom (31-35)
EYES = tuple(range(36, 48))
MOUTH = tuple(range(48, 68))
CHIN = tuple(range(6, 11))
COVERED = NOSE_LOWER + MOUTH + CHIN  # landmarks a mask must cover

RGB = tuple[int, int, int]


# --------------------------------------------------------------------------------------------
# Face geometry


@dataclass(frozen=True)
class FaceGeometry:
    """Landmarks plus the face's own axes and scale, so shapes follow roll and size.

    Attributes:
        lm: the ``(68, 2)`` landmarks (float64).
        iod: inter-ocular distance (between the eye centres), the unit for sizes and offsets.
        ex: unit vector from the image-left eye to the image-right eye ("face right").
        ey: unit vector perpendicular to ``ex`` pointing down the face (towards the chin).
        centre: a point inside the face (mean of the nose and mouth landmarks).
    """

    lm: np.ndarray
    iod: float
    ex: np.ndarray
    ey: np.ndarray
    centre: np.ndarray

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
        return cls(landmarks, iod, ex, ey, centre)

    def jaw_offset(self, i: int, distance: float) -> np.ndarray:
        """Jaw point ``i`` (fractional allowed) moved ``distance`` px outward along the jaw normal."""
        jaw = self.lm[list(JAW)]
        lo = int(np.clip(np.floor(i), 0, 15))
        frac = i - lo
        p = (1 - frac) * jaw[lo] + frac * jaw[lo + 1]
        a, b = jaw[max(lo - 1, 0)], jaw[min(lo + 2, 16)]
        t = b - a
        n = np.array([-t[1], t[0]]) / max(float(np.hypot(*t)), 1e-9)
        if np.dot(n, p - self.centre) < 0:
            n = -n
        return p + distance * n


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


def _check_type(mask_type: str) -> MaskSpec:
    if mask_type not in _SPECS:
        raise ValueError(f"unknown mask_type {mask_type!r}; valid types: {', '.join(MASK_TYPES)}")
    return _SPECS[mask_type]


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"size: expected (width, height), got {size!r}") from exc
    if w < 1 or h < 1:
        raise ValueError(f"size: width and height must be positive, got {size!r}")
    return w, h


# --------------------------------------------------------------------------------------------
# Curves and rasterisation


def _catmull_rom(points: np.ndarray, samples_per_segment: int = 12) -> np.ndarray:
    """A centripetal Catmull-Rom spline through ``points`` (end points included)."""
    p = np.asarray(points, float)
    if len(p) < 3:
        return p
    ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out = [p[:1]]
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        t0 = 0.0
        t1 = t0 + max(float(np.hypot(*(p1 - p0))) ** 0.5, 1e-6)
        t2 = t1 + max(float(np.hypot(*(p2 - p1))) ** 0.5, 1e-6)
        t3 = t2 + max(float(np.hypot(*(p3 - p2))) ** 0.5, 1e-6)
        t = np.linspace(t1, t2, samples_per_segment + 1)[1:, None]
        a1 = (t1 - t) / (t1 - t0) * p0 + (t - t0) / (t1 - t0) * p1
        a2 = (t2 - t) / (t2 - t1) * p1 + (t - t1) / (t2 - t1) * p2
        a3 = (t3 - t) / (t3 - t2) * p2 + (t - t2) / (t3 - t2) * p3
        b1 = (t2 - t) / (t2 - t0) * a1 + (t - t0) / (t2 - t0) * a2
        b2 = (t3 - t) / (t3 - t1) * a2 + (t - t1) / (t3 - t1) * a3
        out.append((t2 - t) / (t2 - t1) * b1 + (t - t1) / (t2 - t1) * b2)
    return np.vstack(out)


def _resample(curve: np.ndarray, n: int) -> np.ndarray:
    """``n`` points evenly spaced by arc length along a polyline."""
    seg = np.hypot(*np.diff(curve, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    u = np.linspace(0.0, s[-1], n)
    return np.column_stack([np.interp(u, s, curve[:, 0]), np.interp(u, s, curve[:, 1])])


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int = 24) -> np.ndarray:
    """A quadratic Bezier curve from ``p0`` to ``p2`` with control point ``p1``."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _to_hires(points: np.ndarray, ss: int) -> list[tuple[float, float]]:
    # Pixel centres are integers in both frames: x_hi = (x + 0.5) * ss - 0.5.
    hi = (np.asarray(points, float) + 0.5) * ss - 0.5
    return [(float(x), float(y)) for x, y in hi]


def _raster(
    size: tuple[int, int], ss: int, draw: Callable[[ImageDraw.ImageDraw], None]
) -> np.ndarray:
    """Coverage in [0, 1] of whatever ``draw`` paints, by ``ss`` x ``ss`` supersampling.

    ``draw`` paints with fill 255 on a binary canvas ``ss`` times larger; the coverage of each
    output pixel is the exact fraction of its ``ss * ss`` sub-pixels painted (a box filter).
    """
    w, h = size
    canvas = Image.new("L", (w * ss, h * ss), 0)
    draw(ImageDraw.Draw(canvas))
    hi = np.asarray(canvas) > 127
    return hi.reshape(h, ss, w, ss).mean(axis=(1, 3), dtype=np.float64).astype(np.float32)


def _polygon_coverage(polygon: np.ndarray, size: tuple[int, int], ss: int) -> np.ndarray:
    pts = _to_hires(polygon, ss)
    return _raster(size, ss, lambda d: d.polygon(pts, fill=255))


def _polyline_coverage(
    lines: list[np.ndarray], width: float, size: tuple[int, int], ss: int
) -> np.ndarray:
    wpx = max(1, round(width * ss))

    def paint(d: ImageDraw.ImageDraw) -> None:
        for line in lines:
            d.line(_to_hires(line, ss), fill=255, width=wpx, joint="curve")

    return _raster(size, ss, paint)


# --------------------------------------------------------------------------------------------
# Outlines


def paper_outline(geom: FaceGeometry) -> np.ndarray:
    """Seneviratne et al.'s polygon: jaw points 1..15 then nose bridge point 27 (closed)."""
    return geom.lm[[*range(1, 16), 27]]


def _surgical_parts(geom: FaceGeometry) -> dict[str, np.ndarray]:
    """Top edge (left to right), lower edge (left to right along the jaw) and ear anchors."""
    lm, iod, ex, ey = geom.lm, geom.iod, geom.ex, geom.ey
    # Outward offset below the jaw: ~2% of the IOD at the sides, ~6% at the chin.
    idx = np.arange(2, 15)
    jaw = [
        geom.jaw_offset(int(i), iod * (0.02 + 0.04 * np.exp(-(((i - 8) / 2.5) ** 2)))) for i in idx
    ]
    corner_l = geom.jaw_offset(1.5, 0.04 * iod)
    corner_r = geom.jaw_offset(14.5, 0.04 * iod)
    lower = _catmull_rom(np.vstack([corner_l, *jaw, corner_r]))
    # Top: between nose points 28 and 29, and under each eye at ~45% of the nose-bridge length
    # below the lower lid; a smooth curve through them gives the gentle bump over the nose.
    nose_len = lm[30] - lm[27]
    top_mid = lm[28] + 0.4 * (lm[29] - lm[28])
    under_l = lm[[40, 41]].mean(axis=0) + 0.45 * nose_len
    under_r = lm[[46, 47]].mean(axis=0) + 0.45 * nose_len
    top = _catmull_rom(np.vstack([corner_l, under_l, top_mid, under_r, corner_r]))
    # Lower side corners, where the bottom ear loops attach (around jaw point 4 / 12).
    low_l = geom.jaw_offset(4.0, 0.03 * iod)
    low_r = geom.jaw_offset(12.0, 0.03 * iod)
    ear_l = lm[0] - 0.10 * iod * ex - 0.12 * iod * ey
    ear_r = lm[16] + 0.10 * iod * ex - 0.12 * iod * ey
    return {
        "top": top,
        "lower": lower,
        "bottom": _catmull_rom(np.vstack(jaw[2:11])),  # jaw 4..12, for the pleats
        "corners": np.vstack([corner_l, low_l, corner_r, low_r]),
        "ears": np.vstack([ear_l, ear_r]),
    }


def surgical_outline(geom: FaceGeometry) -> np.ndarray:
    """Closed outline of a surgical mask: along/below the jaw, then back over the nose bridge."""
    parts = _surgical_parts(geom)
    return np.vstack([parts["lower"], parts["top"][::-1][1:-1]])


def _surgical_pleats(geom: FaceGeometry, n: int) -> list[np.ndarray]:
    """``n`` pleat curves between the top edge and the chin, following both."""
    parts = _surgical_parts(geom)
    top = _resample(parts["top"], 64)
    bottom = _resample(parts["bottom"], 64)  # below the jaw from point 4 to point 12
    fracs = np.linspace(0.22, 0.62, n) if n > 1 else np.array([0.4])
    lines = []
    for f in fracs:
        line = (1 - f) * top + f * bottom
        # Trim the ends a little so a pleat fades out just inside the mask's sides.
        lines.append(line[3:-3])
    return lines


def _surgical_loops(geom: FaceGeometry) -> list[np.ndarray]:
    """Ear loops: from each side's top and lower corner, bowing out to a point by the ear."""
    parts = _surgical_parts(geom)
    c_l, low_l, c_r, low_r = parts["corners"]
    ear_l, ear_r = parts["ears"]
    iod, ex, ey = geom.iod, geom.ex, geom.ey
    return [
        _bezier(c_l, 0.5 * (c_l + ear_l) - 0.05 * iod * ey, ear_l),
        _bezier(low_l, 0.5 * (low_l + ear_l) - 0.18 * iod * ex, ear_l),
        _bezier(c_r, 0.5 * (c_r + ear_r) - 0.05 * iod * ey, ear_r),
        _bezier(low_r, 0.5 * (low_r + ear_r) + 0.18 * iod * ex, ear_r),
    ]


# --------------------------------------------------------------------------------------------
# Mask types


@dataclass(frozen=True)
class MaskSpec:
    """How one mask type is drawn.

    Attributes:
        outline: closed polygon of the mask body from the face geometry.
        palette: colour name -> RGB; one is drawn with the rng (or named by the caller).
        edge_sigma: Gaussian blur of the alpha edge, as a fraction of the IOD (0 = crisp).
        pleats: number of horizontal pleats (0 = none); ``pleat_curves`` must be set if > 0.
        pleat_curves: ``(geometry, n) -> n`` polylines along which pleats are drawn.
        shading: strength of the face-luminance shading (0 = flat colour).
        falloff: darkening towards the sides, where the mask turns away from the camera
            (fraction of the colour at the jaw line; 0 = none).
        texture: amplitude of a faint fabric noise (fraction of the colour; 0 = none).
        loops: ``geometry -> polylines`` of ear loops, or ``None``.
    """

    outline: Callable[[FaceGeometry], np.ndarray]
    palette: Mapping[str, RGB]
    edge_sigma: float = 0.0
    pleats: int = 0
    pleat_curves: Callable[[FaceGeometry, int], list[np.ndarray]] | None = None
    shading: float = 0.0
    falloff: float = 0.0
    texture: float = 0.0
    loops: Callable[[FaceGeometry], list[np.ndarray]] | None = None


SURGICAL_PALETTE: dict[str, RGB] = {
    "light_blue": (126, 184, 220),
    "white": (236, 238, 240),
    "black": (40, 40, 44),
    "pink": (238, 172, 194),
    "green": (122, 192, 164),
}

_SPECS: dict[str, MaskSpec] = {
    "paper": MaskSpec(outline=paper_outline, palette={"white": (255, 255, 255)}),
    "surgical": MaskSpec(
        outline=surgical_outline,
        palette=SURGICAL_PALETTE,
        edge_sigma=0.02,
        pleats=3,
        pleat_curves=_surgical_pleats,
        shading=1.0,
        falloff=0.18,
        texture=0.015,
        loops=_surgical_loops,
    ),
}
if tuple(_SPECS) != MASK_TYPES:  # pragma: no cover - a guard for whoever adds a type
    raise RuntimeError("masks: MASK_TYPES and _SPECS disagree")


def palette(mask_type: str) -> dict[str, str]:
    """Colour names of ``mask_type`` and their hex RGB (``#rrggbb``)."""
    return {k: _hex(v) for k, v in _check_type(mask_type).palette.items()}


def _hex(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


# --------------------------------------------------------------------------------------------
# Public API


def _body_alpha(spec: MaskSpec, geom: FaceGeometry, size: tuple[int, int], ss: int) -> np.ndarray:
    alpha = _polygon_coverage(spec.outline(geom), size, ss)
    if spec.edge_sigma > 0:
        alpha = ndimage.gaussian_filter(alpha, spec.edge_sigma * geom.iod, mode="nearest")
        alpha = np.clip(alpha, 0.0, 1.0, out=alpha)
    return alpha.astype(np.float32, copy=False)


def mask_alpha(
    landmarks: ArrayLike, size: tuple[int, int], mask_type: str, supersample: int = 4
) -> np.ndarray:
    """Anti-aliased coverage of the mask body: float32 ``(height, width)`` in [0, 1].

    Args:
        landmarks: ``(68, 2)`` ``(x, y)`` landmarks in the image frame.
        size: ``(width, height)`` of the image, as PIL's ``Image.size``.
        mask_type: one of :data:`MASK_TYPES`.
        supersample: the polygon is drawn at this many times the resolution and box-filtered
            down, so edge pixels hold their exact covered fraction (1 = hard edge).

    The type's soft edge (``surgical``) is included, so this is the alpha that
    :func:`draw_mask` composites; ear loops are not (they are straps, not coverage).
    """
    spec = _check_type(mask_type)
    lm = validate_landmarks(landmarks)
    size = _check_size(size)
    if int(supersample) != supersample or supersample < 1:
        raise ValueError(f"supersample must be a positive integer, got {supersample!r}")
    return _body_alpha(spec, FaceGeometry.from_landmarks(lm), size, int(supersample))


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114])


def _shading(grey: np.ndarray, alpha: np.ndarray, sigma: float, strength: float) -> np.ndarray:
    """Low-frequency face luminance under the mask, normalised to mean 1 over the mask.

    A normalised convolution (blur of ``grey * alpha`` over blur of ``alpha``) so the background
    around the mask does not leak in; clipped to [0.55, 1.45] to keep extremes plausible.
    """
    num = ndimage.gaussian_filter(grey * alpha, sigma, mode="nearest")
    den = ndimage.gaussian_filter(alpha.astype(np.float64), sigma, mode="nearest")
    low = num / np.maximum(den, 1e-6)
    weight = alpha.sum()
    mean = float((low * alpha).sum() / weight) if weight > 0 else 1.0
    s = low / max(mean, 1e-6)
    return np.clip(1.0 + strength * (s - 1.0), 0.55, 1.45)


def draw_mask(
    image: Image.Image,
    landmarks: ArrayLike,
    mask_type: str,
    rng: np.random.Generator,
    colour: str | None = None,
) -> tuple[Image.Image, dict[str, Any]]:
    """Draw a synthetic mask of ``mask_type`` on ``image``.

    Args:
        image: the (aligned) face; converted to RGB. Any size.
        landmarks: ``(68, 2)`` ``(x, y)`` landmarks in ``image``'s frame.
        mask_type: one of :data:`MASK_TYPES`.
        rng: draws the colour (when ``colour`` is None) and the fabric texture; the same seed
            gives the same image.
        colour: a colour name from the type's palette (see :func:`palette`), or None to draw one.

    Returns:
        ``(masked RGB image, {"mask_type", "colour" (name), "rgb" ("#rrggbb")})``.

    Raises:
        ValueError: unknown ``mask_type`` or colour, or landmarks not a finite ``(68, 2)`` array.
    """
    spec = _check_type(mask_type)
    lm = validate_landmarks(landmarks)
    names = list(spec.palette)
    if colour is None:
        name = names[int(rng.integers(len(names)))] if len(names) > 1 else names[0]
    elif colour in spec.palette:
        name = colour
    else:
        raise ValueError(
            f"colour {colour!r} is not in the {mask_type} palette; valid: {', '.join(names)}"
        )
    rgb = spec.palette[name]
    info = {"mask_type": mask_type, "colour": name, "rgb": _hex(rgb)}

    img = image.convert("RGB")
    size = img.size
    geom = FaceGeometry.from_landmarks(lm)
    ss = 4
    src = np.asarray(img, dtype=np.float64)
    out = src.copy()
    base = np.array(rgb, dtype=np.float64)

    if spec.loops is not None:
        loop_a = _polyline_coverage(spec.loops(geom), 0.025 * geom.iod, size, ss)
        if loop_a.any():
            loop_a = ndimage.gaussian_filter(loop_a, 0.3, mode="nearest")[..., None]
            loop_rgb = 0.55 * base + 0.45 * 235.0
            out = out * (1 - loop_a) + loop_rgb * loop_a

    alpha = _body_alpha(spec, geom, size, ss)
    if not alpha.any():
        return Image.fromarray(np.rint(out).clip(0, 255).astype(np.uint8)), info

    colour_map = np.broadcast_to(base, src.shape).copy()
    if spec.shading > 0:
        s = _shading(_luminance(src), alpha, 0.25 * geom.iod, spec.shading)
        colour_map *= s[..., None]
    if spec.falloff > 0:
        half_width = max(0.5 * float(np.hypot(*(lm[16] - lm[0]))), 1e-6)
        yy, xx = np.mgrid[0 : src.shape[0], 0 : src.shape[1]]
        u = ((xx - geom.centre[0]) * geom.ex[0] + (yy - geom.centre[1]) * geom.ex[1]) / half_width
        colour_map *= (1.0 - spec.falloff * np.minimum(u**2, 1.5))[..., None]
    if spec.pleats > 0 and spec.pleat_curves is not None:
        lines = spec.pleat_curves(geom, spec.pleats)
        shadow = _polyline_coverage(lines, 0.03 * geom.iod, size, ss)
        shadow = ndimage.gaussian_filter(shadow, 0.02 * geom.iod + 0.3, mode="nearest")
        # A light fold edge just above each shadow line gives the pleat relief.
        lift = [line - 0.045 * geom.iod * geom.ey for line in lines]
        light = _polyline_coverage(lift, 0.03 * geom.iod, size, ss)
        light = ndimage.gaussian_filter(light, 0.03 * geom.iod + 0.3, mode="nearest")
        colour_map *= (1.0 - 0.35 * shadow + 0.12 * light)[..., None]
    if spec.texture > 0:
        noise = ndimage.gaussian_filter(rng.standard_normal(alpha.shape), 0.6, mode="nearest")
        noise /= max(float(noise.std()), 1e-9)
        colour_map *= (1.0 + spec.texture * noise)[..., None]
    a = alpha.astype(np.float64)[..., None]
    out = out * (1 - a) + np.clip(colour_map, 0, 255) * a
    return Image.fromarray(np.rint(out).clip(0, 255).astype(np.uint8)), info


def _bilinear(alpha: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Alpha at sub-pixel points (pixel centres at integers; 0 outside the image)."""
    return ndimage.map_coordinates(
        alpha.astype(np.float64), [pts[:, 1], pts[:, 0]], order=1, mode="constant", cval=0.0
    )


def coverage_check(
    landmarks: ArrayLike, alpha: np.ndarray, threshold: float = 0.5
) -> dict[str, Any]:
    """Does ``alpha`` cover the nose, mouth and chin and leave the eyes clear?

    Covered landmarks (nose tip and bottom 30-35, mouth 48-67, chin 6-10) count when the alpha
    *near* them reaches ``threshold``: the maximum of bilinear samples at the point and on two
    rings of radius ``r`` and ``r / 2`` around it, with ``r = max(1 px, 1% of the face width)``
    (face width = distance between jaw points 0 and 16). This is a dilation by ``r``, so points
    lying on the mask's edge (``paper``'s chin points 6-10 are polygon vertices) count as
    covered, while a mask that misses the mouth by more than ``r`` fails.

    Eye landmarks (36-47) are sampled *at the point* (bilinear, no dilation), and every one must
    be below ``threshold``: the paper polygon passes only a few pixels under the inner eye
    corners, so dilating there would fail faithful masks at small sizes.

    Returns:
        ``{"ok": all covered and eyes clear, "covered_fraction": share of covered landmarks
        that count as covered, "eyes_clear": bool}``.
    """
    lm = validate_landmarks(landmarks)
    alpha = np.asarray(alpha)
    if alpha.ndim != 2:
        raise ValueError(f"alpha: expected a 2-D (height, width) array, got shape {alpha.shape}")
    face_width = float(np.hypot(*(lm[16] - lm[0])))
    r = max(1.0, 0.01 * face_width)
    ang = np.linspace(0.0, 2 * np.pi, 16, endpoint=False)
    ring = np.column_stack([np.cos(ang), np.sin(ang)])
    offsets = np.vstack([[0.0, 0.0], r * ring, 0.5 * r * ring])
    cov_pts = lm[list(COVERED)]
    samples = _bilinear(alpha, (cov_pts[:, None, :] + offsets[None]).reshape(-1, 2))
    covered = samples.reshape(len(cov_pts), len(offsets)).max(axis=1) >= threshold
    eyes = _bilinear(alpha, lm[list(EYES)])
    eyes_clear = bool((eyes < threshold).all())
    frac = float(covered.mean())
    return {
        "ok": bool(covered.all() and eyes_clear),
        "covered_fraction": frac,
        "eyes_clear": eyes_clear,
    }


# ---------------------------------------------------------------- the ``mask`` stage


def image_rng(seed: int, name: str) -> np.random.Generator:
    """A generator per image, from the stage seed and the file name (order-free, repeatable)."""
    import hashlib

    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def choose_type(types: dict[str, float], rng: np.random.Generator) -> str:
    """One mask type drawn with the given weights (a single type is always chosen)."""
    names = sorted(types)
    for name in names:
        _check_type(name)
    weights = np.array([types[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def _mask_one(args: tuple[str, str, np.ndarray, dict]) -> dict:
    src, out_dir, landmarks, cfg = args
    from pathlib import Path

    name = Path(src).name
    try:
        with Image.open(src) as im:
            image = im.convert("RGB")
        rng = image_rng(int(cfg["seed"]), name)
        mask_type = choose_type(cfg["types"], rng)
        masked, info = draw_mask(image, landmarks, mask_type, rng)
        alpha = mask_alpha(landmarks, image.size, mask_type)
        check = coverage_check(landmarks, alpha)
        masked.save(Path(out_dir) / name, quality=int(cfg["jpeg_quality"]))
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
        "mask_type": info["mask_type"],
        "colour": info["colour"],
        "rgb": info["rgb"],
        "geometry_ok": bool(check["ok"]),
        "covered_fraction": float(check["covered_fraction"]),
        "eyes_clear": bool(check["eyes_clear"]),
    }


def run(
    cfg: dict,
    images_in,
    landmarks_table,
    images_out,
    masks_out,
    rejects_out,
    threads: int = 1,
    progress: bool = True,
) -> dict:
    """Mask every aligned face; each ends in the masks table or in rejects with a reason."""
    import multiprocessing as mp
    from pathlib import Path

    import pandas as pd
    from tqdm import tqdm

    from .align import landmarks_array
    from .io import atomic_dir, read_table, rejects_frame, write_table

    table = read_table(landmarks_table)
    lms = landmarks_array(table)
    rows: list[dict] = []
    with atomic_dir(images_out) as tmp:
        jobs = [
            (str(Path(images_in) / f), str(tmp), lm, cfg)
            for f, lm in zip(table["file"], lms, strict=True)
        ]
        bar = tqdm(total=len(jobs), desc="mask", unit="img", disable=not progress)
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
    cols = ["file", "mask_type", "colour", "rgb", "geometry_ok", "covered_fraction", "eyes_clear"]
    masks = pd.DataFrame([{k: r[k] for k in cols} for r in ok], columns=cols).sort_values(
        "file", kind="stable"
    )
    rejects = rejects_frame(
        [
            {"file": r["file"], "stage": "mask", "reason": r["reason"], "detail": r["detail"]}
            for r in rows
            if not r["ok"]
        ]
    )
    write_table(masks_out, masks)
    write_table(rejects_out, rejects)
    return {
        "n_inputs": len(table),
        "n_masked": len(masks),
        "n_rejects": len(rejects),
        "types": masks["mask_type"].value_counts().to_dict(),
        "geometry_pass_fraction": float(masks["geometry_ok"].mean()) if len(masks) else None,
        "rejects_by_reason": rejects["reason"].value_counts().to_dict(),
    }
