"""Checkpoints: what a model file and a resume checkpoint hold, written atomically, read back,
keyed so that only a run with the same params and inputs resumes."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from maskprivacy.core.io import sha256_file
from maskprivacy.core.plumbing import atomic_path
from maskprivacy.model.config import TrainConfig
from maskprivacy.model.network import build_model

CHECKPOINT_NAME = "checkpoint.pt"
log = logging.getLogger(__name__)


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's weights on the host."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class BackgroundWriter:
    """Writes one checkpoint at a time in a thread, so training does not wait for the disk
    (a ResNet-50 checkpoint is 0.3 GB: about a second, a third of an H200 epoch). A write still
    running when the next one comes, or when training ends, is waited for, and its error (a
    full disk) raised there; a kill meanwhile leaves the previous checkpoint, written whole."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(1)
        self.pending: Any = None

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        self.wait()
        self.pending = self.pool.submit(fn, *args)

    def wait(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for the last write (raising its error), then stop the thread."""
        try:
            self.wait()
        finally:
            self.pool.shutdown()


def to_cpu(obj: Any) -> Any:
    """A copy of ``obj`` with every tensor copied to the host (optimiser states change in place
    at the next step, so a background write needs its own copy)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def read_resume_state(path: Path, key: str, lg: logging.Logger) -> dict[str, Any] | None:
    """The checkpoint at ``path`` when it can be resumed (same key), else None (logged)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged file: start over rather than fail
        lg.warning(
            "ignoring the checkpoint %s, which cannot be read (%s): starting over", path, err
        )
        return None
    if state.get("key") != key or "optimizers" not in state:
        lg.warning(
            "ignoring the checkpoint %s: it was made with other train params or inputs "
            "(key %s, this run %s); starting from epoch 1",
            path,
            str(state.get("key"))[:12],
            key[:12],
        )
        return None
    return state


def checkpoint_payload(
    models: nn.Module | dict[str, nn.Module],
    cfg: TrainConfig,
    epoch: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a checkpoint holds: every model of the protocol (state dicts keyed by task, copied to
    the host), what it takes to rebuild them, and ``extra`` entries (a resume checkpoint's
    optimisers, schedules, random states, history...)."""
    if isinstance(models, nn.Module):
        models = {"multitask": models}
    return {
        "state_dicts": {t: cpu_state(m) for t, m in models.items()},
        "n_out": {t: m.fc.out_features for t, m in models.items()},
        "protocol": cfg.protocol,
        "arch": cfg.arch,
        "image_size": cfg.image_size,
        "epoch": epoch,
        "config": cfg.__dict__,
        **(extra or {}),
    }


def write_checkpoint(payload: dict[str, Any], path: str | Path) -> None:
    """Write a checkpoint atomically. A failed write (a full disk, a file size limit) leaves no
    file under ``path`` (an earlier checkpoint there stays whole) and raises an OSError that
    says so."""
    try:
        with atomic_path(path, suffix=".pt") as tmp:
            torch.save(payload, tmp)
    except (OSError, RuntimeError) as err:
        # torch.save reports a failed write as RuntimeError from its zip writer
        raise OSError(
            f"cannot write {path} (epoch {payload.get('epoch')}): {err}. Is the disk full, or a "
            "file size limit set? Nothing was written under that name; free space and rerun "
            "(training resumes after the last checkpoint written)",
        ) from err


def save_checkpoint(
    models: nn.Module | dict[str, nn.Module],
    cfg: TrainConfig,
    epoch: int,
    path: str | Path,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the models (and ``extra``) as a checkpoint at ``path``, atomically."""
    write_checkpoint(checkpoint_payload(models, cfg, epoch, extra), path)


def load_checkpoint(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[dict[str, nn.Module], dict]:
    """The models of a checkpoint keyed by task, in eval mode on ``device``, and its payload."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    models = {}
    for task, state in payload["state_dicts"].items():
        model = build_model(payload["arch"], n_out=payload["n_out"][task])
        model.load_state_dict(state)
        models[task] = model.to(device, memory_format=torch.channels_last).eval()
    return models, payload


def checkpoint_path(model_out: str | Path) -> Path:
    """The resume checkpoint beside ``model.pt``: a side file in the stage's output folder."""
    return Path(model_out).with_name(CHECKPOINT_NAME)


def run_key(cfg: TrainConfig, table: pd.DataFrame, paths: Sequence[Path]) -> str:
    """A checkpoint's key: a hash of the train params, the train/val rows and the bytes of their
    images. A checkpoint resumes only a run with the same key."""
    h = hashlib.sha256()
    h.update(json.dumps(asdict(cfg), sort_keys=True, default=str).encode())
    cols = [c for c in ("file", "split", "sex", "race", "age") if c in table]
    h.update(table[cols].to_csv(index=False).encode())
    for p in paths:
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def discard_checkpoint(model_out: str | Path, logger: logging.Logger | None = None) -> None:
    """Delete the resume checkpoint once the model and its history are written (the train
    stage's last step), so no stale checkpoint sits beside a finished model."""
    path = checkpoint_path(model_out)
    if path.exists():
        path.unlink()
        (logger or log).info("removed the resume checkpoint %s: the stage is done", path)
