"""Killed jobs, full disks and odd inputs, met the way a user meets them: through Snakemake.

One temporary copy of the repository runs a tiny pipeline (demo faces in an archive inside a
source folder that also holds odd entries; ResNet-18 at 32 px). Jobs are killed with SIGKILL,
Snakemake and all (a preempted node), then the same command is rerun with
``--rerun-incomplete``; the outputs must equal an uninterrupted run's, file for file. Writes
fail under a file-size limit (``RLIMIT_FSIZE``: Python ignores SIGXFSZ, so a write past the
limit raises EFBIG, as on a full disk): a clear error, no output that looks finished, and a
clean run once the limit is lifted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import torch
from test_pipeline import BIN, env, make_copy, sh, tiny_params

pytestmark = pytest.mark.slow
SNAKEMAKE = str(BIN / "snakemake")
ODD = {  # entries of the source folder beside the archive, and their reject reasons
    "27_0_0_20170101000000001.jpg.chip.jpg": "not_a_regular_file",  # a folder
    "28_1_0_20170101000000002.jpg.chip.jpg": "not_a_regular_file",  # a FIFO
    "29_0_1_20170101000000003.jpg.chip.jpg": "symlink_loop",
    "30_1_1_20170101000000005.jpg.chip.jpg": "symlink_outside_source",  # -> /etc/passwd
}


def make_source(folder: Path, demo_folder: Path) -> Path:
    """A folder holding faces.tar.gz (the demo faces and bad files, plus 24 MB of padding
    members so that extraction takes a while) and one odd entry of each kind."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    with tarfile.open(folder / "faces.tar.gz", "w:gz", compresslevel=1) as tar:
        for p in sorted(demo_folder.iterdir()):
            tar.add(p, arcname=f"UTKFace/{p.name}")
        for i in range(24):
            data = rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
            info = tarfile.TarInfo(f"UTKFace/padding/{i:02d}.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    names = list(ODD)
    (folder / names[0]).mkdir()
    os.mkfifo(folder / names[1])
    os.symlink(names[2], folder / names[2])
    os.symlink("/etc/passwd", folder / names[3])
    return folder


@pytest.fixture(scope="module")
def repo(tmp_path_factory, demo_folder):
    base = tmp_path_factory.mktemp("resilience")
    source = make_source(base / "source", demo_folder)
    params = tiny_params(source, seeds=[0])
    params["train"].update(epochs=3, batch_size=8)
    return make_copy(base / "repo", params)


def start(root: Path, *args: str, limit: int | None = None) -> subprocess.Popen:
    """Snakemake in its own process group (to kill it with its jobs), optionally under a
    file-size limit in bytes."""

    def preexec() -> None:
        os.setsid()
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.Popen(
        [SNAKEMAKE, "--cores", "2", *args],
        cwd=root,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=preexec,
    )


def kill_when(proc: subprocess.Popen, ready, whole: bool = False, timeout: float = 600) -> None:
    """SIGKILL the running job (its whole process tree: a SLURM time limit, the OOM killer), or
    with ``whole`` Snakemake too (a lost node), as soon as ``ready()`` holds."""
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"finished before the kill:\n{proc.stdout.read()}")
        if time.monotonic() - t0 > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("the moment to kill never came")
        time.sleep(0.005)
    if whole:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode != 0


def snake(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh(root, SNAKEMAKE, "--cores", "2", *args, check=check)


def digests(root: Path, patterns: list[str]) -> dict[str, str]:
    """sha256 of every file matched, by path: images and tables, file for file."""
    out = {}
    for pat in patterns:
        for p in sorted(root.glob(pat)):
            if p.is_file():
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    assert out, patterns
    return out


def no_temp_left(folder: Path) -> None:
    left = [p.name for p in folder.rglob(".*") if not p.name.startswith(".snakemake")]
    assert left == [], left


DOWNLOAD_OUT = ["data/download/images/*", "data/download/*.csv"]
ALIGN_OUT = ["data/align/*/images/*", "data/align/*/*.csv"]


def test_download_killed_mid_extraction_reruns_to_the_same_outputs(repo):
    target = "data/download/manifest.csv"
    proc = start(repo, target)
    extracting = lambda: any(repo.glob("data/download/.images.work.*/.p0a0.*.tmp/UTKFace/*"))  # noqa: E731
    kill_when(proc, extracting, whole=True)  # Snakemake and all: a lost node
    assert not (repo / target).exists()
    assert any(repo.glob("data/download/.images.work.*"))  # the kill left its work folder
    # Snakemake's own lock outlives a SIGKILL of Snakemake; the Snakefile removes it when no
    # Snakemake works in the folder (maskprivacy_workflow.locks), so the same command just finishes
    assert any((repo / ".snakemake/locks").iterdir())
    res = snake(repo, "--rerun-incomplete", target)  # the same command; nothing cleaned by hand
    assert "removed the lock a killed Snakemake run left" in res.stdout + res.stderr
    no_temp_left(repo / "data/download")
    after_kill = digests(repo, DOWNLOAD_OUT)
    snake(repo, target, "--forcerun", "download")  # an uninterrupted run
    assert digests(repo, DOWNLOAD_OUT) == after_kill

    # every entry of the source is accounted for, odd ones included, and nothing from outside
    rejects = pd.read_csv(repo / "data/download/rejects.csv")
    got = dict(zip(rejects["file"], rejects["reason"], strict=False))
    assert {k: got.get(k) for k in ODD} == ODD
    report = json.loads((repo / "data/download/report.json").read_text())
    manifest = pd.read_csv(repo / target)
    assert report["n_inputs"] == len(manifest) + len(rejects)
    passwd = Path("/etc/passwd").read_bytes()
    assert all(p.read_bytes() != passwd for p in (repo / "data/download/images").iterdir())


def test_align_killed_mid_shard_reruns_to_the_same_outputs(repo):
    target = "data/align/0/landmarks.csv"
    snake(repo, "data/download/manifest.csv")
    proc = start(repo, target)
    kill_when(proc, lambda: any(repo.glob("data/align/0/.images.*.tmp/*.jpg")))
    assert not (repo / target).exists() and not (repo / "data/align/0/images").exists()
    snake(repo, "--rerun-incomplete", target)
    no_temp_left(repo / "data/align")
    after_kill = digests(repo, ALIGN_OUT)
    snake(repo, target, "--forcerun", "align")
    assert digests(repo, ALIGN_OUT) == after_kill


def test_align_on_a_full_disk_fails_clearly_then_finishes(repo):
    target = "data/align/1/landmarks.csv"
    snake(repo, "data/download/manifest.csv")
    # 12 kB: Snakemake's own files (its copy of the script: 7 kB) and the 96 px faces fit,
    # the shard's landmarks table (about 20 kB) does not
    proc = start(repo, target, "--forcerun", "align", limit=12_000)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0
    log = (repo / "logs/align/1.log").read_text() + out
    assert "align: cannot write" in log and "a file size limit was hit" in log, log
    assert "free space (or lift the limit) and rerun" in log
    shard = repo / "data/align/1"
    assert not (shard / "landmarks.csv").exists() and not (shard / "report.json").exists()
    assert not (shard / "images").exists()
    no_temp_left(shard)  # no half-written temp left either
    snake(repo, target)  # the limit lifted
    after = digests(repo, ["data/align/1/images/*", "data/align/1/*.csv"])
    snake(repo, target, "--forcerun", "align")
    assert digests(repo, ["data/align/1/images/*", "data/align/1/*.csv"]) == after


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dicts"]["multitask"]


def test_train_killed_mid_epoch_resumes_and_matches_an_uninterrupted_run(repo):
    target = "results/train/unmasked/seed0/model.pt"
    out = repo / "results/train/unmasked/seed0"
    ckpt = out / "checkpoint.pt"
    snake(repo, "data/split/split.csv")
    # the split's accounting (found = final + rejected) counts the source's odd entries too
    acc = json.loads((repo / "results/data/report.json").read_text())["accounting"]
    found = json.loads((repo / "data/download/report.json").read_text())["n_inputs"]
    assert acc["balanced"] and acc["found"] == found
    rejected = pd.concat(pd.read_csv(f) for f in repo.glob("data/*/**/rejects.csv"))
    assert set(ODD) <= set(rejected["file"])
    proc = start(repo, target)
    kill_when(proc, ckpt.exists)  # epoch 1 is done and checkpointed: now in epoch 2
    assert ckpt.exists() and not (out / "model.pt").exists()  # model.pt comes only at the end
    epoch = torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"]
    assert 1 <= epoch < 3

    res = snake(repo, "--rerun-incomplete", target)  # the same command again
    log = (repo / "logs/train/unmasked/seed0.log").read_text()
    assert f"resuming after epoch {epoch} of 3" in log, log
    assert not ckpt.exists()  # removed once every output was written
    resumed = pd.read_csv(out / "history.csv")
    assert resumed["epoch"].tolist() == [1, 2, 3], res.stdout
    w_resumed = _weights(out / "model.pt")
    report = json.loads((out / "report.json").read_text())
    assert report["resumed_after_epoch"] == epoch
    assert report["select"] == "last" and report["kept_epoch"] == 3

    snake(repo, target, "--forcerun", "train")  # uninterrupted, from epoch 1
    assert "resuming" not in (repo / "logs/train/unmasked/seed0.log").read_text()
    whole = pd.read_csv(out / "history.csv")
    timing = ["seconds", "images_per_s"]
    pd.testing.assert_frame_equal(resumed.drop(columns=timing), whole.drop(columns=timing))
    w_whole = _weights(out / "model.pt")
    assert all(torch.equal(w_resumed[k], w_whole[k]) for k in w_whole)  # bitwise on CPU


def test_train_checkpoint_on_a_full_disk_fails_clearly_then_finishes(repo):
    target = "results/train/unmasked/seed0/model.pt"
    out = repo / "results/train/unmasked/seed0"
    snake(repo, "data/split/split.csv")
    proc = start(repo, target, "--forcerun", "train", limit=1 << 20)
    text, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0
    log = (repo / "logs/train/unmasked/seed0.log").read_text() + text
    assert "checkpoint.pt (epoch 1)" in log and "Is the disk full, or a file size limit" in log
    assert not (out / "model.pt").exists() and not (out / "checkpoint.pt").exists()
    no_temp_left(out)
    snake(repo, target)  # the limit lifted
    assert pd.read_csv(out / "history.csv")["epoch"].tolist() == [1, 2, 3]
