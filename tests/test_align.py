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


# --------------------------------------------------------------------------------------------
# The detection cascade and the prior box of pre-aligned crops

UTK_EYES = ((0.295, 0.30), (0.685, 0.30))  # UTKFace's framing: eye centres, fractions of 200 px


@pytest.fixture(scope="module")
def utk_like():
    """Grace Hopper framed like a UTKFace aligned & cropped face (200 x 200), and her landmarks."""
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        image = Image.open(f).convert("RGB")
    pts, _ = faces.detect_landmarks(np.asarray(image), (0,))
    m = align.similarity_from_eyes(*faces.eye_centres(pts), 200, UTK_EYES)
    return align.warp(image, m, 200), align.apply_affine(m, pts)


def iod(lm):
    le, re_ = faces.eye_centres(lm)
    return float(np.hypot(*(re_ - le)))


def test_halved_detection_finds_a_big_face(utk_like):
    image, lm = utk_like
    pts, route = faces.detect_landmarks(np.asarray(image), (-1, 0))
    assert route == "upsample-1_grey"
    assert np.hypot(*(pts - lm).T).mean() < 0.05 * iod(lm)


def test_colour_after_grey(utk_like, monkeypatch):
    image, _ = utk_like
    det, pred = faces.models(None)
    calls = []

    def fake(img, up):
        calls.append((img.ndim, up))
        return det(img, up) if img.ndim == 3 else []

    monkeypatch.setattr(faces, "models", lambda p=None: (fake, pred))
    _, route = faces.detect_landmarks(np.asarray(image), (0,))
    assert route == "upsample0_rgb" and calls == [(2, 0), (3, 0)]
    calls.clear()
    _, route = faces.detect_landmarks(np.asarray(image), (0,), grey_first=False)
    assert route == "upsample0_rgb" and calls == [(3, 0)]


def test_prior_box_accepts_a_face_where_utkface_puts_it(utk_like):
    image, lm = utk_like
    explain = {}
    pts, route = faces.detect_landmarks(
        np.asarray(image), (), prior_box=faces.UTKFACE_PRIOR_BOX, explain=explain
    )
    assert route == "prior_box", explain
    assert np.hypot(*(pts - lm).T).mean() < 0.05 * iod(lm)


@pytest.mark.parametrize("what", ["noise", "flat", "shifted", "upside_down"])
def test_prior_box_rejects_what_is_not_a_face_there(utk_like, what):
    image, _ = utk_like
    rng = np.random.default_rng(0)
    arr = {
        "noise": lambda: rng.integers(0, 255, (200, 200, 3), dtype=np.uint8),
        "flat": lambda: np.full((200, 200, 3), 128, np.uint8),
        "shifted": lambda: np.asarray(
            image.transform(image.size, Image.Transform.AFFINE, (1, 0, 0, 0, 1, -110))
        ),
        "upside_down": lambda: np.asarray(image.rotate(180)),
    }[what]()
    explain = {}
    pts, route = faces.detect_landmarks(arr, (), prior_box=faces.UTKFACE_PRIOR_BOX, explain=explain)
    assert pts is None and route == "no_face"
    assert "prior box rejected" in explain["detail"]


def test_prealigned_noise_is_still_no_face(demo_folder):
    from conftest import BAD_FILES

    name = list(BAD_FILES)[3]
    cfg = {"size": 64, "upsample": [0], "predictor": "", "prealigned": True}
    res = align.align_one(demo_folder / name, cfg)
    assert not res["ok"] and res["reason"] == "no_face"
    assert "prior box rejected" in res["detail"]


def test_eye_targets_from_params(demo_folder):
    face = sorted(demo_folder.glob("[0-9]*_2026*.jpg"))[0]
    cfg = {"size": 100, "upsample": [0, 1], "predictor": "", "eye_y": 0.3, "eye_distance": 0.4}
    res = align.align_one(face, cfg)
    le, re_ = faces.eye_centres(res["landmarks"])
    np.testing.assert_allclose(le, [30.0, 30.0], atol=0.5)
    np.testing.assert_allclose(re_, [70.0, 30.0], atol=0.5)


def test_run_records_routes_and_reasons(demo_folder, tmp_path, utk_like):
    import pandas as pd
    from conftest import BAD_FILES

    src = tmp_path / "in"
    src.mkdir()
    faces_ = sorted(demo_folder.glob("[0-9]*_2026*.jpg"))[:6]
    for f in faces_:
        (src / f.name).write_bytes(f.read_bytes())
    for name in list(BAD_FILES)[:4]:
        (src / name).write_bytes((demo_folder / name).read_bytes())
    utk_like[0].save(src / "50_1_0_20170101000000099.jpg.chip.jpg", quality=95)
    files = sorted(p.name for p in src.iterdir())
    pd.DataFrame({"file": files}).to_csv(tmp_path / "manifest.csv", index=False)
    cfg = {
        "size": 96,
        "upsample": [-1, 0, 1],
        "predictor": "",
        "jpeg_quality": 90,
        "prealigned": True,
        "prior_box": list(faces.UTKFACE_PRIOR_BOX),
    }
    out = {k: tmp_path / k for k in ("images", "landmarks.csv", "rejects.csv")}
    summary = align.run(
        cfg,
        src,
        tmp_path / "manifest.csv",
        out["images"],
        out["landmarks.csv"],
        out["rejects.csv"],
        threads=2,
        progress=False,
    )
    table = pd.read_csv(out["landmarks.csv"])
    rejects = pd.read_csv(out["rejects.csv"])
    assert summary["n_aligned"] + summary["n_rejects"] == len(files) == summary["n_inputs"]
    assert set(table["file"]) | set(rejects["file"]) == set(files)
    assert table.set_index("file").loc["50_1_0_20170101000000099.jpg.chip.jpg", "route"] == (
        "upsample-1_grey"
    )
    assert set(table["route"]) <= {
        f"upsample{u}_{c}" for u in (-1, 0, 1) for c in ("grey", "rgb")
    } | {"prior_box"}
    assert summary["routes"] == table["route"].value_counts().sort_index().to_dict()
    got = dict(zip(rejects["file"], rejects["reason"], strict=True))
    for name, (_, reason) in list(BAD_FILES.items())[:4]:
        assert got[name] == reason
    with pytest.raises(ValueError, match="align.prior_box"):
        align.run(
            {**cfg, "prior_box": [0.9, 0.1, 0.1, 0.9]},
            src,
            tmp_path / "manifest.csv",
            tmp_path / "x",
            tmp_path / "x.csv",
            tmp_path / "y.csv",
            progress=False,
        )
