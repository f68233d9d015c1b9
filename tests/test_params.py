import copy

import pytest
import yaml
from conftest import ROOT

from maskprivacy.core.params import ParamsError, load, validate

SCHEMA = ROOT / "workflow/schemas/params.schema.yaml"


@pytest.fixture
def params():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_shipped_params_are_valid():
    load(ROOT / "params.yaml", SCHEMA)


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda p: p["train"].update(epochs=0), "train.epochs"),
        (lambda p: p["train"].update(arch="vgg16"), "train.arch"),
        (lambda p: p["align"].update(cnn_upsample=[0, 3]), "align.cnn_upsample"),
        (lambda p: p["align"].update(cnn_upsample=[]), "align.cnn_upsample"),
        (lambda p: p["download"].update(source="ftp"), "download.source"),
        (lambda p: p["download"].update(source="path", path=""), "download.path"),
        (lambda p: p["split"].update(fractions=[0.5, 0.3, 0.3]), "split.fractions"),
        (lambda p: p["mask"]["sets"]["masked"].update(balaclava=1.0), "mask.sets.masked"),
        (lambda p: p["mask"].update(types={"paper": 1.0}), "mask.types: replaced by mask.sets"),
        (lambda p: p["mask"]["sets"].update(unmasked={"paper": 1.0}), "mask.sets"),
        (lambda p: p["mask"].update(sets={}), "mask.sets"),
        (
            lambda p: p["evaluate"]["conditions"].append(
                {"name": "x", "train": "n95", "test": "n95"}
            ),
            "'x' trains on 'n95', which is not a data set",
        ),
        (lambda p: p["compare"].update(baseline="nope"), "compare.baseline"),
        (lambda p: p.update(extra={}), "(top level)"),
        (lambda p: p["train"].update(epochs="10"), "train.epochs"),
        (lambda p: p["train"].update(seeds=[]), "train.seeds"),
        (lambda p: p["train"].update(seeds=[0, 0]), "train.seeds"),
        (lambda p: p["train"].update(seed=0), "train.seed: replaced by train.seeds"),
        (lambda p: p["compare"]["chance_margin"].update(age=1.0), "compare.chance_margin.age"),
        (lambda p: p["train"].update(device="cpu"), "train.device: moved to the top-level compute"),
        (lambda p: p["compute"].update(precision="fp8"), "compute.precision"),
        (lambda p: p["compute"].update(epochs=3), "compute"),
    ],
)
def test_bad_params_name_the_key(params, edit, key):
    bad = copy.deepcopy(params)
    edit(bad)
    with pytest.raises(ParamsError) as err:
        validate(bad, SCHEMA)
    assert key in str(err.value)


def test_all_problems_reported_at_once(params):
    bad = copy.deepcopy(params)
    bad["train"]["epochs"] = -1
    bad["align"]["size"] = 8
    with pytest.raises(ParamsError) as err:
        validate(bad, SCHEMA)
    assert "train.epochs" in str(err.value) and "align.size" in str(err.value)


def test_sections_match_stages():
    """One name per step: rule = script = params section = DVC stage."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    # identity is a stage only when split.group_by: identity (test_identity_pipeline checks it);
    # the external test sets' stages only with evaluate.external, whose parameters they take
    # (test_external_pipeline checks them)
    external = {"external", "evaluate_external", "recognize_external"}
    # the attacker ladder is a stage only with ladder.rungs (test_ladder runs it)
    stages = set(dvc["stages"]) | {"identity", "ladder"} | external
    # describe is identity's job on the masked faces, with identity's parameters (one network
    # and one setting for every version of a face): no section of its own
    stages -= {"describe"}
    scripts_rules_envs_extra = {"describe"}
    scripts = {p.stem for p in (ROOT / "workflow/scripts").glob("*.py")}
    rules = {p.stem for p in (ROOT / "workflow/rules").glob("*.smk")} - {"common"}
    envs = {p.stem for p in (ROOT / "workflow/envs").glob("*.yaml")}
    scripts, rules, envs = (x - scripts_rules_envs_extra for x in (scripts, rules, envs))
    assert {"describe"} <= set(dvc["stages"])
    # compute: how to compute, for train and evaluate alike; no stage of its own
    assert (set(params) - {"compute"}) | external == stages == scripts == rules == envs


def test_compute_section_in_params_and_presets():
    """Compute settings live in compute:, never in train: (so changing them reruns nothing)."""
    for path in [ROOT / "params.yaml", *sorted((ROOT / "presets").glob("*.yaml"))]:
        params = yaml.safe_load(path.read_text())
        assert not {"device", "compile", "precision", "eval_batch_size", "data_placement"} & set(
            params.get("train", {})
        ), path
