"""The mask study end to end through Snakemake on the reduced demo with two mask sets (paper and
surgical): one mask job per set and shard from the same landmarks, a model per training set, the
train-set x test-set matrix in statistics.json and metrics.json, its heat maps and the report's
"Which masks protect?" section."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import yaml
from PIL import Image
from test_pipeline import BIN, from_predictions, make_copy, sh, tiny_params

pytestmark = pytest.mark.slow

SETS = {"paper": {"paper": 1.0}, "surgical": {"surgical": 1.0}}
CONDITIONS = [
    {"name": "unmasked", "train": "unmasked", "test": "unmasked"},
    {"name": "paper", "train": "paper", "test": "paper"},
    {"name": "surgical", "train": "surgical", "test": "surgical"},
    {"name": "unmasked_to_surgical", "train": "unmasked", "test": "surgical"},
]


@pytest.fixture(scope="module")
def study_run(tmp_path_factory, demo_folder):
    p = tiny_params(demo_folder, seeds=[0])
    p["train"]["epochs"] = 1
    p["evaluate"]["bootstrap"] = p["compare"]["bootstrap"] = 100  # the schema's least
    p["mask"]["sets"] = SETS
    p["evaluate"]["conditions"] = CONDITIONS
    root = make_copy(tmp_path_factory.mktemp("study"), p)
    # one thread a job: on two cores two jobs at once (the jobs are tiny; start-up dominates)
    sh(root, str(BIN / "snakemake"), "--cores", "2", "--set-threads", "train=1", "evaluate=1")
    return root


def test_each_set_is_drawn_per_shard_from_the_same_landmarks(study_run):
    root = study_run
    for name, weights in SETS.items():
        tables = [pd.read_csv(root / f"data/mask/{name}/{shard}/masks.csv") for shard in (0, 1)]
        masks = pd.concat(tables)
        assert set(masks["mask_type"]) == set(weights)
        landmarks = pd.concat(pd.read_csv(root / f"data/align/{s}/landmarks.csv") for s in (0, 1))
        assert sorted(masks["file"]) == sorted(landmarks["file"])
        assert (root / f"results/mask/{name}/0/contact_sheet.png").is_file()
    assert not (root / "data/mask/masked").exists()  # params.yaml's own set: no condition uses it


def test_matrix_heat_maps_and_report_section(study_run):
    root = study_run
    stats = json.loads((root / "results/compare/statistics.json").read_text())
    study = stats["study"]
    cells = study["matrix"]["cells"]
    assert {(tr, te) for tr, row in cells.items() for te in row} == {
        (c["train"], c["test"]) for c in CONDITIONS
    }
    assert set(study["sentences"]) == set(SETS)
    assert set(study["coverage"]["sets"]) == set(SETS) and study["coverage"]["n_faces"] >= 1
    metrics = json.loads((root / "results/metrics.json").read_text())
    flat = metrics["study"]
    assert set(flat["unmasked"]) == {"unmasked", "surgical"}
    # each cell is its condition's figures, counted here from its predictions (one seed)
    got = {c: from_predictions(root, "results/evaluate", c, (0,)) for c in ("surgical", "unmasked")}
    got["unmasked_to_surgical"] = from_predictions(
        root, "results/evaluate", "unmasked_to_surgical", (0,)
    )
    assert flat["surgical"]["surgical"]["sex_accuracy"] == pytest.approx(
        got["surgical"]["sex_accuracy"]
    )
    assert flat["unmasked"]["surgical"]["age_mae_diff"] == pytest.approx(
        got["unmasked_to_surgical"]["age_mae"] - got["unmasked"]["age_mae"]
    )
    pngs = sorted(p.name for p in (root / "results/compare/plots/study").glob("*.png"))
    assert pngs == ["study_age_mae.png", "study_race_accuracy.png", "study_sex_accuracy.png"]
    with Image.open(root / "results/compare/plots/study/study_sex_accuracy.png") as im:
        assert im.size[0] > 300
    page = (root / "results/report.html").read_text()
    section = page[page.index("<h2>Which masks protect?</h2>") :]
    section = section[: section.index("<h2>", 5)]
    assert section.count("<img ") == 3
    assert "What each mask covers" in section and "unmasked_to_surgical" in section
    for name in SETS:
        assert f"<li>{name}: on " in section


def test_a_changed_set_reruns_its_own_mask_jobs_only(study_run):
    """Snakemake reruns the mask jobs of the set whose weights changed, not the other set's (DVC
    likewise: each set's stages list mask.sets.<set>, see tests/test_dvcgen.py)."""
    root = study_run
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["mask"]["sets"]["surgical"] = {"surgical": 1.0, "n95": 1.0}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = sh(root, str(BIN / "snakemake"), "-n", "--cores", "2").stdout
    jobs = re.findall(r"rule mask:\n(?:    .*\n)*?    wildcards: (.*)\n", out)
    assert sorted(jobs) == ["maskset=surgical, shard=0", "maskset=surgical, shard=1"]


def test_the_study_preset_as_the_readme_runs_it_plans_every_job(tmp_path, demo_folder):
    """`snakemake --configfile presets/mask_study.yaml` (download.path set): the DAG a GPU node
    would run: every mask set drawn per shard from one align, a model per training set and seed,
    every cell of the matrix evaluated per seed, one compare (a dry run: nothing is computed)."""

    from test_pipeline import COPY, copy_repo

    copy_repo(tmp_path, [*COPY, "presets"])
    (tmp_path / "here.yaml").write_text(yaml.safe_dump({"download": {"path": str(demo_folder)}}))
    out = sh(tmp_path, str(BIN / "snakemake"), "-n", "--quiet", "rules",
             "--configfile", "presets/mask_study.yaml", "here.yaml").stdout  # fmt: skip
    jobs = {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", out, re.M)}
    study = yaml.safe_load((tmp_path / "presets/mask_study.yaml").read_text())
    shards, seeds = study["align"]["shards"], len(study["train"]["seeds"])
    n_sets = len(study["mask"]["sets"])
    assert jobs["align"] == shards and jobs["mask"] == n_sets * shards
    assert jobs["train"] == (n_sets + 1) * seeds  # unmasked and every set
    assert jobs["evaluate"] == (n_sets + 1) ** 2 * seeds and jobs["compare"] == 1
    assert "masked" not in study["mask"]["sets"]  # params.yaml's own set is not drawn
    assert "data/mask/masked" not in out
