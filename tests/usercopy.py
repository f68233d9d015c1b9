"""A user's clone: a temp git repository copied from this one, with a reduced demo config, and the
pipeline run in it by the README's plain command, killed with SIGKILL during `train` and run again.

Made once per test session (test_commands.py and test_slurm.py both use it) and shared: the
deterministic tables (download, align, mask, split) stay as this run made them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import yaml
from test_pipeline import BIN, env, make_copy, sh, tiny_params

GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]


def small_params(demo_folder: Path) -> dict:
    """The reduced demo: 48 faces + bad inputs, ResNet-18 at 32 px, 3 epochs, two conditions,
    100 bootstrap resamples, one seed."""
    p = tiny_params(demo_folder, seeds=[0])
    p["train"]["epochs"] = 3
    p["evaluate"]["bootstrap"] = p["compare"]["bootstrap"] = 100  # the schema's least
    p["evaluate"]["conditions"] = [
        {"name": "unmasked", "train": "unmasked", "test": "unmasked"},
        {"name": "masked", "train": "masked", "test": "masked"},
    ]
    return p


def finished_small_run(dst: Path, demo_folder: Path) -> tuple[Path, dict]:
    """A finished run of :func:`small_params` with one shard and one epoch (the quickest whole
    study), as a base to add to; returns its folder and params."""
    params = small_params(demo_folder)
    params["train"]["epochs"] = 1
    params["align"]["shards"] = 1
    root = make_copy(dst, params)
    sh(root, str(BIN / "snakemake"), "--cores", "2")
    return root, params


def planned_jobs(root: Path, params: dict) -> dict[str, int]:
    """Write ``params`` and return what Snakemake plans to run ({rule: jobs}, from a dry run's
    job table)."""
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    plan = sh(root, str(BIN / "snakemake"), "-n", "--cores", "2", "--quiet", "rules").stdout
    lines = plan.splitlines()
    if "Job stats:" not in lines:
        return {}
    table = lines[lines.index("Job stats:") + 3 :]  # after "job  count" and its dashes
    jobs = {}
    for line in table[: table.index(next(x for x in table if x.startswith("total")))]:
        job, n = line.split()
        jobs[job] = int(n)
    return jobs


def set_param(root: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def commit(root: Path, message: str) -> None:
    sh(root, "git", "add", "-A")
    sh(root, *GIT, "commit", "-qm", message)


def train_processes(pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for c in children:
        try:
            if any(a.endswith("train.py") for a in c.cmdline()):
                found.append(c)
        except psutil.Error:
            pass
    return found


def run_and_kill_during_train(root: Path, timeout: float = 300) -> dict:
    """Start `snakemake --cores 2`, SIGKILL it and its jobs once `train` has written something."""
    log = root.parent / "killed_run.log"  # beside the clone: no file of git's in it
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN / "snakemake"), "--cores", "2"],
            cwd=root,
            env=env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    training = []
    while time.monotonic() < deadline and proc.poll() is None:
        training = train_processes(proc.pid)
        written = list((root / "results/train").glob("*/*"))
        if training and written:
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    for p in training:  # a job that left the process group would survive: make sure
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait()
    return {
        "was_training": bool(training),
        "returncode": proc.returncode,
        "finished": (root / "results/metrics.json").exists(),
        "log": log.read_text(),
    }


_RUNS: dict[str, dict] = {}


def killed_and_resumed_run(tmp_path_factory, demo_folder: Path) -> dict:
    """The session's user clone after `snakemake --cores 2`, SIGKILL during train, and the same
    command again (made once, then shared)."""
    if "run" not in _RUNS:
        root = make_copy(tmp_path_factory.mktemp("user") / "maskprivacy", small_params(demo_folder))
        sh(root, "git", "init", "-q")
        commit(root, "clone")
        killed = run_and_kill_during_train(root)
        lock_left = sorted(p.name for p in (root / ".snakemake/locks").glob("*.lock"))
        again = sh(root, str(BIN / "snakemake"), "--cores", "2", check=False)
        _RUNS["run"] = {"root": root, "killed": killed, "lock_left": lock_left, "again": again}
    return _RUNS["run"]
