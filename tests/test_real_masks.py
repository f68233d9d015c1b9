"""Real masks worn in an external set's photos: their labels, their faces found, never painted
over, scored as a version of their own, and compared with painted masks and no mask.

The sets are made here: demo faces, some "wearing" a mask drawn on the photo before the set is
read (the pipeline only knows it from the labels), persons with photos of both kinds and of one."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from maskprivacy.analysis import real_masks
from maskprivacy.datasets import external
from maskprivacy.datasets.worn import WORN, version_rows, worn_files
from maskprivacy.faces import align, cnn, detect
from maskprivacy.masks.paint import draw_mask


def labels_csv(path: Path, rows: list[list], header=("file", "person", "masked", "sex")) -> Path:
    pd.DataFrame(rows, columns=list(header)).to_csv(path, index=False)
    return path


def jpeg(path: Path, size=(120, 150), colour=(120, 90, 80)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG")
    return path


# --- labels ---------------------------------------------------------------------------------


def test_masked_column_values_types_persons_and_set_labels(tmp_path):
    folder = tmp_path / "set"
    rows = [
        ["a/1.jpg", "p1", "no", "male"],
        ["a/2.jpg", "p1", "Yes", "male"],
        ["b/1.jpg", "p2", "surgical", "female"],
        ["b/2.jpg", "p2", "None", "female"],
        ["c/1.jpg", "p3", "KN95", "male"],
        ["c/2.jpg", "p3", "scarf", "male"],  # a value the map does not know: a reject row
        ["d/1.jpg", "p4", "1", "m"],
        ["d/2.jpg", "p4", "false", "m"],
    ]
    for r in rows:
        jpeg(folder / r[0])
    labels = labels_csv(tmp_path / "labels.csv", rows)
    cfg = {"path": str(folder), "labels": str(labels), "set_labels": {"race": "Indian"}}
    assert external.says_worn(cfg)
    manifest, rejects, summary = external.ingest(
        folder, labels, tmp_path / "out", external.label_map(cfg)
    )
    by = manifest.set_index("source")
    assert by.loc["a/1.jpg", "worn"] == 0 and by.loc["a/2.jpg", "worn"] == 1
    assert by.loc["a/2.jpg", "mask_type"] == "worn"  # "yes": a mask, type not said
    assert by.loc["b/1.jpg", "mask_type"] == "surgical" and by.loc["b/1.jpg", "worn"] == 1
    assert by.loc["c/1.jpg", "mask_type"] == "kn95"
    assert by.loc["b/2.jpg", "worn"] == 0 and by.loc["b/2.jpg", "mask_type"] == ""
    assert by.loc["d/1.jpg", "worn"] == 1 and by.loc["d/2.jpg", "worn"] == 0
    assert set(by["race"]) == {3}  # Indian, from the set's config, on every row
    assert by.loc["b/1.jpg", "person"] == "p2"
    assert list(rejects["reason"]) == ["unknown_label"]
    detail = rejects["detail"].iloc[0]
    assert "'scarf'" in detail and "values: {masked:" in detail
    assert summary["real_masks"] == {
        "worn": 4,
        "not_worn": 3,
        "not_said": 0,
        "types": {"kn95": 1, "surgical": 1, "worn": 2},
        "persons": 4,
    }
    assert worn_files(manifest) == {
        external.flat_name(r) for r in ("a/2.jpg", "b/1.jpg", "c/1.jpg", "d/1.jpg")
    }
    assert len(version_rows(manifest, WORN)) == 4
    assert len(version_rows(manifest, "unmasked")) == 3
    assert len(version_rows(manifest, "masked")) == 3


def test_masked_value_mapped_by_the_set_and_conflicts_with_set_labels(tmp_path):
    folder = tmp_path / "set"
    rows = [
        ["1.jpg", "x", "scarf", "male", "Indian"],
        ["2.jpg", "x", "no", "male", "White"],  # the set says every photo is Indian
    ]
    for r in rows:
        jpeg(folder / r[0])
    labels = labels_csv(tmp_path / "l.csv", rows, ("file", "id", "face_mask", "gender", "race"))
    lmap = external.label_map(
        {"values": {"masked": {"scarf": "cloth"}}, "set_labels": {"race": "south asian"}}
    )
    manifest, rejects, _ = external.ingest(folder, labels, tmp_path / "out", lmap)
    assert manifest["mask_type"].tolist() == ["cloth"] and manifest["person"].tolist() == ["x"]
    assert rejects[["file", "reason"]].values.tolist() == [["2.jpg", "label_conflict"]]
    assert "set_labels" in rejects["detail"].iloc[0]
    with pytest.raises(ValueError, match="set_labels.race"):
        external.label_map({"set_labels": {"race": "martian"}})


def test_a_set_without_the_column_has_no_worn_version(tmp_path):
    jpeg(tmp_path / "set/1.jpg")
    labels = labels_csv(tmp_path / "l.csv", [["1.jpg", "male"]], ("file", "sex"))
    assert not external.says_worn({"path": str(tmp_path / "set"), "labels": str(labels)})
    assert not external.says_worn({"path": "x", "labels": str(tmp_path / "absent.csv")})
    assert external.says_worn({"path": "x", "labels": str(labels), "set_labels": {"masked": "yes"}})


# --- analysis -------------------------------------------------------------------------------


def _preds(files, truth, right):
    """Predictions of sex that are right where ``right`` is true."""
    pred = np.where(right, truth, 1 - truth)
    return pd.DataFrame(
        {
            "file": files,
            "sex_pred": pred,
            "race_pred": 3,
            "age_pred": 30.0,
            "sex_prob_0": (pred == 0).astype(float),
            "sex_prob_1": (pred == 1).astype(float),
        }
    )


def test_real_against_painted_against_none_by_person():
    rng = np.random.default_rng(0)
    persons = [f"p{i}" for i in range(40)]
    rows = []
    for p in persons:
        sex = int(rng.integers(2))
        for k in range(3):
            rows.append({"file": f"{p}_0{k}.jpg", "person": p, "worn": 0, "sex": sex})
            rows.append({"file": f"{p}_1{k}.jpg", "person": p, "worn": 1, "sex": sex})
    rows.append({"file": "lone_10.jpg", "person": "lone", "worn": 1, "sex": 0})  # worn only
    m = pd.DataFrame(rows).assign(race=3, age=np.nan, mask_type="")
    m.loc[m["worn"] == 1, "mask_type"] = "worn"
    none, worn = m[m["worn"] == 0], m[m["worn"] == 1]
    # no mask: every face right; painted: 90% right; real: 60% right
    right_none = np.ones(len(none), bool)
    right_paint = rng.random(len(none)) < 0.9
    right_real = rng.random(len(worn)) < 0.6
    ens = {
        ("unmasked", "masked"): {0: _preds(none["file"], none["sex"].to_numpy(), right_none)},
        ("masked", "masked"): {0: _preds(none["file"], none["sex"].to_numpy(), right_paint)},
        (WORN, "masked"): {0: _preds(worn["file"], worn["sex"].to_numpy(), right_real)},
    }
    out = real_masks.analyse(m, ens, ["masked"], {"bootstrap": 200, "seed": 0, "permutations": 999})
    assert out["unit"] == "persons" and out["persons"] == 41
    rows = {(r["a"], r["b"], r["attribute"]): r for r in out["comparisons"]}
    real_none = rows[(WORN, "unmasked", "sex")]
    # independently: each person's mean over their photos of each kind, persons with both
    per = (
        pd.DataFrame({"person": worn["person"], "r": right_real.astype(float)})
        .groupby("person")["r"]
        .mean()
    )
    expected = float((per.drop("lone") - 1.0).mean())
    assert real_none["difference"] == pytest.approx(expected)
    assert real_none["n"] == 40 and real_none["unit"] == "persons"
    assert real_none["low"] < expected < real_none["high"]
    assert real_none["verdict"] == "lower"
    real_paint = rows[(WORN, "masked", "sex")]
    assert real_paint["difference"] < 0 and real_paint["verdict"] == "lower"
    reading = real_masks.painted_vs_real(out, "masked", "sex")
    assert reading["reading"] == "understate"  # the real mask costs the attacker more
    # race is one class here: its chance is 100% and a right answer every time
    assert out["chance"]["race"]["accuracy"] == 1.0
    assert out["chance"]["sex"]["classes"] == 2
    # Holm over the family: no adjusted p below its raw p
    assert all(r["p_holm"] >= r["p"] for r in out["comparisons"])


def test_without_persons_the_tests_are_over_photos():
    files_none = [f"n{i}.jpg" for i in range(50)]
    files_worn = [f"w{i}.jpg" for i in range(50)]
    m = pd.DataFrame(
        {
            "file": files_none + files_worn,
            "worn": [0] * 50 + [1] * 50,
            "sex": [0, 1] * 50,
            "race": np.nan,
            "age": np.nan,
            "person": None,
        }
    )
    truth = np.array([0, 1] * 25)
    ens = {
        ("unmasked", "u"): {0: _preds(files_none, truth, np.ones(50, bool))},
        ("masked", "u"): {0: _preds(files_none, truth, np.arange(50) % 10 != 0)},
        (WORN, "u"): {0: _preds(files_worn, truth, np.ones(50, bool))},
    }
    out = real_masks.analyse(m, ens, ["masked"], {"bootstrap": 200, "seed": 1, "permutations": 999})
    rows = {(r["a"], r["b"]): r for r in out["comparisons"]}
    assert rows[(WORN, "unmasked")]["unit"] == "photos (unpaired)"
    assert rows[(WORN, "unmasked")]["difference"] == 0
    assert rows[(WORN, "unmasked")]["verdict"] == "no difference shown"
    paired = rows[("masked", "unmasked")]
    assert paired["unit"] == "photos (paired)" and paired["difference"] == pytest.approx(-0.1)
    assert (
        real_masks.analyse(m.assign(worn=0), ens, ["masked"], {"bootstrap": 100, "seed": 0}) is None
    )


# --- finding faces --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_face(tmp_path_factory) -> Path:
    from maskprivacy.datasets import demo

    return demo.generate(tmp_path_factory.mktemp("face"), n_images=1, seed=3, progress=False)[0]


@pytest.mark.parametrize("size", [(1, 1), (8, 8), (1, 500), (10_000, 10), (19, 300)])
def test_an_image_too_small_for_a_face_is_a_reject_not_a_crash(tmp_path, size):
    path = tmp_path / "tiny.png"
    Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), np.uint8)
    ).save(path)
    cfg = {
        "upsample": [-1, 0, 1],
        "cnn_upsample": [-1, 0, 1],
        "detector": "cascade+cnn",
        "size": 64,
    }
    res = align.align_one(path, cfg)
    assert res["ok"] is False and res["reason"] == "too_small"
    assert f"{size[0]} x {size[1]} px" in res["detail"]


def test_the_cnn_helper_survives_an_image_dlib_refuses_and_is_restarted_when_killed(monkeypatch):
    tiny = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(cnn.DetectorError, match="dlib's CNN detector: Failing expression") as err:
        cnn.detect(tiny, 0)
    assert not err.value.died
    face = np.full((120, 120, 3), 128, np.uint8)
    assert cnn.detect(face, 0) == []  # the same helper goes on
    helper = cnn._helper[os.getpid()]
    os.kill(helper.pid, signal.SIGKILL)
    helper.wait()
    # the helper dies with the image in hand (start() finds it alive, then it is gone): this
    # image is the one that killed it
    with monkeypatch.context() as m:
        m.setattr(cnn, "start", lambda: None)
        with pytest.raises(cnn.DetectorError, match="died") as err:
            cnn.detect(face, 0)
    assert err.value.died and os.getpid() not in cnn._helper
    assert cnn.detect(face, 0) == []  # a new helper serves the next image
    again = cnn._helper[os.getpid()]
    assert again.pid != helper.pid
    # a helper that died between two images is replaced before the next, with no error
    os.kill(again.pid, signal.SIGKILL)
    again.wait()
    assert cnn.detect(face, 0) == []
    assert cnn._helper[os.getpid()].pid != again.pid


def test_a_face_that_fills_the_frame_is_found_on_the_padded_copy(tmp_path):
    from maskprivacy.datasets import demo

    face = demo.generate(tmp_path / "faces", n_images=3, seed=3, progress=False)[2]
    image = align.load_rgb(face)
    pts, _, _ = align.find_face(image, {"upsample": [0, 1], "cnn_upsample": [0]})
    # forehead to chin: cut at the brows, the chin and across the jaw (3x: a phone's crop)
    box = (pts[:, 0].min(), pts[17:27, 1].min(), pts[:, 0].max(), pts[8, 1])
    tight = image.crop(tuple(int(v) for v in box))
    path = tmp_path / "tight.jpg"
    tight.resize((tight.width * 3, tight.height * 3)).save(path, quality=95)
    cfg = {"upsample": [0, 1], "detector": "cascade", "size": 64, "jpeg_quality": 90}
    assert align.align_one(path, {**cfg, "pad": 0.0})["reason"] == "no_face"
    res = align.align_one(path, {**cfg, "pad": 0.25})
    assert res["ok"] and res["route"].endswith("_padded")
    # the landmarks are the face's: where they were in the uncropped photo, scaled and moved
    moved = (res["source_landmarks"] / 3 + np.array(box[:2]).astype(int))[36:48]
    assert np.abs(moved - pts[36:48]).mean() < 3.0


def framed_like_the_frame_box(image: Image.Image, scale: int = 3) -> tuple[Image.Image, tuple]:
    """``image`` cropped so its face's HOG box sits at :data:`detect.FRAME_BOX` of the crop
    (forehead to chin, as halfFace's photos), enlarged ``scale`` times; and the crop's box."""
    hog, _ = detect.models()
    (r,) = hog(np.asarray(image.convert("L")), 1)
    fx0, fy0, fx1, fy1 = detect.FRAME_BOX
    w, h = (r.right() - r.left()) / (fx1 - fx0), (r.bottom() - r.top()) / (fy1 - fy0)
    x0, y0 = r.left() - fx0 * w, r.top() - fy0 * h
    crop = tuple(int(round(v)) for v in (x0, y0, x0 + w, y0 + h))
    tight = image.crop(crop)
    return tight.resize((tight.width * scale, tight.height * scale)), crop


def test_a_face_no_detector_finds_is_looked_for_on_the_frame_box(demo_face):
    image = align.load_rgb(demo_face)
    pts, _, _ = align.find_face(image, {"upsample": [0, 1], "cnn_upsample": [0]})
    tight, crop = framed_like_the_frame_box(image)
    rgb = np.asarray(tight)
    # no detector step that finds a face (no HOG level, no CNN): only the frame box is left
    blind = {"upsample": (), "detector": "cascade"}
    found, route = detect.detect_landmarks(rgb, pad=0.25, **blind)
    assert route == detect.FRAME
    # the eyes are the face's: where they were in the uncropped photo, scaled and moved
    moved = found[36:48] / 3 + np.array(crop[:2])
    assert np.abs(moved - pts[36:48]).mean() < 3.0
    # a photo that wears a mask (a surgical one drawn on): its upper face holds the box (with
    # the lowered-threshold HOG of worn masks out of the way)
    masked, _ = draw_mask(tight, found, "surgical", np.random.default_rng(0))
    found, route = detect.detect_landmarks(
        np.asarray(masked), pad=0.25, worn=True, worn_threshold=10.0, **blind
    )
    assert route == detect.FRAME
    assert np.abs(found[36:48] / 3 + np.array(crop[:2]) - pts[36:48]).mean() < 3.0
    # not for pad 0 (no face is said to fill the frame) nor pre-aligned crops (their prior box)
    assert detect.detect_landmarks(rgb, pad=0.0, **blind)[1] == "no_face"
    # where no face fills the frame, the landmarks follow the box: a reject that says so
    why: dict = {}
    small = np.asarray(tight.resize((tight.width // 3, tight.height // 3)))
    room = np.full((rgb.shape[0], rgb.shape[1], 3), 128, np.uint8)
    room[: small.shape[0], : small.shape[1]] = small  # the face in one corner of a grey wall
    flat = np.full_like(rgb, 128)
    for photo in (room, flat):
        assert detect.detect_landmarks(photo, pad=0.25, explain=why, **blind)[1] == "no_face"
        assert "frame box rejected" in why["detail"]


def test_exif_orientation_is_honoured_and_a_large_photo_is_detected_on_a_reduced_copy(
    tmp_path, demo_face
):
    image = align.load_rgb(demo_face)
    big = image.resize((image.width * 12, image.height * 12))  # 2,400 px
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: shown turned 90 degrees clockwise
    path = tmp_path / "phone.jpg"
    big.transpose(Image.Transpose.ROTATE_90).save(path, quality=90, exif=exif)
    loaded = align.load_rgb(path)
    assert loaded.size == big.size
    assert np.abs(np.asarray(loaded, float) - np.asarray(big, float)).mean() < 4
    assert detect.work_factor(*big.size[::-1]) == 4
    cfg = {"upsample": [0], "cnn_upsample": [0], "detector": "cascade", "size": 64}
    res = align.align_one(path, cfg)
    assert res["ok"]
    small = align.align_one(demo_face, cfg)
    # the same face: its landmarks at 12 times the scale, within a few of the small photo's px
    assert np.abs(res["source_landmarks"] / 12 - small["source_landmarks"]).mean() < 2.0


def test_a_masked_face_is_checked_on_the_upper_face_only(demo_face):
    image = align.load_rgb(demo_face)
    pts, _, _ = align.find_face(image, {"upsample": [0], "cnn_upsample": [0]})
    box = (pts[:, 0].min() - 10, pts[:, 1].min() - 10, pts[:, 0].max() + 10, pts[:, 1].max() + 10)
    wrong = pts.copy()
    wrong[48:68] = wrong[36:42].mean(axis=0) - [0, 5]  # the mouth guessed above the eyes
    assert detect.landmark_check(wrong, box)[0] is False
    assert detect.landmark_check(wrong, box, worn=True)[0] is True
    upside = pts.copy()
    upside[30] = upside[36:48].mean(axis=0) - [0, 30]  # the nose tip above the eyes
    assert detect.landmark_check(upside, box, worn=True)[0] is False


# --- the pipeline ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_set_with_real_masks_through_the_pipeline(tmp_path, demo_folder):
    """Added to a finished run: only the set's jobs and compare run; its worn photos are never
    painted, are scored by every model and the recognizer as the version ``worn``, and the
    report, metrics and statistics compare real, painted and no masks; every photo accounted."""
    from test_pipeline import BIN, sh
    from usercopy import finished_small_run, planned_jobs

    from maskprivacy.datasets import demo
    from maskprivacy.masks.paint import render

    faces = demo.generate(tmp_path / "faces", n_images=12, seed=21, progress=False)
    folder = tmp_path / "real"
    rows = []
    for k, face in enumerate(faces):
        person, sex = f"s{k // 2}", "female" if k % 3 == 0 else "male"
        image = align.load_rgb(face)
        if k % 2 == 1:  # its second photo wears a mask: drawn on it, known only from the label
            pts, _, _ = align.find_face(image, {"upsample": [0, 1], "cnn_upsample": [0]})
            image = render(image, pts, "surgical", np.random.default_rng(k)).image
            kind = "surgical" if k % 4 == 1 else "yes"
        else:
            kind = "no"
        if k == 0:  # the face fills the frame, forehead to chin
            pts, _, _ = align.find_face(image, {"upsample": [0, 1], "cnn_upsample": [0]})
            image = image.crop(
                (
                    int(pts[:, 0].min()),
                    int(pts[17:27, 1].min()),
                    int(pts[:, 0].max()),
                    int(pts[8, 1]),
                )
            )
        (folder / person).mkdir(parents=True, exist_ok=True)
        image.save(folder / person / f"{k}.jpg", quality=95)
        rows.append([f"{person}/{k}.jpg", person, kind, sex])
    jpeg(folder / "lonely/0.jpg", (200, 200), (200, 200, 200))  # no face in it
    rows.append(["lonely/0.jpg", "lonely", "no", "male"])
    jpeg(folder / "odd/0.jpg")
    rows.append(["odd/0.jpg", "odd", "helmet", "male"])  # unknown masked value
    labels = labels_csv(tmp_path / "labels.csv", rows)

    root, params = finished_small_run(tmp_path / "run", demo_folder)
    params["evaluate"]["external"] = {
        "real": {"path": str(folder), "labels": str(labels), "set_labels": {"race": "Indian"}}
    }
    ran = set(planned_jobs(root, params))
    assert ran <= {
        "external",
        "align_external",
        "mask_external",
        "describe_external",
        "evaluate_external",
        "recognize_external",
        "compare",
        "all",
    }, ran
    sh(root, str(BIN / "snakemake"), "--cores", "2")

    manifest = pd.read_csv(root / "data/external/real/manifest.csv")
    worn = set(manifest.loc[manifest["worn"] == 1, "file"])
    assert len(worn) == 6
    for painted in (root / "data/external/real/mask").rglob("*.jpg"):
        assert painted.name not in worn  # never painted over
    rejects = pd.concat(
        [pd.read_csv(p) for p in sorted((root / "data/external/real").rglob("rejects.csv"))]
    )
    assert ("external", "unknown_label") in set(
        zip(rejects["stage"], rejects["reason"], strict=True)
    )
    scored = set()
    for version in ("unmasked", "masked", WORN):
        for train in ("unmasked", "masked"):
            for attacker in ("external", "recognize_external"):
                preds = pd.read_csv(
                    root / f"results/{attacker}/real/{version}/{train}/seed0/predictions.csv"
                )
                assert (set(preds["file"]) <= worn) == (version == WORN) or preds.empty
                scored |= set(preds["file"])
    # every photo: scored, or a reject row with its reason
    assert scored | set(rejects["file"]) >= set(manifest["file"])
    assert len(scored) + len(rejects) >= len(rows)

    stats = json.loads((root / "results/compare/statistics.json").read_text())
    rm = stats["external"]["real"]["real_masks"]
    assert rm["unit"] == "persons" and rm["photos"]["worn"] == 6
    labels_seen = {(r["a"], r["b"]) for r in rm["comparisons"]}
    assert labels_seen == {(WORN, "unmasked"), ("masked", "unmasked"), (WORN, "masked")}
    assert "real_masks" in stats["recognizer"]["external"]["real"]
    metrics = json.loads((root / "results/metrics.json").read_text())
    assert {"CNN", "recognizer"} <= set(metrics["real_masks"]["real"])
    assert "overstate or understate" in metrics["real_masks"]["real"]["CNN"]["answer"]
    assert (root / "results/compare/plots/real_masks/real_masks_real.png").is_file()
    # the photos align could not use, as they came in: the one without a face among them
    assert (root / "results/compare/plots/real_masks/rejects_real.png").is_file()
    assert "lonely__0.jpg" in set(rejects["file"])
    page = (root / "results/report.html").read_text()
    assert '<h2 id="real-masks">Real masks</h2>' in page


def thirty_persons() -> pd.DataFrame:
    """A set's manifest: 30 persons with two photos without and two with a mask each."""
    rows = [
        {"file": f"p{i}_{k}{w}.jpg", "person": f"p{i}", "worn": w, "sex": i % 2, "race": 3}
        for i in range(30)
        for w in (0, 1)
        for k in range(2)
    ]
    return pd.DataFrame(rows).assign(age=np.nan, age_low=np.nan, age_high=np.nan, mask_type="")


def test_a_published_run_renders_its_real_masks_block(tmp_path):
    """``RUN.real``: each attacker's sentence and the tables, from a published run's statistics."""
    from maskprivacy.analysis.external import external_metrics
    from maskprivacy_workflow import published

    rng = np.random.default_rng(2)
    m = thirty_persons()
    none, worn = m[m["worn"] == 0], m[m["worn"] == 1]
    preds = {
        ("unmasked", "masked"): {
            0: _preds(none["file"], none["sex"].to_numpy(), np.ones(60, bool))
        },
        ("masked", "masked"): {
            0: _preds(none["file"], none["sex"].to_numpy(), rng.random(60) < 0.9)
        },
        (WORN, "masked"): {0: _preds(worn["file"], worn["sex"].to_numpy(), rng.random(60) < 0.7)},
    }
    analysis = real_masks.analyse(
        m, preds, ["masked"], {"bootstrap": 200, "seed": 0, "permutations": 999}
    )
    results = [
        {"version": v, "train": t, "ensemble": external_metrics(m, p[0], 200, 0)}
        for (v, t), p in preds.items()
    ]
    folder = tmp_path / "results/reference/hf"
    folder.mkdir(parents=True)
    st = {"external": {"hf": {"results": results, "real_masks": analysis}}}
    (folder / "statistics.json").write_text(json.dumps(st))
    run = {"name": "hf", "date": "2026-12-07", "command": "snakemake ...", "machine": "2 cores"}
    (folder / "run.json").write_text(json.dumps({**run, "wall_min": 4.5, "commit": "abc1234"}))
    text = published.render_block("hf.real", tmp_path)
    assert "2026-12-07" in text and "4.5 min wall" in text and "abc1234" in text
    assert "> On hf (30 persons; 60 photos with a real mask, 60 without)" in text
    assert "overstate or understate" in text
    real_none = next(r for r in analysis["comparisons"] if r["a"] == WORN and r["b"] == "unmasked")
    assert f"{100 * real_none['difference']:+.1f} pt" in text
    assert "| CNN | masked | worn | sex |" in text
    assert "no published run" in published.render_block("absent.real", tmp_path)


# --- the figure, the rejects sheet, recognize_external's faces ------------------------------


def _set_statistics(right: dict[tuple[str, str], float], seed: int = 0) -> dict:
    """A set's statistics as compare writes them, for one attacker: 30 persons with two photos
    without and two with a mask each; ``right``: (version, training set) -> the share of sex
    answers right."""
    from maskprivacy.analysis.external import external_metrics

    rng = np.random.default_rng(seed)
    m = thirty_persons()
    preds = {}
    for (version, train), share in right.items():
        faces = m[m["worn"] == int(version == WORN)]
        hit = rng.random(len(faces)) < share
        preds[(version, train)] = {0: _preds(faces["file"], faces["sex"].to_numpy(), hit)}
    analysis = real_masks.analyse(
        m, preds, ["masked"], {"bootstrap": 100, "seed": 0, "permutations": 99}
    )
    results = [
        {"version": v, "train": t, "ensemble": external_metrics(m, p[0], 100, 0)}
        for (v, t), p in preds.items()
    ]
    return {"results": results, "real_masks": analysis}


def test_the_real_mask_figure_has_a_row_per_model(tmp_path):
    """The figure shows every model the set was scored with, a row each (the one that never saw
    a mask first, then the one trained on masks; the recognizer's below the CNN's), each row its
    own model's scores: a painted mask that costs the unmasked model much shows there only."""
    from maskprivacy.report import real_masks as report

    right = {
        ("unmasked", "unmasked"): 0.95,
        ("masked", "unmasked"): 0.35,
        (WORN, "unmasked"): 0.85,
        ("unmasked", "masked"): 0.7,
        ("masked", "masked"): 0.8,
        (WORN, "masked"): 0.8,
    }
    cnn_stats = _set_statistics(right)
    st = {
        "external": {"hf": cnn_stats},
        "recognizer": {"external": {"hf": _set_statistics(right, seed=1)}},
    }
    rows = report.figure_rows("hf", st)
    assert [(a, t) for a, t, _ in rows] == [
        ("CNN", "unmasked"),
        ("CNN", "masked"),
        ("recognizer", "unmasked"),
        ("recognizer", "masked"),
    ]
    attrs = cnn_stats["real_masks"]["attributes"]
    fig = report.figure("hf", st)
    assert len(fig.axes) == len(rows) * len(attrs)
    panels = np.array(fig.axes).reshape(len(rows), len(attrs))
    j = attrs.index("sex")
    for (attacker, train, s), ax in zip(rows, panels[:, j], strict=True):
        assert f"{attacker} trained on {train} faces" in ax.get_title()
        assert ("never saw a mask" in ax.get_title()) == (train == "unmasked")
        drawn = sorted(c.lines[0].get_xdata()[0] for c in ax.containers)
        own = sorted(
            100 * r["ensemble"]["sex"]["accuracy"] for r in s["results"] if r["train"] == train
        )
        assert drawn == pytest.approx(own)
        assert any(line.get_linestyle() == "--" for line in ax.get_lines())  # chance
    # the unmasked model's painted mask: far below the masked model's
    first, second = (min(c.lines[0].get_xdata()[0] for c in ax.containers) for ax in panels[:2, j])
    assert first < second - 20
    out = report.figure_png("hf", {"external": {"hf": cnn_stats}}, tmp_path / "f.png")
    with Image.open(out) as im:
        assert im.size[1] > im.size[0] / 2  # two rows of panels


def test_a_rejects_caption_fits_its_cell(tmp_path):
    """A reason too wide for its cell is broken into lines that fit it (and cut where even two
    lines cannot hold it); on the sheet, nothing of a cell's caption reaches the next cell."""
    from PIL import ImageDraw

    from maskprivacy.core.io import rejects_frame
    from maskprivacy.report.sheets import CELL, fit_lines, rejects_sheet, sheet_fonts

    font, small, _ = sheet_fonts()
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    reasons = ["no_face", "landmarks_implausible", "near_duplicate_label_conflict", "m" * 40]
    for reason in reasons:
        lines = fit_lines(draw, reason, font, CELL - 4, 2)
        assert 1 <= len(lines) <= 2
        assert all(draw.textlength(line, font=font) <= CELL for line in lines)
        assert max(draw.textbbox((0, 0), line, font=font)[2] for line in lines) <= CELL
        if reason != "m" * 40:
            assert "".join(lines) == reason
    assert fit_lines(draw, "landmarks_implausible", font, CELL - 4, 2) == [
        "landmarks_",
        "implausible",
    ]
    assert fit_lines(draw, "m" * 40, font, CELL - 4, 2)[-1].endswith("~")
    (name,) = fit_lines(draw, "W" * 30, small, CELL - 4)
    assert name.endswith("~") and draw.textlength(name, font=small) <= CELL

    # the sheet: one reject in the first of two cells; the second cell stays white
    jpeg(tmp_path / "images/a.jpg", (200, 200), (255, 255, 255))
    rejects = rejects_frame(
        [
            {
                "file": "a_very_long_file_name_of_a_photo.jpg",
                "stage": "align",
                "reason": "landmarks_implausible",
                "detail": "",
            }
        ]
    )
    out = rejects_sheet(rejects, tmp_path / "images", tmp_path / "rejects.png", cols=2)
    with Image.open(out) as im:
        pixels = np.asarray(im.convert("RGB"))
    top = 52  # the title lines; the cells follow
    caption = pixels[top + CELL : top + CELL + 38]
    written = np.flatnonzero((caption < 250).any(axis=(0, 2)))
    assert len(written) and written.max() < 4 + CELL  # within the first cell
    reds = caption[..., 0].astype(int) - caption[..., 2]  # firebrick: the reason
    assert (reds > 60).any(axis=1).sum() > 14  # the reason takes two lines


def test_recognize_external_reads_the_set_once_for_all_its_versions(tmp_path, monkeypatch):
    """recognize_external's faces of each version (those that passed align and, but for the worn
    photos, every mask set), every table read once for all the versions; a clear error when no
    face passed align and every mask set."""
    from maskprivacy.analysis import external as scoring
    from maskprivacy.core import io

    files = [f"f{i}.jpg" for i in range(12)]
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"file": files, "worn": [0] * 8 + [1] * 4, "sex": 0}).to_csv(manifest, index=False)
    landmarks = []
    for shard, part in enumerate((files[1:6], files[6:11])):  # align lost f0 and f11
        path = tmp_path / f"align/{shard}/landmarks.csv"
        path.parent.mkdir(parents=True)
        pd.DataFrame({"file": part}).to_csv(path, index=False)
        landmarks.append(path)
    masks = []
    for maskset, lost in (("masked", "f2.jpg"), ("cloth", "f3.jpg")):
        for shard, part in enumerate((files[:6], files[6:])):
            path = tmp_path / f"mask/{maskset}/{shard}/masks.csv"
            path.parent.mkdir(parents=True)
            pd.DataFrame({"file": [f for f in part if f != lost]}).to_csv(path, index=False)
            masks.append(path)
    versions = ["unmasked", "masked", "cloth", WORN]
    reads = []
    monkeypatch.setattr(scoring, "read_table", lambda p: reads.append(p) or io.read_table(p))
    got = scoring.faces_of_versions(
        manifest, landmarks, masks, "ff", "recognize_external", versions
    )
    assert sorted(reads) == sorted([manifest, *landmarks, *masks])  # each once
    assert got[WORN]["file"].tolist() == files[8:11]  # worn: align only, never painted
    for version in ("unmasked", "masked", "cloth"):  # lost by align (f0), masked (f2), cloth (f3)
        assert got[version]["file"].tolist() == ["f1.jpg", "f4.jpg", "f5.jpg", "f6.jpg", "f7.jpg"]
    # a set without real masks whose faces align lost every one
    pd.DataFrame({"file": ["g.jpg"], "sex": 0}).to_csv(manifest, index=False)
    with pytest.raises(ValueError, match="recognize_external: no face of external set 'ff'"):
        scoring.faces_of_versions(
            manifest, landmarks, masks, "ff", "recognize_external", ["unmasked"]
        )
