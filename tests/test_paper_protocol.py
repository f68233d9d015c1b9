"""The paper's protocol: its presets, its report section and the README table, and a rehearsal of
``snakemake --configfile presets/paper.yaml`` shrunk to the demo set."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from conftest import ROOT

from maskprivacy.analysis import paper_protocol as pp
from maskprivacy.core.params import validate
from maskprivacy.report.html import paper_protocol_section

SCHEMA = ROOT / "workflow/schemas/params.schema.yaml"


def preset(name: str) -> dict:
    return yaml.safe_load((ROOT / "presets" / name).read_text())


# ---------------------------------------------------------------- presets


def test_paper_preset_is_the_papers_protocol_and_valid():
    p = validate(preset("paper.yaml"), SCHEMA)
    assert p["mask"]["sets"] == {"masked": {"paper": 1.0}}
    assert p["split"]["method"] == "uniform" and p["split"]["fractions"] == [0.8, 0.1, 0.1]
    assert p["train"]["protocol"] == "paper" and p["train"]["select"] == "best_val"
    assert p["train"]["arch"] == "resnet50" and p["train"]["image_size"] == 224
    assert pp.is_paper_protocol(p)
    # our own unmasked baseline under the same protocol, tested on the same faces
    names = {c["name"]: c for c in p["evaluate"]["conditions"]}
    assert names["unmasked"] == {"name": "unmasked", "train": "unmasked", "test": "unmasked"}
    assert names["masked"] == {"name": "masked", "train": "masked", "test": "masked"}
    assert p["compare"]["baseline"] == "unmasked"
    # everything else is presets/utkface.yaml's
    base = preset("utkface.yaml")
    for section in ("download", "align", "mask", "evaluate", "compare"):
        assert p[section] == base[section], section
    diff = {
        k for k in set(p["train"]) | set(base["train"]) if p["train"].get(k) != base["train"].get(k)
    }
    assert diff == {"protocol", "select", "seeds"}
    assert p["train"]["seeds"] == [0]  # one run, as the paper (8 networks); more seeds are optional


def test_keepdups_preset_differs_only_in_the_duplicate_policies():
    p, k = preset("paper.yaml"), validate(preset("paper_keepdups.yaml"), SCHEMA)
    assert k["download"]["duplicates"] == "keep_all"
    assert k["download"]["near_duplicates"] == "off"
    k["download"].update(duplicates=p["download"]["duplicates"])
    k["download"].update(near_duplicates=p["download"]["near_duplicates"])
    assert k == p


def test_not_the_papers_protocol():
    p = preset("paper.yaml")
    assert pp.is_paper_protocol(p)
    for section, key, value in (
        ("split", "method", "stratified"),
        ("train", "protocol", "multitask"),
        ("train", "select", "last"),
        ("mask", "sets", {"masked": {"paper": 1.0, "surgical": 1.0}}),
        ("mask", "sets", {"masked": {"paper": 1.0}, "surgical": {"surgical": 1.0}}),
    ):
        q = yaml.safe_load(yaml.safe_dump(p))
        q[section][key] = value
        assert not pp.is_paper_protocol(q), (section, key)
    assert not pp.is_paper_protocol(preset("utkface.yaml"))


# ---------------------------------------------------------------- model selection


def test_model_selection_reads_the_train_reports():
    sel = pp.model_selection(
        {
            "masked": {"select": "best_val", "kept_epoch": 31, "kept_on": "val_score",
                       "kept_score": 0.8712, "epoch": 40},
            "unmasked": {"epoch": 40, "n_train": 100},  # a train stage without select
        }
    )  # fmt: skip
    assert sel["masked"] == {
        "select": "best_val",
        "kept_epoch": 31,
        "kept_on": "val_score",
        "kept_score": 0.8712,
    }
    assert sel["unmasked"]["select"] == "last" and sel["unmasked"]["kept_epoch"] == 40
    assert pp.selection_text(sel["masked"]) == "best_val: epoch 31, on val_score = 0.8712"
    assert pp.selection_text(sel["unmasked"]) == "last epoch (40)"
    assert pp.selection_text(pp.model_selection({"x": {}})["x"]) == "last epoch"
    # the paper's protocol: each network is kept on its own validation score (train's report)
    per_task = {
        "select": "best_val",
        "kept_epoch": 9,
        "kept_on": "per_attribute",
        "kept_score": 0.8,
        "kept_by_task": {
            "sex": {"epoch": 9, "on": "val_sex_acc", "score": 0.9},
            "age": {"epoch": 4, "on": "val_age_mae", "score": 6.5},
        },
    }
    text = pp.selection_text(pp.model_selection({"x": per_task})["x"])
    assert text == "best_val: sex epoch 9 (val_sex_acc = 0.9), age epoch 4 (val_age_mae = 6.5)"
    assert pp.selection_text({"select": "best_val"}) == "best_val: epoch not recorded"


# ---------------------------------------------------------------- rows, section, README table


def metric(acc: float, low: float, high: float) -> dict:
    return {"accuracy": acc, "accuracy_low": low, "accuracy_high": high}


def condition(sex: float, race: float, mae: float, group: float | None = None) -> dict:
    m = {
        "sex": metric(sex, sex - 0.01, sex + 0.01),
        "race": metric(race, race - 0.02, race + 0.02),
        "age": {"mae": mae, "mae_low": mae - 0.2, "mae_high": mae + 0.2, "rmse": 8.0,
                "rmse_low": 7.5, "rmse_high": 8.5},
        "n_test": 2190,
    }  # fmt: skip
    if group is not None:
        m["age_group"] = metric(group, group - 0.02, group + 0.02)
    return m


def comparison(d_sex: float, p_sex: float) -> dict:
    def one(d, p):
        return {"difference": d, "ci": {"low": d - 0.01, "high": d + 0.01}, "test": {"p_value": p}}

    return {"sex": one(d_sex, p_sex), "race": one(-0.02, 0.003), "age": one(0.8, 1.6e-9)}


STATS = {
    "conditions": {
        "unmasked": condition(0.95, 0.85, 5.10, 0.60),
        "masked": condition(0.94, 0.83, 6.00, 0.55),
    },
    "comparisons": {"masked_vs_unmasked": comparison(-0.01, 3.4e-4)},
    "model_selection": {
        "masked": {"select": "best_val", "kept_epoch": 31, "kept_on": "val_score",
                   "kept_score": 0.87},
        "unmasked": {"select": "last", "kept_epoch": None, "kept_on": None, "kept_score": None},
    },
}  # fmt: skip


def test_rows_carry_every_figure_with_its_interval():
    unmasked, masked = pp.rows("ours", STATS)
    assert masked == [
        "ours",
        "masked",
        "94.0 [93.0, 95.0]",
        "83.0 [81.0, 85.0]",
        "6.00 [5.80, 6.20]",
        "8.00 [7.50, 8.50]",
        "55.0 [53.0, 57.0]",
        "2,190",
    ]
    assert unmasked[1] == "unmasked" and unmasked[6] == "60.0 [58.0, 62.0]"
    (test,) = pp.test_rows("ours", STATS)
    assert test[:2] == ["ours", "masked_vs_unmasked"]
    assert test[2] == "-1.0 [-2.0, +0.0], p = 0.00034"
    assert test[4] == "+0.80 [+0.79, +0.81], p = 1.6e-09"
    # a multitask run has no 7-group model: said so, not a number
    no_group = {"conditions": {"masked": condition(0.9, 0.8, 6.0)}}
    assert pp.rows("multitask", no_group, ["masked"])[0][6] == "- (no 7-group model)"


def test_gap_to_paper_and_its_target():
    gap = pp.gap_to_paper(STATS)
    assert gap["sex_points"] == pytest.approx(94.0 - 94.65)
    assert gap["race_points"] == pytest.approx(83.0 - 83.12)
    assert gap["age_mae_years"] == pytest.approx(6.00 - 6.21)
    assert gap["sex_within_1pt"] and gap["race_within_1pt"] and gap["age_mae_at_or_under"]
    worse = {"conditions": {"masked": condition(0.92, 0.85, 6.5)}}
    gap = pp.gap_to_paper(worse)
    assert not gap["sex_within_1pt"] and gap["race_within_1pt"]
    assert not gap["age_mae_at_or_under"]


def test_html_section_sets_this_run_beside_the_paper():
    page = paper_protocol_section(STATS, preset("paper.yaml"))
    assert '<h2 id="paper-protocol">Paper protocol</h2>' in page
    assert "This run follows the paper&#x27;s protocol." in page
    for figure in ("94.65", "83.12", "6.21", "8.33", "94.0 [93.0, 95.0]", "55.0 [53.0, 57.0]"):
        assert figure in page, figure
    assert "best_val: epoch 31, on val_score = 0.87" in page
    assert "<td>unmasked</td><td>last epoch</td>" in page
    assert "sex met, race met, age met" in page
    assert "in-the-wild" in page  # the differences that remain are stated
    other = paper_protocol_section(STATS, preset("utkface.yaml"))
    assert "does not follow the paper&#x27;s protocol" in other


def test_readme_table_marks_missing_runs_pending(tmp_path):
    done = tmp_path / "paper_dedup.json"
    done.write_text(json.dumps(STATS))
    res = subprocess.run(
        [sys.executable, "-m", "maskprivacy.analysis.paper_protocol", "table",
         f"paper protocol, dedup={done}", f"paper protocol, keep dups={tmp_path / 'none.json'}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = res.stdout.splitlines()
    rows = [line for line in lines if line.startswith("| paper protocol, ")]
    assert len(rows) == 6  # two conditions of each run, then one paired-test line of each
    dedup = [r for r in rows if "dedup" in r]
    assert "| masked | 94.0 [93.0, 95.0] |" in dedup[1]
    pending = [r for r in rows if "keep dups" in r]
    assert all(pp.PENDING in r for r in pending)
    assert not any(ch.isdigit() for r in pending for ch in r.split("|", 3)[3])
    assert lines[2].startswith("| paper: Seneviratne et al. 2021") and "| 94.65 |" in lines[2]
    bad = subprocess.run(
        [sys.executable, "-m", "maskprivacy.analysis.paper_protocol", "table", "no-equals-sign"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "LABEL=PATH" in bad.stderr


# ---------------------------------------------------------------- rehearsal on the demo set


@pytest.mark.slow
def test_paper_preset_runs_end_to_end_on_the_demo(tmp_path):
    """`snakemake --configfile presets/paper.yaml` as the README writes it, with one more config
    file that shrinks it to the demo set: the paper's protocol from download to the report."""

    from test_pipeline import BIN, COPY, copy_repo, sh

    copy_repo(tmp_path, [*COPY, "presets"])
    shrink = {
        "download": {"source": "demo", "near_duplicates": "off", "demo": {"n_images": 60}},
        "align": {"size": 96, "shards": 2, "upsample": [0, 1], "prealigned": False,
                  "eye_y": 0.40, "eye_distance": 0.30},
        "train": {"arch": "resnet18", "epochs": 2, "batch_size": 16, "image_size": 32},
        # the two conditions of the paper's table (the preset's cross conditions cost two more jobs)
        "evaluate": {"bootstrap": 100, "conditions": [
            {"name": "unmasked", "train": "unmasked", "test": "unmasked"},
            {"name": "masked", "train": "masked", "test": "masked"}]},
        "compare": {"bootstrap": 100, "permutations": 999},
    }  # fmt: skip
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(shrink))
    sh(
        tmp_path,
        str(BIN / "snakemake"),
        "--cores",
        "2",
        "--configfile",
        "presets/paper.yaml",
        "tiny.yaml",
    )
    split = json.loads((tmp_path / "data/split/report.json").read_text())
    assert split["method"] == "uniform"
    # the paper's cut, redone here: within each sex by race, age and name, runs of 10 = 8 train,
    # 1 val, 1 test, a short last run to train; keeping duplicate groups together moved the rest
    table = pd.read_csv(tmp_path / "data/split/split.csv")
    uniform = {}
    for _, rows in table.sort_values(["sex", "race", "age", "file"]).groupby("sex"):
        full = len(rows) - len(rows) % 10
        parts = (["train"] * 8 + ["val", "test"]) * (full // 10) + ["train"] * (len(rows) - full)
        uniform.update(zip(rows["file"], parts, strict=True))
    moved = int((table["split"] != table["file"].map(uniform)).sum())
    assert split["files_moved_to_keep_groups"] == moved
    assert moved <= split["files_in_such_groups"] - split["groups_with_several_files"]
    assert split["counts"] == table["split"].value_counts().to_dict()
    assert split["counts"]["val"] > 0 and split["counts"]["test"] > 0
    stats = json.loads((tmp_path / "results/compare/statistics.json").read_text())
    for cond in ("unmasked", "masked"):
        assert "age_group" in stats["conditions"][cond]["mean"]  # the 7-group model's accuracy
    reports = {
        f"{d} seed 0": json.loads((tmp_path / f"results/train/{d}/seed0/report.json").read_text())
        for d in ("masked", "unmasked")
    }
    assert stats["model_selection"] == pp.model_selection(reports)
    page = (tmp_path / "results/report.html").read_text()
    assert '<h2 id="paper-protocol">Paper protocol</h2>' in page
    assert "This run follows the paper&#x27;s protocol." in page
    for d, rep in reports.items():
        kept = pp.selection_text(pp.model_selection({d: rep})[d])
        assert f"<td>{d}</td><td>{kept}</td>" in page
    masks = json.loads((tmp_path / "data/mask/masked/0/report.json").read_text())
    assert set(masks["types"]) == {"paper"}
