"""The mask study on predictions the test makes: the train-set x test-set matrix from compare's
statistics, the paired differences and verdicts, one sentence per mask set (never "protects"
while the attribute is read far above chance), metrics.json's form, heat maps and the report
section."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_evaluate import labels, with_probs

from maskprivacy.analysis import compare, matrix
from maskprivacy.analysis.conditions import condition_metrics
from maskprivacy.masks import coverage, sets
from maskprivacy.report import study

N = 300
SETS = {"paper": {"paper": 1}, "surgical": {"surgical": 1}}
CFG = {
    "baseline": "unmasked",
    "alpha": 0.05,
    "bootstrap": 200,
    "seed": 0,
    "permutations": 9999,
    "chance_margin": {"accuracy": 0.05, "age": 0.10},
}
# per (train set, test set): share of wrong sex / race answers, and the age error's spread;
# surgical-trained models on surgical faces guess age as the training median (age protected)
QUALITY = {
    ("unmasked", "unmasked"): (0.05, 4),
    ("unmasked", "paper"): (0.25, 12),
    ("unmasked", "surgical"): (0.30, 14),
    ("paper", "unmasked"): (0.10, 6),
    ("paper", "paper"): (0.10, 6),
    ("paper", "surgical"): (0.20, 10),
    ("surgical", "unmasked"): (0.12, 8),
    ("surgical", "paper"): (0.15, 9),
    ("surgical", "surgical"): (0.12, None),
}


def predictions(test: pd.DataFrame, err: float, age_sd: float | None, median: float, seed: int):
    r = np.random.default_rng(seed)
    n = len(test)
    df = pd.DataFrame(
        {
            "file": test["file"],
            "sex_pred": np.where(r.random(n) < err, 1 - test["sex"], test["sex"]),
            "race_pred": np.where(r.random(n) < err, (test["race"] + 1) % 5, test["race"]),
            "age_pred": (
                median + r.normal(0, 1, n)
                if age_sd is None
                else test["age"] + r.normal(0, age_sd, n)
            ),
        }
    )
    return with_probs(df)


@pytest.fixture(scope="module")
def study_stats():
    """compare's statistics of the full 3 x 3 study (unmasked, paper, surgical), one seed."""
    rng = np.random.default_rng(0)
    test, train = labels(N, rng), labels(1000, rng, "train_")
    split = pd.concat([train.assign(split="train"), test.assign(split="test")], ignore_index=True)
    median = float(np.median(train["age"]))
    conditions = sets.study_conditions(SETS)
    preds = {}
    for k, c in enumerate(conditions):
        err, sd = QUALITY[(c["train"], c["test"])]
        preds[c["name"]] = {s: predictions(test, err, sd, median, 100 * k + s) for s in (0,)}
    per_seed = {
        c: {s: condition_metrics(test, df, 200, 0) for s, df in by.items()}
        for c, by in preds.items()
    }
    core, _ = compare.compare_conditions(test, split, preds, per_seed, "unmasked", CFG)
    return core, conditions


@pytest.fixture(scope="module")
def mat(study_stats):
    core, conditions = study_stats
    return matrix.study_matrix(core, conditions, sets.data_sets(SETS))


def test_study_conditions_fill_the_matrix():
    conds = sets.study_conditions(SETS)
    assert [c["name"] for c in conds] == [
        "unmasked",
        "unmasked_to_paper",
        "unmasked_to_surgical",
        "paper_to_unmasked",
        "paper",
        "paper_to_surgical",
        "surgical_to_unmasked",
        "surgical_to_paper",
        "surgical",
    ]
    assert {(c["train"], c["test"]) for c in conds} == set(QUALITY)


def test_matrix_cells_are_compares_numbers(study_stats, mat):
    core, _ = study_stats
    assert mat["data_sets"] == ["unmasked", "paper", "surgical"]
    assert mat["baseline"] == {"condition": "unmasked", "train": "unmasked", "test": "unmasked"}
    assert mat["n_test"] == N and mat["n_seeds"] == 1
    assert list(mat["cells"]) == ["unmasked", "paper", "surgical"]
    assert all(list(row) == ["unmasked", "paper", "surgical"] for row in mat["cells"].values())
    cell = mat["cells"]["unmasked"]["surgical"]
    assert cell["condition"] == "unmasked_to_surgical"
    src = core["conditions"]["unmasked_to_surgical"]
    assert cell["metrics"]["sex"]["estimate"] == src["seed_mean"]["sex"]["estimate"]
    assert cell["metrics"]["age"]["ensemble"] == src["ensemble"]["age"]["mae"]
    cmp = core["comparisons"]["unmasked_to_surgical_vs_unmasked"]["race"]
    d = cell["difference"]["race"]
    assert (d["difference"], d["low"], d["high"]) == (
        cmp["difference"],
        cmp["ci"]["low"],
        cmp["ci"]["high"],
    )
    # Holm over every test of the report: 8 comparisons x 3 attributes (one seed: over faces)
    assert core["multiple_testing"]["m"] == 24
    assert d["p_images_holm"] == cmp["test"]["p_holm"] >= cmp["test"]["p_value"]
    assert "difference" not in mat["cells"]["unmasked"]["unmasked"]
    # the quality the test built shows: masks cost accuracy, the naive model most
    assert (
        cell["metrics"]["sex"]["estimate"]
        < mat["cells"]["surgical"]["surgical"]["metrics"]["sex"]["estimate"]
        < mat["cells"]["unmasked"]["unmasked"]["metrics"]["sex"]["estimate"]
    )


def test_verdicts_never_say_protects_while_readable(mat):
    surgical = mat["cells"]["surgical"]["surgical"]["difference"]
    # age guessed as the training median: significant, and no longer read far above chance
    assert surgical["age"]["status"] == "protects"
    # sex and race lose accuracy but stay far above chance (0.88 against ~0.5 and ~0.2)
    assert surgical["sex"]["status"] == surgical["race"]["status"] == "significant_but_readable"
    text = matrix.sentences(mat, list(SETS))
    assert set(text) == {"paper", "surgical"}
    s = text["surgical"]
    assert "it protects age" in s and "protects sex" not in s and "protects race" not in s
    assert "significant but leaves them readable far above chance" in s
    assert "A model trained without masks reaches" in s
    assert "models trained on surgical faces" in s
    assert "protects" not in text["paper"]  # paper leaves every attribute readable here


def test_matrix_refuses_two_conditions_in_one_cell(study_stats):
    core, conditions = study_stats
    twice = [*conditions[:-1], {**conditions[-1], "train": "paper", "test": "paper"}]
    with pytest.raises(ValueError, match="both train on 'paper' and test on 'paper'"):
        matrix.study_matrix(core, twice, sets.data_sets(SETS))
    with pytest.raises(ValueError, match="outside"):
        matrix.study_matrix(core, conditions, ["unmasked", "paper"])


def test_sentences_with_only_the_naive_model(study_stats):
    """A set tested only by the model trained without masks gets its sentence from that cell."""
    core, conditions = study_stats
    keep = {"unmasked", "unmasked_to_paper"}
    small = {
        **core,
        "conditions": {k: v for k, v in core["conditions"].items() if k in keep},
    }
    m = matrix.study_matrix(
        small, [c for c in conditions if c["name"] in keep], ["unmasked", "paper"]
    )
    text = matrix.sentences(m, ["paper", "surgical"])
    assert list(text) == ["paper"]
    assert "models trained on unmasked faces" in text["paper"]
    assert "A model trained without masks" not in text["paper"]


def test_matrix_metrics_are_flat_numbers_for_dvc(mat):
    flat = matrix.matrix_metrics(mat)
    json.dumps(flat, allow_nan=False)
    assert set(flat) == {"unmasked", "paper", "surgical"}
    assert set(flat["unmasked"]["unmasked"]) == {"sex_accuracy", "race_accuracy", "age_mae"}
    assert set(flat["paper"]["surgical"]) == {
        "sex_accuracy",
        "race_accuracy",
        "age_mae",
        "sex_accuracy_diff",
        "race_accuracy_diff",
        "age_mae_diff",
    }
    cell = mat["cells"]["paper"]["surgical"]
    assert flat["paper"]["surgical"]["age_mae_diff"] == cell["difference"]["age"]["difference"]


def test_heatmaps_and_report_section(mat, tmp_path):
    paths = study.heatmaps_png(mat, tmp_path, demo=True)
    assert [p.name for p in paths] == [
        "study_sex_accuracy.png",
        "study_race_accuracy.png",
        "study_age_mae.png",
    ]
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 300
    cov = {"paper": _cov(0.37), "surgical": _cov(0.39)}
    set_cov = coverage.set_coverage(cov, SETS)
    text = matrix.sentences(mat, list(SETS), set_cov)
    assert "It leaves 39% of the face visible" in text["surgical"]
    page = study.html_section(mat, text, paths, cov, set_cov, n_coverage_faces=50)
    assert page.startswith("<h2>Which masks protect?</h2>")
    assert page.count("<img ") == 3
    assert "unmasked_to_surgical" in page and "protects" in page
    assert "face visible %" in page and "mouth covered %" in page and "50 test faces" in page


def _cov(visible: float) -> dict:
    return {
        "n": 1,
        "groups": dict.fromkeys(coverage.LANDMARK_GROUPS, 0.0) | {"mouth": 1.0, "chin": 1.0},
        "face_visible": visible,
        "geometry_pass": 1.0,
    }


def test_heatmap_leaves_missing_cells_blank(study_stats):
    core, conditions = study_stats
    keep = {"unmasked", "paper", "unmasked_to_paper"}
    small = {**core, "conditions": {k: v for k, v in core["conditions"].items() if k in keep}}
    m = matrix.study_matrix(small, conditions, ["unmasked", "paper"])
    fig = study.heatmap_figure(m, "sex")
    ax = fig.axes[0]
    data = ax.images[0].get_array()
    assert data.shape == (2, 2)
    assert np.ma.is_masked(data[1, 0]) or np.isnan(data[1, 0])  # paper -> unmasked: not run
    assert not np.ma.is_masked(data[0, 0]) and np.isfinite(data[0, 0])  # the cells that ran
    assert [t.get_text() for t in ax.get_yticklabels()] == ["unmasked", "paper"]


def test_build_makes_the_whole_section(study_stats, tmp_path):
    from test_masks import HOPPER

    core, conditions = study_stats
    faces = [HOPPER, HOPPER + 1.0, HOPPER - 1.0]
    got, page = study.build(core, conditions, SETS, faces, (224, 224), tmp_path, max_faces=2)
    assert sorted(p.name for p in (tmp_path / "study").iterdir()) == [
        "study_age_mae.png",
        "study_race_accuracy.png",
        "study_sex_accuracy.png",
    ]
    assert got["coverage"]["n_faces"] == 2
    assert set(got["coverage"]["types"]) == {"paper", "surgical", "n95", "kn95", "cloth"}
    assert set(got["coverage"]["sets"]) == set(got["sentences"]) == {"paper", "surgical"}
    assert "of the face visible" in got["sentences"]["paper"]
    json.dumps(got, allow_nan=False)
    assert page.count("<img ") == 3 and "What each mask covers" in page
    none, page = study.build(core, conditions, SETS, [], (224, 224), tmp_path / "b")
    assert none["coverage"] == {"types": None, "sets": None, "n_faces": 0}
    assert "What each mask covers" not in page
