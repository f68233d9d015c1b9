"""Tests for maskprivacy.masks on a real aligned face (dlib on matplotlib's Grace Hopper)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from maskprivacy import masks
from maskprivacy.align import apply_affine, similarity_from_eyes, warp

ALIGNED = 224


@pytest.fixture(scope="module")
def face() -> tuple[Image.Image, np.ndarray]:
    """Grace Hopper aligned to 224 x 224 (eyes at fixed places) and her 68 landmarks there."""
    dlib = pytest.importorskip("dlib")
    import matplotlib.cbook

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("face-recognition-models is not installed")
    model = (
        Path(spec.submodule_search_locations[0])
        / "models"
        / "shape_predictor_68_face_landmarks.dat"
    )
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
    assert masks.MASK_TYPES == ("paper", "surgical")


@pytest.mark.parametrize("mask_type", masks.MASK_TYPES)
def test_alpha_shape_range(face, mask_type: str) -> None:
    _, lm = face
    alpha = masks.mask_alpha(lm, (240, 200), mask_type)  # (width, height)
    assert alpha.shape == (200, 240)
    assert alpha.dtype == np.float32
    assert alpha.min() == 0.0 and alpha.max() == 1.0
    # Anti-aliased: some edge pixels are partly covered.
    assert ((alpha > 0.05) & (alpha < 0.95)).sum() > 20
    hard = masks.mask_alpha(lm, (240, 200), mask_type, supersample=1)
    if mask_type == "paper":
        assert set(np.unique(hard).tolist()) <= {0.0, 1.0}
    assert abs(float(hard.sum() - alpha.sum())) < 0.03 * float(alpha.sum())


@pytest.mark.parametrize("size", [64, 224])
@pytest.mark.parametrize("degrees", [-15.0, 0.0, 15.0])
@pytest.mark.parametrize("mask_type", masks.MASK_TYPES)
def test_coverage_ok(face, mask_type: str, degrees: float, size: int) -> None:
    image, lm = variant(face, degrees, size)
    alpha = masks.mask_alpha(lm, image.size, mask_type)
    res = masks.coverage_check(lm, alpha)
    assert res == {"ok": True, "covered_fraction": 1.0, "eyes_clear": True}


@pytest.mark.parametrize("degrees", [-15.0, 15.0])
@pytest.mark.parametrize("mask_type", masks.MASK_TYPES)
def test_shifted_up_covers_eyes(face, mask_type: str, degrees: float) -> None:
    image, lm = variant(face, degrees, ALIGNED)
    up = lm - np.array([0.0, 0.4 * face_height(lm)])
    res = masks.coverage_check(lm, masks.mask_alpha(up, image.size, mask_type))
    assert not res["eyes_clear"]
    assert not res["ok"]


@pytest.mark.parametrize("mask_type", masks.MASK_TYPES)
def test_shifted_down_misses_nose(face, mask_type: str) -> None:
    image, lm = face
    down = lm + np.array([0.0, 0.4 * face_height(lm)])
    res = masks.coverage_check(lm, masks.mask_alpha(down, image.size, mask_type))
    assert res["eyes_clear"]
    assert not res["ok"]
    assert res["covered_fraction"] < 1.0


@pytest.mark.parametrize("mask_type", masks.MASK_TYPES)
def test_mask_with_mouth_hole_fails(face, mask_type: str) -> None:
    image, lm = face
    alpha = masks.mask_alpha(lm, image.size, mask_type)
    x0, y0 = np.floor(lm[48:68].min(0)).astype(int) - 3
    x1, y1 = np.ceil(lm[48:68].max(0)).astype(int) + 3
    alpha[y0:y1, x0:x1] = 0.0
    res = masks.coverage_check(lm, alpha)
    assert not res["ok"]
    assert res["eyes_clear"]
    assert res["covered_fraction"] == pytest.approx(1 - 20 / 31)


def test_coverage_empty_and_full(face) -> None:
    image, lm = face
    w, h = image.size
    assert masks.coverage_check(lm, np.zeros((h, w)))["covered_fraction"] == 0.0
    full = masks.coverage_check(lm, np.ones((h, w)))
    assert full["covered_fraction"] == 1.0 and not full["eyes_clear"] and not full["ok"]


# --------------------------------------------------------------------------------------------
# draw_mask: paper


@pytest.mark.parametrize("degrees", [0.0, 15.0])
def test_paper_is_exact_white_polygon(face, degrees: float) -> None:
    image, lm = variant(face, degrees, ALIGNED)
    out, info = masks.draw_mask(image, lm, "paper", np.random.default_rng(0))
    assert info == {"mask_type": "paper", "colour": "white", "rgb": "#ffffff"}
    assert out.size == image.size and out.mode == "RGB"
    # The polygon through jaw 1..15 and nose bridge 27, rasterised independently.
    from matplotlib.path import Path as MplPath

    w, h = image.size
    yy, xx = np.mgrid[0:h, 0:w]
    poly = MplPath(lm[[*range(1, 16), 27]])
    inside = poly.contains_points(np.column_stack([xx.ravel(), yy.ravel()])).reshape(h, w)
    deep = ndimage.binary_erosion(inside, iterations=2)
    far = ~ndimage.binary_dilation(inside, iterations=2)
    o, src = np.asarray(out), np.asarray(image)
    assert deep.sum() > 0.15 * w * h
    assert (o[deep] == 255).all()
    np.testing.assert_array_equal(o[far], src[far])


def test_paper_rejects_other_colour(face) -> None:
    image, lm = face
    with pytest.raises(ValueError, match="white"):
        masks.draw_mask(image, lm, "paper", np.random.default_rng(0), colour="pink")


# --------------------------------------------------------------------------------------------
# draw_mask: surgical


def luminance(arr: np.ndarray) -> np.ndarray:
    return np.asarray(arr, float) @ np.array([0.299, 0.587, 0.114])


@pytest.mark.parametrize("colour", ["light_blue", "white", "black"])
def test_surgical_not_flat(face, colour: str) -> None:
    image, lm = face
    out, info = masks.draw_mask(image, lm, "surgical", np.random.default_rng(0), colour=colour)
    assert info["colour"] == colour and info["rgb"] == masks.palette("surgical")[colour]
    body = masks.mask_alpha(lm, image.size, "surgical") > 0.99
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
    body = masks.mask_alpha(lm, (ALIGNED, ALIGNED), "surgical") > 0.99
    xx = np.arange(ALIGNED)[None, :].repeat(ALIGNED, 0)
    left, right = body & (xx < mid - 20), body & (xx > mid + 20)

    def halves(arr: np.ndarray) -> tuple[float, float]:
        out, _ = masks.draw_mask(
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
    out, _ = masks.draw_mask(grey, lm, "surgical", np.random.default_rng(0), colour="white")
    lum = ndimage.uniform_filter1d(luminance(np.asarray(out)), 9, axis=1)  # smooth the texture
    # Vertical profile through the cheek under the image-left eye, inside the mask body.
    x = int(round(lm[[36, 39], 0].mean()))
    body = masks.mask_alpha(lm, (ALIGNED, ALIGNED), "surgical")[:, x] > 0.99
    ys = np.flatnonzero(body)
    prof = lum[ys[0] + 2 : ys[-1] - 2, x]
    baseline = ndimage.median_filter(prof, 15, mode="nearest")
    dips = ndimage.label(prof < baseline - 8)[1]
    assert dips == 3


def test_surgical_ear_loops_outside_body(face) -> None:
    image, lm = face
    alpha = masks.mask_alpha(lm, image.size, "surgical")
    outside = ~ndimage.binary_dilation(alpha > 0.001, iterations=2)
    src = np.asarray(image)
    surgical = np.asarray(masks.draw_mask(image, lm, "surgical", np.random.default_rng(0))[0])
    paper = np.asarray(masks.draw_mask(image, lm, "paper", np.random.default_rng(0))[0])
    paper_outside = ~ndimage.binary_dilation(
        masks.mask_alpha(lm, image.size, "paper") > 0, iterations=1
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


@pytest.mark.parametrize("mask_type", masks.MASK_TYPES)
def test_seeded_rng_reproducible(face, mask_type: str) -> None:
    image, lm = face
    a, ia = masks.draw_mask(image, lm, mask_type, np.random.default_rng(42))
    b, ib = masks.draw_mask(image, lm, mask_type, np.random.default_rng(42))
    assert ia == ib
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_seeds_vary_colour(face) -> None:
    image, lm = scaled(*face, 64)
    colours = {
        masks.draw_mask(image, lm, "surgical", np.random.default_rng(seed))[1]["colour"]
        for seed in range(12)
    }
    assert len(colours) >= 3
    assert colours <= set(masks.palette("surgical"))


def test_unknown_type(face) -> None:
    image, lm = face
    with pytest.raises(ValueError, match="paper, surgical"):
        masks.draw_mask(image, lm, "n95", np.random.default_rng(0))
    with pytest.raises(ValueError, match="valid types"):
        masks.mask_alpha(lm, image.size, "cloth")


def test_unknown_colour(face) -> None:
    image, lm = face
    with pytest.raises(ValueError, match="light_blue"):
        masks.draw_mask(image, lm, "surgical", np.random.default_rng(0), colour="purple")


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
            masks.draw_mask(image, bad, "surgical", np.random.default_rng(0))
        with pytest.raises(ValueError, match="landmarks"):
            masks.mask_alpha(bad, image.size, "paper")
        with pytest.raises(ValueError, match="landmarks"):
            masks.coverage_check(bad, alpha)
    eyes = lm.copy()
    eyes[36:48] = eyes[36]  # both eyes in one place: no face scale
    with pytest.raises(ValueError, match="eye"):
        masks.draw_mask(image, eyes, "paper", np.random.default_rng(0))


def test_bad_arguments(face) -> None:
    image, lm = face
    with pytest.raises(ValueError):
        masks.mask_alpha(lm, (0, 10), "paper")
    with pytest.raises(ValueError):
        masks.mask_alpha(lm, image.size, "paper", supersample=0)
    with pytest.raises(ValueError):
        masks.coverage_check(lm, np.zeros((10, 10, 3)))
