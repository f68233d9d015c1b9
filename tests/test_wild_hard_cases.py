"""Hard cases made from UTKFace-named faces (maskprivacy.datasets.hard_cases,
benchmarks/wild_hard_cases.py): every kind, every label format read by the external stage, and
the measuring of align + mask on them."""

from __future__ import annotations

import importlib.util
import json
import tarfile

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from PIL import Image

from maskprivacy.core.labels import parse_name
from maskprivacy.datasets import external, hard_cases

N = len(hard_cases.KINDS) * 2  # two pictures of each kind


@pytest.fixture(scope="module")
def made(tmp_path_factory, demo_folder):
    """A hard-case set of N pictures from the demo faces (UTKFace-named)."""
    out = tmp_path_factory.mktemp("hard") / "set"
    summary = hard_cases.generate(demo_folder, out, n=N, seed=1, size=256)
    return out, summary


def test_each_kind_and_where_its_face_is(made):
    out, summary = made
    truth = pd.read_csv(out / "truth.csv")
    assert summary["kinds"] == dict.fromkeys(sorted(hard_cases.KINDS), 2)
    assert len(truth) == N and truth["file"].is_unique
    for r in truth.itertuples():
        with Image.open(out / "images" / r.file) as im:
            assert im.size == (256, 256)
        assert 0 <= r.face_x < 256 and 0 <= r.face_y < 256, r
        parse_name(r.source)  # a UTKFace name: the labels come from it
    by = truth.set_index("kind")
    assert (by.loc["rotated", "angle"].abs() >= 15).all()
    assert (by.loc["rotated", "angle"].abs() <= 45).all()
    assert (by.loc["small", "face_side"] <= 100).all()
    assert by.loc["mirrored", "mirrored"].all()
    two = by.loc["two_faces"]
    assert two["second_source"].ne(two["source"]).all()
    # the second face is cut by the left or right edge, and smaller
    cut = (two["second_x"] - 0.5 * two["second_side"] < 0) | (
        two["second_x"] + 0.5 * two["second_side"] > 256
    )
    assert cut.all() and (two["second_side"] < two["face_side"]).all()
    assert truth.loc[truth["kind"] != "two_faces", "second_x"].isna().all()


def test_the_same_seed_makes_the_same_set_from_an_archive(made, demo_folder, tmp_path):
    out, _ = made
    with tarfile.open(tmp_path / "faces.tar.gz", "w:gz") as t:
        for f in sorted(demo_folder.iterdir(), reverse=True):  # another order
            t.add(f, arcname=f"UTKFace/{f.name}")
    again = hard_cases.generate(
        tmp_path / "faces.tar.gz", tmp_path / "again", n=N, seed=1, size=256
    )
    assert again["kinds"] == made[1]["kinds"]
    a = pd.read_csv(out / "truth.csv")
    b = pd.read_csv(tmp_path / "again" / "truth.csv")
    pd.testing.assert_frame_equal(a, b)
    for f in a["file"][:3]:
        assert (out / "images" / f).read_bytes() == (tmp_path / "again/images" / f).read_bytes()


@pytest.mark.parametrize(
    "labels, kw",
    [
        ("labels.csv", {}),
        ("labels.tsv", {}),
        ("labels_records.json", {}),
        ("labels_by_file.json", {}),
        ("adience/fold_0_data.txt", {"file_template": hard_cases.ADIENCE_TEMPLATE}),
    ],
)
def test_every_label_file_reads_as_an_external_set(made, tmp_path, labels, kw):
    out, _ = made
    truth = pd.read_csv(out / "truth.csv").set_index("file")
    adience = labels.startswith("adience")
    lmap = external.LabelMap.load(unknown={"sex": ["u"], "age": ["None"]} if adience else None)
    folder = out / ("adience" if adience else "images")
    manifest, rejects, summary = external.ingest(folder, out / labels, tmp_path / "x", lmap, **kw)
    assert rejects.empty, rejects.to_string()
    assert len(manifest) == N == summary["n_rows"]
    for r in manifest.itertuples():
        name = r.file.rsplit(".", 2)[-2].split("_", 1)[-1] + ".jpg" if adience else r.file
        lab = parse_name(truth.loc[name, "source"])
        assert r.sex == lab.sex
        if adience:  # an age group, or the age where Adience has no group for it
            if pd.isna(r.age):
                assert r.age_low <= lab.age <= r.age_high
            else:
                assert r.age == lab.age
        else:
            assert (r.race, r.age) == (lab.race, lab.age)


def test_external_yaml_names_every_format(made):
    import yaml

    out, _ = made
    sets = yaml.safe_load((out / "external.yaml").read_text())["evaluate"]["external"]
    assert set(sets) == {"hard_csv", "hard_tsv", "hard_json", "hard_json_keyed", "hard_adience"}
    assert sets["hard_adience"]["file_template"] == hard_cases.ADIENCE_TEMPLATE
    assert json.loads((out / "labels_records.json").read_text())[0]["file"] == "hard_0000.jpg"


def test_adience_age_groups():
    assert hard_cases.adience_age(27) == "(25, 32)"
    assert hard_cases.adience_age(0) == "(0, 2)" and hard_cases.adience_age(116) == "116"
    assert hard_cases.adience_age(22) == "22"


def test_unknown_kind_and_too_few_faces(demo_folder, tmp_path):
    with pytest.raises(ValueError, match="unknown hard-case kind"):
        hard_cases.generate(demo_folder, tmp_path / "a", n=2, kinds=("upside_down",))
    with pytest.raises(ValueError, match="UTKFace-named faces"):
        hard_cases.generate(demo_folder, tmp_path / "b", n=200)


def test_verdict_tells_the_labelled_face_from_the_other():
    row = {"face_x": 100, "face_y": 100, "face_side": 80, "second_x": 10, "second_y": 100}
    pts = np.zeros((68, 2))
    assert hard_cases.verdict(pts + [105, 95], row) == "right_face"
    assert hard_cases.verdict(pts + [15, 100], row) == "second_face"
    assert hard_cases.verdict(pts + [200, 200], {**row, "second_x": np.nan}) == "elsewhere"


def test_measure_accounts_for_every_picture(made, tmp_path, capsys):
    """The benchmark's measuring mode: one outcome per picture, coverage per kind, losses with
    their reasons (the HOG cascade only: no CNN helper in the tests)."""
    out, _ = made
    spec = importlib.util.spec_from_file_location(
        "wild_hard_cases", ROOT / "benchmarks/wild_hard_cases.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rc = bench.main(
        ["measure", str(out), "--params", str(ROOT / "params.yaml"), "--detectors", "cascade"]
        + ["--json", str(tmp_path / "m.json"), "--csv", str(tmp_path / "m.csv")]
    )
    assert rc == 0
    res = json.loads((tmp_path / "m.json").read_text())["cascade"]
    table = pd.read_csv(tmp_path / "m_cascade.csv")
    assert res["n"] == N and res["img_s"] > 0
    covered = (table["outcome"] == "covered").mean()  # the report rounds it to 4 places
    assert res["coverage"] == pytest.approx(covered, abs=5e-5)
    assert len(table) == N and table["outcome"].notna().all()
    assert len(res["losses"]) == (table["outcome"] != "covered").sum()
    assert "coverage" in capsys.readouterr().out
    tab = hard_cases.coverage(table)
    assert tab.loc["all", "n"] == N and set(hard_cases.KINDS) <= set(tab.index)


def test_read_files_from_a_folder_a_zip_and_a_tar(tmp_path):
    import zipfile

    from maskprivacy.datasets.archives import read_files

    folder = tmp_path / "f"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub/1_0_0_x.jpg").write_bytes(b"a")
    (folder / "notes.txt").write_bytes(b"b")
    with zipfile.ZipFile(tmp_path / "f.zip", "w") as z:
        z.writestr("UTKFace/sub/1_0_0_x.jpg", b"a")
        z.writestr("UTKFace/notes.txt", b"b")
    with tarfile.open(tmp_path / "f.tar.gz", "w:gz") as t:
        t.add(folder, arcname="UTKFace")
    for source in (folder, tmp_path / "f.zip", tmp_path / "f.tar.gz"):
        got = list(read_files(source, lambda b: b.endswith(".jpg")))
        assert got == [("1_0_0_x.jpg", b"a")], source
