"""End to end: the whole pipeline through Snakemake and through DVC, in a temp copy of the repo.

Each run uses a tiny configuration (48 demo faces plus bad inputs, ResNet-18 at 32 px, two
epochs) so the suite stays fast; the behaviour under test is the workflow's, not the model's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import BAD_FILES, ROOT

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
COPY = [
    "Snakefile",
    "params.yaml",
    "dvc.yaml",
    "workflow",
    "profiles",
    "Makefile",
    "src",
    ".dvcignore",
    ".dvc/config",
    ".dvc/.gitignore",  # tracked, as in a clone: DVC would write it, untracked, on first use
    ".gitignore",
]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e["DVC_NO_ANALYTICS"] = "1"
    e["MPLBACKEND"] = "Agg"
    e.pop("PYTHONPATH", None)
    return e


def sh(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True)
    if check and res.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
        )
    return res


def tiny_params(source_folder: Path, seeds: list[int] = (0, 1)) -> dict:
    """Two training seeds by default (one model per training set and seed)."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["train"]["seeds"] = list(seeds)
    p["download"].update(source="path", path=str(source_folder))
    p["align"]["size"] = 96
    p["train"].update(arch="resnet18", epochs=2, batch_size=16, image_size=32)
    p["compute"]["eval_batch_size"] = 64
    p["evaluate"]["bootstrap"] = 200
    p["compare"].update(bootstrap=200, permutations=999)
    return p


def copy_repo(dst: Path, names: list[str] = COPY) -> Path:
    """The repository's ``names`` (files and folders) copied into ``dst``: a user's checkout."""
    for name in names:
        src = ROOT / name
        target = dst / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, target)
    return dst


def make_copy(dst: Path, params: dict) -> Path:
    copy_repo(dst)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the DAG depends on params (a local source folder is an input): regenerate as a user would
    sh(dst, str(BIN / "python"), "-m", "maskprivacy_workflow.dvcgen", "--root", str(dst))
    return dst


def from_predictions(root: Path, folder: str, condition: str, seeds) -> dict[str, float]:
    """Sex accuracy and age MAE of ``condition``, the mean over ``seeds``, counted here from
    ``<folder>/<condition>/seed<seed>/predictions.csv`` (``results/evaluate``,
    ``results/recognize``) against the test faces' labels in ``data/split/split.csv``: what
    metrics.json must say."""
    split = pd.read_csv(root / "data/split/split.csv")
    test = split[split["split"] == "test"].set_index("file")
    sex, mae = [], []
    for seed in seeds:
        preds = pd.read_csv(root / folder / condition / f"seed{seed}" / "predictions.csv")
        assert sorted(preds["file"]) == sorted(test.index)  # every test face, once
        truth = test.loc[preds["file"]]
        sex.append(np.mean(preds["sex_pred"].to_numpy() == truth["sex"].to_numpy()))
        mae.append(np.mean(np.abs(preds["age_pred"].to_numpy() - truth["age"].to_numpy())))
    return {"sex_accuracy": float(np.mean(sex)), "age_mae": float(np.mean(mae))}


def mtimes(root: Path, patterns: list[str]) -> dict[str, float]:
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns for pat in patterns for p in root.glob(pat)
    }


UPSTREAM = [
    "data/download/manifest.csv",
    "data/align/*/landmarks.csv",  # one per shard (align.shards: 2)
    "data/mask/*/*/masks.csv",  # one per mask set and shard
    "data/split/split.csv",
]
DOWNSTREAM = ["results/train/*/seed*/model.pt", "results/metrics.json"]
RECOGNIZER = ["data/identity/*/descriptors.csv", "data/describe/*/*/descriptors.csv"]
RECOGNIZER += ["results/recognize/*/seed*/predictions.csv"]


@pytest.fixture(scope="module")
def snake_run(tmp_path_factory, demo_folder):
    root = make_copy(tmp_path_factory.mktemp("snake"), tiny_params(demo_folder))
    first = sh(root, str(BIN / "snakemake"), "--cores", "2")
    return root, first


def test_snakemake_runs_every_stage_and_writes_results(snake_run):
    root, _ = snake_run
    metrics = json.loads((root / "results/metrics.json").read_text())
    assert {"unmasked", "masked"} <= set(metrics)
    for cond in ("unmasked", "masked"):
        want = from_predictions(root, "results/evaluate", cond, (0, 1))
        assert metrics[cond]["sex"]["accuracy"] == pytest.approx(want["sex_accuracy"])
        assert metrics[cond]["age"]["mae"] == pytest.approx(want["age_mae"])
    assert metrics["data_source"] == "path"
    pngs = sorted(p.name for p in (root / "results").rglob("*.png"))
    assert {
        "confusion_sex_masked_seed0.png",
        "confusion_sex_masked_seed1.png",
        "age_unmasked_seed1.png",
        "learning_curves.png",
    } <= set(pngs)
    assert "groups_masked_vs_unmasked.png" in pngs
    assert {"unmasked_to_masked", "masked_to_unmasked"} <= set(metrics)
    page = (root / "results/report.html").read_text()
    assert "<h1>" in page and "test faces" in page and "data:image/png;base64," in page
    assert "DEMO DATA: synthetic" not in page  # these inputs came from a folder (source: path)
    assert "The masks" in page  # the mask stage's contact sheet, embedded
    # the split's picture of the inputs align and mask rejected, embedded in the Data section
    assert "The inputs the align and mask stages rejected" in page
    assert (root / "results/data/rejects.png").stat().st_size > 0


def snakemake_report(root: Path) -> tuple[dict, dict]:
    """`snakemake --report report.html` in ``root``: the report's categories (category ->
    subcategory -> paths) and its results (path -> name, labels, caption, ...), as the page holds
    them."""
    sh(root, str(BIN / "snakemake"), "--report", "report.html")
    page = (root / "report.html").read_text()

    def js(name: str) -> dict:
        return json.loads(re.search(rf"var {name} = (\{{.*?\}});\n", page, re.S).group(1))

    return js("categories"), js("results")


def test_snakemake_report_shows_the_answer_and_the_plots_with_captions(snake_run):
    """The report of a finished run (the README's `snakemake --report report.html`): the answer
    and its tables, the report page, and every plot, each with its caption, by category."""
    root, _ = snake_run
    categories, results = snakemake_report(root)
    assert {"answer", "data", "masks", "training", "evaluation"} <= set(categories)
    where = {
        path: cat for cat, subs in categories.items() for paths in subs.values() for path in paths
    }
    assert where["results/compare/answer.html"] == "answer"
    assert where["results/report.html"] == "answer"
    assert where["results/data/labels.png"] == "data"
    assert where["results/data/rejects.png"] == "data"
    assert where["results/data/near_duplicates.png"] == "data"
    assert where["results/compare/plots/masks.png"] == "masks"  # one sheet, no shards
    assert where["results/compare/fragments/verdict.html"] == "answer"
    assert where["results/compare/plots/forest.png"] == "answer"
    assert not any("shard" in (r["labels"] or {}) for r in results.values())
    assert where["results/compare/plots/learning_curves.png"] == "training"
    assert where["results/compare/plots/comparison.png"] == "evaluation"
    assert where["results/compare/plots/groups_masked_vs_unmasked.png"] == "evaluation"
    for cond in ("unmasked", "masked", "unmasked_to_masked", "masked_to_unmasked"):
        for seed in (0, 1):
            plots = f"results/evaluate/{cond}/seed{seed}/plots"
            for fig in (f"confusion_sex_{cond}_seed{seed}", f"age_{cond}_seed{seed}"):
                assert where[f"{plots}/{fig}.png"] == "evaluation"
                assert results[f"{plots}/{fig}.png"]["labels"] == {
                    "condition": cond, "seed": str(seed), "figure": fig
                }  # fmt: skip
    assert categories["evaluation"]["group heat maps"]
    # every entry has its caption, and the captions say what each is
    assert all(r["caption"].strip() for r in results.values()), [
        p for p, r in results.items() if not r["caption"].strip()
    ]
    captions = {p: re.sub(r"<[^>]+>", "", r["caption"]) for p, r in results.items()}
    assert "The answer" in captions["results/compare/answer.html"]
    assert (
        "confusion matrix"
        in captions["results/evaluate/masked/seed1/plots/confusion_sex_masked_seed1.png"]
    )
    assert "Learning curves" in captions["results/compare/plots/learning_curves.png"]
    assert "Group heat map" in captions["results/compare/plots/groups_masked_vs_unmasked.png"]
    assert "The masks" in captions["results/compare/plots/masks.png"]
    # the answer entry holds the answer sentence and its tables
    answer = (root / "results/compare/answer.html").read_text()
    assert '<p class="answer">' in answer and "Metrics per condition" in answer
    assert "Paired comparisons with the baseline" in answer and "<h2>Chance</h2>" in answer
    # the workflow's description heads the page, with the answer table of the run
    landing = (root / "report.html").read_text()
    assert "Does a face mask protect sex, race and age" in landing
    assert "does the mask protect it?" in landing


def test_two_seeds_give_two_models_per_training_set_and_a_spread(snake_run):
    root, _ = snake_run
    for dataset in ("unmasked", "masked"):
        models = sorted(
            p.parent.name for p in (root / "results/train" / dataset).glob("*/model.pt")
        )
        assert models == ["seed0", "seed1"]
    a, b = ((root / f"results/train/masked/seed{s}/history.csv").read_text() for s in (0, 1))
    assert a != b  # each seed its own init, augmentation and order
    metrics = json.loads((root / "results/metrics.json").read_text())
    assert metrics["n_seeds"] == 2
    for cond in ("unmasked", "masked"):
        assert set(metrics[cond]["per_seed"]) == {"0", "1"}
        assert metrics[cond]["sd"]["age"]["mae"] > 0  # two models, two different errors
        seed_mean = np.mean([metrics[cond]["per_seed"][s]["age"]["mae"] for s in ("0", "1")])
        assert metrics[cond]["age"]["mae"] == pytest.approx(seed_mean)
        assert "ensemble" in metrics[cond]
    stats = json.loads((root / "results/compare/statistics.json").read_text())
    age = stats["comparisons"]["masked_vs_unmasked"]["age"]
    assert age["across_seeds"]["n_seeds"] == 2 and age["across_seeds"]["sd"] is not None
    assert len(age["per_seed"]) == 2
    assert stats["multiple_testing"]["m"] >= 9
    page = (root / "results/report.html").read_text()
    assert "each the mean of 2 training runs" in page and "Holm-Bonferroni" in page
    assert "seed 1" in page and "<h2>Method</h2>" in page


def test_every_input_is_output_or_reject_with_reason(snake_run, demo_folder):
    root, _ = snake_run
    rejects = pd.read_csv(root / "results/compare/rejects.csv")
    got = {r.file: (r.stage, r.reason) for r in rejects.itertuples()}
    for name, expected in BAD_FILES.items():
        assert got.get(name) == expected, (name, got.get(name))
    assert rejects["detail"].notna().all()
    split = pd.read_csv(root / "data/split/split.csv")
    inputs = {p.name for p in demo_folder.iterdir()}
    assert set(split["file"]).isdisjoint(rejects["file"])
    assert set(split["file"]) | set(rejects["file"]) == inputs
    stats = json.loads((root / "results/compare/statistics.json").read_text())
    assert stats["accounting"]["balanced"] and stats["accounting"]["inputs"] == len(inputs)


def test_the_recognizer_runs_beside_the_cnn_into_one_report(snake_run):
    """recognize.enabled (the default): descriptors of every version, the heads' predictions
    for every condition and seed, and both attackers in metrics.json and the report."""
    root, _ = snake_run
    for shard in ("0", "1"):
        unmasked = pd.read_csv(root / f"data/identity/{shard}/descriptors.csv")
        masked = pd.read_csv(root / f"data/describe/masked/{shard}/descriptors.csv")
        assert unmasked["file"].tolist() == masked["file"].tolist()
        assert len(unmasked) == len(pd.read_csv(root / f"data/align/{shard}/landmarks.csv"))
    test = pd.read_csv(root / "data/split/split.csv").query("split == 'test'")
    for cond in ("unmasked", "masked", "unmasked_to_masked", "masked_to_unmasked"):
        for seed in (0, 1):
            preds = pd.read_csv(root / f"results/recognize/{cond}/seed{seed}/predictions.csv")
            assert preds["file"].tolist() == test["file"].tolist()
    metrics = json.loads((root / "results/metrics.json").read_text())
    rec = metrics["recognizer"]
    assert {"unmasked", "masked", "masked_vs_unmasked", "n_seeds"} <= set(rec)
    want = from_predictions(root, "results/recognize", "masked", (0, 1))
    assert rec["masked"]["sex"]["accuracy"] == pytest.approx(want["sex_accuracy"])
    assert rec["masked"]["age"]["mae"] == pytest.approx(want["age_mae"])
    assert "sex_p_holm" in rec["masked_vs_unmasked"]
    assert "sex" in metrics["masked"]  # the CNN's keys stay where they were
    stats = json.loads((root / "results/compare/statistics.json").read_text())
    # one Holm family per attacker, each at most the tests over images and across seeds of
    # its 3 comparisons x 3 attributes (linear heads' seeds may give no test across seeds)
    assert 9 <= stats["recognizer"]["multiple_testing"]["m"] <= 18
    assert stats["multiple_testing"]["m"] <= 18
    page = (root / "results/report.html").read_text()
    assert "Second attacker: an off-the-shelf face recognizer" in page
    assert "tests of the recognizer" in page


def test_second_snakemake_run_does_nothing(snake_run):
    root, _ = snake_run
    before = mtimes(root, UPSTREAM + DOWNSTREAM)
    # manifest, 2 shards x (landmarks, masks), split; 2 sets x 2 seeds models, metrics
    assert len(before) == 1 + 2 * 2 + 1 + 2 * 2 + 1
    res = sh(root, str(BIN / "snakemake"), "--cores", "2")
    assert "Nothing to be done" in res.stdout + res.stderr
    assert mtimes(root, UPSTREAM + DOWNSTREAM) == before


def test_changing_epochs_reruns_only_downstream(snake_run):
    root, _ = snake_run
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["epochs"] = 1
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    up, down = mtimes(root, UPSTREAM + RECOGNIZER), mtimes(root, DOWNSTREAM)
    sh(root, str(BIN / "snakemake"), "--cores", "2")
    assert mtimes(root, UPSTREAM + RECOGNIZER) == up  # no descriptor or head depends on epochs
    after = mtimes(root, DOWNSTREAM)
    assert all(after[k] != down[k] for k in down), (down, after)
    hist = pd.read_csv(root / "results/train/masked/seed1/history.csv")
    assert hist["epoch"].tolist() == [1]


def test_dvc_repro_caches_and_diffs(tmp_path, demo_folder):
    root = make_copy(tmp_path, tiny_params(demo_folder, seeds=[0]))  # one seed, as the demo
    sh(root, "git", "init", "-q")
    sh(root, "git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    sh(root, "git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "pipeline")
    first = sh(root, str(BIN / "dvc"), "repro")
    for stage in (
        "download",
        "align@0",
        "align@1",
        "mask@masked-0",
        "mask@masked-1",
        "split",
        "train@masked-0",
        "train@unmasked-0",
        "evaluate@unmasked-0",
        "evaluate@masked_to_unmasked-0",
        "compare",
    ):
        assert f"Running stage '{stage}'" in first.stdout, first.stdout
    again = sh(root, str(BIN / "dvc"), "repro")
    assert "Running stage" not in again.stdout
    assert "up to date" in again.stdout
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "run 1")

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["epochs"] = 3
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = sh(root, str(BIN / "dvc"), "status").stdout
    assert "train@masked-0" in status and "train@unmasked-0" in status
    assert "align@" not in status and "mask@" not in status and "download:" not in status
    second = sh(root, str(BIN / "dvc"), "repro")
    evals = {
        f"evaluate@{c}-0"
        for c in ("unmasked", "masked", "unmasked_to_masked", "masked_to_unmasked")
    }
    stages = {
        "download",
        "align@0",
        "align@1",
        "mask@masked-0",
        "mask@masked-1",
        "split",
        "train@masked-0",
        "train@unmasked-0",
        "compare",
    } | evals
    ran = {s for s in stages if f"Running stage '{s}'" in second.stdout}
    assert ran == {"train@masked-0", "train@unmasked-0", "compare"} | evals, second.stdout
    pdiff = sh(root, str(BIN / "dvc"), "params", "diff").stdout
    assert "train.epochs" in pdiff and "2" in pdiff and "3" in pdiff
    mdiff = sh(root, str(BIN / "dvc"), "metrics", "diff", "--all").stdout
    assert "masked.sex.accuracy" in mdiff and "unmasked.age.mae" in mdiff
