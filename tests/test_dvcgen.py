"""dvc.yaml is generated from the Snakefile, and a stale one is caught."""

import shutil
import subprocess
import sys

import yaml
from conftest import ROOT

from maskprivacy_workflow import dvcgen


def test_committed_dvc_yaml_is_up_to_date():
    res = subprocess.run(
        [sys.executable, "-m", "maskprivacy_workflow.dvcgen", "--check", "--root", str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr


def copy_repo(dst):
    for name in ("Snakefile", "params.yaml", "dvc.yaml", "workflow", "src"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst / name)
    return dst


def test_stale_dvc_yaml_fails_the_check(tmp_path):
    root = copy_repo(tmp_path)
    params = yaml.safe_load((root / "params.yaml").read_text())
    # only the unmasked condition: no masked model to train any more
    params["evaluate"]["conditions"] = [
        {"name": "unmasked", "train": "unmasked", "test": "unmasked"}
    ]
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    assert dvcgen.main(["--check", "--root", str(root)]) == 1
    assert dvcgen.main(["--root", str(root)]) == 0
    assert dvcgen.main(["--check", "--root", str(root)]) == 0


def test_stages_mirror_the_snakefile():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert list(dvc) == ["download", "align", "mask", "split", "train", "evaluate", "compare"]
    train = dvc["train"]
    # one stage per training set and seed (train.seeds: [0] in the demo params)
    assert {k: (i["dataset"], i["seed"]) for k, i in train["foreach"].items()} == {
        "masked-0": ("masked", "0"),
        "unmasked-0": ("unmasked", "0"),
    }
    assert "--allowed-rules train" in train["do"]["cmd"]
    assert train["do"]["params"] == ["train"]
    assert {"${item.images0}", "${item.images1}"} <= set(train["do"]["deps"])
    assert dvc["compare"]["metrics"] == [{"results/metrics.json": {"cache": False}}]
    # plots are PNG folders only: DVC's page then needs no vega scripts from a CDN
    assert dvc["compare"]["plots"] == [{"results/compare/plots": {"cache": True}}]
    assert dvc["evaluate"]["do"]["plots"] == [
        {"results/evaluate/${item.condition}/seed${item.seed}/plots": {"cache": True}}
    ]
    assert "plots" not in yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert "plots" not in train["do"]
    # the params a rule passes: whole sections, or one key of a section, as DVC names it
    assert dvc["compare"]["params"] == ["compare", "evaluate.conditions", "train.seeds"]
    assert dvc["evaluate"]["do"]["params"] == ["evaluate", "train"]
    evaluate = dvc["evaluate"]
    assert set(evaluate["foreach"]) == {
        "unmasked-0",
        "masked-0",
        "unmasked_to_masked-0",
        "masked_to_unmasked-0",
    }
    assert (
        evaluate["foreach"]["unmasked_to_masked-0"]["model"]
        == "results/train/unmasked/seed0/model.pt"
    )
    # one image folder per shard (align.shards: 2), each a dependency of the stage
    to_masked = evaluate["foreach"]["unmasked_to_masked-0"]
    assert [to_masked["images0"], to_masked["images1"]] == [
        "data/mask/masked/0/images",
        "data/mask/masked/1/images",
    ]
    assert {"${item.images0}", "${item.images1}"} <= set(evaluate["do"]["deps"])
    assert list(dvc["align"]["foreach"]) == ["0", "1"]
    assert list(dvc["mask"]["foreach"]) == ["masked-0", "masked-1"]  # one per mask set and shard
    assert "data/align/${item.shard}/landmarks.csv" in dvc["mask"]["do"]["deps"]
    assert {"data/align/0/landmarks.csv", "data/align/1/landmarks.csv"} <= set(dvc["split"]["deps"])
    # every output of one stage that another reads is a dependency there
    assert "data/split/split.csv" in dvc["compare"]["deps"]
    assert "src/maskprivacy/faces/align.py" in dvc["align"]["do"]["deps"]


def test_two_wildcards_give_one_stage_per_training_set_and_seed(tmp_path):
    """train.seeds: [0, 1]: train and evaluate get one DVC stage per (set, seed), with both
    wildcards placed in the paths, also where a seed's value (0) is a shard's too."""
    root = copy_repo(tmp_path)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["seeds"] = [0, 1]
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    stages = dvcgen.build(root)["stages"]
    train, evaluate = stages["train"], stages["evaluate"]
    assert sorted(train["foreach"]) == ["masked-0", "masked-1", "unmasked-0", "unmasked-1"]
    assert train["foreach"]["masked-1"]["seed"] == "1"
    assert "results/train/${item.dataset}/seed${item.seed}/model.pt" in train["do"]["outs"]
    # the shard folders stay literal (not ${item.seed}, though shard 0 and seed 0 share a value)
    assert train["foreach"]["unmasked-1"]["images0"] == "data/align/0/images"
    assert len(evaluate["foreach"]) == 8
    assert evaluate["foreach"]["masked_to_unmasked-1"]["model"] == (
        "results/train/masked/seed1/model.pt"
    )
    outs = evaluate["do"]["outs"]
    assert "results/evaluate/${item.condition}/seed${item.seed}/predictions.csv" in outs
    deps = stages["compare"]["deps"]
    assert {
        "results/evaluate/masked/seed1/predictions.csv",
        "results/train/masked/seed1/history.csv",
    } <= set(deps)
