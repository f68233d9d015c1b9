"""External test sets: a set in another label convention (FairFace's) made from demo faces, its
mapping to UTKFace's labels, the accounting of every row and file, and its metrics."""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from maskprivacy.analysis.external import (
    external_metrics,
    headline,
    in_range,
    labels_present,
    range_error,
)
from maskprivacy.core.io import read_table
from maskprivacy.core.labels import parse_name
from maskprivacy.datasets import external
from maskprivacy.datasets.external import LabelMap, LabelValueError, parse_age

FAIRFACE_RACE = ("White", "Black", "East Asian", "Indian", "Latino_Hispanic")  # by UTKFace index
FAIRFACE_AGES = ((0, 2), (3, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69))


def fairface_age(age: int) -> str:
    for lo, hi in FAIRFACE_AGES:
        if lo <= age <= hi:
            return f"{lo}-{hi}"
    return "more than 70"


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> list[Path]:
    """Ten demo faces with UTKFace names (the truth)."""
    from maskprivacy.datasets import demo

    folder = tmp_path_factory.mktemp("demo_faces")
    return demo.generate(folder, n_images=10, seed=5, progress=False)


def fairface_set(faces: list[Path], root: Path) -> tuple[Path, Path, dict[str, Path]]:
    """A FairFace-style set: ``root/fairface/val/<k>.jpg`` and a CSV ``file,age,gender,race,
    service_test`` naming ``val/<k>.jpg``, with one problem of each kind. Returns the folder,
    the CSV and each kept face's true UTKFace name by its path in the set."""
    folder = root / "fairface"
    (folder / "val").mkdir(parents=True)
    truth, rows = {}, []
    for k, face in enumerate(faces[:8]):
        rel = f"val/{k + 1}.jpg"
        shutil.copy(face, folder / rel)
        lab = parse_name(face.name)
        sex = ("Male", "Female")[lab.sex]
        rows.append([rel, fairface_age(lab.age), sex, FAIRFACE_RACE[lab.race], "True"])
        truth[rel] = face
    rows.append(rows[0])  # the same row again: duplicate_row, the first is kept
    rows.append(["val/2.jpg", "3-9", "Male", "Black", "False"])  # other labels for val/2
    rows.append(["val/404.jpg", "20-29", "Male", "White", "True"])  # file_missing
    rows.append(["val/10.jpg", "20-29", "Male", "Martian", "True"])  # unknown_label
    rows.append(["", "20-29", "Male", "White", "True"])  # no_file_name
    del truth["val/2.jpg"]
    shutil.copy(faces[8], folder / "val" / "9.jpg")  # no_label_row
    shutil.copy(faces[9], folder / "val" / "10.jpg")
    (folder / "val" / "notes.txt").write_text("not a face\n")  # not_an_image_name
    (folder / "val" / "gone.jpg").symlink_to(folder / "nowhere.jpg")  # broken_symlink
    labels = root / "fairface_label_val.csv"
    pd.DataFrame(rows, columns=["file", "age", "gender", "race", "service_test"]).to_csv(
        labels, index=False
    )
    return folder, labels, truth


EXPECTED_REJECTS = [
    ("val/1.jpg", "duplicate_row"),
    ("val/2.jpg", "duplicate_row_conflict"),
    ("val/2.jpg", "duplicate_row_conflict"),
    ("val/404.jpg", "file_missing"),
    ("val/10.jpg", "unknown_label"),
    ("fairface_label_val.csv:14", "no_file_name"),
    ("val/9.jpg", "no_label_row"),
    ("val/notes.txt", "not_an_image_name"),
    ("val/gone.jpg", "broken_symlink"),
]


def test_label_map_covers_common_conventions():
    lmap = LabelMap.load()
    for raw in ("Male", "M", "man", "0", "0.0", " male "):
        assert lmap.value("sex", raw) == 0, raw
    for raw in ("Female", "f", "Woman", "1"):
        assert lmap.value("sex", raw) == 1, raw
    fairface = {
        "White": 0,
        "Black": 1,
        "East Asian": 2,
        "Southeast Asian": 2,
        "Indian": 3,
        "Middle Eastern": 4,
        "Latino_Hispanic": 4,
    }
    for raw, index in fairface.items():
        assert lmap.value("race", raw) == index, raw
    for index, raw in enumerate(("white", "BLACK", "Asian", "Indian", "Others")):
        assert lmap.value("race", raw) == index
        assert lmap.value("race", str(index)) == index
    with pytest.raises(LabelValueError, match="values: {race"):
        lmap.value("race", "Martian")


def test_parse_age_numbers_and_ranges():
    assert parse_age("25") == (25.0, None, None)
    assert parse_age("31.5") == (31.5, None, None)
    assert parse_age("20-29") == (None, 20, 29)
    assert parse_age("(25, 32)") == (None, 25, 32)  # Adience
    assert parse_age("(25-32)") == (None, 25, 32)
    assert parse_age("25 to 32") == (None, 25, 32)
    assert parse_age("more than 70") == (None, 70, 116)  # FairFace's oldest group
    assert parse_age("70+") == (None, 70, 116)
    for bad in ("old", "130", "30-20", "-5", "20-200"):
        with pytest.raises(LabelValueError):
            parse_age(bad)


def test_fairface_folder_maps_labels_and_accounts_for_everything(faces, tmp_path):
    folder, labels, truth = fairface_set(faces, tmp_path)
    manifest, rejects, summary = external.ingest(folder, labels, tmp_path / "out" / "images")

    # every kept face: its image, flat, and UTKFace's labels (the age as FairFace's range)
    assert sorted(manifest["source"]) == sorted(truth)
    assert manifest["file"].tolist() == sorted(r.replace("/", "__") for r in truth)
    for row in manifest.itertuples():
        lab = parse_name(truth[row.source].name)
        assert (row.sex, row.race) == (lab.sex, lab.race)
        assert pd.isna(row.age)  # FairFace gives ranges only
        assert row.age_low <= lab.age <= row.age_high
        assert f"{row.age_low}-{row.age_high}" == fairface_age(lab.age) or row.age_high == 116
        image = tmp_path / "out" / "images" / row.file
        assert image.read_bytes() == truth[row.source].read_bytes()
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == sorted(
        manifest["file"]
    )
    assert manifest["row"].tolist() == sorted(manifest["row"].tolist())

    # every problem is a reject with its reason
    got = sorted(zip(rejects["file"], rejects["reason"], strict=True))
    assert got == sorted(EXPECTED_REJECTS)
    assert set(rejects["stage"]) == {"external"}
    assert "Martian" in rejects.set_index("reason").loc["unknown_label", "detail"]

    # accounting: every CSV row is kept or rejected once; every file kept, rejected, or named by
    # a rejected row
    n_rows = len(pd.read_csv(labels))
    row_reasons = {
        "duplicate_row",
        "duplicate_row_conflict",
        "file_missing",
        "unknown_label",
        "no_file_name",
    }
    assert len(manifest) + rejects["reason"].isin(row_reasons).sum() == n_rows
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*")} - {"val"}
    assert files <= set(manifest["source"]) | set(rejects["file"])
    assert summary["n_rows"] == n_rows and summary["n_images"] == len(truth)
    assert summary["columns"] == {"file": "file", "age": "age", "sex": "gender", "race": "race"}
    assert labels_present(manifest) == ["sex", "race", "age_range"]


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_archive_with_a_top_folder_reads_as_the_folder(faces, tmp_path, kind):
    folder, labels, truth = fairface_set(faces, tmp_path)
    (folder / "val" / "gone.jpg").unlink()  # archives refuse links
    archive = tmp_path / f"fairface.{kind}"
    members = sorted(p for p in folder.rglob("*") if p.is_file())
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for p in members:
                zf.write(p, "fairface-img/" + p.relative_to(folder).as_posix())
    else:
        with tarfile.open(archive, "w:gz") as tf:
            for p in members:
                tf.add(p, "fairface-img/" + p.relative_to(folder).as_posix())
    manifest, rejects, _ = external.ingest(archive, labels, tmp_path / "a" / "images")
    assert sorted(manifest["source"]) == sorted(f"fairface-img/{r}" for r in truth)
    assert manifest["file"].str.startswith("fairface-img__val__").all()
    reasons = sorted(rejects["reason"])
    assert "broken_symlink" not in reasons and len(reasons) == len(EXPECTED_REJECTS) - 1


def test_columns_values_overrides_and_clear_errors(faces, tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    for k in range(3):
        shutil.copy(faces[k], folder / f"{k}.jpg")
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "Bild,Geschlecht,Alter,age_group\n0.jpg,H,34,30-39\n1.jpg,D,,\n2.jpg,H,5,30-39\n"
    )
    with pytest.raises(ValueError, match=r"columns: \{file: <column>\}"):
        external.ingest(folder, csv, tmp_path / "o1" / "images")
    lmap = LabelMap.load(
        columns={"file": "Bild", "sex": "Geschlecht", "age": "Alter"},
        values={"sex": {"H": "male", "D": "female"}},
    )
    manifest, rejects, _ = external.ingest(folder, csv, tmp_path / "o2" / "images", lmap)
    assert manifest[["file", "sex", "age", "age_low", "age_high"]].astype(object).where(
        manifest[["file", "sex", "age", "age_low", "age_high"]].notna(), None
    ).values.tolist() == [["0.jpg", 0, 34, 30, 39], ["1.jpg", 1, None, None, None]]
    assert rejects[["file", "reason"]].values.tolist() == [["2.jpg", "label_conflict"]]

    both = tmp_path / "both.csv"
    both.write_text("file,image,sex\n0.jpg,0.jpg,M\n")
    manifest, _, _ = external.ingest(folder, both, tmp_path / "o3" / "images")
    assert manifest["file"].tolist() == ["0.jpg"]  # `file` itself wins over its alias
    two = tmp_path / "two.csv"
    two.write_text("image,path,sex\n0.jpg,0.jpg,M\n")
    with pytest.raises(ValueError, match="several columns read as"):
        external.ingest(folder, two, tmp_path / "o4" / "images")
    none = tmp_path / "none.csv"
    none.write_text("file,mood\n0.jpg,happy\n")
    with pytest.raises(ValueError, match="no label column"):
        external.ingest(folder, none, tmp_path / "o5" / "images")
    with pytest.raises(ValueError, match="not among"):
        LabelMap.load(columns={"gender": "sex"})


def test_run_writes_tables_and_refuses_an_empty_set(faces, tmp_path):
    folder, labels, truth = fairface_set(faces, tmp_path)
    out = tmp_path / "data" / "external" / "ff"
    cfg = {"path": str(folder), "labels": str(labels)}
    summary = external.run(cfg, out / "images", out / "manifest.csv", out / "rejects.csv")
    assert summary["labels"]["age_range"] == len(truth) and summary["labels"]["age_exact"] == 0
    manifest = read_table(out / "manifest.csv")
    assert len(manifest) == len(truth) and manifest["age"].isna().all()
    assert len(read_table(out / "rejects.csv")) == len(EXPECTED_REJECTS)
    empty = tmp_path / "empty.csv"
    empty.write_text("file,gender\nval/404.jpg,Male\n")
    with pytest.raises(ValueError, match="no image kept"):
        external.run({**cfg, "labels": str(empty)}, out / "i2", out / "m2.csv", out / "r2.csv")


def test_range_scoring():
    pred = np.array([25.0, 29.4, 29.6, 18.0, 75.0])
    low, high = np.array([20, 20, 20, 20, 70.0]), np.array([29, 29, 29, 29, 116.0])
    assert in_range(pred, low, high).tolist() == [True, True, False, False, True]
    assert np.allclose(range_error(pred, low, high), [0, 0.4, 0.6, 2, 0])  # not rounded
    # a one-year range scores as the absolute error
    assert np.allclose(range_error(np.array([30.5]), np.array([33.0]), np.array([33.0])), [2.5])


def test_metrics_only_for_labels_present():
    labels = pd.DataFrame(
        {
            "file": list("abcdef"),
            "sex": pd.array([0, 1, 1, 0, None, None], dtype="Int64"),
            "race": pd.array([None] * 6, dtype="Int64"),
            "age": [30.0, None, 50.0, None, None, None],
            "age_low": pd.array([None, 20, None, 40, 0, None], dtype="Int64"),
            "age_high": pd.array([None, 29, None, 49, 2, None], dtype="Int64"),
        }
    )
    preds = pd.DataFrame(
        {
            "file": list("abcdef"),
            "sex_pred": [0, 0, 1, 0, 1, 1],
            "race_pred": [0, 1, 2, 3, 4, 0],
            "age_pred": [33.0, 25.0, 44.0, 51.0, 1.0, 9.0],
        }
    )
    m = external_metrics(labels, preds, n_boot=200, seed=1)
    assert m["n_faces"] == 6 and "race" not in m
    assert m["sex"]["n"] == 4 and m["sex"]["accuracy"] == 0.75
    assert m["sex"]["balanced_accuracy"] == pytest.approx(0.75)  # recall 1 (male), 0.5 (female)
    assert m["sex"]["per_class_recall"] == {"male": 1.0, "female": 0.5}
    assert m["age"]["n"] == 2 and m["age"]["mae"] == pytest.approx(4.5)
    assert m["age"]["mean_error"] == pytest.approx(-1.5)
    r = m["age_range"]
    assert r["n"] == 3 and r["group_accuracy"] == pytest.approx(2 / 3)
    assert r["range_error"] == pytest.approx(2 / 3)  # 0, 2 (51 over 49), 0
    for attr, key in (("sex", "accuracy"), ("age", "mae"), ("age_range", "range_error")):
        assert m[attr][f"{key}_low"] <= m[attr][key] <= m[attr][f"{key}_high"]
    assert external_metrics(labels, preds, n_boot=200, seed=1) == m  # seeded
    assert headline(m) == {
        "sex_accuracy": 0.75,
        "age_mae": pytest.approx(4.5),
        "age_range_group_accuracy": pytest.approx(2 / 3),
        "age_range_range_error": pytest.approx(2 / 3),
    }


def test_demo_set_scored_with_true_predictions(faces, tmp_path):
    """A FairFace-style set from demo faces, scored with predictions equal to the truth of the
    UTKFace names: every label present is perfect, every range hit."""
    folder, labels, truth = fairface_set(faces, tmp_path)
    manifest, _, _ = external.ingest(folder, labels, tmp_path / "o" / "images")
    rows = []
    for f, src in zip(manifest["file"], manifest["source"], strict=True):
        lab = parse_name(truth[src].name)
        rows.append((f, lab.sex, lab.race, float(lab.age)))
    preds = pd.DataFrame(rows, columns=["file", "sex_pred", "race_pred", "age_pred"])
    m = external_metrics(manifest, preds, n_boot=100)
    assert m["sex"]["accuracy"] == m["race"]["accuracy"] == 1.0
    assert m["age_range"]["group_accuracy"] == 1.0 and m["age_range"]["range_error"] == 0.0
    assert "age" not in m


def _preds(files: list[str], sex: list[int], age: list[float]) -> pd.DataFrame:
    df = pd.DataFrame({"file": files, "sex_pred": sex, "race_pred": 0, "age_pred": age})
    df["sex_prob_female"] = df["sex_pred"].astype(float)
    for k in range(5):
        df[f"race_prob_{k}"] = float(k == 0)
    return df


def test_summary_ensembles_seeds_and_accounts_for_the_set():
    from maskprivacy.analysis.external import faces_in_every_version, summarise
    from maskprivacy.report.external import section

    manifest = pd.DataFrame(
        {
            "file": ["a", "b", "c", "d"],
            "sex": pd.array([0, 1, 1, 0], dtype="Int64"),
            "race": pd.array([None] * 4, dtype="Int64"),
            "age": [None] * 4,
            "age_low": pd.array([20, 20, 30, 30], dtype="Int64"),
            "age_high": pd.array([29, 29, 39, 39], dtype="Int64"),
        }
    )
    aligned = [pd.DataFrame({"file": ["a", "b"]}), pd.DataFrame({"file": ["c"]})]
    masked = [pd.DataFrame({"file": ["a", "c"]}), pd.DataFrame({"file": ["b"]})]
    faces = faces_in_every_version(manifest, {"unmasked": aligned, "masked": masked})
    assert faces["file"].tolist() == ["a", "b", "c"]  # d was not aligned
    files = faces["file"].tolist()
    predictions = {
        ("unmasked", "unmasked"): {
            0: _preds(files, [0, 1, 1], [25, 25, 35]),
            1: _preds(files, [0, 1, 0], [25, 41, 35]),
        },
        ("masked", "unmasked"): {0: _preds(files, [1, 1, 1], [50, 50, 50])},
    }
    rejects = pd.DataFrame(
        [["d", "align", "no_face", ""], ["x.txt", "external", "not_an_image_name", ""]],
        columns=["file", "stage", "reason", "detail"],
    )
    s = summarise(manifest, predictions, rejects, {"n_rows": 4, "n_entries": 5}, 100, 0)
    assert s["labels"] == ["sex", "age_range"]
    assert s["accounting"] == {
        "label_rows": 4,
        "files": 5,
        "images": 4,
        "scored": 3,
        "rejected_by_stage_and_reason": {"align: no_face": 1, "external: not_an_image_name": 1},
    }
    unmasked, masked = s["results"]
    assert unmasked["seeds"] == [0, 1] and masked["seeds"] == [0]
    # seed 1 gets c wrong, seed 0 right; the ensemble averages P(female) 0.5 -> male: wrong
    assert unmasked["per_seed"]["0"]["sex_accuracy"] == 1.0
    assert unmasked["mean"]["sex_accuracy"] == pytest.approx(5 / 6)
    assert unmasked["sd"]["sex_accuracy"] > 0 and masked["sd"] == {}
    assert unmasked["ensemble"]["sex"]["accuracy"] == pytest.approx(2 / 3)
    assert unmasked["ensemble"]["age_range"]["group_accuracy"] == pytest.approx(2 / 3)  # b: 33
    assert masked["ensemble"]["age_range"]["range_error"] == pytest.approx((21 + 21 + 11) / 3)

    conditions = [{"name": "unmasked", "train": "unmasked", "test": "unmasked"}]
    utk = {"unmasked": {"n_test": 9, "ensemble": {"sex": {"accuracy": 0.9}, "age": {"mae": 5.0}}}}
    page = section({"fair": s}, conditions, utk)
    assert "<h2>External test sets</h2>" in page and "<h3>fair</h3>" in page
    assert "UTKFace test" in page and "90.0" in page and "align: no_face" in page
    assert section({}, conditions, utk) == ""
