"""Faces of real-world photos: the CNN detector behind the HOG cascade, the landmark sanity
check, and the rule that keeps one of several faces (docs/wild-faces.md)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from maskprivacy.faces import align
from maskprivacy.faces import detect as faces
from maskprivacy.faces.landmarks import eye_centres
from maskprivacy.stages import align as align_stage
from maskprivacy.stages.entry import Compute, Files, StageConfig


@pytest.fixture(scope="module")
def face():
    """A real face (Grace Hopper, 200 x 200 around the face), its landmarks and HOG box."""
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        image = Image.open(f).convert("RGB")
    hog, _ = faces.models(None)
    r = max(hog(np.asarray(image), 0), key=lambda r: r.area())
    cx, cy, side = (r.left() + r.right()) // 2, (r.top() + r.bottom()) // 2, int(r.width() * 1.6)
    crop = image.crop((cx - side // 2, cy - side // 2, cx + side // 2, cy + side // 2))
    crop = crop.resize((200, 200), Image.Resampling.LANCZOS)
    pts, route = faces.detect_landmarks(np.asarray(crop), (0,), detector="cascade")
    assert pts is not None, route
    return crop, pts


def box_of(pts):
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return (x0, y0 - 0.2 * (y1 - y0), x1, y1)


def test_choose_face_keeps_the_largest_and_breaks_ties_by_the_centre():
    # a big face off-centre beats a small one in the centre
    assert faces.choose_face([(90, 90, 110, 110), (0, 0, 80, 80)], 200, 200) == 1
    # two of like size (within TIE_AREA): the one nearer the centre
    assert faces.choose_face([(0, 0, 80, 80), (60, 60, 138, 138)], 200, 200) == 1
    assert faces.choose_face([(60, 60, 138, 138), (0, 0, 80, 80)], 200, 200) == 0
    # a face cut by the edge counts by its part inside the image: dlib's box reaches past the
    # edge (a neighbour's face cut by the crop), so the whole box would outsize the subject's
    assert faces.choose_face([(-100, 50, 60, 210), (110, 60, 230, 180)], 300, 300) == 1
    assert faces.choose_face([(110, 60, 230, 180), (250, 50, 410, 210)], 300, 300) == 0
    assert faces.several_faces_note(1) == "" and faces.faces_in("") == 1
    assert faces.faces_in(faces.several_faces_note(3)) == 3


def test_landmark_check_passes_a_face_and_names_what_is_wrong(face):
    _, pts = face
    box = box_of(pts)
    assert faces.landmark_check(pts, box) == (True, "")
    collapsed = pts.copy()
    collapsed[36:48] = collapsed[36:48].mean(axis=0) + np.linspace(-1, 1, 12)[:, None]
    upside = pts.copy()
    upside[:, 1] = 2 * pts[:, 1].mean() - pts[:, 1]
    thrown = pts.copy()
    thrown[3:6, 0] -= 400
    lopsided = pts.copy()
    lopsided[0] = pts[27] + 0.05 * (pts[27] - pts[16])  # the left jaw folded onto the nose
    for pts_, reason in [
        (collapsed, "eye distance"),
        (upside, "top-to-bottom order"),
        (thrown, "landmarks outside the box"),
        (lopsided, "half of the jaw"),
    ]:
        ok, why = faces.landmark_check(pts_, box)
        assert not ok and reason in why, (reason, why)


def no_hog(monkeypatch):
    """The HOG cascade finds nothing (a face it misses: turned, tilted, very young)."""
    _, pred = faces.models(None)
    monkeypatch.setattr(faces, "models", lambda p=None: (lambda img, up: [], pred))


def test_the_cnn_finds_what_the_cascade_misses(face, monkeypatch):
    image, pts = face
    no_hog(monkeypatch)
    got, route = faces.detect_landmarks(np.asarray(image), (0, 1), detector="cascade")
    assert got is None and route == "no_face"
    explain = {}
    got, route = faces.detect_landmarks(
        np.asarray(image), (0, 1), detector="cascade+cnn", explain=explain
    )
    assert route == "cnn_upsample0" and explain["faces"] == 1
    iod = np.hypot(*np.subtract(*eye_centres(pts)))
    assert np.hypot(*(got - pts).T).mean() < 0.1 * iod  # the same face, the same landmarks
    got, route = faces.detect_landmarks(np.asarray(image), (0, 1), detector="cnn")
    assert route == "cnn_upsample0"
    with pytest.raises(ValueError, match="align.detector"):
        faces.detect_landmarks(np.asarray(image), (0,), detector="hog")


def test_cnn_levels_halved_first_and_no_upsampling_of_big_pictures(face, monkeypatch):
    """``align.cnn_upsample``: a level -1 runs the CNN on the picture halved (its box mapped
    back to full size, so the landmarks are the same face's); a positive level is skipped on a
    picture over CNN_UPSAMPLE_MAX_SIDE; the reject's detail names the levels tried."""
    image, pts = face
    no_hog(monkeypatch)
    iod = np.hypot(*np.subtract(*eye_centres(pts)))
    big = image.resize((400, 400), Image.Resampling.LANCZOS)  # the face about 250 px wide
    got, route = faces.detect_landmarks(
        np.asarray(big), (0,), detector="cascade+cnn", cnn_upsample=(-1, 0)
    )
    assert route == "cnn_upsample-1"
    assert np.hypot(*(got - 2 * pts).T).mean() < 0.1 * 2 * iod  # full-size frame, same face
    calls = []
    real = faces.cnn.detect
    monkeypatch.setattr(
        faces.cnn, "detect", lambda rgb, up=0: calls.append((rgb.shape[:2], up)) or real(rgb, up)
    )
    blank = np.full((420, 420, 3), 128, np.uint8)  # over 400 px: level 1 is skipped
    explain = {}
    got, route = faces.detect_landmarks(
        blank, (0,), detector="cascade+cnn", cnn_upsample=(-1, 0, 1), explain=explain
    )
    assert got is None and route == "no_face"
    assert calls == [((210, 210), 0), ((420, 420), 0)]
    assert "no face by the CNN detector at upsample [-1, 0, 1]" in explain["detail"]
    calls.clear()
    faces.detect_landmarks(blank[:200, :200], (0,), detector="cnn", cnn_upsample=(1,))
    assert calls == [((200, 200), 1)]  # small enough to upsample


def test_implausible_landmarks_are_a_reject_not_a_mask(face, monkeypatch):
    image, _ = face
    monkeypatch.setattr(
        faces, "landmark_check", lambda pts, box, worn=False: (False, "eye distance 0.01")
    )
    explain = {}
    got, route = faces.detect_landmarks(np.asarray(image), (0,), explain=explain)
    assert got is None and route == "landmarks_implausible"
    assert "upsample0_grey: eye distance 0.01" in explain["detail"]
    assert "cnn_upsample0: eye distance 0.01" in explain["detail"]


def two_faces(image: Image.Image) -> Image.Image:
    """A wide photo: the face large and near the centre, a smaller one cut by the left edge."""
    canvas = Image.new("RGB", (420, 240), (90, 110, 90))
    canvas.paste(image.resize((120, 120)), (-30, 110))
    canvas.paste(image, (170, 20))
    return canvas


def test_align_stage_several_faces_fallback_and_rejects(face, tmp_path):
    """Every input accounted for; the face found among two is the big central one; the report
    counts the steps that found faces and the photos with several."""
    image, pts = face
    src = tmp_path / "in"
    src.mkdir()
    two_faces(image).save(src / "two.jpg", quality=95)
    image.save(src / "one.jpg", quality=95)
    # shrunk and off-centre on a larger background
    small = Image.new("RGB", (300, 300), (200, 200, 210))
    small.paste(image.resize((110, 110)), (175, 20))
    small.save(src / "small.jpg", quality=95)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (120, 120, 3), dtype=np.uint8)).save(src / "noise.jpg")
    files = sorted(p.name for p in src.iterdir())
    pd.DataFrame({"file": files}).to_csv(tmp_path / "manifest.csv", index=False)
    cfg = {"size": 96, "upsample": [0], "predictor": "", "jpeg_quality": 90}
    cfg["detector"] = "cascade+cnn"
    out = {k: tmp_path / k for k in ("images", "lm.csv", "rej.csv")}
    summary = align_stage.run(
        StageConfig(params=cfg, wildcards={"shard": "0"}, compute=Compute(threads=2)),
        Files(images=src, manifest=tmp_path / "manifest.csv", landmarks=[]),
        Files(images=out["images"], landmarks=out["lm.csv"], rejects=out["rej.csv"]),
        logging.getLogger("test"),
    )
    table = pd.read_csv(out["lm.csv"]).set_index("file")
    rejects = pd.read_csv(out["rej.csv"])
    assert set(table.index) | set(rejects["file"]) == set(files)
    assert list(rejects["file"]) == ["noise.jpg"] and list(rejects["reason"]) == ["no_face"]
    assert "no face by the CNN detector" in rejects["detail"].iloc[0]
    assert table.loc["two.jpg", "faces"] == 2 and table.loc["one.jpg", "faces"] == 1
    assert summary["several_faces"] == 1 and summary["detector"] == "cascade+cnn"
    assert sum(summary["found_by"].values()) == summary["n_aligned"] == 3
    # the face kept in the two-face photo is the big one: its aligned crop is the one photo's
    a = np.asarray(Image.open(out["images"] / "two.jpg"), dtype=float)
    b = np.asarray(Image.open(out["images"] / "one.jpg"), dtype=float)
    assert np.abs(a - b)[20:76, 20:76].mean() < 20


def test_find_face_detail_round_trips_the_count(face):
    image, _ = face
    pts, route, detail = align.find_face(two_faces(image), {"upsample": [0], "predictor": ""})
    assert route == "upsample0_grey" and faces.faces_in(detail) == 2


def test_mask_contact_sheet_adds_the_faces_the_fallback_found():
    from maskprivacy.stages import mask

    routes = ["upsample0_grey"] * 8 + ["cnn_upsample0", "cnn_upsample1", "cnn_upsample0"]
    table = pd.DataFrame({"file": [f"{k}.jpg" for k in range(11)], "route": routes})
    masked = np.array([k for k in range(11) if k != 10])  # the last one was rejected by mask
    rows = mask.sheet_rows(table, masked, [0, 4, 8])
    assert rows == [0, 4, 8, 9]  # the spread, then the fallback's masked faces not yet shown
    assert mask.sheet_label(table, 9) == "cnn1: 9.jpg" and mask.sheet_label(table, 0) == "0.jpg"


def test_an_external_set_gets_no_prior_box(tmp_path, monkeypatch):
    """align.prealigned is UTKFace's framing: align_external's jobs (wildcard ext) detect, and
    their CNN fallback runs at the default levels, not the crops' halved-first ones."""
    seen = []
    monkeypatch.setattr(
        align_stage.align, "align_files", lambda paths, out, cfg, *a, **k: seen.append(cfg) or []
    )
    pd.DataFrame({"file": ["a.jpg"]}).to_csv(tmp_path / "m.csv", index=False)
    cfg = {"size": 64, "upsample": [0], "predictor": "", "prealigned": True, "jpeg_quality": 90}
    cfg["cnn_upsample"] = [-1, 0]
    for wildcards, prior in [({"shard": "0"}, True), ({"shard": "0", "ext": "ff"}, False)]:
        summary = align_stage.run(
            StageConfig(params=cfg, wildcards=wildcards, compute=Compute(threads=1)),
            Files(images=tmp_path, manifest=tmp_path / "m.csv", landmarks=[]),
            Files(
                images=tmp_path / "out",
                landmarks=tmp_path / "lm.csv",
                rejects=tmp_path / "rej.csv",
            ),
            logging.getLogger("test"),
        )
        used = seen.pop()
        assert used["prealigned"] is prior and summary["prealigned"] is prior
        assert used["cnn_upsample"] == ([-1, 0] if prior else [0, 1])
    assert cfg["prealigned"] is True and cfg["cnn_upsample"] == [-1, 0]  # params left alone
