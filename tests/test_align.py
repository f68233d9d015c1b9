import numpy as np
import pytest
from PIL import Image, ImageDraw

from maskprivacy import align, faces


def test_similarity_puts_eyes_on_targets():
    left, right = np.array([61.0, 90.0]), np.array([118.0, 70.0])
    m = align.similarity_from_eyes(left, right, 224)
    got = align.apply_affine(m, np.array([left, right]))
    np.testing.assert_allclose(got[0], np.array(align.EYE_LEFT) * 224, atol=1e-9)
    np.testing.assert_allclose(got[1], np.array(align.EYE_RIGHT) * 224, atol=1e-9)
    # a similarity: equal scale on both axes, no shear
    a = m[:, :2]
    np.testing.assert_allclose(a @ a.T, np.eye(2) * (a[0] @ a[0]), atol=1e-9)


def test_warp_moves_pixels_where_the_matrix_says():
    img = Image.new("RGB", (200, 200))
    ImageDraw.Draw(img).ellipse([137, 47, 143, 53], fill=(255, 255, 255))  # a dot at (140, 50)
    m = align.similarity_from_eyes(np.array([60.0, 100.0]), np.array([140.0, 50.0]), 128)
    out = np.asarray(align.warp(img, m, 128)).sum(axis=2)
    y, x = np.unravel_index(out.argmax(), out.shape)
    expect = align.apply_affine(m, np.array([[140.0, 50.0]]))[0]
    assert abs(x - expect[0]) <= 1.5 and abs(y - expect[1]) <= 1.5


def test_align_one_on_a_demo_face(demo_folder):
    face = sorted(demo_folder.glob("[0-9]*_2026*.jpg"))[0]
    res = align.align_one(face, {"size": 96, "upsample": [0, 1], "predictor": ""})
    assert res["ok"], res
    assert res["image"].size == (96, 96)
    lm = res["landmarks"]
    assert lm.shape == (68, 2)
    le, re_ = faces.eye_centres(lm)
    np.testing.assert_allclose(le, np.array(align.EYE_LEFT) * 96, atol=0.5)
    np.testing.assert_allclose(re_, np.array(align.EYE_RIGHT) * 96, atol=0.5)
    assert lm[8, 1] > lm[33, 1] > le[1]  # chin below nose tip below eyes


@pytest.mark.parametrize(
    "index, reason",
    [(0, "decode_error"), (1, "decode_error"), (2, "decode_error"), (3, "no_face")],
)
def test_bad_inputs_get_a_reason(demo_folder, index, reason):
    from conftest import BAD_FILES

    name = list(BAD_FILES)[index]
    res = align.align_one(demo_folder / name, {"size": 64, "upsample": [0, 1], "predictor": ""})
    assert not res["ok"] and res["reason"] == reason and res["detail"]


def test_missing_predictor_names_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="align.predictor"):
        faces.models(str(tmp_path / "nope.dat"))
