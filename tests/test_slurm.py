"""SLURM, live: the reduced demo through the README's SLURM command on a single-node cluster that
the test starts on this machine (Debian's slurm-wlm and munge; .ci/run installs them). Skips,
saying why, only where those are not installed or the test is not root.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from slurmcluster import Cluster, missing
from test_pipeline import BIN, env, from_predictions, make_copy
from usercopy import killed_and_resumed_run, small_params

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(missing() is not None, reason=str(missing())),
    pytest.mark.timeout(2400),  # a local run, then the SLURM run (900 s at most) and the resume
]

# README, Running, SLURM: the profile, plus the overrides a node without a GPU (2 cores) needs
README_COMMAND = ["snakemake", "--workflow-profile", "profiles/slurm"]
CPU_NODE = [
    "--set-resources", "train:gpu=0", "evaluate:gpu=0", "train:mem_mb=6000",
    "--set-threads", "download=2", "train=2", "evaluate=2",
    "--slurm-init-seconds-before-status-checks", "2",
]  # fmt: skip
# What a job computes from the same inputs and parameters, whatever ran it
SAME_AS_LOCAL = [
    "data/download/manifest.csv",
    "data/download/rejects.csv",
    "data/align/0/landmarks.csv",
    "data/align/1/rejects.csv",
    "data/mask/masked/0/masks.csv",
    "data/mask/masked/1/masks.csv",
    "data/split/split.csv",
    "results/compare/rejects.csv",
]


@pytest.fixture(scope="module")
def cluster():
    with tempfile.TemporaryDirectory(prefix="slurm", dir="/tmp") as tmp:
        c = Cluster(Path(tmp))
        try:
            c.start()
            yield c
        finally:
            c.stop()


def test_readme_slurm_command_runs_the_demo_through_sbatch(cluster, tmp_path, demo_folder, request):
    import subprocess

    local = killed_and_resumed_run(request.config._tmp_path_factory, demo_folder)["root"]
    params = small_params(demo_folder)
    params["train"]["epochs"] = 1  # the tables compared do not depend on it
    root = make_copy(tmp_path / "maskprivacy", params)
    res = subprocess.run(
        [str(BIN / README_COMMAND[0]), *README_COMMAND[1:], *CPU_NODE],
        cwd=root,
        env={**env(), "SLURM_CONF": cluster.env["SLURM_CONF"], "PATH": cluster.env["PATH"]},
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{out[-6000:]}\n{cluster.logs()}"
    assert "Using workflow specific profile profiles/slurm" in out
    assert "profiles/default" not in out  # the workstation profile (gpu: 1) is not loaded
    # every job went through sbatch: one SLURM job id per job, and slurmctld saw each finish
    submitted = [line for line in out.splitlines() if "has been submitted with SLURM jobid" in line]
    # download, align x2, mask x2, split, train x2, evaluate x2, compare; and the recognizer
    # (recognize.enabled): identity x2 and describe x2 (descriptors per shard), recognize
    n_jobs = 1 + 2 + 2 + 1 + 2 + 2 + 1 + 2 + 2 + 1
    assert len(submitted) == n_jobs, out[-4000:]
    ctld = (cluster.tmp / "slurmctld.log").read_text()
    assert ctld.count("WEXITSTATUS 0") >= n_jobs, ctld[-3000:]
    for f in SAME_AS_LOCAL:
        assert (root / f).read_text() == (local / f).read_text(), f
    got = json.loads((root / "results/metrics.json").read_text())
    want = json.loads((local / "results/metrics.json").read_text())
    for cond in ("unmasked", "masked"):
        assert got[cond]["n_test"] == want[cond]["n_test"]
        counted = from_predictions(root, "results/evaluate", cond, (0,))
        assert got[cond]["sex"]["accuracy"] == pytest.approx(counted["sex_accuracy"])
    assert (root / "results/report.html").stat().st_size > 0
