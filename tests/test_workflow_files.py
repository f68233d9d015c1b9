"""The workflow's own files: each rule has a pinned conda env, the profiles parse, lint passes."""

import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import ROOT

BIN = Path(sys.executable).parent


def test_every_rule_has_a_pinned_conda_env():
    rules = {p.stem for p in (ROOT / "workflow/rules").glob("*.smk")} - {"common"}
    for rule in rules:
        text = (ROOT / "workflow/rules" / f"{rule}.smk").read_text()
        assert f'"../envs/{rule}.yaml"' in text, rule
        env = yaml.safe_load((ROOT / "workflow/envs" / f"{rule}.yaml").read_text())
        assert env["channels"][0] == "conda-forge"
        for dep in env["dependencies"]:
            if isinstance(dep, dict):  # the pip section
                assert all("==" in d for d in dep["pip"]), (rule, dep)
            else:
                assert "=" in dep, (rule, dep)


def test_profiles_and_driver_env_parse():
    for name in ("default", "slurm"):
        cfg = yaml.safe_load((ROOT / "profiles" / name / "config.yaml").read_text())
        assert isinstance(cfg, dict)
    slurm = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    assert slurm["executor"] == "slurm" and slurm["slurm-status-command"] == "squeue"
    # a job that hits its time limit is submitted again (train resumes from its checkpoint);
    # SLURM requeues jobs of a failed node
    assert slurm["retries"] >= 1 and slurm["slurm-requeue"] is True
    # the GPU comes from the rules' own `gpu=1` (the executor makes it --gpus=1), not twice
    assert "set-resources" not in slurm or all(
        "gres" not in str(v) for v in slurm["set-resources"].values()
    )
    for rule in ("train", "evaluate"):
        assert "gpu=1," in (ROOT / f"workflow/rules/{rule}.smk").read_text()


def test_slurm_profile_plans_the_whole_pipeline(tmp_path):
    """A dry run through the SLURM profile plans every rule; no rule needs a total core count."""
    import shutil

    for name in ("Snakefile", "params.yaml", "workflow", "profiles", "src"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, tmp_path / name)
    res = subprocess.run(
        [str(BIN / "snakemake"), "--workflow-profile", "profiles/slurm", "--dry-run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    # the slurm profile takes the place of profiles/default (whose gpu: 1 would serialise the
    # cluster's GPU jobs)
    assert "Using workflow specific profile profiles/slurm" in out
    assert "profiles/default" not in out and 'gpu=Resource("gpu", 1)' not in out
    for rule in ("download", "align", "mask", "split", "train", "evaluate", "compare"):
        assert f"rule {rule}:" in out, rule
    # A dry run sets a core count, a cluster run has none: there a rule whose threads follow
    # `workflow.cores` fails with "Workflow requires a total number of cores" (found on a real
    # single-node SLURM). Threads are fixed numbers, capped at --cores by local runs.
    for smk in [ROOT / "Snakefile", *(ROOT / "workflow/rules").glob("*.smk")]:
        assert "workflow.cores" not in smk.read_text(), smk.name
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert any(str(d).startswith("snakemake") for d in env["dependencies"])


def test_snakemake_lint_passes():
    res = subprocess.run(
        [str(BIN / "snakemake"), "--lint"], cwd=ROOT, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "good condition" in res.stdout + res.stderr


# conda names of packages whose pip name differs
CONDA_TO_PIP = {
    "pytorch": "torch",
    "matplotlib-base": "matplotlib",
    "snakemake-minimal": "snakemake",
    "dlib": "dlib-bin",
}


def test_conda_envs_pin_the_versions_the_tests_ran_with():
    """Each conda pin (per-rule envs and the driver env) is the version constraints.txt gives
    the .venv the suite runs in, so `--use-conda` runs what was tested (dlib: dlib-bin's
    release, without its .postN)."""
    import re

    tested = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            tested[m.group(1).lower().replace("_", "-")] = m.group(2)
    checked = 0
    for path in [*sorted((ROOT / "workflow/envs").glob("*.yaml")), ROOT / "environment.yml"]:
        env = yaml.safe_load(path.read_text())
        for dep in env["dependencies"]:
            if not isinstance(dep, str) or dep.startswith("python="):
                continue
            name, _, version = dep.partition("=")
            want = tested.get(CONDA_TO_PIP.get(name, name))
            if want is None:
                continue
            if name == "dlib":
                want = re.match(r"\d+\.\d+\.\d+", want).group(0)
            assert version == want, f"{path.name}: {name}={version}, tests ran with {want}"
            checked += 1
    assert checked >= 40  # numpy, pandas, pillow, torch, dlib, ... in every env
