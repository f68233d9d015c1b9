"""Verification against the committed manifest of the published set, and the label-defect policy.

All but the last test run on the committed manifest and on data the tests make; the last one
compares the manifest with ../shared/data/UTKFace.tar.gz and skips when that is absent.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT
from test_download import download_run, jpeg_bytes, make_tar

from maskprivacy.core.io import read_table
from maskprivacy.core.labels import Labels
from maskprivacy.datasets.defects import KINDS, DefectPolicy, load_fixes, name_defect
from maskprivacy.datasets.verify import (
    PUBLISHED_ALIGNED_FILES,
    VerificationError,
    build_reference,
    load_reference,
    reference_path,
    resolve_mode,
    verify,
)
from maskprivacy.stages import download

SHARED = ROOT.parent / "shared" / "data" / "UTKFace.tar.gz"
DEFECTS = {
    "39_1_20170116174525125.jpg.chip.jpg": "missing_field",
    "61_1_20170109142408075.jpg.chip.jpg": "missing_field",
    "61_1_20170109150557335.jpg.chip.jpg": "missing_field",
    "24_0_1_20170116220224657 .jpg.chip.jpg": "space_in_name",
    "14_0_0_2017011022340900.jpg.chip.jpg": "malformed_stamp",
    "28_1_2_201701161846515488.jpg.chip.jpg": "malformed_stamp",
    "38_0_1_201701162330572788.jpg.chip.jpg": "malformed_stamp",
    "55_0_0_20170116232725357jpg.chip.jpg": "malformed_stamp",
}


# --------------------------------------------------------------------------------------------
# The committed manifest and corrections table
# --------------------------------------------------------------------------------------------


def test_committed_manifest_is_the_published_set():
    path = reference_path("aligned")
    assert path.stat().st_size < 1_500_000  # names and hashes only
    ref = load_reference()
    assert len(ref) == PUBLISHED_ALIGNED_FILES == 23708
    assert ref["file"].is_unique
    assert ref["sha256"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert ref["sha256"].nunique() == 23318  # 390 byte-identical copies
    assert set(DEFECTS) <= set(ref["file"])


def test_corrections_table_covers_every_published_defect():
    ref = load_reference()
    found = {f: name_defect(f) for f in ref["file"] if name_defect(f)}
    assert found == DEFECTS
    fixes = load_fixes()
    assert set(fixes["file"]) == set(DEFECTS)
    for f, kind in DEFECTS.items():
        row = fixes.set_index("file").loc[f]
        assert row.defect == kind
        assert row.action == ("drop" if kind == "missing_field" else "keep")


def test_name_defect_kinds():
    assert name_defect("26_1_2_20170116174525125.jpg.chip.jpg") == ""
    assert name_defect("26_1_2_20170116174525125.jpg") == ""  # in-the-wild form
    assert name_defect("26_1_2_20170116174525125.JPG") == ""
    assert name_defect("not_a_utkface_name.jpg") == ""  # bad_name, not a defect
    assert name_defect("39_1_20170116174525125.jpg") == "missing_field"
    assert set(KINDS) == set(DEFECTS.values())


# --------------------------------------------------------------------------------------------
# The label-defect policy
# --------------------------------------------------------------------------------------------


def test_fix_policy_keeps_intact_labels_and_drops_missing_race():
    policy = DefectPolicy.from_params({"label_defects": "fix", "label_fixes": ""})
    for name, kind in DEFECTS.items():
        d = policy.decide(name)
        assert d.defect == kind
        if kind == "missing_field":
            assert not d.keep and d.reason == "label_defect" and d.action == "dropped"
            assert "no race field" in d.detail and "utkface_label_fixes.csv" in d.detail
        else:
            assert d.keep and d.action == "fixed"
            age, sex, race = (int(x) for x in name.split("_")[:3])
            assert d.labels == Labels(age, sex, race)
            assert d.note.startswith("fixed by utkface_label_fixes.csv")
    # the in-the-wild form of a listed name is matched too
    assert policy.decide("39_1_20170116174525125.jpg").action == "dropped"
    # a well-formed name passes untouched
    d = policy.decide("26_1_2_20170116174525125.jpg.chip.jpg")
    assert d.keep and d.note == "" and d.defect == ""


def test_drop_policy_drops_every_defect():
    policy = DefectPolicy.from_params({"label_defects": "drop"})
    for name, kind in DEFECTS.items():
        d = policy.decide(name)
        assert not d.keep and d.reason == "label_defect" and kind in d.detail
    assert policy.decide("x_1_2_20170116174525125.jpg").reason == "bad_name"


def test_fix_policy_unknown_defect_is_rejected_with_a_hint():
    d = DefectPolicy.from_params({}).decide("30_1_2_2017011617452.jpg.chip.jpg")
    assert not d.keep and d.reason == "label_defect"
    assert "malformed_stamp" in d.detail and "add a row" in d.detail


def test_custom_table_corrects_labels_and_bad_tables_fail(tmp_path):
    good = tmp_path / "fixes.csv"
    good.write_text(
        "file,defect,action,age,sex,race,note\n"
        "26_1_2_20170116174525125.jpg.chip.jpg,,keep,27,1,2,age checked by hand\n"
    )
    policy = DefectPolicy.from_params({"label_defects": "fix", "label_fixes": str(good)})
    d = policy.decide("26_1_2_20170116174525125.jpg.chip.jpg")
    assert d.labels == Labels(27, 1, 2) and "26/1/2 corrected" in d.note
    bad = tmp_path / "bad.csv"
    bad.write_text("file,defect,action,age,sex,race,note\nx.jpg,,keep,200,1,2,\ny.jpg,,maybe,,,,\n")
    with pytest.raises(ValueError, match=r"row 2 .*out of range(.|\n)*row 3 .*keep or drop"):
        DefectPolicy.from_params({"label_defects": "fix", "label_fixes": str(bad)})
    with pytest.raises(FileNotFoundError, match="download.label_fixes"):
        DefectPolicy.from_params({"label_defects": "fix", "label_fixes": str(tmp_path / "no")})


# --------------------------------------------------------------------------------------------
# verify() and the mode
# --------------------------------------------------------------------------------------------


def small_reference(n: int = 4) -> tuple[pd.DataFrame, dict[str, bytes]]:
    files = {
        f"{20 + i}_0_{i % 5}_2017010112000000{i}.jpg.chip.jpg": jpeg_bytes(i) for i in range(n)
    }
    ref = pd.DataFrame(
        {"file": list(files), "sha256": [hashlib.sha256(b).hexdigest() for b in files.values()]}
    )
    return ref, files


def found_table(entries: dict[str, bytes]) -> pd.DataFrame:
    rows = [(rel, Path(rel).name, hashlib.sha256(b).hexdigest(), "") for rel, b in entries.items()]
    return pd.DataFrame(rows, columns=["rel", "file", "sha256", "error"])


def test_verify_counts_missing_altered_extra():
    ref, files = small_reference(4)
    names = list(files)
    entries = {f"UTKFace/{n}": files[n] for n in names[:3]}
    entries[f"UTKFace/{names[1]}"] = b"re-encoded"  # altered
    del entries[f"UTKFace/{names[2]}"]  # missing
    entries["UTKFace/99_0_0_20170101120000099.jpg.chip.jpg"] = b"x"  # extra
    entries["__MACOSX/UTKFace/._" + names[0]] = b"junk"  # not counted
    entries["UTKFace/.DS_Store"] = b"junk"
    entries["copy/" + names[0]] = b"second copy"  # a later copy of a name: not counted
    v = verify(found_table(entries), ref, "error", "test")
    assert v.counts() == {"verified": 1, "missing": 2, "altered": 1, "extra": 1}
    assert not v.ok
    s = v.summary()
    assert s["status"] == "MISMATCH" and s["altered"] == [names[1]]
    assert s["missing"] == sorted([names[2], names[3]])
    msg = v.message()
    assert "1 verified, 2 missing, 1 altered" in msg and "download.verify" in msg
    assert names[1] in msg


def test_resolve_mode():
    ref, files = small_reference(2)
    published = list(files)
    other = ["30_1_1_20260101000000001.jpg.chip.jpg"]
    assert resolve_mode("auto", "demo", "aligned", published, ref)[0] == "off"
    assert resolve_mode("auto", "path", "aligned", other, ref)[0] == "off"
    assert resolve_mode("auto", "path", "aligned", published, ref)[0] == "error"
    assert resolve_mode("auto", "url", "aligned", other + published, ref)[0] == "error"
    wild_name = published[0].removesuffix(".chip.jpg")
    assert resolve_mode("auto", "path", "aligned", [wild_name], ref)[0] == "error"
    assert resolve_mode("warn", "path", "aligned", other, ref)[0] == "warn"
    assert resolve_mode("error", "demo", "aligned", other, ref)[0] == "error"
    assert resolve_mode("off", "path", "aligned", published, ref)[0] == "off"
    assert resolve_mode("auto", "path", "wild", published, None)[0] == "off"
    with pytest.raises(ValueError, match="variant 'wild'"):
        resolve_mode("error", "path", "wild", published, None)


# --------------------------------------------------------------------------------------------
# run(): every packaging is verified the same way
# --------------------------------------------------------------------------------------------


@pytest.fixture
def fake_reference(monkeypatch):
    ref, files = small_reference(5)
    monkeypatch.setattr(download, "load_reference", lambda *a, **k: ref)
    return ref, files


def make_zip_with(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _cfg(path, **kw):
    return {"source": "path", "path": str(path), "near_duplicates": "off", **kw}


def _outs(tmp: Path) -> list[Path]:
    return [tmp / "out" / n for n in ("images", "manifest.csv", "rejects.csv")]


@pytest.mark.parametrize("packaging", ["tar.gz", "zip", "folder", "kaggle-zip"])
def test_run_verifies_every_packaging(tmp_path, fake_reference, packaging):
    ref, files = fake_reference
    entries = {f"UTKFace/{n}": b for n, b in files.items()}
    if packaging == "tar.gz":
        src = make_tar(tmp_path / "UTKFace.tar.gz", entries)
    elif packaging == "zip":
        src = make_zip_with(tmp_path / "UTKFace.zip", entries)
    elif packaging == "kaggle-zip":  # nested folder, macOS clutter
        entries = {f"UTKFace/UTKFace/{n}": b for n, b in files.items()}
        entries["__MACOSX/UTKFace/._" + next(iter(files))] = b"\x00\x05\x16\x07"
        src = make_zip_with(tmp_path / "archive.zip", entries)
    else:
        src = tmp_path / "folder"
        for rel, b in entries.items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes(b)
    vt = tmp_path / "out" / "verification.csv"
    summary = download_run(_cfg(src), *_outs(tmp_path), verification=vt)
    v = summary["verification"]
    assert v["mode"] == "error" and v["status"] == "verified"
    assert (v["n_verified"], v["n_missing"], v["n_altered"], v["n_extra"]) == (5, 0, 0, 0)
    assert summary["n_images"] == 5
    assert set(read_table(vt)["status"]) == {"verified"}


def test_run_mismatch_is_an_error_and_writes_nothing(tmp_path, fake_reference):
    ref, files = fake_reference
    names = list(files)
    entries = {f"UTKFace/{n}": b for n, b in files.items()}
    entries[f"UTKFace/{names[0]}"] = jpeg_bytes(77)  # altered
    del entries[f"UTKFace/{names[1]}"]  # missing
    entries["UTKFace/44_1_0_20170101120000044.jpg.chip.jpg"] = jpeg_bytes(44)  # extra
    archive = make_tar(tmp_path / "UTKFace.tar.gz", entries)
    with pytest.raises(VerificationError) as err:
        download_run(_cfg(archive), *_outs(tmp_path))
    msg = str(err.value)
    assert "3 verified, 1 missing, 1 altered" in msg and "1 extra" in msg
    assert names[0] in msg and names[1] in msg and "download.verify" in msg
    assert not (tmp_path / "out" / "manifest.csv").exists()
    assert not (tmp_path / "out" / "images").exists()

    summary = download_run(_cfg(archive, verify="warn"), *_outs(tmp_path))
    v = summary["verification"]
    assert v["mode"] == "warn" and v["status"] == "MISMATCH"
    assert (v["n_verified"], v["n_missing"], v["n_altered"], v["n_extra"]) == (3, 1, 1, 1)
    assert summary["n_images"] == 5

    summary = download_run(_cfg(archive, verify=False), *_outs(tmp_path))
    assert summary["verification"] == {
        "mode": "off",
        "why": "download.verify is off",
        "status": "not verified",
    }


def test_wild_files_under_variant_aligned_get_a_hint(tmp_path, fake_reference):
    ref, files = fake_reference
    entries = {f"part1/{n.removesuffix('.chip.jpg')}": b for n, b in files.items()}
    archive = make_tar(tmp_path / "part1.tar.gz", entries)
    with pytest.raises(VerificationError, match="download.variant to wild"):
        download_run(_cfg(archive), *_outs(tmp_path))


def test_run_other_images_are_not_verified(tmp_path, fake_reference):
    src = tmp_path / "in"
    src.mkdir()
    (src / "30_1_1_20260101000000001.jpg.chip.jpg").write_bytes(jpeg_bytes(1))
    summary = download_run(_cfg(src), *_outs(tmp_path))
    assert summary["verification"]["status"] == "not verified"
    assert "no file carries a published" in summary["verification"]["why"]


def test_build_reference_is_deterministic(tmp_path):
    ref, files = small_reference(3)
    archive = make_tar(tmp_path / "a.tar.gz", {f"UTKFace/{n}": b for n, b in files.items()})
    a = build_reference(archive, tmp_path / "a.csv.gz")
    build_reference(archive, tmp_path / "b.csv.gz")
    assert (tmp_path / "a.csv.gz").read_bytes() == (tmp_path / "b.csv.gz").read_bytes()
    assert a.equals(ref.sort_values("file").reset_index(drop=True))


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data/UTKFace.tar.gz is not here")
def test_committed_manifest_matches_the_shared_archive(tmp_path):
    got = build_reference(SHARED, tmp_path / "m.csv.gz")
    assert got.equals(load_reference())
    assert (tmp_path / "m.csv.gz").read_bytes() == reference_path().read_bytes()
    assert re.search(r"23,?708", (SHARED.parent / "README.md").read_text())
