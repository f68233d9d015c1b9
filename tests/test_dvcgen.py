"""dvc.yaml is generated from the Snakefile, and a stale one is caught."""

import shutil
import subprocess
import sys

import yaml
from conftest import ROOT, write_tree

from maskprivacy_workflow import codedeps, dvcgen


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
    # the recognizer (recognize.enabled, the default): identity and describe, then recognize
    assert list(dvc) == [
        "download",
        "align",
        "identity",
        "mask",
        "describe",
        "split",
        "recognize",
        "train",
        "evaluate",
        "compare",
    ]
    train = dvc["train"]
    # one stage per training set and seed (train.seeds: [0] in the demo params)
    assert {k: (i["dataset"], i["seed"]) for k, i in train["foreach"].items()} == {
        "masked-0": ("masked", "0"),
        "unmasked-0": ("unmasked", "0"),
    }
    assert "--allowed-rules train" in train["do"]["cmd"]
    # every key of train but seeds (a job's seed is its wildcard: another seed reruns no model)
    assert "train.epochs" in train["do"]["params"] and "train.seeds" not in train["do"]["params"]
    assert "train" not in train["do"]["params"]
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
    # compare reports every section (all=tracked_config()): DVC tracks each, as Snakemake's params
    # trigger does; never compute (how to compute, never what)
    assert dvc["compare"]["params"] == [
        "align",
        "compare",
        "download",
        "evaluate",
        "identity",
        "mask",
        "recognize",
        "split",
        "train",
    ]
    # evaluate: its own condition (a job param; its model and images are inputs), never
    # evaluate.conditions whole; what the model was trained with comes in the model file
    # evaluate.tta: how the CNN predicts; the recognizer's stage does not depend on it
    assert dvc["evaluate"]["do"]["params"] == [
        "evaluate.bootstrap",
        "evaluate.seed",
        "evaluate.tta",
    ]
    assert "evaluate.tta" not in dvc["recognize"]["params"]
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
    assert "src/maskprivacy/faces/detect.py" in dvc["align"]["do"]["deps"]


def all_stages(dvc):
    return {name: s.get("do", s) for name, s in dvc["stages"].items()}


def test_deps_are_what_a_stage_computes_with():
    """The package modules a stage reaches are deps, as rule inputs of the Snakefile; the
    result-neutral ones (logging, progress bars, atomic writes, the stage entry) are not, and no
    stage tracks the compute section."""
    stages = all_stages(yaml.safe_load((ROOT / "dvc.yaml").read_text()))
    for name, stage in stages.items():
        deps = set(stage["deps"])
        assert f"workflow/scripts/{name}.py" in deps
        assert "src/maskprivacy/core/io.py" in deps, name  # tables and hashes shape results
        for neutral in codedeps.RESULT_NEUTRAL:
            assert f"src/{neutral}" not in deps, (name, neutral)
        assert not any(p.split(".")[0] == "compute" for p in stage.get("params", [])), name
    assert (
        "train.lr" in stages["train"]["params"] and "train.seeds" not in stages["train"]["params"]
    )


def test_stage_code_follows_imports_and_skips_neutral_modules(tmp_path):
    src = tmp_path / "src" / "maskprivacy"
    write_tree(
        src,
        {
            "__init__.py": "",
            "core/__init__.py": "",
            "core/logs.py": "from maskprivacy.core import io\n",
            "core/plumbing.py": "",
            "core/io.py": "from maskprivacy.core.plumbing import atomic_path\n",
            "core/labels.py": "",
            "faces/__init__.py": "",
            "faces/detect.py": "def f():\n    from ..core import labels\n",
            "faces/align.py": "from . import detect\n",
            "stages/__init__.py": "",
            "stages/entry.py": "from maskprivacy.core.logs import finish\n",
        },
    )
    script = tmp_path / "workflow/scripts/align.py"
    script.parent.mkdir(parents=True)
    script.write_text(
        "from maskprivacy.faces import align\nfrom maskprivacy.stages.entry import from_snakemake\n"
    )
    assert codedeps.stage_code(tmp_path, "workflow/scripts/align.py") == [
        "src/maskprivacy/core/labels.py",
        "src/maskprivacy/faces/align.py",
        "src/maskprivacy/faces/detect.py",
    ]


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


def test_landmarks_from_elsewhere_are_an_input_of_align(tmp_path):
    """align.landmarks (a table computed where dlib is) reruns align when it changes."""
    root = copy_repo(tmp_path)
    (root / "landmarks.csv").write_text("sha256\n")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["align"]["landmarks"] = "landmarks.csv"
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    assert "landmarks.csv" in dvcgen.build(root)["stages"]["align"]["do"]["deps"]


def test_each_mask_set_is_its_own_params(tmp_path):
    """One mask job per set and shard, each tracking its own set (mask.sets.<set>) and the keys
    every set shares, so changing one set reruns only its jobs under DVC."""
    root = copy_repo(tmp_path)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["mask"]["sets"] = {"paper": {"paper": 1.0}, "mixed": {"n95": 1.0, "cloth": 2.0}}
    params["evaluate"]["conditions"] = [
        {"name": "unmasked", "train": "unmasked", "test": "unmasked"},
        {"name": "paper", "train": "paper", "test": "paper"},
        {"name": "unmasked_to_mixed", "train": "unmasked", "test": "mixed"},
    ]
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    assert dvcgen.main(["--root", str(root)]) == 0
    two = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]["mask"]
    assert sorted(two["foreach"]) == ["mixed-0", "mixed-1", "paper-0", "paper-1"]
    one = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["mask"]  # masked only
    for mask in (one, two):
        assert mask["do"]["params"] == [
            "mask.check_tolerance",
            "mask.jpeg_quality",
            "mask.seed",
            "mask.sets.${item.maskset}",
            "mask.textures",
        ]


def test_config_paths_names_selections_of_keys():
    config = {
        "mask": {"sets": {"a": {"paper": 1.0}, "b": {"n95": 1.0}}, "seed": 0, "textures": "dots"},
        "compare": {"seed": 0, "baseline": "x"},
    }
    assert dvcgen.config_paths(config["mask"], config) == ["mask"]
    assert dvcgen.config_paths({"b": {"n95": 1.0}}, config) == ["mask.sets.b"]
    assert dvcgen.config_paths({"seed": 0, "textures": "dots"}, config) == [
        "mask.seed",
        "mask.textures",
    ]
    assert dvcgen.config_paths({"seed": 0}, config) == []  # in two sections: ambiguous
    # ... unless one of them is the rule's own section
    assert dvcgen.config_paths({"seed": 0}, config, "mask") == ["mask.seed"]
    # an external set's stage takes evaluate's (evaluate.external configures the sets)
    both = {
        "evaluate": {"seed": 0, "bootstrap": 100, "conditions": []},
        "compare": {"seed": 0, "bootstrap": 100, "alpha": 0.05},
    }
    picked = {"seed": 0, "bootstrap": 100}
    assert dvcgen.config_paths(picked, both, "recognize") == []  # ambiguous
    assert dvcgen.config_paths(picked, both, "recognize_external") == [
        "evaluate.bootstrap",
        "evaluate.seed",
    ]
    one = {"mask": {"sets": {"a": {"paper": 1.0}}}}
    assert dvcgen.config_paths({"a": {"paper": 1.0}}, one) == ["mask.sets.a"]  # not mask.sets
    job = {"wildcards": {"maskset": "b", "shard": "0"}}
    assert dvcgen._item_params(["mask.seed", "mask.sets.b"], job) == [
        "mask.seed",
        "mask.sets.${item.maskset}",
    ]
