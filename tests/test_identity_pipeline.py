"""End to end: split.group_by: identity through Snakemake, in a temp copy of the repository.

Tiny: the 48 demo faces plus bad inputs, up to the split. The demo set shows two people, so at
dlib's 0.6 it cannot be split by identity (a clear error, tested); a small threshold splits it.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from test_pipeline import BIN, make_copy, mtimes, sh, tiny_params

pytestmark = pytest.mark.slow
TARGET = "results/data/report.json"


def params(demo_folder, **split) -> dict:
    p = tiny_params(demo_folder, seeds=[0])
    p["split"].update(split)
    return p


def snakemake(root, *args, check=True):
    return sh(root, str(BIN / "snakemake"), "--cores", "2", *args, check=check)


def set_split(root, **split) -> None:
    p = yaml.safe_load((root / "params.yaml").read_text())
    p["split"].update(split)
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))


@pytest.fixture(scope="module")
def identity_run(tmp_path_factory, demo_folder):
    root = make_copy(
        tmp_path_factory.mktemp("identity"),
        params(demo_folder, group_by="identity", identity_threshold=0.15),
    )
    snakemake(root, TARGET)
    return root


def test_identity_rule_runs_per_shard_and_split_keeps_identities_apart(identity_run):
    root = identity_run
    for shard in ("0", "1"):
        desc = pd.read_csv(root / f"data/identity/{shard}/descriptors.csv")
        landmarks = pd.read_csv(root / f"data/align/{shard}/landmarks.csv")
        assert sorted(desc["file"]) == sorted(landmarks["file"])  # every aligned face
        assert desc.shape[1] == 130 and desc["sha256"].str.len().eq(64).all()
    report = json.loads((root / TARGET).read_text())
    ident = report["identity"]
    assert ident["group_by"] == "identity" and ident["threshold"] == 0.15
    assert ident["leakage_identity_split"]["share"] == 0
    # the split by duplicates alone, measured in the same run, on the same test part size
    assert ident["leakage_duplicates_split"]["test_faces"] > 0
    assert (root / "results/data/identities.png").stat().st_size > 10_000
    split = pd.read_csv(root / "data/split/split.csv")
    assert (split.groupby("group")["split"].nunique() == 1).all()
    assert report["accounting"]["balanced"]
    # the DVC pipeline has the stage too, one per shard
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())
    assert set(dvc["stages"]["identity"]["foreach"]) == {"0", "1"}
    assert "data/identity/0/descriptors.csv" in dvc["stages"]["split"]["deps"]


def test_html_report_has_an_identities_section(identity_run):
    """The report's section states the groups and both leakage shares, with the sheet."""
    from maskprivacy.report.html import identity_section

    root = identity_run
    report = json.loads((root / TARGET).read_text())
    page = identity_section(report, root / "results/data/identities.png")
    ident = report["identity"]
    dup = ident["leakage_duplicates_split"]
    assert f"form {ident['identities']['groups']:,} identities" in page
    assert (
        f"{dup['test_faces_with_identity_in_train']:,} of {dup['test_faces']:,} "
        f"({100 * dup['share']:.1f}%)" in page
    )
    assert "data:image/png;base64," in page
    assert "not every photo of one person" in identity_section({"identity": {}})


def test_threshold_change_reruns_split_not_identity(identity_run):
    root = identity_run
    before = mtimes(root, ["data/identity/*/descriptors.csv", "data/split/split.csv"])
    set_split(root, identity_threshold=0.1)
    res = snakemake(root, TARGET)
    after = mtimes(root, ["data/identity/*/descriptors.csv", "data/split/split.csv"])
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"data/split/split.csv"}, res.stderr
    assert json.loads((root / TARGET).read_text())["identity"]["threshold"] == 0.1


def test_two_people_cannot_be_split_by_identity(identity_run):
    root = identity_run
    set_split(root, identity_threshold=0.6)
    res = snakemake(root, TARGET, check=False)
    assert res.returncode != 0
    assert "split.group_by: identity cannot divide the faces" in res.stdout + res.stderr
    assert "form 2 group(s)" in res.stdout + res.stderr


def test_duplicates_split_does_not_run_the_identity_rule(identity_run, tmp_path, demo_folder):
    p = params(demo_folder, group_by="duplicates")
    p["recognize"]["enabled"] = False  # the recognizer reads identity's unmasked descriptors
    root = make_copy(tmp_path, p)
    dry = snakemake(root, "-n", "--quiet", "rules")
    assert "identity" not in dry.stdout and "split" in dry.stdout
    assert "identity" not in yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    set_split(root, group_by="identity")
    assert "identity" in snakemake(root, "-n", "--quiet", "rules").stdout
