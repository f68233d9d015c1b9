"""Label files as people have them: TSV, JSON (records or keyed by file), a file name built from
several columns, and values that mean "unknown" (an Adience-like set made from demo faces)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from maskprivacy.core.labels import parse_name
from maskprivacy.datasets import external


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> list[Path]:
    from maskprivacy.datasets import demo

    return demo.generate(tmp_path_factory.mktemp("demo"), n_images=4, seed=7, progress=False)


def plain_set(faces: list[Path], root: Path) -> tuple[Path, list[dict[str, str]]]:
    folder = root / "set"
    folder.mkdir()
    rows = []
    for k, face in enumerate(faces):
        shutil.copy(face, folder / f"{k}.jpg")
        lab = parse_name(face.name)
        rows.append({"image": f"{k}.jpg", "gender": ("m", "f")[lab.sex], "age": str(lab.age)})
    return folder, rows


def manifest_of(folder: Path, labels: Path, tmp: Path, **kw):
    lmap = external.LabelMap.load(unknown=kw.pop("unknown", None))
    return external.ingest(folder, labels, tmp / "out", lmap, **kw)


@pytest.mark.parametrize("kind", ["csv", "tsv", "txt_tabs", "json_records", "json_by_file"])
def test_every_format_gives_the_same_manifest(faces, tmp_path, kind):
    folder, rows = plain_set(faces, tmp_path)
    table = pd.DataFrame(rows)
    path = tmp_path / {"csv": "l.csv", "tsv": "l.tsv", "txt_tabs": "l.txt"}.get(kind, "l.json")
    if kind == "csv":
        table.to_csv(path, index=False)
    elif kind in ("tsv", "txt_tabs"):
        table.to_csv(path, index=False, sep="\t")
    elif kind == "json_records":
        path.write_text(json.dumps([{**r, "age": int(r["age"])} for r in rows]))
    else:
        path.write_text(
            json.dumps({r["image"]: {"gender": r["gender"], "age": r["age"]} for r in rows})
        )
    manifest, rejects, summary = manifest_of(folder, path, tmp_path)
    assert rejects.empty and len(manifest) == len(faces) == summary["n_rows"]
    truth = {f"{k}.jpg": parse_name(f.name) for k, f in enumerate(faces)}
    for r in manifest.itertuples():
        assert (r.sex, r.age) == (truth[r.file].sex, truth[r.file].age)
    assert manifest["row"].tolist() == [2, 3, 4, 5]


def test_adience_fold_file_template_and_unknown_gender(faces, tmp_path):
    """Adience names a face by user_id, face_id and original_image; gender u means unknown."""
    root = tmp_path / "adience"
    rows = []
    for k, face in enumerate(faces):
        user, orig = f"user{k % 2}", f"{1000 + k}_abc.jpg"
        rel = f"faces/{user}/coarse_tilt_aligned_face.{k + 1}.{orig}"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(face, root / rel)
        gender = "u" if k == 1 else ("m", "f")[parse_name(face.name).sex]
        rows.append([user, orig, str(k + 1), "(25, 32)", gender])
    rows.append(["user0", "9999_x.jpg", "9", "None", "u"])  # file missing
    extra = root / "faces/user9/coarse_tilt_aligned_face.7.7_z.jpg"
    extra.parent.mkdir()
    shutil.copy(faces[0], extra)
    rows.append(["user9", "7_z.jpg", "7", "None", "u"])  # no label left at all
    labels = root / "fold_0_data.txt"
    pd.DataFrame(rows, columns=["user_id", "original_image", "face_id", "age", "gender"]).to_csv(
        labels, sep="\t", index=False
    )
    template = "faces/{user_id}/coarse_tilt_aligned_face.{face_id}.{original_image}"
    # without `unknown`, `u` is a value the map does not know: the row is rejected
    _, rejects, _ = manifest_of(root, labels, tmp_path / "a", file_template=template)
    assert "unknown_label" in set(rejects["reason"])
    manifest, rejects, summary = manifest_of(
        root,
        labels,
        tmp_path / "b",
        file_template=template,
        unknown={"sex": ["u"], "age": "None"},
    )
    by_source = manifest.set_index("source")
    kept = "faces/user1/coarse_tilt_aligned_face.2.1001_abc.jpg"
    assert pd.isna(by_source.loc[kept, "sex"]) and by_source.loc[kept, "age_low"] == 25
    assert len(manifest) == 4  # and a fifth face whose row has no label left (`no_labels`)
    reasons = dict(zip(rejects["file"], rejects["reason"], strict=True))
    assert reasons["faces/user0/coarse_tilt_aligned_face.9.9999_x.jpg"] == "file_missing"
    assert reasons["faces/user9/coarse_tilt_aligned_face.7.7_z.jpg"] == "no_labels"
    assert summary["unknown_labels"] == {"age": 2, "sex": 3}


@pytest.mark.parametrize(
    "write, kw, message",
    [
        (lambda p: p.write_text('{"a.jpg": "male"}'), {}, "not an object of labels"),
        (lambda p: p.write_text("[1, 2]"), {}, "a list of records"),
        (lambda p: p.write_text("{oops"), {}, "cannot read the labels JSON"),
        (
            lambda p: p.write_text('[{"user": "a", "gender": "m"}]'),
            {"file_template": "faces/{user_id}/{face_id}"},
            "file_template names",
        ),
    ],
)
def test_label_file_errors_say_what_is_wrong(faces, tmp_path, write, kw, message):
    folder, _ = plain_set(faces, tmp_path)
    path = tmp_path / "l.json"
    write(path)
    with pytest.raises(ValueError, match=message):
        manifest_of(folder, path, tmp_path, **kw)
