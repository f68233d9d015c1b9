"""dvc.yaml is generated from the Snakefile, and a stale one is caught."""

import shutil
import subprocess
import sys

import yaml
from conftest import ROOT

from maskprivacy import dvcgen


def test_committed_dvc_yaml_is_up_to_date():
    res = subprocess.run(
        [sys.executable, "-m", "maskprivacy.dvcgen", "--check", "--root", str(ROOT)],
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
    assert {k: i["dataset"] for k, i in train["foreach"].items()} == {
        "masked": "masked",
        "unmasked": "unmasked",
    }
    assert "--allowed-rules train" in train["do"]["cmd"]
    assert train["do"]["params"] == ["train"]
    assert {"${item.images0}", "${item.images1}"} <= set(train["do"]["deps"])
    assert dvc["compare"]["metrics"] == [{"results/metrics.json": {"cache": False}}]
    # plots are PNG folders only: DVC's page then needs no vega scripts from a CDN
    assert dvc["compare"]["plots"] == [{"results/compare/plots": {"cache": True}}]
    assert dvc["evaluate"]["do"]["plots"] == [
        {"results/evaluate/${item.condition}/plots": {"cache": True}}
    ]
    assert "plots" not in yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert "plots" not in train["do"]
    # the params a rule passes: whole sections, or one key of a section, as DVC names it
    assert dvc["compare"]["params"] == ["compare", "evaluate.conditions"]
    assert dvc["evaluate"]["do"]["params"] == ["evaluate", "train"]
    evaluate = dvc["evaluate"]
    assert set(evaluate["foreach"]) == {
        "unmasked",
        "masked",
        "unmasked_to_masked",
        "masked_to_unmasked",
    }
    assert evaluate["foreach"]["unmasked_to_masked"]["model"] == "results/train/unmasked/model.pt"
    # one image folder per shard (align.shards: 2), each a dependency of the stage
    to_masked = evaluate["foreach"]["unmasked_to_masked"]
    assert [to_masked["images0"], to_masked["images1"]] == [
        "data/mask/0/images",
        "data/mask/1/images",
    ]
    assert {"${item.images0}", "${item.images1}"} <= set(evaluate["do"]["deps"])
    assert list(dvc["align"]["foreach"]) == ["0", "1"] and list(dvc["mask"]["foreach"]) == [
        "0",
        "1",
    ]
    assert "data/align/${item.shard}/landmarks.csv" in dvc["mask"]["do"]["deps"]
    assert {"data/align/0/landmarks.csv", "data/align/1/landmarks.csv"} <= set(dvc["split"]["deps"])
    # every output of one stage that another reads is a dependency there
    assert "data/split/split.csv" in dvc["compare"]["deps"]
    assert "src/maskprivacy/align.py" in dvc["align"]["do"]["deps"]
