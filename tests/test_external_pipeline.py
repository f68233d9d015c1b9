"""End to end: the reduced demo with an external test set (demo faces in FairFace's convention,
as a zip) through Snakemake: read, aligned and masked by their own jobs, scored by every model
and by the recognizer attacker (recognize.enabled, the default: its descriptors by their own
jobs, recognize's fitted heads), reported next to UTKFace's test set; every row and file
accounted for; dvc.yaml lists its stages."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_external import FAIRFACE_RACE, fairface_age
from test_pipeline import BIN, make_copy, sh
from usercopy import small_params

from maskprivacy.core.labels import parse_name

pytestmark = pytest.mark.slow


def fairface_zip(faces: list[Path], root: Path) -> tuple[Path, Path, int]:
    """``root/ff.zip`` (``ff/val/<k>.jpg``: the faces, a truncated JPEG, a text file) and its
    labels CSV (every face, the truncated one, a missing file); returns them and the number of
    entries in the zip."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    archive = root / "ff.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for k, face in enumerate(faces, 1):
            lab = parse_name(face.name)
            zf.write(face, f"ff/val/{k}.jpg")
            sex = ("Male", "Female")[lab.sex]
            rows.append([f"val/{k}.jpg", fairface_age(lab.age), sex, FAIRFACE_RACE[lab.race]])
        data = faces[0].read_bytes()
        zf.writestr("ff/val/broken.jpg", data[: len(data) // 3])  # align: decode_error
        zf.writestr("ff/README.txt", "FairFace-style test set\n")  # not_an_image_name
        n_entries = len(faces) + 2
    rows.append(["val/broken.jpg", "20-29", "Female", "White"])
    rows.append(["val/missing.jpg", "20-29", "Female", "White"])  # file_missing
    labels = root / "ff_labels.csv"
    pd.DataFrame(rows, columns=["file", "age", "gender", "race"]).to_csv(labels, index=False)
    return archive, labels, n_entries


def test_external_set_through_the_pipeline(tmp_path, demo_folder):
    from maskprivacy.datasets import demo

    faces = demo.generate(tmp_path / "faces", n_images=8, seed=11, progress=False)
    archive, labels, n_entries = fairface_zip(faces, tmp_path / "ext")
    params = small_params(demo_folder)
    params["train"]["epochs"] = 1
    params["align"]["shards"] = 1
    params["evaluate"]["external"] = {"ff": {"path": str(archive), "labels": str(labels)}}
    # a second mask set, tested only (no model of its own): the external set gets its version too
    params["mask"]["sets"]["cloth"] = {"cloth": 1.0}
    params["evaluate"]["conditions"].append(
        {"name": "unmasked_to_cloth", "train": "unmasked", "test": "cloth"}
    )
    root = make_copy(tmp_path / "run", params)
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    assert set(dvc["external"]["foreach"]) == {"ff"}
    assert dvc["external"]["do"]["params"] == ["evaluate.external.${item.ext}"]  # its own set
    assert set(dvc["align_external"]["foreach"]) == {"ff-0"}  # set, shard
    assert "unmasked-ff-0-masked" in dvc["evaluate_external"]["foreach"]  # model, set, seed, faces
    assert "masked-ff-0-cloth" in dvc["evaluate_external"]["foreach"]
    assert {"ff-cloth-0", "ff-masked-0"} <= set(dvc["mask_external"]["foreach"])
    # the recognizer: descriptors of every version (set, shard, version), one scoring job per set
    # with recognize's heads (kept as files)
    assert set(dvc["describe_external"]["foreach"]) == {
        "ff-0-unmasked",
        "ff-0-masked",
        "ff-0-cloth",
    }
    assert set(dvc["recognize_external"]["foreach"]) == {"ff"}
    # (its params, evaluate.bootstrap and seed: tests/test_dvcgen.py's config_paths test)
    assert "results/recognize/heads/unmasked/seed0.joblib" in dvc["recognize"]["outs"]
    assert "results/recognize/heads/masked/seed0.joblib" in dvc["recognize_external"]["do"]["deps"]
    sh(root, str(BIN / "snakemake"), "--cores", "2")

    manifest = pd.read_csv(root / "data/external/ff/manifest.csv")
    assert len(manifest) == len(faces) + 1  # the broken JPEG is read; align rejects it
    rejects = pd.concat(
        [pd.read_csv(p) for p in sorted((root / "data/external/ff").rglob("rejects.csv"))]
    )
    reasons = sorted(zip(rejects["stage"], rejects["reason"], strict=True))
    assert ("external", "file_missing") in reasons
    assert ("external", "not_an_image_name") in reasons
    assert ("align", "decode_error") in reasons

    scored = None
    for version in ("unmasked", "masked", "cloth"):
        for train in ("unmasked", "masked"):
            out = root / "results/external/ff" / version / train / "seed0"
            m = json.loads((out / "metrics.json").read_text())
            assert {"sex", "race", "age_range"} <= set(m) and "age" not in m
            preds = pd.read_csv(out / "predictions.csv")
            assert scored is None or preds["file"].tolist() == scored  # the same faces
            scored = preds["file"].tolist()
    # every row and file: scored, or rejected with a reason, once
    not_scored = set(manifest["file"]) - set(scored)
    assert not_scored <= set(rejects["file"])
    assert len(scored) + len(rejects) == len(faces) + 3  # + broken, missing row, README

    stats = json.loads((root / "results/compare/statistics.json").read_text())["external"]["ff"]
    assert stats["labels"] == ["sex", "race", "age_range"]
    assert stats["accounting"] == {
        "label_rows": len(faces) + 2,
        "files": n_entries,
        "images": len(manifest),
        "scored": len(scored),
        "rejected_by_stage_and_reason": {
            "align: decode_error": 1,
            "external: file_missing": 1,
            "external: not_an_image_name": 1,
        },
    }
    metrics = json.loads((root / "results/metrics.json").read_text())["external"]["ff"]
    assert set(metrics["masked_trained_on_unmasked"]) == {
        "sex_accuracy",
        "race_accuracy",
        "age_range_group_accuracy",
        "age_range_range_error",
    }
    page = (root / "results/report.html").read_text()
    assert "<h2>External test sets</h2>" in page and "<h3>ff</h3>" in page
    assert "UTKFace test" in page

    # the recognizer attacker on the same faces, with the CNN's statistics, beside it
    rec = json.loads((root / "results/compare/statistics.json").read_text())["recognizer"]
    rec_ff = rec["external"]["ff"]
    assert rec_ff["accounting"] == stats["accounting"]  # the same faces
    assert {(r["version"], r["train"]) for r in rec_ff["results"]} == {
        (v, t) for v in ("unmasked", "masked", "cloth") for t in ("unmasked", "masked")
    }
    for r in rec_ff["results"]:
        assert {"accuracy", "accuracy_low", "accuracy_high"} <= set(r["ensemble"]["sex"])
        assert r["seeds"] == [0] and set(r["per_seed"]) == {"0"}
    described = read_csvs(root, "data/external/ff/describe/*/0/descriptors.csv")
    no_descriptor = pd.read_csv(root / "results/recognize_external/ff/rejects.csv")
    assert rec_ff["no_descriptor"]["n"] == len(no_descriptor)
    for version in ("unmasked", "masked", "cloth"):
        preds = pd.read_csv(
            root / f"results/recognize_external/ff/{version}/masked/seed0/predictions.csv"
        )
        assert preds["file"].tolist() == scored
        have = set(described[described["version"] == version]["file"])
        lost = set(no_descriptor[no_descriptor["detail"].str.startswith(f"{version}:")]["file"])
        assert set(scored) == (have & set(scored)) | lost  # described, or listed as a reject
    rec_metrics = json.loads((root / "results/metrics.json").read_text())["recognizer"]
    assert set(rec_metrics["external"]["ff"]["masked_trained_on_unmasked"]) == set(
        metrics["masked_trained_on_unmasked"]
    )
    assert "<td>recognizer</td><td>ff</td><td>masked</td>" in page
    assert "<td>recognizer</td><td>UTKFace test</td>" in page
    assert "<td>CNN</td><td>ff</td><td>masked</td>" in page


def read_csvs(root: Path, pattern: str) -> pd.DataFrame:
    """The tables under ``root`` matching ``pattern``, each row with its version (the folder
    two above the file: data/external/<set>/describe/<version>/<shard>/...)."""
    return pd.concat(
        [pd.read_csv(p).assign(version=p.parts[-3]) for p in sorted(root.glob(pattern))],
        ignore_index=True,
    )
