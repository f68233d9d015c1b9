"""The workflow's own files: each rule has a pinned conda env, the profiles parse, lint passes."""

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
        cfg = yaml.safe_load((ROOT / "workflow/profiles" / name / "config.yaml").read_text())
        assert isinstance(cfg, dict)
    slurm = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
    assert (
        slurm["executor"] == "slurm"
        and "gres=gpu:1" in slurm["set-resources"]["train"]["slurm_extra"]
    )
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert any(str(d).startswith("snakemake") for d in env["dependencies"])


def test_snakemake_lint_passes():
    res = subprocess.run(
        [str(BIN / "snakemake"), "--lint"], cwd=ROOT, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "good condition" in res.stdout + res.stderr
