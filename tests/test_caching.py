"""Caching matches meaning, under both runners: what an edit reruns.

A copy of the pipeline (the demo's params and DAG) gets a stand-in file for every output, marked
up to date in both runners' records (``snakemake --touch --forceall`` writes Snakemake's metadata:
params, input checksums; ``dvc commit --force`` writes dvc.lock). Then each test edits one thing
and asks both runners what they would rerun, without running anything: ``snakemake -n`` (its
default rerun triggers: mtime, params, input, software-env, code) and ``dvc status``.

- editing a result-neutral helper (logging, progress bars, atomic writes, the stage entry) or a
  compute setting reruns nothing;
- editing the detection cascade (faces/detect.py) reruns align and what follows: Snakemake plans
  every job downstream; DVC marks align changed, and what follows reruns when align's outputs
  change (DVC compares content, so an edit that changes no output stops there);
- a tracked parameter reruns its stage, and compare (which reports every section but compute).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from maskprivacy_workflow.dvcgen import snakemake_jobs

BIN = Path(sys.executable).parent
COPY = ("Snakefile", "params.yaml", "dvc.yaml", ".dvcignore", "workflow", "src")
DOWNSTREAM_OF_ALIGN = {"align", "mask", "split", "train", "evaluate", "compare"}


def run(root: Path, *cmd: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "DVC_NO_ANALYTICS": "1"}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    res = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    assert res.returncode == 0, f"{cmd}:\n{res.stdout}\n{res.stderr}"
    return res.stdout + res.stderr


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    """A pipeline copy whose every output exists and both runners take as up to date."""
    root = tmp_path_factory.mktemp("caching")
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(
                src, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy2(src, root / name)
    for job in snakemake_jobs(root):
        for out in map(Path, job["output"]):
            target = root / out
            if out.suffix:  # a file; else a directory() output (image and plot folders)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(str(out))
            else:
                target.mkdir(parents=True, exist_ok=True)
                (target / "one.png").write_text(str(out))
    run(root, "dvc", "init", "--no-scm", "-q")
    run(root, "snakemake", "--touch", "--forceall", "--cores", "1", "--quiet", "all")
    run(root, "dvc", "commit", "--force", "-q")
    assert snakemake_reruns(root) == {} and dvc_changed(root) == {}
    return root


def snakemake_reruns(root: Path) -> dict[str, int]:
    """Rule -> number of jobs ``snakemake -n`` would run (the target rule left out)."""
    out = run(root, "snakemake", "-n", "--quiet", "rules")
    if "Nothing to be done" in out:
        return {}
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)\s*$", out, re.M))
    return {rule: int(n) for rule, n in jobs.items() if rule not in ("all", "total")}


def dvc_changed(root: Path) -> dict[str, str]:
    """DVC stage -> what changed in it (``dvc status``), e.g. {"align@0": "deps ..."}."""
    out = run(root, "dvc", "status", "--json")
    return {stage: str(what) for stage, what in yaml.safe_load(out or "{}").items()}


@contextmanager
def edited(root: Path, rel: str, edit) -> Iterator[None]:
    """Edit a file of the copy, then put its content back (a newer time, the same content:
    neither runner reruns for that)."""
    path = root / rel
    before = path.read_text()
    path.write_text(edit(before))
    try:
        yield
    finally:
        path.write_text(before)


def append_comment(text: str) -> str:
    return text + "\n# an edited comment\n"


def set_compute(text: str) -> str:
    params = yaml.safe_load(text)
    params["compute"].update(
        device="cpu", compile=False, precision="fp32", eval_batch_size=7, data_placement="pinned"
    )
    return yaml.safe_dump(params, sort_keys=False)


NEUTRAL = [
    "src/maskprivacy/core/logs.py",
    "src/maskprivacy/core/plumbing.py",
    "src/maskprivacy/core/pool.py",
    "src/maskprivacy/stages/entry.py",
]


def test_editing_result_neutral_helpers_reruns_nothing(done):
    with contextlib.ExitStack() as stack:
        for module in NEUTRAL:
            stack.enter_context(edited(done, module, append_comment))
        assert snakemake_reruns(done) == {}
        assert dvc_changed(done) == {}


def test_changing_compute_settings_reruns_nothing(done):
    with edited(done, "params.yaml", set_compute):
        assert snakemake_reruns(done) == {}
        assert dvc_changed(done) == {}


def test_editing_the_detection_cascade_reruns_align_and_what_follows(done):
    with edited(done, "src/maskprivacy/faces/detect.py", append_comment):
        reruns = snakemake_reruns(done)
        assert DOWNSTREAM_OF_ALIGN <= set(reruns), reruns
        assert reruns["align"] == 2 and reruns["train"] == 2 and reruns["evaluate"] == 4
        changed = dvc_changed(done)
        assert {"align@0", "align@1"} <= set(changed)
        assert "src/maskprivacy/faces/detect.py" in changed["align@0"]
        assert not {"split", "compare"} & set(changed)  # DVC: when align's outputs change
    assert snakemake_reruns(done) == {} and dvc_changed(done) == {}


def test_editing_the_detection_cascade_does_not_rerun_download(done):
    with edited(done, "src/maskprivacy/faces/detect.py", append_comment):
        assert "download" not in snakemake_reruns(done)
        assert "download" not in dvc_changed(done)


def test_a_tracked_parameter_reruns_its_stage_and_compare(done):
    """The positive control: the harness sees a change; compare tracks every section alike."""

    def new_split_seed(text: str) -> str:
        params = yaml.safe_load(text)
        params["split"]["seed"] += 1
        return yaml.safe_dump(params, sort_keys=False)

    with edited(done, "params.yaml", new_split_seed):
        reruns = snakemake_reruns(done)
        assert set(reruns) == {"split", "recognize", "train", "evaluate", "compare"}, reruns
        assert set(dvc_changed(done)) == {"split", "compare"}


def add_seed(text: str) -> str:
    params = yaml.safe_load(text)
    params["train"]["seeds"] = [*params["train"]["seeds"], 1]
    return yaml.safe_dump(params, sort_keys=False)


def add_condition(text: str) -> str:
    params = yaml.safe_load(text)
    params["evaluate"]["conditions"].append({"name": "again", "train": "masked", "test": "masked"})
    return yaml.safe_dump(params, sort_keys=False)


def test_adding_a_condition_evaluates_only_the_new_one(done):
    """evaluate jobs are passed their own condition: another condition is one more evaluation
    (and compare), and the evaluations there were stay (both runners)."""
    before = (done / "dvc.yaml").read_text()
    with edited(done, "params.yaml", add_condition):
        # and the recognizer's one job (its heads cost seconds)
        assert snakemake_reruns(done) == {"evaluate": 1, "recognize": 1, "compare": 1}
        run(done, sys.executable, "-m", "maskprivacy_workflow.dvcgen", "--root", str(done))
        try:
            changed = dvc_changed(done)
            assert "evaluate@again-0" in changed and "compare" in changed, changed
            assert not [s for s in changed if s.startswith("evaluate@") and s != "evaluate@again-0"]
        finally:
            (done / "dvc.yaml").write_text(before)
    assert snakemake_reruns(done) == {} and dvc_changed(done) == {}


def test_adding_a_seed_trains_only_the_new_seeds_models(done):
    """train.seeds: each job takes its seed from the wildcard, so another seed is new jobs, and
    the models of the seeds there were are kept (both runners; dvc.yaml regenerated, as
    `make dvc-yaml` does after a change to the DAG)."""
    before = (done / "dvc.yaml").read_text()
    with edited(done, "params.yaml", add_seed):
        reruns = snakemake_reruns(done)
        # seed 1's two models and four evaluations (seed 0's would make it 4 and 8), and compare
        assert reruns == {"train": 2, "evaluate": 4, "recognize": 1, "compare": 1}, reruns
        run(done, sys.executable, "-m", "maskprivacy_workflow.dvcgen", "--root", str(done))
        try:
            changed = dvc_changed(done)
            assert {"train@masked-1", "train@unmasked-1"} <= set(changed), changed
            assert not {"train@masked-0", "train@unmasked-0"} & set(changed), changed
        finally:
            (done / "dvc.yaml").write_text(before)
    assert snakemake_reruns(done) == {} and dvc_changed(done) == {}


def test_adding_an_external_set_reruns_nothing_of_utkfaces(done):
    """evaluate.external: a new set is jobs of its own (and compare), no UTKFace evaluation;
    the recognizer scores it with the heads recognize already kept (recognize is not rerun)."""
    (done / "ext").mkdir(exist_ok=True)
    (done / "ext/faces.zip").write_bytes(b"stand-in")
    (done / "ext/labels.csv").write_text("file,gender\n")

    def add_external(text: str) -> str:
        params = yaml.safe_load(text)
        params["evaluate"]["external"] = {
            "ff": {"path": "ext/faces.zip", "labels": "ext/labels.csv"}
        }
        return yaml.safe_dump(params, sort_keys=False)

    with edited(done, "params.yaml", add_external):
        reruns = snakemake_reruns(done)
        shards = yaml.safe_load((done / "params.yaml").read_text())["align"]["shards"]
        assert reruns == {
            "external": 1,
            "align_external": shards,
            "mask_external": shards,  # one mask set
            "evaluate_external": 2 * 2,  # two training sets (one seed) x two versions
            "describe_external": 2 * shards,  # two versions
            "recognize_external": 1,
            "compare": 1,
        }, reruns
    assert snakemake_reruns(done) == {} and dvc_changed(done) == {}
