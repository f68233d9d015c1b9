"""Synthetic face masks drawn procedurally from 68 dlib landmarks on an aligned face: each type's
spec (palette, edge, shading), the painting helpers and painters, :func:`render` and
:func:`draw_mask`. The shapes come from :mod:`maskprivacy.masks.geometry`.

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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image
from scipy import ndimage

from maskprivacy.masks.choice import choose, normalise_choice
from maskprivacy.masks.geometry import (
    MASK_TYPES,
    TEXTURES,
    Box,
    FaceGeometry,
    Parts,
    check_size,
    cloth_parts,
    kn95_parts,
    n95_parts,
    paper_polygon,
    surgical_parts,
    validate_landmarks,
)

RGB = tuple[int, int, int]


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
        parts=surgical_parts,
        palette=SURGICAL_PALETTE,
        edge_sigma=0.02,
        shading=1.0,
        falloff=0.18,
        noise=0.015,
        texture="pleated",
    ),
    "n95": MaskSpec(
        parts=n95_parts,
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
        parts=kn95_parts,
        palette=KN95_PALETTE,
        edge_sigma=0.015,
        shading=1.0,
        falloff=0.15,
        noise=0.012,
        texture="folded",
    ),
    "cloth": MaskSpec(
        parts=cloth_parts,
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
    w, h = check_size(size)
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
