"""Tests for maskprivacy.masks and the mask stage on a real aligned face (dlib on matplotlib's Grace Hopper)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from maskprivacy.faces.align import apply_affine, similarity_from_eyes, warp
from maskprivacy.masks import apply, check, choice, geometry, paint
from maskprivacy.stages import mask as mask_stage
from maskprivacy.stages.entry import Compute, Files, StageConfig

ALIGNED = 224


@pytest.fixture(scope="module")
def face() -> tuple[Image.Image, np.ndarray]:
    """Grace Hopper aligned to 224 x 224 (eyes at fixed places) and her 68 landmarks there."""
    import dlib
    import matplotlib.cbook

    from maskprivacy.faces.detect import PREDICTOR_NAME
    from maskprivacy.faces.model_files import model_file

    model = model_file(PREDICTOR_NAME, "align.predictor")
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        image = Image.open(f).convert("RGB")
    rgb = np.asarray(image)
    rects = dlib.get_frontal_face_detector()(rgb, 0)
    assert len(rects) == 1
    shape = dlib.shape_predictor(str(model))(rgb, rects[0])
    pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    matrix = similarity_from_eyes(pts[36:42].mean(0), pts[42:48].mean(0), ALIGNED)
    return warp(image, matrix, ALIGNED), apply_affine(matrix, pts)


def rotated(image: Image.Image, lm: np.ndarray, degrees: float) -> tuple[Image.Image, np.ndarray]:
    """Roll the face by ``degrees`` (clockwise on screen) about the image centre."""
    c = (np.array(image.size, float) - 1) / 2
    th = np.deg2rad(degrees)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    out = image.rotate(-degrees, resample=Image.Resampling.BILINEAR, center=tuple(c))
    return out, (lm - c) @ rot.T + c


def scaled(image: Image.Image, lm: np.ndarray, size: int) -> tuple[Image.Image, np.ndarray]:
    """The face resized to ``size`` x ``size`` (pixel centres kept consistent)."""
    k = size / image.size[0]
    out = image.resize((size, size), Image.Resampling.BILINEAR)
    return out, (lm + 0.5) * k - 0.5


def variant(face, degrees: float, size: int) -> tuple[Image.Image, np.ndarray]:
    return scaled(*rotated(*face, degrees), size)


def face_height(lm: np.ndarray) -> float:
    return float(np.hypot(*(lm[8] - lm[27])))


# --------------------------------------------------------------------------------------------
# mask_alpha and coverage


def test_mask_types() -> None:
    assert geometry.MASK_TYPES == ("paper", "surgical", "n95", "kn95", "cloth")
    assert geometry.TEXTURES == ("solid", "stripes", "check", "dots", "noise")
    for t in geometry.MASK_TYPES:
        assert paint.palette(t)


@pytest.mark.parametrize("mask_type", geometry.MASK_TYPES)
def test_alpha_shape_range(face, mask_type: str) -> None:
    _, lm = face
    alpha = paint.mask_alpha(lm, (240, 200), mask_type)  # (width, height)
    assert alpha.shape == (200, 240)
    assert alpha.dtype == np.float32
    assert alpha.min() == 0.0 and alpha.max() == 1.0
    # Anti-aliased: some edge pixels are partly covered.
    assert ((alpha > 0.05) & (alpha < 0.95)).sum() > 20
    hard = paint.mask_alpha(lm, (240, 200), mask_type, supersample=1)
    if mask_type == "paper":
        assert set(np.unique(hard).tolist()) <= {0.0, 1.0}
    assert abs(float(hard.sum() - alpha.sum())) < 0.03 * float(alpha.sum())


@pytest.mark.parametrize("size", [64, 224])
@pytest.mark.parametrize("degrees", [-15.0, 0.0, 15.0])
@pytest.mark.parametrize("mask_type", geometry.MASK_TYPES)
def test_coverage_ok(face, mask_type: str, degrees: float, size: int) -> None:
    image, lm = variant(face, degrees, size)
    alpha = paint.mask_alpha(lm, image.size, mask_type)
    res = check.coverage_check(lm, alpha)
    assert res == {"ok": True, "covered_fraction": 1.0, "eyes_clear": True}


@pytest.mark.parametrize("degrees", [-15.0, 15.0])
@pytest.mark.parametrize("mask_type", geometry.MASK_TYPES)
def test_shifted_up_covers_eyes(face, mask_type: str, degrees: float) -> None:
    image, lm = variant(face, degrees, ALIGNED)
    up = lm - np.array([0.0, 0.4 * face_height(lm)])
    res = check.coverage_check(lm, paint.mask_alpha(up, image.size, mask_type))
    assert not res["eyes_clear"]
    assert not res["ok"]


@pytest.mark.parametrize("mask_type", geometry.MASK_TYPES)
def test_shifted_down_misses_nose(face, mask_type: str) -> None:
    image, lm = face
    down = lm + np.array([0.0, 0.4 * face_height(lm)])
    res = check.coverage_check(lm, paint.mask_alpha(down, image.size, mask_type))
    assert res["eyes_clear"]
    assert not res["ok"]
    assert res["covered_fraction"] < 1.0


@pytest.mark.parametrize("mask_type", geometry.MASK_TYPES)
def test_mask_with_mouth_hole_fails(face, mask_type: str) -> None:
    image, lm = face
    alpha = paint.mask_alpha(lm, image.size, mask_type)
    # a hole wider than the check's tolerance on every side of the mouth
    iod = float(np.hypot(*(lm[42:48].mean(0) - lm[36:42].mean(0))))
    m = int(np.ceil(check.CHECK_TOLERANCE * iod)) + 2
    x0, y0 = np.floor(lm[48:68].min(0)).astype(int) - m
    x1, y1 = np.ceil(lm[48:68].max(0)).astype(int) + m
    alpha[y0:y1, x0:x1] = 0.0
    res = check.coverage_check(lm, alpha)
    assert not res["ok"]
    assert res["eyes_clear"]
    assert res["covered_fraction"] == pytest.approx(1 - 20 / 31)


def test_coverage_empty_and_full(face) -> None:
    image, lm = face
    w, h = image.size
    assert check.coverage_check(lm, np.zeros((h, w)))["covered_fraction"] == 0.0
    full = check.coverage_check(lm, np.ones((h, w)))
    assert full["covered_fraction"] == 1.0 and not full["eyes_clear"] and not full["ok"]


# --------------------------------------------------------------------------------------------
# draw_mask: paper


@pytest.mark.parametrize("degrees", [0.0, 15.0])
def test_paper_is_exact_white_polygon(face, degrees: float) -> None:
    image, lm = variant(face, degrees, ALIGNED)
    out, info = paint.draw_mask(image, lm, "paper", np.random.default_rng(0))
    assert {k: info[k] for k in ("mask_type", "colour", "rgb", "texture")} == {
        "mask_type": "paper",
        "colour": "white",
        "rgb": "#ffffff",
        "texture": "flat",
    }
    assert out.size == image.size and out.mode == "RGB"
    # The authors' polygon, rasterised independently.
    from matplotlib.path import Path as MplPath

    w, h = image.size
    yy, xx = np.mgrid[0:h, 0:w]
    corners = [[lm[42, 0], lm[15, 1]], lm[27], [lm[39, 0], lm[1, 1]]]
    poly = MplPath(np.vstack([lm[1:16], corners]))
    inside = poly.contains_points(np.column_stack([xx.ravel(), yy.ravel()])).reshape(h, w)
    deep = ndimage.binary_erosion(inside, iterations=2)
    far = ~ndimage.binary_dilation(inside, iterations=2)
    o, src = np.asarray(out), np.asarray(image)
    assert deep.sum() > 0.12 * w * h
    assert (o[deep] == 255).all()
    np.testing.assert_array_equal(o[far], src[far])


# Grace Hopper's 68 landmarks in the 224 px aligned crop, rounded (a fixed set: no dlib needed).
HOPPER = np.array(
    [
        [47, 91], [49, 109], [52, 126], [54, 143], [60, 159], [69, 172], [81, 182], [96, 190],
        [113, 193], [130, 191], [147, 184], [161, 174], [173, 163], [181, 148], [185, 130],
        [188, 112], [189, 93], [52, 76], [59, 64], [71, 60], [85, 63], [95, 69], [125, 69],
        [137, 62], [151, 61], [165, 65], [173, 76], [110, 87], [110, 98], [110, 110], [110, 123],
        [93, 128], [101, 131], [110, 134], [119, 132], [126, 130], [67, 90], [74, 85], [82, 85],
        [91, 91], [83, 93], [74, 93], [133, 91], [141, 86], [150, 86], [158, 89], [151, 93],
        [142, 93], [83, 151], [92, 149], [101, 148], [108, 150], [115, 148], [127, 150],
        [140, 150], [127, 160], [116, 162], [108, 163], [102, 162], [92, 159], [87, 151],
        [101, 154], [108, 154], [115, 154], [135, 151], [115, 154], [109, 154], [101, 154],
    ],
    dtype=float,
)  # fmt: skip

# By hand from HOPPER: jaw points 1..15; (x of 42, y of 15) = (133, 112); point 27 = (110, 87);
# (x of 39, y of 1) = (91, 109).
PAPER_VERTICES = [
    (49, 109), (52, 126), (54, 143), (60, 159), (69, 172), (81, 182), (96, 190), (113, 193),
    (130, 191), (147, 184), (161, 174), (173, 163), (181, 148), (185, 130), (188, 112),
    (133, 112), (110, 87), (91, 109),
]  # fmt: skip


def test_paper_polygon_is_the_authors_vertices() -> None:
    geom = geometry.FaceGeometry.from_landmarks(HOPPER)
    np.testing.assert_array_equal(geometry.paper_polygon(geom), np.array(PAPER_VERTICES, float))
    assert not hasattr(geometry, "paper_outline")  # the old polygon (15 -> 27 -> 1) is gone


def _run_mask(cfg: dict, aligned: Path, landmarks: Path, out: Path, threads: int = 1) -> dict:
    """The mask stage as its rule runs it, outputs under ``out``: ``cfg``'s ``types`` are the
    job's mask set (named ``test``), the rest its params."""
    import logging

    config = StageConfig(
        params={k: v for k, v in cfg.items() if k != "types"},
        extra={"maskset": {"test": cfg["types"]}},
        wildcards={"maskset": "test", "shard": "0"},
        compute=Compute(threads=threads),
    )
    return mask_stage.run(
        config,
        Files(images=aligned / "images", landmarks=landmarks),
        Files(
            images=out / "images",
            masks=out / "masks.csv",
            rejects=out / "rejects.csv",
            sheet=out / "sheet.png",
        ),
        logging.getLogger("test"),
    )


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_paper_mask_is_a_fill_of_those_vertices() -> None:
    """The rendered mask agrees with a plain PIL fill of the vertices (up to anti-aliasing)."""
    size = (224, 224)
    image = Image.new("RGB", size, (0, 0, 0))
    out, _ = paint.draw_mask(image, HOPPER, "paper", np.random.default_rng(0))
    white = np.asarray(out).min(axis=2) >= 128  # the mask covers at least half the pixel

    def fill(vertices) -> np.ndarray:
        ref = Image.new("L", size, 0)
        ImageDraw.Draw(ref).polygon([tuple(map(float, v)) for v in vertices], fill=255)
        return np.asarray(ref) > 0

    assert white.sum() > 8000
    assert _iou(white, fill(PAPER_VERTICES)) > 0.98
    # the bound tells the polygons apart: jaw 1..15 then straight to 27 (the old outline)
    assert _iou(white, fill([*PAPER_VERTICES[:15], (110, 87)])) < 0.95
    # and the cheeks under the eyes stay visible: nothing above the corners' height is masked
    # outside the nose-bridge triangle between the inner eye corners
    rows = np.asarray(out)[: 109 - 1, :, 0]
    assert rows[:, :91].max() == 0 and rows[:, 134:].max() == 0


def test_paper_leaves_the_eyes_and_lower_lids_clear() -> None:
    """The geometry check passes the authors' polygon on the fixed face, with room above it."""
    alpha = paint.mask_alpha(HOPPER, (224, 224), "paper")
    assert check.coverage_check(HOPPER, alpha) == {
        "ok": True,
        "covered_fraction": 1.0,
        "eyes_clear": True,
    }
    # lower eyelids (40, 41, 46, 47) at y 93; the cheek edge at y 109-112: no mask within
    # 0.2 eye distances under them
    iod = float(np.hypot(*(HOPPER[42:48].mean(0) - HOPPER[36:42].mean(0))))
    for i in (40, 41, 46, 47):
        x, y = HOPPER[i].astype(int)
        assert alpha[y : int(y + 0.2 * iod) + 1, x].max() == 0.0, i


def test_check_flags_the_authors_polygon_where_it_reaches_an_eye() -> None:
    """Where jaw point 15 sits at eye height (a tilted head), the authors' cheek edge crosses the
    eye: the polygon is drawn as they drew it, and the geometry check says the eye is covered."""
    lm = HOPPER.copy()
    lm[15, 1] = lm[[43, 44], 1].min() - 2  # above the image-right eye's upper lid
    assert check.coverage_check(HOPPER, paint.mask_alpha(HOPPER, (224, 224), "paper"))["ok"]
    alpha = paint.mask_alpha(lm, (224, 224), "paper")
    assert geometry.paper_polygon(geometry.FaceGeometry.from_landmarks(lm))[15, 1] == lm[15, 1]
    res = check.coverage_check(lm, alpha)
    assert res["covered_fraction"] == 1.0 and not res["eyes_clear"] and not res["ok"]


def test_paper_rejects_other_colour(face) -> None:
    image, lm = face
    with pytest.raises(ValueError, match="white"):
        paint.draw_mask(image, lm, "paper", np.random.default_rng(0), colour="pink")


# --------------------------------------------------------------------------------------------
# draw_mask: surgical


def luminance(arr: np.ndarray) -> np.ndarray:
    return np.asarray(arr, float) @ np.array([0.299, 0.587, 0.114])


@pytest.mark.parametrize("colour", ["light_blue", "white", "black"])
def test_surgical_not_flat(face, colour: str) -> None:
    image, lm = face
    out, info = paint.draw_mask(image, lm, "surgical", np.random.default_rng(0), colour=colour)
    assert info["colour"] == colour and info["rgb"] == paint.palette("surgical")[colour]
    body = paint.mask_alpha(lm, image.size, "surgical") > 0.99
    lum = luminance(np.asarray(out))[body]
    assert lum.std() > (2.0 if colour == "black" else 6.0)
    # Still the chosen colour on average.
    rgb = np.array([int(info["rgb"][i : i + 2], 16) for i in (1, 3, 5)], float)
    mean = np.asarray(out, float)[body].mean(0)
    assert np.abs(mean - rgb).max() < 40


def test_surgical_shading_follows_face(face) -> None:
    _, lm = face
    mid = lm[27:31, 0].mean()
    flat = np.full((ALIGNED, ALIGNED, 3), 160, np.uint8)
    half = flat.copy()
    half[:, : int(mid)] = 80  # the image-left half of the face is in shadow
    body = paint.mask_alpha(lm, (ALIGNED, ALIGNED), "surgical") > 0.99
    xx = np.arange(ALIGNED)[None, :].repeat(ALIGNED, 0)
    left, right = body & (xx < mid - 20), body & (xx > mid + 20)

    def halves(arr: np.ndarray) -> tuple[float, float]:
        out, _ = paint.draw_mask(
            Image.fromarray(arr), lm, "surgical", np.random.default_rng(0), colour="white"
        )
        lum = luminance(np.asarray(out))
        return float(lum[left].mean()), float(lum[right].mean())

    fl, fr = halves(flat)
    hl, hr = halves(half)
    assert abs(fl - fr) < 10  # evenly lit face: evenly lit mask
    assert hr - hl > 30  # darker face half: darker mask half
    assert hl < fl - 15


def test_surgical_has_pleats(face) -> None:
    _, lm = face
    grey = Image.new("RGB", (ALIGNED, ALIGNED), (160, 160, 160))
    out, _ = paint.draw_mask(grey, lm, "surgical", np.random.default_rng(0), colour="white")
    lum = ndimage.uniform_filter1d(luminance(np.asarray(out)), 9, axis=1)  # smooth the texture
    # Vertical profile through the cheek under the image-left eye, inside the mask body.
    x = int(round(lm[[36, 39], 0].mean()))
    body = paint.mask_alpha(lm, (ALIGNED, ALIGNED), "surgical")[:, x] > 0.99
    ys = np.flatnonzero(body)
    prof = lum[ys[0] + 2 : ys[-1] - 2, x]
    baseline = ndimage.median_filter(prof, 15, mode="nearest")
    dips = ndimage.label(prof < baseline - 8)[1]
    assert dips == 3


def test_surgical_ear_loops_outside_body(face) -> None:
    image, lm = face
    alpha = paint.mask_alpha(lm, image.size, "surgical")
    outside = ~ndimage.binary_dilation(alpha > 0.001, iterations=2)
    src = np.asarray(image)
    surgical = np.asarray(paint.draw_mask(image, lm, "surgical", np.random.default_rng(0))[0])
    paper = np.asarray(paint.draw_mask(image, lm, "paper", np.random.default_rng(0))[0])
    paper_outside = ~ndimage.binary_dilation(
        paint.mask_alpha(lm, image.size, "paper") > 0, iterations=1
    )
    assert (paper[paper_outside] == src[paper_outside]).all()
    changed = (surgical != src).any(axis=2) & outside
    assert changed.sum() > 50  # the loops
    ys, xs = np.nonzero(changed)
    # ... beside the face, towards the ears, not over the eyes.
    eyes_top = lm[36:48, 1].min()
    assert ((xs < lm[36, 0]) | (xs > lm[45, 0])).all()
    assert ys.min() < lm[1, 1] and (ys > eyes_top - 0.2 * face_height(lm)).all()


# --------------------------------------------------------------------------------------------
# Reproducibility and errors


@pytest.mark.parametrize("mask_type", geometry.MASK_TYPES)
def test_seeded_rng_reproducible(face, mask_type: str) -> None:
    image, lm = face
    a, ia = paint.draw_mask(image, lm, mask_type, np.random.default_rng(42))
    b, ib = paint.draw_mask(image, lm, mask_type, np.random.default_rng(42))
    assert ia == ib
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_seeds_vary_colour(face) -> None:
    image, lm = scaled(*face, 64)
    colours = {
        paint.draw_mask(image, lm, "surgical", np.random.default_rng(seed))[1]["colour"]
        for seed in range(12)
    }
    assert len(colours) >= 3
    assert colours <= set(paint.palette("surgical"))


def test_unknown_type(face) -> None:
    image, lm = face
    with pytest.raises(ValueError, match="paper, surgical, n95, kn95, cloth"):
        paint.draw_mask(image, lm, "balaclava", np.random.default_rng(0))
    with pytest.raises(ValueError, match="valid types"):
        paint.mask_alpha(lm, image.size, "visor")


def test_unknown_colour(face) -> None:
    image, lm = face
    with pytest.raises(ValueError, match="light_blue"):
        paint.draw_mask(image, lm, "surgical", np.random.default_rng(0), colour="purple")


def _bad(lm: np.ndarray) -> list[object]:
    nan, inf = lm.copy(), lm.copy()
    nan[30, 0] = np.nan
    inf[8, 1] = np.inf
    return [nan, inf, lm[:67], np.hstack([lm, lm[:, :1]]), lm.ravel(), [["a", "b"]] * 68]


def test_bad_landmarks_raise(face) -> None:
    image, lm = face
    alpha = np.zeros((image.size[1], image.size[0]), np.float32)
    for bad in _bad(lm):
        with pytest.raises(ValueError, match="landmarks"):
            paint.draw_mask(image, bad, "surgical", np.random.default_rng(0))
        with pytest.raises(ValueError, match="landmarks"):
            paint.mask_alpha(bad, image.size, "paper")
        with pytest.raises(ValueError, match="landmarks"):
            check.coverage_check(bad, alpha)
    eyes = lm.copy()
    eyes[36:48] = eyes[36]  # both eyes in one place: no face scale
    with pytest.raises(ValueError, match="eye"):
        paint.draw_mask(image, eyes, "paper", np.random.default_rng(0))


def test_bad_arguments(face) -> None:
    image, lm = face
    with pytest.raises(ValueError):
        paint.mask_alpha(lm, (0, 10), "paper")
    with pytest.raises(ValueError):
        paint.mask_alpha(lm, image.size, "paper", supersample=0)
    with pytest.raises(ValueError):
        check.coverage_check(lm, np.zeros((10, 10, 3)))


# --------------------------------------------------------------------------------------------
# Yaw, roll, textures


def yawed(lm: np.ndarray, squeeze: float) -> np.ndarray:
    """The image-left half of the face squeezed towards the nose line (a head turned away)."""
    out = lm.copy()
    mid = lm[27:31, 0].mean()
    left = out[:, 0] < mid
    out[left, 0] = mid + squeeze * (out[left, 0] - mid)
    return out


@pytest.mark.parametrize("mask_type", geometry.MASK_TYPES)
def test_outline_follows_yaw(face, mask_type: str) -> None:
    image, lm = face
    turned = yawed(lm, 0.6)
    geom = geometry.FaceGeometry.from_landmarks(turned)
    assert geom.yaw > geometry.FaceGeometry.from_landmarks(lm).yaw + 0.15  # she turns a little
    # the outline's image-left edge moves in with the squeezed jaw; the right edge stays
    before, after = paint.outline(lm, mask_type), paint.outline(turned, mask_type)
    assert after[:, 0].min() > before[:, 0].min() + 5
    assert abs(after[:, 0].max() - before[:, 0].max()) < 2
    res = check.coverage_check(turned, paint.mask_alpha(turned, image.size, mask_type))
    assert res["ok"], res


@pytest.mark.parametrize("mask_type", ["surgical", "n95", "kn95", "cloth"])
def test_side_turned_away_is_darker(face, mask_type: str) -> None:
    _, lm = face
    turned = yawed(lm, 0.6)  # image-left side turned away
    grey = Image.new("RGB", (ALIGNED, ALIGNED), (160, 160, 160))
    out, _ = paint.draw_mask(grey, turned, mask_type, np.random.default_rng(0), colour=None)
    lum = luminance(np.asarray(out))
    body = paint.mask_alpha(turned, (ALIGNED, ALIGNED), mask_type) > 0.99
    xx = np.arange(ALIGNED)[None, :].repeat(ALIGNED, 0)
    nose = turned[30, 0]
    left = body & (xx < nose - 0.5 * (nose - turned[2, 0]))
    right = body & (xx > nose + 0.5 * (turned[14, 0] - nose))
    assert lum[left].mean() < lum[right].mean() - 3


def test_far_ear_loop_hidden(face) -> None:
    image, lm = face
    turned = yawed(lm, 0.35)
    assert geometry.FaceGeometry.from_landmarks(turned).yaw > 0.35
    src = np.asarray(image)
    out = np.asarray(paint.draw_mask(image, turned, "surgical", np.random.default_rng(0))[0])
    outside = ~ndimage.binary_dilation(
        paint.mask_alpha(turned, image.size, "surgical") > 0.001, iterations=2
    )
    changed = (out != src).any(axis=2) & outside
    xs = np.nonzero(changed)[1]
    assert (xs > turned[30, 0]).all()  # only the loop on the image-right (visible) side
    assert changed.sum() > 20


@pytest.mark.parametrize("mask_type", geometry.MASK_TYPES)
def test_outline_follows_roll(face, mask_type: str) -> None:
    image, lm = face
    _, rolled = rotated(image, lm, 20.0)
    c = (np.array(image.size, float) - 1) / 2
    th = np.deg2rad(20.0)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    got, want = paint.outline(rolled, mask_type), (paint.outline(lm, mask_type) - c) @ rot.T + c
    if mask_type == "paper":
        # the authors' polygon: its landmark vertices (jaw 1..15, 27) roll with the face; its two
        # corners take x and y from different landmarks in image axes, as their code does
        landmark_vertices = [*range(15), 16]
        np.testing.assert_allclose(got[landmark_vertices], want[landmark_vertices], atol=1e-6)
        np.testing.assert_allclose(got[15], [rolled[42, 0], rolled[15, 1]])
        np.testing.assert_allclose(got[17], [rolled[39, 0], rolled[1, 1]])
        return
    # the outline of the rolled face is the rolled outline (shapes live in the face's frame)
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("texture", geometry.TEXTURES)
def test_cloth_textures(face, texture: str) -> None:
    image, lm = face
    out, info = paint.draw_mask(image, lm, "cloth", np.random.default_rng(1), "navy", texture)
    assert info["texture"] == texture and info["colour"] == "navy"
    body = paint.mask_alpha(lm, image.size, "cloth") > 0.99
    lum = luminance(np.asarray(out))[body]
    if texture == "solid":
        assert np.percentile(lum, 95) < 110  # navy, with shading only
    else:
        assert np.percentile(lum, 95) > 150  # the light accent shows
    assert lum.std() > 4


def test_cloth_texture_choices(face) -> None:
    image, lm = scaled(*face, 64)
    drawn = [
        paint.render(image, lm, "cloth", np.random.default_rng(s), textures=["dots", "check"])
        for s in range(20)
    ]
    assert {r.info["texture"] for r in drawn} == {"dots", "check"}
    with pytest.raises(ValueError, match="texture"):
        paint.draw_mask(image, lm, "cloth", np.random.default_rng(0), texture="tartan")
    # other types record their own fixed texture
    assert paint.draw_mask(image, lm, "kn95", np.random.default_rng(0))[1]["texture"] == "folded"


def test_type_choice_forms() -> None:
    rng = np.random.default_rng(0)
    assert choice.choose_type("n95", rng) == "n95"
    assert choice.normalise_choice(["paper", "cloth"], geometry.MASK_TYPES, "mask.types") == {
        "paper": 1.0,
        "cloth": 1.0,
    }
    draws = [choice.choose_type({"paper": 3.0, "kn95": 1.0}, rng) for _ in range(2000)]
    assert 0.70 < draws.count("paper") / 2000 < 0.80
    a = [
        choice.choose_type(["paper", "n95", "cloth"], choice.image_rng(5, f"f{i}"))
        for i in range(30)
    ]
    b = [
        choice.choose_type(["paper", "n95", "cloth"], choice.image_rng(5, f"f{i}"))
        for i in range(30)
    ]
    assert a == b and set(a) == {"paper", "n95", "cloth"}
    for bad in ("balaclava", ["paper", "paper"], {"paper": 0.0}, []):
        with pytest.raises(ValueError, match="mask.types"):
            choice.normalise_choice(bad, geometry.MASK_TYPES, "mask.types")


# --------------------------------------------------------------------------------------------
# The geometry check's tolerance


@pytest.mark.parametrize("mask_type", geometry.MASK_TYPES)
def test_tolerance_is_a_real_margin(face, mask_type: str) -> None:
    """Shifted up by half the tolerance a mask passes; by a third of a face it fails."""
    image, lm = face
    iod = float(np.hypot(*(lm[42:48].mean(0) - lm[36:42].mean(0))))
    small = lm - np.array([0.0, 0.5 * check.CHECK_TOLERANCE * iod])
    assert check.coverage_check(lm, paint.mask_alpha(small, image.size, mask_type))["ok"]
    big = lm - np.array([0.0, 0.33 * face_height(lm)])
    assert not check.coverage_check(lm, paint.mask_alpha(big, image.size, mask_type))["ok"]


def test_tolerance_zero_is_strict(face) -> None:
    """With no tolerance, paper's chin points (vertices on its edge) can fail: alpha < 0.5."""
    image, lm = face
    alpha = paint.mask_alpha(lm, image.size, "paper")
    strict = check.coverage_check(lm, alpha, tolerance=0.0)
    loose = check.coverage_check(lm, alpha)
    assert loose["ok"]
    assert strict["covered_fraction"] <= loose["covered_fraction"]


def test_chin_outside_the_frame(face) -> None:
    """A chin cut off by the crop counts as covered when the mask reaches the border there."""
    image, lm = face
    h = int(lm[8, 1]) - 10  # crop just above the chin
    crop = image.crop((0, 0, image.size[0], h))
    assert lm[8, 1] > h
    for mask_type in geometry.MASK_TYPES:
        alpha = paint.mask_alpha(lm, crop.size, mask_type)
        assert check.coverage_check(lm, alpha)["ok"], mask_type
        hole = alpha.copy()
        hole[-8:, :] = 0.0  # the mask stops short of the border
        assert not check.coverage_check(lm, hole)["ok"], mask_type


def test_render_alpha_is_mask_alpha(face) -> None:
    image, lm = face
    for mask_type in geometry.MASK_TYPES:
        r = paint.render(image, lm, mask_type, np.random.default_rng(0))
        np.testing.assert_allclose(
            r.full_alpha(), paint.mask_alpha(lm, image.size, mask_type), atol=1e-6
        )


def test_coverage_check_on_the_box_alone_equals_the_full_image(face) -> None:
    """The stage checks the alpha of the mask's box only; the answer must not change."""
    image, lm = face
    h = int(lm[8, 1]) - 10  # also a crop that cuts the chin off: the box meets the border
    for img in (image, image.crop((0, 0, image.size[0], h))):
        for mask_type in geometry.MASK_TYPES:
            r = paint.render(img, lm, mask_type, np.random.default_rng(1))
            for tol in (0.0, 0.05, 0.2):
                full = check.coverage_check(lm, r.full_alpha(), tolerance=tol)
                boxed = check.coverage_check(lm, r.alpha, tolerance=tol, box=r.box, size=img.size)
                assert boxed == full, (mask_type, tol)
    # a mask moved off the mouth fails the same way in both forms
    r = paint.render(image, lm + (0, 40), "surgical", np.random.default_rng(1))
    full = check.coverage_check(lm, r.full_alpha())
    assert not full["ok"]
    assert check.coverage_check(lm, r.alpha, box=r.box, size=image.size) == full
    with pytest.raises(ValueError, match="does not match box"):
        check.coverage_check(lm, r.alpha[1:], box=r.box, size=image.size)


# --------------------------------------------------------------------------------------------
# The stage, on faces the test makes


@pytest.fixture(scope="module")
def aligned_demo(tmp_path_factory, demo_folder):
    """The demo faces through the align stage (the bad inputs become rejects there)."""
    import pandas as pd
    from test_align import run_align

    root = tmp_path_factory.mktemp("aligned")
    files = sorted(p.name for p in demo_folder.glob("*_2026*.jpg"))
    pd.DataFrame({"file": files}).to_csv(root / "manifest.csv", index=False)
    cfg = {"size": 128, "upsample": [0, 1], "predictor": "", "jpeg_quality": 95}
    summary = run_align(
        cfg,
        demo_folder,
        root / "manifest.csv",
        root / "images",
        root / "landmarks.csv",
        root / "rejects.csv",
    )
    assert summary["n_aligned"] >= 40
    return root


def test_stage_masks_every_face_with_every_type(aligned_demo, tmp_path) -> None:
    import pandas as pd

    cfg = {"types": list(geometry.MASK_TYPES), "seed": 3, "jpeg_quality": 90}
    summary = _run_mask(cfg, aligned_demo, aligned_demo / "landmarks.csv", tmp_path, threads=2)
    table = pd.read_csv(tmp_path / "masks.csv")
    n = len(pd.read_csv(aligned_demo / "landmarks.csv"))
    assert summary["n_masked"] == len(table) == n and summary["n_rejects"] == 0
    assert list(table.columns) == apply.MASK_COLUMNS
    assert set(table["mask_type"]) == set(geometry.MASK_TYPES)
    assert set(table.loc[table.mask_type == "cloth", "texture"]) <= set(geometry.TEXTURES)
    for t in geometry.MASK_TYPES:
        assert set(table.loc[table.mask_type == t, "colour"]) <= set(paint.palette(t))
    # the geometry check, on every masked face the test made, per type
    assert set(summary["per_type"]) == set(geometry.MASK_TYPES)
    for t, s in summary["per_type"].items():
        assert s["geometry_pass_fraction"] == 1.0, (t, s)
    assert table["geometry_ok"].all()
    assert len(list((tmp_path / "images").iterdir())) == n
    sheet = Image.open(tmp_path / "sheet.png")
    assert sheet.size[0] == 160 * (1 + len(geometry.MASK_TYPES)) and sheet.size[1] > 5 * 160
    # repeatable: the same seed gives the same table and pixels
    again = tmp_path / "again"
    _run_mask(cfg, aligned_demo, aligned_demo / "landmarks.csv", again)
    pd.testing.assert_frame_equal(table, pd.read_csv(again / "masks.csv"))
    f = table["file"].iloc[0]
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "images" / f)),
        np.asarray(Image.open(again / "images" / f)),
    )


def test_stage_single_type_and_bad_landmarks(aligned_demo, tmp_path) -> None:
    import pandas as pd

    lm_table = pd.read_csv(aligned_demo / "landmarks.csv")
    lm_table.loc[0, "x36":"y47"] = 5.0  # both eyes in one place: that face cannot be masked
    lm_table.to_csv(tmp_path / "landmarks.csv", index=False)
    summary = _run_mask(
        {"types": "kn95", "textures": "dots", "seed": 0, "jpeg_quality": 90},
        aligned_demo,
        tmp_path / "landmarks.csv",
        tmp_path,
    )
    assert summary["types"] == {"kn95": len(lm_table) - 1}
    rejects = pd.read_csv(tmp_path / "rejects.csv")
    assert rejects["file"].tolist() == [lm_table["file"][0]]
    assert rejects["reason"].tolist() == ["mask_error"] and "eye" in rejects["detail"][0]


def test_the_mask_stage_imports_no_detection_code():
    """mask reads landmarks, it does not find them: no dlib, no detection cascade, no align."""
    import subprocess
    import sys

    code = (
        "import sys; import maskprivacy.stages.mask; "
        "print(' '.join(m for m in sys.modules if m == 'dlib' or m.startswith('maskprivacy.')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "maskprivacy.faces.landmarks" in loaded
    for module in ("dlib", "maskprivacy.faces.detect", "maskprivacy.faces.align"):
        assert module not in loaded
