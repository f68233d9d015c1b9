"""benchmarks/gpu_session.sh, as written, on a CPU: the script a lent GPU's minutes depend on.

A GPU node has PyTorch and the package's dependencies but no internet, no Snakemake and no dlib.
The test lays out what the script expects there: the archive in two carried parts (a tiny one of
demo faces), Snakemake's wheelhouse (``python -m maskprivacy_workflow.wheelhouse``), the align
landmarks table made where dlib is (``python -m maskprivacy.faces.find_landmarks``); a "node"
site holding the project's dependencies without Snakemake and the wheelhouse's packages; then
``carry`` and ``run 1 --config 'compute={device: cpu}'`` on a tiny preset (``PRESET=``), and the
metrics it leaves in ``$OUT``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml
from conftest import BAD_FILES
from test_pipeline import BIN, copy_repo, tiny_params

SITE = Path(next(p for p in sys.path if p.endswith("site-packages")))


def node_site(dst: Path, left_out: set[str]) -> Path:
    """The node's packages: this venv's site-packages less Snakemake and what comes with it
    (``left_out``: the wheelhouse's distributions, whose wheels the script installs)."""
    from packaging.utils import canonicalize_name

    dst.mkdir()
    for entry in SITE.iterdir():
        stem = entry.name.split("-")[0] if entry.name.endswith(".dist-info") else entry.name
        top = canonicalize_name(stem.removesuffix(".py"))
        if top in left_out or entry.suffix == ".pth" or entry.name.startswith("__editable__"):
            continue
        (dst / entry.name).symlink_to(entry)
    return dst


def test_gpu_session_runs_on_cpu_as_written(tmp_path, demo_folder):
    from maskprivacy_workflow import wheelhouse

    repo = copy_repo(tmp_path / "repo", ["Snakefile", "workflow", "profiles", "src", "benchmarks"])
    gpu = repo / ".gpu"
    for d in "abc":
        (gpu / d).mkdir(parents=True)
    # the tiny study: the demo faces in an archive laid out as UTKFace.tar.gz is
    faces = tmp_path / "UTKFace"
    faces.mkdir()
    for p in sorted(demo_folder.iterdir())[:40]:
        if p.name not in BAD_FILES:
            shutil.copy(p, faces / p.name)
    archive = tmp_path / "UTKFace.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(faces, arcname="UTKFace")
    data = archive.read_bytes()
    (gpu / "a/UTKFace.tar.gz.part-00").write_bytes(data[: len(data) // 2])
    (gpu / "b/UTKFace.tar.gz.part-01").write_bytes(data[len(data) // 2 :])
    params = tiny_params(faces, seeds=[0])
    params["download"]["path"] = "data/UTKFace.tar.gz"
    params["train"]["epochs"] = 1
    params["evaluate"]["conditions"] = params["evaluate"]["conditions"][:2]
    (repo / "presets").mkdir()
    (repo / "presets/tiny.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the attacker ladder layered on it (EXTRA=, as presets/ladder_gpu.yaml is on a GPU)
    rungs = {"ladder": {"rungs": {"own": {}, "small": {"image_size": 40}}}}
    (repo / "presets/tiny_ladder.yaml").write_text(yaml.safe_dump(rungs))
    # what is made where PyPI and dlib are: the wheelhouse and the landmarks table
    assert wheelhouse.main([str(gpu / "b/wheels"), "--root", str(repo), "--no-executors"]) == 0
    wheels = {
        line.split("==")[0].lower()
        for line in (gpu / "b/wheels/requirements.txt").read_text().split()
    }
    marks = subprocess.run(
        [
            str(BIN / "python"),
            "-m",
            "maskprivacy.faces.find_landmarks",
            str(faces),
            "--params",
            str(repo / "presets/tiny.yaml"),
            "-o",
            str(gpu / "c/landmarks.csv"),
        ],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert marks.returncode == 0, marks.stderr
    # the node: python3 with the project's dependencies, no Snakemake (the wheelhouse brings it)
    site = node_site(tmp_path / "node-site", {n.replace("_", "-") for n in wheels})
    env = {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(site),
        "HOME": str(tmp_path),
        "W": str(tmp_path / "w"),
        "OUT": str(tmp_path / "out"),
        "LIMIT": "1200",
        "PRESET": "presets/tiny.yaml",
        "EXTRA": "presets/tiny_ladder.yaml",
    }
    (tmp_path / "out").mkdir()
    script = ["bash", "benchmarks/gpu_session.sh"]
    carry = subprocess.run([*script, "carry"], cwd=repo, env=env, capture_output=True, text=True)
    assert carry.returncode == 0, carry.stderr
    run = subprocess.run(
        [*script, "run", "1", "--config", "compute={device: cpu}"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0, log
    assert "epochs: 1" in log
    # Snakemake came from the wheelhouse, into the venv the script made
    assert (tmp_path / "w/smk/bin/snakemake").exists()
    assert "steps (100%) done" in (tmp_path / "out/run.log").read_text()
    metrics = json.loads((tmp_path / "out/metrics.json").read_text())
    assert metrics["data_source"] == "path" and "masked" in metrics
    assert (tmp_path / "out/results.tar.gz").stat().st_size > 0
    with tarfile.open(tmp_path / "out/results.tar.gz") as tar:
        ladder = json.load(tar.extractfile("results/ladder/ladder.json"))
    # the preset's CNN rungs (and the recognizer's, which the tiny preset runs), the own reused
    assert list(ladder["rungs"])[:2] == ["own", "small"] and ladder["rungs"]["own"]["reused"]
    assert not ladder["rungs"]["small"]["reused"]


def test_gpu_session_says_what_is_missing(tmp_path):
    """`run` before `carry` (or on a fresh machine): a clear message, exit 3, nothing run."""
    repo = copy_repo(tmp_path / "repo", ["benchmarks"])
    env = {**os.environ, "W": str(tmp_path / "w"), "OUT": str(tmp_path)}
    res = subprocess.run(
        ["bash", "benchmarks/gpu_session.sh", "run", "1"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 3 and "carry every .gpu folder first" in res.stdout
    bad = subprocess.run(["bash", "benchmarks/gpu_session.sh", "oops"], cwd=repo, env=env)
    assert bad.returncode == 2
