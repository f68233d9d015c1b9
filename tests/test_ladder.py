"""The attacker ladder (ladder.rungs, issue 32): its plan on a made-up set (the jobs, each rung's
outputs apart, the study's own rung reused, not retrained), the trend fit on made-up points with
a known slope, and the figure and block rendered from made-up published runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from maskprivacy.analysis import ladder
from maskprivacy.core.params import ParamsError, validate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/params.schema.yaml"
TRAIN = {"arch": "resnet18", "image_size": 64, "epochs": 8, "lr": 0.002, "seeds": [0, 1, 2]}


# --- which rungs train, which are the study's own ---------------------------------------------


def test_a_rung_that_changes_nothing_is_the_study_s_own_model():
    rungs = ladder.resolve_rungs(
        TRAIN,
        {
            "rungs": {
                "small": {"image_size": 48},
                "own": None,  # an empty entry in YAML
                "deep": {"arch": "resnet34"},
            }
        },
    )
    assert list(rungs) == ["small", "own", "deep"]
    assert [n for n, r in rungs.items() if r["reused"]] == ["own"]
    assert rungs["small"]["settings"] == {
        "arch": "resnet18",
        "image_size": 48,
        "epochs": 8,
        "lr": 0.002,
    }  # the study's settings but the rung's change, and no seeds: a rung trains one
    assert rungs["deep"]["arch"] == "resnet34" and rungs["deep"]["image_size"] == 64
    # a rung that sets a setting to the study's own value is the study's model too
    same = ladder.resolve_rungs(TRAIN, {"rungs": {"same": {"image_size": 64}}})
    assert same["same"]["reused"]


def test_rungs_that_would_train_the_same_models_or_change_other_settings_are_refused():
    with pytest.raises(ValueError, match="'own' and 'again' train the same models"):
        ladder.resolve_rungs(TRAIN, {"rungs": {"own": {}, "again": {"image_size": 64}}})
    with pytest.raises(ValueError, match=r"\['seeds'\] are not train settings"):
        ladder.resolve_rungs(TRAIN, {"rungs": {"x": {"seeds": [3]}}})
    with pytest.raises(ValueError, match="recognizer"):
        ladder.resolve_rungs(TRAIN, {"rungs": {"recognizer": {"epochs": 2}}})


def test_the_schema_names_a_bad_rung_setting_and_a_condition_that_is_not_one():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["ladder"]["rungs"] = {"big": {"image_size": 4096}}
    with pytest.raises(ParamsError, match=r"ladder\.rungs\.big\.image_size"):
        validate(params, SCHEMA)
    params["ladder"]["rungs"] = {"big": {"image_size": 96}}
    params["ladder"]["condition"] = "nope"
    with pytest.raises(ParamsError, match=r"ladder\.condition: 'nope' is not one of"):
        validate(params, SCHEMA)
    params["ladder"]["condition"] = "masked"
    validate(params, SCHEMA)


# --- the trend ----------------------------------------------------------------------------------


def test_the_trend_recovers_a_known_slope_and_its_direction():
    rng = np.random.default_rng(3)
    x = np.linspace(0.80, 0.95, 8)
    se = np.full(8, 0.004)
    y = -0.40 + 0.40 * x + rng.normal(0, 0.004, 8)  # cost nears zero as accuracy grows
    t = ladder.fit_trend(x, y, se)
    assert t["slope_low"] < 0.40 < t["slope_high"]
    assert abs(t["slope"] - 0.40) < 0.1
    assert ladder.direction(t) == "less"
    # the same points falling: stronger attackers lose more
    assert ladder.direction(ladder.fit_trend(x, -0.40 - 0.40 * x + (y + 0.40 - 0.40 * x), se)) == (
        "more"
    )
    # flat within the noise: no dependence shown
    flat = ladder.fit_trend(x, -0.03 + rng.normal(0, 0.004, 8), se)
    assert flat["slope_low"] < 0 < flat["slope_high"] and ladder.direction(flat) == "unclear"


def test_the_trend_s_interval_widens_when_points_scatter_beyond_their_own_errors():
    x = np.array([0.80, 0.84, 0.88, 0.92, 0.96])
    y_line = -0.2 + 0.2 * x
    tight = ladder.fit_trend(x, y_line + np.array([0, 1e-4, -1e-4, 0, 1e-4]), [0.01] * 5)
    scattered = ladder.fit_trend(x, y_line + np.array([0.03, -0.03, 0.03, -0.03, 0.03]), [0.01] * 5)
    assert tight["dispersion"] < 1 and scattered["dispersion"] > 1
    width = lambda t: t["slope_high"] - t["slope_low"]  # noqa: E731
    assert width(scattered) > 1.5 * width(tight)
    # a point measured precisely pulls the line more than a vague one
    y = np.array([0.0, 0.0, 0.0, 0.0, 0.05])
    precise_last = ladder.fit_trend(x, y, [0.05, 0.05, 0.05, 0.05, 0.001])
    vague_last = ladder.fit_trend(x, y, [0.001, 0.001, 0.001, 0.001, 0.05])
    assert precise_last["slope"] > vague_last["slope"]


def test_the_trend_is_read_where_its_masked_score_meets_the_paper_s():
    t = ladder.fit_trend([0.8, 0.85, 0.9], [-0.06, -0.04, -0.02], [0.01] * 3)
    x = ladder.at_masked_score(t, 0.92)
    assert x == pytest.approx((0.92 - t["intercept"]) / (1 + t["slope"]))
    p = ladder.predict(t, x)
    assert x + p["estimate"] == pytest.approx(0.92)
    assert p["low"] < p["estimate"] < p["high"]
    assert ladder.fit_trend([0.8, 0.9], [0.0, 0.1]) is None  # two points: no line with an interval


# --- a rung's statistics, the sentence, the figure, the published block ------------------------


def _predictions(test: pd.DataFrame, right: float, rng) -> pd.DataFrame:
    """Predictions of a made-up attacker: about ``right`` of the sex and race answers right;
    age off by more the weaker it is."""
    n = len(test)
    ok = rng.random(n) < right
    return pd.DataFrame(
        {
            "file": test["file"],
            "sex_pred": np.where(ok, test["sex"], 1 - test["sex"]),
            "race_pred": np.where(ok, test["race"], (test["race"] + 1) % 5),
            "age_pred": test["age"] + rng.normal(0, 40 * (1 - right), n),
        }
    )


def _masked(test: pd.DataFrame, unmasked: pd.DataFrame, cost: float, rng) -> pd.DataFrame:
    """The same attacker on masked faces: ``cost`` of all answers turned from right to wrong,
    ages pushed further off."""
    out = unmasked.copy()
    right = np.flatnonzero(out["sex_pred"].to_numpy() == test["sex"].to_numpy())
    hit = rng.choice(right, int(cost * len(test)), replace=False)
    out.loc[hit, "sex_pred"] = 1 - test["sex"].to_numpy()[hit]
    out.loc[hit, "race_pred"] = (test["race"].to_numpy()[hit] + 1) % 5
    out.loc[hit, "age_pred"] += 30 * cost * 10
    return out


def made_up_ladder() -> dict:
    """Four CNN rungs whose mask costs shrink as they grow stronger, and the recognizer."""
    rng = np.random.default_rng(0)
    n = 2000
    test = pd.DataFrame(
        {
            "file": [f"{i}.jpg" for i in range(n)],
            "sex": rng.integers(0, 2, n),
            "race": rng.integers(0, 5, n),
            "age": rng.integers(1, 90, n),
        }
    )
    rungs = {}
    for name, (acc, cost, arch, px, ep) in {
        "r18-48": (0.84, 0.08, "resnet18", 48, 8),
        "r18-64": (0.88, 0.05, "resnet18", 64, 8),
        "r18-96": (0.91, 0.03, "resnet18", 96, 8),
        "r34-64": (0.93, 0.015, "resnet34", 64, 16),
        "recognizer": (0.86, 0.065, None, None, None),
    }.items():
        unmasked = _predictions(test, acc, rng)
        stats = ladder.rung_statistics(
            test,
            unmasked,
            _masked(test, unmasked, cost, rng),
            n_boot=200,
            permutations=199,
        )
        rungs[name] = (
            {"attacker": "recognizer", "reused": True, "stats": stats}
            if arch is None
            else {
                "attacker": "CNN",
                "arch": arch,
                "image_size": px,
                "epochs": ep,
                "reused": name == "r18-64",
                "longer": ep > 8,
                "train_seconds": 600.0,
                "stats": stats,
            }
        )
    out = {"baseline": "unmasked", "condition": "masked", "seed": 0, "n_test": n, "rungs": rungs}
    out["trends"] = ladder.summarize(rungs)
    out["sentence"] = ladder.sentence(out)
    return out


def test_a_rung_s_cost_is_the_paired_difference_on_the_same_faces():
    lad = made_up_ladder()
    sex = lad["rungs"]["r18-48"]["stats"]["sex"]
    assert sex["metric"] == "accuracy"
    assert sex["cost"]["estimate"] == pytest.approx(sex["masked"] - sex["unmasked"]["estimate"])
    assert sex["cost"]["low"] < sex["cost"]["estimate"] < sex["cost"]["high"]
    assert sex["cost"]["estimate"] < -0.03  # 8 points were taken away
    assert lad["rungs"]["r18-48"]["stats"]["age"]["metric"] == "mae"
    assert 0 <= sex["cost"]["p_holm"] <= 1 and sex["cost"]["p_holm"] >= sex["cost"]["p"]
    with pytest.raises(ValueError, match="not on the split's test faces"):
        test = pd.DataFrame({"file": ["a"], "sex": [0], "race": [0], "age": [3]})
        other = pd.DataFrame({"file": ["b"], "sex_pred": [0], "race_pred": [0], "age_pred": [3]})
        ladder.rung_statistics(test, other, other)


def test_stronger_attackers_losing_less_is_what_the_sentence_says():
    lad = made_up_ladder()
    assert lad["trends"]["sex"]["direction"] == "less"
    assert "sex: stronger attackers lose less to the mask" in lad["sentence"]
    assert "at the paper's level" in lad["sentence"]
    # the recognizer is another family of attacker: the CNN rungs get a line of their own
    assert lad["trends"]["sex"]["cnn_only"]["trend"]["n"] == 4
    assert "the CNN rungs alone" in lad["sentence"]
    m = ladder.metrics(lad)
    assert set(m["rungs"]) == {"r18-48", "r18-64", "r18-96", "r34-64", "recognizer"}
    assert m["trend"]["sex"]["direction"] == "less" and "cost_at_paper" in m["trend"]["sex"]


def publish_made_up(root: Path, name: str = "ladder-cpu") -> Path:
    folder = root / "results/reference" / name
    folder.mkdir(parents=True)
    (folder / "statistics.json").write_text(json.dumps({"ladder": made_up_ladder()}))
    (folder / "run.json").write_text(
        json.dumps(
            {
                "name": name,
                "date": "2026-12-07",
                "command": "snakemake --cores all --configfile presets/cpu.yaml presets/ladder.yaml",
                "machine": "2 cores",
                "wall_min": 99.0,
                "commit": "abc1234",
            }
        )
    )
    return folder


def test_the_figure_and_the_block_from_a_made_up_published_run(tmp_path):
    from maskprivacy_workflow import published

    folder = publish_made_up(tmp_path)
    svg = published.figure_bytes("ladder", folder).decode()
    for label in ("R18 48px", "R34 64px 16ep", "recognizer", "GPU run", "paper's level"):
        assert label in svg, label
    assert svg.count("stronger attackers lose less") >= 1
    block = published.render_block("ladder-cpu.ladder", tmp_path)
    assert "> Across the ladder's attackers, sex: stronger attackers lose less" in block
    lines = block.splitlines()
    first = lines.index(next(x for x in lines if x.startswith("| rung |")))
    rows = lines[first + 2 : lines.index("", first)]
    assert [r.split(" | ")[0] for r in rows] == [
        "| r18-48",
        "| r18-64",
        "| r18-96",
        "| r34-64",
        "| recognizer",
    ]
    assert "| r18-64 | resnet18 (the study's, reused) | 64 | 8 | 10.0 | - |" in block
    # a page that links the figure gets it made, and checked
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/results.md").write_text(
        "![ladder](img/ladder.svg)\n<!-- BEGIN published: ladder-cpu.ladder -->\n"
        "<!-- END published: ladder-cpu.ladder -->\n"
    )
    published.render(tmp_path)
    assert (tmp_path / "docs/img/ladder.svg").read_bytes() == svg.encode()
    assert "stronger attackers lose less" in (tmp_path / "docs/results.md").read_text()
    assert published.render(tmp_path, check=True) == []
    assert published.render_block("other.ladder", tmp_path).startswith("*(no published run")


# --- the plan and a run on a made-up set ---------------------------------------------------------


def test_the_ladder_on_a_finished_run_trains_only_its_rungs(tmp_path, demo_folder):
    """Added to a finished study: only train_ladder (not for the study's own rung),
    evaluate_ladder and ladder run; each rung's files are its own; the figure, table and
    metrics are made and name every rung."""
    from test_pipeline import BIN, sh
    from usercopy import finished_small_run, planned_jobs

    root, params = finished_small_run(tmp_path / "run", demo_folder)
    params["ladder"]["rungs"] = {
        "small": {"image_size": 40},
        "own": {},
        "deep": {"arch": "resnet34"},
    }
    counts = planned_jobs(root, params)
    # two rungs of their own x two training sets; the study's rung is not retrained
    assert counts == {"train_ladder": 4, "evaluate_ladder": 4, "ladder": 1, "all": 1}, counts
    paths = sh(root, str(BIN / "snakemake"), "--summary").stdout
    for rung in ("small", "deep"):
        for dataset in ("unmasked", "masked"):
            assert f"results/ladder/{rung}/train/{dataset}/seed0/model.pt" in paths
    assert "results/ladder/own/" not in paths
    sh(root, str(BIN / "snakemake"), "--cores", "2")
    st = json.loads((root / "results/ladder/ladder.json").read_text())
    assert list(st["rungs"]) == ["small", "own", "deep", "recognizer"]
    assert st["rungs"]["own"]["reused"] and not st["rungs"]["small"]["reused"]
    for rung in ("small", "deep"):
        model = root / f"results/ladder/{rung}/train/masked/seed0/model.pt"
        assert model.is_file()
    # the rungs' own models differ from the study's and from each other
    sizes = {
        r: (root / f"results/ladder/{r}/train/unmasked/seed0/model.pt").stat().st_size
        for r in ("small", "deep")
    }
    assert sizes["deep"] > sizes["small"]
    table = pd.read_csv(root / "results/ladder/ladder.csv")
    assert table["rung"].tolist() == ["small", "own", "deep", "recognizer"]
    assert (root / "results/ladder/plots/ladder.png").stat().st_size > 10_000
    metrics = json.loads((root / "results/ladder/metrics.json").read_text())
    assert set(metrics["rungs"]) == {"small", "own", "deep", "recognizer"}
    assert planned_jobs(root, params) == {}  # nothing left to do
