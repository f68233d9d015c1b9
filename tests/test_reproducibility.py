"""The data stages are byte for byte reproducible: the demo's download, align, mask and split run
twice, in two folders, give the same files (docs/reproducibility.md)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from test_pipeline import BIN, make_copy, sh

pytestmark = pytest.mark.slow
TIMINGS = ("seconds", "seconds_by_step")  # how long a stage took: the one thing allowed to differ


def small_demo() -> dict:
    """params.yaml with a smaller demo set (60 faces at 96 px): the data stages in seconds."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["download"]["demo"]["n_images"] = 60
    p["align"]["size"] = 96
    return p


def contents(root: Path) -> dict[str, str]:
    """Every file the run wrote under data/ and results/: its sha256, or for a report.json its
    content less the timings."""
    out = {}
    for path in sorted([*root.glob("data/**/*"), *root.glob("results/**/*")]):
        if not path.is_file() or path.name in (".snakemake_timestamp", ".gitkeep"):
            continue
        rel = str(path.relative_to(root))
        if path.name == "report.json":
            report = {k: v for k, v in json.loads(path.read_text()).items() if k not in TIMINGS}
            out[rel] = json.dumps(report, sort_keys=True)
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_two_runs_of_the_data_stages_in_two_folders_give_the_same_bytes(tmp_path):
    runs = []
    for name in ("first", "second"):
        root = make_copy(tmp_path / name, small_demo())
        sh(root, str(BIN / "snakemake"), "--cores", "2", "--until", "split")
        runs.append(contents(root))
    first, second = runs
    assert set(first) == set(second)
    kinds = {rel.split("/")[1] for rel in first if rel.startswith("data/")}
    assert {"download", "align", "mask", "split"} <= kinds, kinds
    assert sum(rel.endswith(".jpg") for rel in first) > 100  # the images themselves, every stage
    assert "results/mask/masked/0/contact_sheet.png" in first
    differ = sorted(rel for rel in first if first[rel] != second[rel])
    assert not differ, differ
