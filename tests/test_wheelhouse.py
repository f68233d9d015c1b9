"""The wheelhouse that carries Snakemake to a node without internet holds all Snakemake needs."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys

import pytest
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from maskprivacy_workflow import wheelhouse


def test_roots_are_snakemake_and_the_profiles_executors():
    assert wheelhouse.roots(ROOT) == ["snakemake", "snakemake-executor-plugin-slurm"]
    assert wheelhouse.roots(ROOT, executors=False) == ["snakemake"]


def test_the_list_is_closed_under_requirements_and_pinned_as_installed():
    pins = wheelhouse.requirements(wheelhouse.roots(ROOT))
    assert {"snakemake", "snakemake-executor-plugin-slurm", "pyyaml", "jsonschema"} <= set(pins)
    assert "pulp" not in pins  # snakemake --scheduler greedy
    for name, version in pins.items():
        assert md.version(name) == version
        # every distribution a listed one requires here (its metadata, markers evaluated for this
        # Python and platform, no extras) is listed too
        for spec in md.distribution(name).requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                assert canonicalize_name(req.name) in {*pins, "pulp"}, (name, spec)
    assert "pulp" in wheelhouse.requirements(["snakemake"], with_pulp=True)


def test_extra_distributions_come_with_what_they_need(tmp_path, monkeypatch):
    """--extra dlib-bin (identity on a node without dlib) lists dlib-bin next to Snakemake."""
    seen = {}
    monkeypatch.setattr(
        wheelhouse.subprocess,
        "run",
        lambda cmd: seen.setdefault("cmd", cmd) and type("R", (), {"returncode": 0})(),
    )
    assert wheelhouse.main([str(tmp_path), "--root", str(ROOT), "--no-executors",
                            "--extra", "dlib-bin"]) == 0  # fmt: skip
    listed = dict(line.split("==") for line in (tmp_path / "requirements.txt").read_text().split())
    assert listed["dlib-bin"] == md.version("dlib-bin") and "snakemake" in listed
    assert "snakemake-executor-plugin-slurm" not in listed
    assert seen["cmd"][-2:] == ["-r", str(tmp_path / "requirements.txt")]


@pytest.mark.slow
def test_wheels_install_offline_and_snakemake_runs(tmp_path):
    """From PyPI here; then a fresh venv installs them with --no-index and runs Snakemake."""
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    assert wheelhouse.main([str(wheels), "--root", str(ROOT)]) == 0
    listed = (wheels / "requirements.txt").read_text().split()
    assert len(list(wheels.glob("*.whl"))) == len(listed)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin/pip"), "install", "-q", "--no-index", "--find-links", str(wheels),
           "--no-deps", "-r", str(wheels / "requirements.txt")]  # fmt: skip
    subprocess.run(pip, check=True)
    out = subprocess.run(
        [str(venv / "bin/snakemake"), "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == md.version("snakemake")
