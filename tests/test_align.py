import numpy as np
import pytest
from PIL import Image, ImageDraw

from maskprivacy.faces import align
from maskprivacy.faces import detect as faces
from maskprivacy.faces.landmarks import eye_centres
from maskprivacy.stages import align as align_stage
from maskprivacy.stages.entry import Compute, Files, StageConfig


def run_align(
    cfg, images, manifest, images_out, landmarks_out, rejects_out, threads=1, shard=0, table=None
):
    """The align stage as its rule runs it (``table``: the ``align.landmarks`` input)."""
    import logging

    return align_stage.run(
        StageConfig(params=cfg, wildcards={"shard": str(shard)}, compute=Compute(threads=threads)),
        Files(images=images, manifest=manifest, landmarks=table or []),
        Files(images=images_out, landmarks=landmarks_out, rejects=rejects_out),
        logging.getLogger("test"),
    )


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


def _dot_centroid(arr: np.ndarray, centre: np.ndarray, r: int = 6) -> np.ndarray:
    c = np.round(centre).astype(int)
    w = arr[c[1] - r : c[1] + r + 1, c[0] - r : c[0] + r + 1].astype(float)
    ys, xs = np.mgrid[-r : r + 1, -r : r + 1]
    return np.array([(xs * w).sum() / w.sum() + c[0], (ys * w).sum() / w.sum() + c[1]])


@pytest.mark.parametrize("size", [224, 96])  # enlarged 1.1x, and shrunk 2.1x (box-filtered first)
@pytest.mark.parametrize("backend", ["dlib", "pil"])
def test_warp_puts_pixels_where_the_landmarks_go(backend, size, monkeypatch):
    """Both resamplers (dlib's, and PIL's where dlib is missing) put pixel centres where the
    landmarks go, so the landmarks carried into the aligned frame stay on the face: dlib's to
    a tenth of a pixel, PIL's (which rounds its sampling grid) to a quarter."""
    import sys

    if backend == "pil":
        monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` raises ImportError
    a = np.zeros((200, 200, 3), np.uint8)
    corners = np.array([[70, 90], [130, 84], [100, 150], [40, 40]])  # even: 2x2 blocks stay whole
    for x, y in corners:
        a[y : y + 4, x : x + 4] = 255
    dots = corners + 1.5  # centres of the 4 x 4 squares
    m = align.similarity_from_eyes(dots[0], dots[1], size)
    out = align.warp(Image.fromarray(a), m, size)
    assert out.size == (size, size) and out.mode == "RGB"
    arr = np.asarray(out)[..., 0]
    for d in dots:
        expect = align.apply_affine(m, d[None])[0]
        tol = 0.1 if backend == "dlib" else 0.25
        np.testing.assert_allclose(_dot_centroid(arr, expect, r=4), expect, atol=tol)


def test_warp_backends_agree(monkeypatch):
    import sys

    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        image = Image.open(f).convert("RGB")
    m = align.similarity_from_eyes(np.array([200.0, 230.0]), np.array([300.0, 225.0]), 160)
    fast = np.asarray(align.warp(image, m, 160)).astype(int)
    monkeypatch.setitem(sys.modules, "dlib", None)
    slow = np.asarray(align.warp(image, m, 160)).astype(int)
    assert np.abs(fast - slow)[2:-2, 2:-2].mean() < 1.5  # rounding apart


def test_warp_does_not_alias_when_it_shrinks():
    """A 1-pixel checkerboard shrunk 2.2x is mid-grey, not a moire of black and white."""
    board = (np.indices((400, 400)).sum(axis=0) % 2 * 255).astype(np.uint8)
    img = Image.fromarray(np.stack([board] * 3, axis=-1))
    out = np.asarray(align.warp(img, np.array([[0.45, 0, 0.0], [0, 0.45, 0.0]]), 160))
    inner = out[5:-5, 5:-5].astype(float)
    assert abs(inner.mean() - 127.5) < 3 and inner.std() < 5


def test_align_one_on_a_demo_face(demo_folder):
    face = sorted(demo_folder.glob("[0-9]*_2026*.jpg"))[0]
    res = align.align_one(face, {"size": 96, "upsample": [0, 1], "predictor": ""})
    assert res["ok"], res
    assert res["image"].size == (96, 96)
    lm = res["landmarks"]
    assert lm.shape == (68, 2)
    le, re_ = eye_centres(lm)
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
    m = align.similarity_from_eyes(*eye_centres(pts), 200, UTK_EYES)
    # the test face is made with PIL's resampling, fixed here, whatever align.warp uses
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))
    a, b, c = inv[0]
    d, e, f = inv[1]
    coeffs = (a, b, c + 0.5 * (a + b) - 0.5, d, e, f + 0.5 * (d + e) - 0.5)
    framed = image.transform((200, 200), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)
    return framed, align.apply_affine(m, pts)


def iod(lm):
    le, re_ = eye_centres(lm)
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
    le, re_ = eye_centres(res["landmarks"])
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
    summary = run_align(
        cfg,
        src,
        tmp_path / "manifest.csv",
        out["images"],
        out["landmarks.csv"],
        out["rejects.csv"],
        threads=2,
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
        run_align(
            {**cfg, "prior_box": [0.9, 0.1, 0.1, 0.9]},
            src,
            tmp_path / "manifest.csv",
            tmp_path / "x",
            tmp_path / "x.csv",
            tmp_path / "y.csv",
        )


def test_shards_split_the_work_and_add_up_to_the_whole(demo_folder, tmp_path):
    """Each shard aligns its own files; together they give what one job gives, file for file."""
    import pandas as pd
    from conftest import BAD_FILES

    faces_ = sorted(p.name for p in demo_folder.glob("[0-9]*_2026*.jpg"))[:14]
    files = faces_ + list(BAD_FILES)[:4]
    pd.DataFrame({"file": files}).to_csv(tmp_path / "manifest.csv", index=False)
    cfg = {"size": 64, "upsample": [0, 1], "predictor": "", "jpeg_quality": 90}

    def run(shard: int, shards: int):
        out = tmp_path / f"{shard}of{shards}"
        s = run_align(
            {**cfg, "shards": shards},
            demo_folder,
            tmp_path / "manifest.csv",
            out / "images",
            out / "landmarks.csv",
            out / "rejects.csv",
            shard=shard,
        )
        return s, pd.read_csv(out / "landmarks.csv"), pd.read_csv(out / "rejects.csv"), out

    whole, table, rejects, out = run(0, 1)
    parts = [run(k, 3) for k in range(3)]
    assert sum(p[0]["n_inputs"] for p in parts) == whole["n_inputs"] == len(files)
    assert all(p[0]["n_inputs"] > 0 for p in parts)  # 18 files hash into all three shards
    names = [set(p[1]["file"]) | set(p[2]["file"]) for p in parts]
    assert set.union(*names) == set(files) and sum(map(len, names)) == len(files)  # disjoint
    merged = pd.concat([p[1] for p in parts]).sort_values("file").reset_index(drop=True)
    pd.testing.assert_frame_equal(merged, table)
    assert sorted(pd.concat([p[2] for p in parts])["file"]) == sorted(rejects["file"])
    for p in parts:  # a shard's images are exactly its aligned faces
        assert {f.name for f in (p[3] / "images").iterdir()} == set(p[1]["file"])
    with pytest.raises(ValueError, match="shard 3 is not in 0 .. 2"):
        run(3, 3)


def test_shard_of_is_stable_and_balanced():
    from maskprivacy.core import shards

    names = [
        f"{a}_{s}_{r}_2017010{d}.jpg.chip.jpg"
        for a in range(1, 80)
        for s in (0, 1)
        for r in range(5)
        for d in range(3)
    ]
    counts = np.bincount([shards.shard_of(n, 8) for n in names], minlength=8)
    assert counts.sum() == len(names) and counts.min() > 0.8 * len(names) / 8
    assert shards.shard_of("a/b/x.jpg", 8) == shards.shard_of("x.jpg", 8)  # the name alone
    assert all(shards.shard_of(n, 1) == 0 for n in names[:20])
    with pytest.raises(ValueError, match="at least 1"):
        shards.shard_of("x.jpg", 0)


def test_locate_finds_each_file_in_its_shard_folder(tmp_path):
    from maskprivacy.core import shards

    a, b = tmp_path / "0", tmp_path / "1"
    a.mkdir()
    b.mkdir()
    (a / "x.jpg").write_bytes(b"x")
    (b / "y.jpg").write_bytes(b"y")
    for d in (a, b):  # Snakemake marks each directory output with such a file
        (d / ".snakemake_timestamp").write_bytes(b"")
    assert shards.locate([a, b], ["y.jpg", "x.jpg"]) == [b / "y.jpg", a / "x.jpg"]
    assert shards.locate(a, ["x.jpg"]) == [a / "x.jpg"]
    with pytest.raises(FileNotFoundError, match=r"1 image\(s\) not found .*z\.jpg"):
        shards.locate([a, b], ["x.jpg", "z.jpg"])
    with pytest.raises(FileNotFoundError, match="y.jpg"):
        shards.locate(a, ["y.jpg"])
    (b / "x.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="x.jpg is in two shard folders"):
        shards.locate([a, b], ["x.jpg"])


@pytest.fixture(scope="module")
def landmarks_case(demo_folder, tmp_path_factory):
    """Six demo faces and four bad inputs, aligned by detection, and their landmarks table made
    by `python -m maskprivacy.faces.find_landmarks` (under other names: it keys by sha256)."""
    import pandas as pd
    from conftest import BAD_FILES

    from maskprivacy.faces import find_landmarks

    tmp = tmp_path_factory.mktemp("landmarks_table")
    src, renamed = tmp / "in", tmp / "renamed"
    src.mkdir()
    renamed.mkdir()
    names = [p.name for p in sorted(demo_folder.glob("[0-9]*_2026*.jpg"))[:6]]
    names += list(BAD_FILES)[:4]
    for i, name in enumerate(names):
        data = (demo_folder / name).read_bytes()
        (src / name).write_bytes(data)
        (renamed / f"copy{i}.jpg").write_bytes(data)
    pd.DataFrame({"file": names}).to_csv(tmp / "manifest.csv", index=False)
    cfg = {"size": 96, "upsample": [0, 1], "predictor": "", "jpeg_quality": 90}
    (tmp / "params.yaml").write_text(f"align: {cfg}\n")
    find_landmarks.main(
        [str(renamed), "--params", str(tmp / "params.yaml")]
        + ["--workers", "2", "-o", str(tmp / "table.csv")]
    )
    out = tmp / "detected"
    run_align(cfg, src, tmp / "manifest.csv", out / "images", out / "lm.csv", out / "rej.csv")
    return tmp, cfg


def test_landmarks_table_aligns_as_detection_does_without_the_detector(landmarks_case, monkeypatch):
    """align.landmarks: the same aligned images, landmarks and rejects as detection, byte for
    byte, with the detector unavailable."""
    tmp, cfg = landmarks_case

    def no_detector(*args, **kwargs):
        raise AssertionError("the detector ran")

    monkeypatch.setattr(faces, "detect_landmarks", no_detector)
    monkeypatch.setattr(faces, "models", no_detector)
    out, ref = tmp / "from_table", tmp / "detected"
    summary = run_align(
        {**cfg, "landmarks": str(tmp / "table.csv")},
        tmp / "in",
        tmp / "manifest.csv",
        out / "images",
        out / "lm.csv",
        out / "rej.csv",
        threads=2,
        table=str(tmp / "table.csv"),
    )
    assert summary["n_aligned"] == 6 and summary["n_rejects"] == 4
    assert summary["landmarks_table"] == str(tmp / "table.csv")
    for name in ("lm.csv", "rej.csv"):
        assert (out / name).read_bytes() == (ref / name).read_bytes()
    images = sorted(p.name for p in (ref / "images").iterdir())
    assert images == sorted(p.name for p in (out / "images").iterdir()) and len(images) == 6
    for name in images:
        assert (out / "images" / name).read_bytes() == (ref / "images" / name).read_bytes()


@pytest.mark.parametrize(
    "garble, message",
    [
        (lambda t: t.drop(columns=["y67"]), "lacks column"),
        (lambda t: t.assign(sha256=t["sha256"].str[:10]), "not 64 hex digits"),
        (lambda t: t.assign(x3="ten"), "not numbers"),
        (lambda t: t.assign(x5=float("nan")), "without 68 finite landmarks"),
        (lambda t: t.iloc[[0, *range(len(t))]], "listed twice"),
        (lambda t: t.iloc[1:], "lacks 1 of the 10 inputs"),
    ],
)
def test_a_wrong_or_garbled_landmarks_table_is_a_clear_error(landmarks_case, garble, message):
    import pandas as pd

    tmp, cfg = landmarks_case
    table = pd.read_csv(tmp / "table.csv", dtype={"sha256": str})
    table = table.sort_values("route", key=lambda r: r.isin(["no_face", "decode_error"]))
    bad = tmp / "garbled.csv"
    garble(table).to_csv(bad, index=False)
    out = tmp / "garbled"
    with pytest.raises(ValueError, match=message):
        run_align(
            cfg,
            tmp / "in",
            tmp / "manifest.csv",
            out / "images",
            out / "lm.csv",
            out / "rej.csv",
            table=str(bad),
        )
    assert not (out / "images").exists()


def test_landmarks_table_of_text_is_a_clear_error(tmp_path):
    from maskprivacy.faces import landmarks

    (tmp_path / "t.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="align.landmarks: .*t.csv"):
        landmarks.read_table(tmp_path / "t.csv")
