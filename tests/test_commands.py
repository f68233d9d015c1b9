"""The README's commands, typed as a user types them, in a temp git clone with a reduced demo.

One clone per session (usercopy.py): the plain `snakemake --cores 2` (the default profile found
by itself), killed with SIGKILL during `train` and run again; then, in that clone, in order:
adopt the Snakemake run into DVC, share it through the default remote (a local folder) and
through S3 (moto's server on 127.0.0.1) into fresh clones, and DVC's get-started loop (metrics
and params diff against a commit, experiments, plots).
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from slurmcluster import free_port
from test_pipeline import BIN, env, mtimes, sh
from usercopy import GIT, commit, killed_and_resumed_run, set_param

pytestmark = pytest.mark.slow
DVC = str(BIN / "dvc")
SNAKEMAKE = str(BIN / "snakemake")
UP_TO_DATE = "Data and pipelines are up to date."
NOTHING = "Nothing to be done (all requested files are present and up to date)."


@pytest.fixture(scope="module")
def run(tmp_path_factory, demo_folder):
    return killed_and_resumed_run(tmp_path_factory, demo_folder)


def test_plain_snakemake_uses_the_default_profile(run):
    out = run["killed"]["log"]
    assert "Using workflow specific profile profiles/default" in out
    # the profile's workstation GPU limit is in force: train and evaluate take the one GPU in turn
    assert 'Provided resources: gpu=Resource("gpu", 1)' in out


def test_kill_9_during_train_then_the_same_command_finishes(run):
    root, again = run["root"], run["again"]
    assert run["killed"]["was_training"] and run["killed"]["returncode"] == -9
    assert not run["killed"]["finished"]  # killed before compare wrote the metrics
    assert run["lock_left"], "a SIGKILLed snakemake leaves its lock behind"
    out = again.stdout + again.stderr
    assert again.returncode == 0, out
    assert "removed the lock a killed Snakemake run left" in out
    for dataset in ("masked", "unmasked"):
        hist = pd.read_csv(root / f"results/train/{dataset}/seed0/history.csv")
        assert hist["epoch"].tolist() == [1, 2, 3]
    metrics = json.loads((root / "results/metrics.json").read_text())
    assert {"unmasked", "masked"} <= set(metrics)
    last = sh(root, SNAKEMAKE, "--cores", "2")
    assert NOTHING in last.stdout + last.stderr


@pytest.fixture(scope="module")
def adopted(run):
    """`make dvc-adopt` after the Snakemake run, then dvc.lock and the metrics committed as
    docs/running.md says (`git add dvc.lock results/metrics.json && git commit -m "run"`)."""
    root = run["root"]
    res = sh(root, "make", "dvc-adopt")
    sh(root, "git", "add", "dvc.lock", "results/metrics.json")
    sh(root, *GIT, "commit", "-m", "run")
    return root, res


def test_make_dvc_adopt_records_the_snakemake_run_without_recomputing(adopted):
    root, res = adopted
    assert UP_TO_DATE in res.stdout
    before = mtimes(root, ["data/**/*.csv", "results/**/*.pt", "results/**/*.json"])
    repro = sh(root, DVC, "repro")
    assert "Running stage" not in repro.stdout and UP_TO_DATE in repro.stdout
    assert mtimes(root, ["data/**/*.csv", "results/**/*.pt", "results/**/*.json"]) == before
    # and Snakemake, whose outputs DVC's commit copied back from its cache, has nothing to do
    dry = sh(root, str(BIN / "snakemake"), "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    tracked = sh(root, "git", "ls-files").stdout.split()
    assert {"dvc.lock", "results/metrics.json"} <= set(tracked)


def fresh_clone_pulls_and_both_runners_have_nothing_to_do(root: Path, name: str, e=None) -> Path:
    """Clone next to ``root``, `dvc pull`, then DVC and (after make snakemake-adopt) Snakemake
    have nothing to do."""
    clone = root.parent / name
    sh(root.parent, "git", "clone", "-q", str(root), str(clone))
    run = lambda *a: sh(clone, *a) if e is None else run_env(clone, e, *a)  # noqa: E731
    assert not (clone / "data/split/split.csv").exists()
    run(DVC, "pull")
    assert (clone / "data/split/split.csv").read_text() == (
        root / "data/split/split.csv"
    ).read_text()
    assert (clone / "results/train/masked/seed0/model.pt").stat().st_size > 0
    assert "are in sync" in run(DVC, "status", "--cloud").stdout
    assert UP_TO_DATE in run(DVC, "status").stdout
    # restored outputs carry new timestamps: Snakemake would redo them until adopted
    before = run(SNAKEMAKE, "--cores", "2", "-n")
    assert NOTHING not in before.stdout + before.stderr
    assert "reason: Updated input files" in before.stdout + before.stderr
    run("make", "snakemake-adopt")
    dry = run(SNAKEMAKE, "--cores", "2", "-n")
    assert NOTHING in dry.stdout + dry.stderr, dry.stdout + dry.stderr
    return clone


def run_env(cwd: Path, extra: dict, *args: str) -> subprocess.CompletedProcess:
    res = subprocess.run(args, cwd=cwd, env={**env(), **extra}, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(args)}:\n{res.stdout}\n{res.stderr}"
    return res


def test_default_remote_is_a_local_folder_push_then_pull_in_a_fresh_clone(adopted):
    root, _ = adopted
    pushed = sh(root, DVC, "push")
    assert "pushed" in pushed.stdout
    remote = root.parent / "maskprivacy-dvc-remote"  # .dvc/config: ../../maskprivacy-dvc-remote
    assert (remote / "files" / "md5").is_dir()
    fresh_clone_pulls_and_both_runners_have_nothing_to_do(root, "clone-local")


@pytest.fixture
def s3_server(tmp_path):
    """moto's S3 server on 127.0.0.1 (a free port), with an empty bucket; stopped afterwards."""
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "moto.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        creds = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        import boto3

        boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket="maskprivacy")
        yield url, creds
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_s3_remote_push_then_pull_in_a_fresh_clone(adopted, s3_server):
    root, _ = adopted
    url, creds = s3_server
    # as the README writes it (endpointurl: an S3 service other than AWS)
    run_env(root, creds, DVC, "remote", "add", "-d", "s3", "s3://maskprivacy/dvc")
    run_env(root, creds, DVC, "remote", "modify", "s3", "endpointurl", url)
    commit(root, "s3 remote")
    try:
        assert "pushed" in run_env(root, creds, DVC, "push").stdout
        fresh_clone_pulls_and_both_runners_have_nothing_to_do(root, "clone-s3", creds)
    finally:  # back to the committed default (the local folder) for the tests that follow
        sh(root, DVC, "remote", "remove", "s3")
        sh(root, DVC, "remote", "default", "local")
        commit(root, "s3 remote removed")


def diff_rows(text: str) -> dict[str, list[str]]:
    """The table `dvc metrics diff` / `dvc params diff` print, as {name: [HEAD, workspace, ...]}."""
    rows = {}
    for line in text.splitlines()[1:]:  # under the header: Path  Metric  HEAD  workspace  Change
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) >= 4:
            rows[cells[1]] = cells[2:]
    return rows


def test_dvc_get_started_loop_diffs_experiments_and_offline_plots(adopted, tmp_path):
    root, _ = adopted
    set_param(root, "train", "epochs", 2)
    repro = sh(root, DVC, "repro")
    assert "Running stage 'train@masked-0'" in repro.stdout
    assert "Running stage 'split'" not in repro.stdout

    mdiff = sh(root, DVC, "metrics", "diff")
    assert "failed to load" not in mdiff.stdout + mdiff.stderr
    metrics = diff_rows(mdiff.stdout)
    assert any(k.startswith("masked.") for k in metrics), mdiff.stdout  # what changed is listed
    for name, (old, new, change) in metrics.items():  # with the commit's value, the new, the change
        assert abs(float(new) - float(old) - float(change)) < 1e-3, (name, old, new, change)
    params = diff_rows(sh(root, DVC, "params", "diff").stdout)
    assert params["train.epochs"] == ["3", "2"], params
    sh(root, *GIT, "commit", "-am", "2 epochs")
    # the page's commit leaves nothing of the run behind (a file of it git does not track yet)
    assert sh(root, "git", "status", "--porcelain").stdout == ""

    for epochs in (1, 3):
        sh(root, DVC, "exp", "run", "-S", f"train.epochs={epochs}")
    show = sh(root, DVC, "exp", "show", "--csv").stdout
    table = pd.read_csv(io.StringIO(show))
    runs = table[table["Experiment"].notna()]  # named experiments; then the commit, workspace
    commit_row = table[(table["typ"] == "baseline") & (table["rev"] != "workspace")]
    assert sorted(runs["train.epochs"].astype(int)) == [1, 3], show
    assert commit_row["train.epochs"].astype(int).tolist() == [2], show
    for col in ("masked.sex.accuracy", "unmasked.age.mae"):
        values = table[col].astype(str)
        assert not values.str.contains("!").any(), show
        assert table[col].astype(float).notna().all(), show

    out = tmp_path / "plots"
    sh(root, DVC, "plots", "diff", "HEAD~1", "-o", str(out))
    page = (out / "index.html").read_text()
    assert page.count("<img") >= 2 * 3  # each picture, for the workspace and HEAD~1
    assert "http://" not in page and "https://" not in page  # nothing from the network
    for src in re.findall(r'<img src="([^"]+)"', page):
        assert (out / src).is_file() and (out / src).suffix == ".png", src
    # without a revision: the workspace against the last commit, into dvc_plots/
    sh(root, DVC, "plots", "diff")
    assert (root / "dvc_plots/index.html").read_text().count("<img") >= 2 * 3
