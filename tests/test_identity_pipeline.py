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
    root = make_copy(tmp_path, params(demo_folder, group_by="duplicates"))
    dry = snakemake(root, "-n", "--quiet", "rules")
    assert "identity" not in dry.stdout and "split" in dry.stdout
    assert "identity" not in yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    set_split(root, group_by="identity")
    assert "identity" in snakemake(root, "-n", "--quiet", "rules").stdout


def test_gpu_plan_replays_descriptors_without_dlib(identity_run, tmp_path, demo_folder):
    """What the lent GPU machine runs (no Snakemake, no dlib): the plan of an identity run, with
    align's faces and identity's descriptors replayed from caches made here; the report has
    the identities section."""
    from test_pipeline import ROOT, WITHOUT

    snake_root = identity_run
    p = params(demo_folder, group_by="identity", identity_threshold=0.15)
    root = make_copy(tmp_path / "copy", p)
    py, bench = str(BIN / "python"), ROOT / "benchmarks"
    sh(root, py, "-m", "maskprivacy_workflow.plan", "export", "--cores", "2", "-o", "plan.json")
    rules = [j["rule"] for j in json.loads((root / "plan.json").read_text())["jobs"]]
    assert rules.count("identity") == 2
    sh(root, py, str(bench / "landmarks_cache.py"), str(demo_folder), str(tmp_path / "lm.npz"),
       "--params", "params.yaml", "--workers", "1")  # fmt: skip
    sh(
        root,
        py,
        str(bench / "identity_cache.py"),
        str(snake_root / "data"),
        str(tmp_path / "d.npz"),
    )
    sh(root, py, "-c", WITHOUT, str(bench / "utkface_gpu.py"), "plan.json", str(tmp_path / "lm.npz"),
       "--descriptors", str(tmp_path / "d.npz"), "--jobs", "2")  # fmt: skip
    for shard in ("0", "1"):  # the same faces and descriptors as dlib's, here
        f = f"data/identity/{shard}/descriptors.csv"
        got, want = (pd.read_csv(r / f).drop(columns="sha256") for r in (root, snake_root))
        assert len(got) and got.equals(want), f
    report = json.loads((root / TARGET).read_text())
    assert report["identity"]["leakage_identity_split"]["share"] == 0
    page = (root / "results/report.html").read_text()
    assert "<h2>Identities</h2>" in page and "closer than 0.15" in page
