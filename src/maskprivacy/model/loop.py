"""The training loop: the models of a protocol (one multitask ResNet for sex, race and age, or
the paper's four single-task ones), trained epoch by epoch with data and augmentation on device.

The whole training set is decoded once into a uint8 tensor that lives on the training device
(GPU memory on CUDA, host memory on CPU), so a step never waits for a data loader. Each batch is
augmented on the device, per sample and seeded (random affine through ``affine_grid`` /
``grid_sample``, horizontal flip, brightness and contrast), normalised with ImageNet statistics
and fed to the network in channels-last layout under bf16 autocast on CUDA (``compute:``
says where and how: device, precision, compile, data placement). Losses and metrics
are accumulated on the device and read back once per epoch.

Resume: after every epoch a checkpoint (models, optimisers, schedules, epoch, history, the best
validation weights and every random generator) is written atomically to ``checkpoint.pt``
beside ``model.pt`` (a side file, not a declared output, so Snakemake does not delete it when
it reruns an incomplete job). A rerun with the same params and inputs (the checkpoint's key, a
hash of both) continues after the last finished epoch and says so in its log; a checkpoint with
another key is ignored (the log says so too). ``model.pt`` is written once, at the end: the last
weights (``train.select: last``) or the best on validation (``best_val``). Every random stream
is reseeded from ``train.seed`` and the epoch, so a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from maskprivacy.core.compute import Compute
from maskprivacy.core.plumbing import no_bar, remove_stale
from maskprivacy.model.checkpoints import (
    BackgroundWriter,
    checkpoint_payload,
    cpu_state,
    read_resume_state,
    to_cpu,
    write_checkpoint,
)
from maskprivacy.model.config import TrainConfig, autocast, resolve_device
from maskprivacy.model.feeders import DeviceFeeder, PinnedFeeder, make_feeder
from maskprivacy.model.images import GPUAugment
from maskprivacy.model.network import N_MULTITASK, build_model
from maskprivacy.model.predict import predict, prediction_metrics
from maskprivacy.model.tasks import PROTOCOLS, task_loss

log = logging.getLogger(__name__)


def train_one_epoch(
    model: nn.Module,
    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    feeder: DeviceFeeder | PinnedFeeder,
    batch_size: int,
    gen: torch.Generator,
    progress: bool = False,
    desc: str = "train",
) -> tuple[torch.Tensor, int]:
    """One pass over shuffled batches; returns the summed loss (a device tensor) and images seen.

    The ragged last batch is dropped (a fixed batch shape keeps compiled graphs and cuDNN plans
    reusable); the loss is summed on the device, so nothing waits on the host per step.
    """
    model.train()
    n = len(feeder)
    batch_size = min(batch_size, n)
    order = torch.randperm(n, generator=gen, device=gen.device)
    total = torch.zeros((), device=feeder.device)
    seen = 0
    n_batches = n // batch_size
    batches = feeder.batches(order, batch_size, n_batches)
    for x, y in tqdm(
        batches, total=n_batches, desc=desc, unit="batch", leave=False, disable=no_bar(progress)
    ):
        loss = step(x, y)
        total += loss.detach() * len(x)
        seen += len(x)
    return total, seen


@dataclass
class Trainer:
    """Model, optimiser, schedule and device augmentation: what one training step needs."""

    cfg: TrainConfig
    device: torch.device
    precision: str
    task: str
    model: nn.Module
    fwd: nn.Module  # the model, compiled when asked
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    augment: GPUAugment

    def step(self, x: torch.Tensor, y: torch.Tensor, augment: bool = True) -> torch.Tensor:
        """One optimiser step on uint8 images (augmented here) or, with ``augment=False``, on
        images already normalised. Returns the loss as a device tensor (no host sync)."""
        if augment:
            x = self.augment(x, train=True)
        x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.precision):
            out = self.fwd(x)
        loss = task_loss(self.task, out, y, self.cfg)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        return loss


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with ``train.lr`` and ``train.weight_decay``; its fused kernel on CPU and CUDA.

    On the CPU, torch's default AdamW updates each parameter tensor in turn: about 30-45 ms a step
    for a ResNet-18 on 2 cores, against 5 ms fused, so about 8% of a 64 px training step at
    batch 128 (``benchmarks/cpu_attacker.py`` measures the step against its ceiling). The update
    is the same algorithm; only the rounding order differs."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None
    )


def make_trainer(
    cfg: TrainConfig,
    compute: Compute,
    steps_per_epoch: int,
    task: str = "multitask",
    n_out: int = N_MULTITASK,
) -> Trainer:
    """Build one model on the compute device with its optimiser and warm-up cosine schedule."""
    device = resolve_device(compute.device)
    torch.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    model = build_model(cfg.arch, cfg.weights, n_out).to(device, memory_format=torch.channels_last)
    augment = GPUAugment(cfg.augment, cfg.image_size, device, cfg.seed)
    opt = make_optimizer(model, cfg, device)
    total_steps = max(1, steps_per_epoch * cfg.epochs)
    warmup = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total_steps)))
        ),
    )
    use_compile = compute.compile if isinstance(compute.compile, bool) else device.type == "cuda"
    fwd = torch.compile(model) if use_compile else model
    return Trainer(cfg, device, compute.precision, task, model, fwd, opt, sched, augment)


# What each network is selected on (train.select: best_val), and whether lower is better. The
# multitask network has one validation score for its three heads: the validation loss, i.e. the
# very sum it is trained on (the loss weights included); the paper's single-task networks are
# each selected on their own attribute's metric, as the authors did.
SELECT_ON: dict[str, tuple[str, bool]] = {
    "multitask": ("val_loss", True),
    "sex": ("val_sex_acc", False),
    "race": ("val_race_acc", False),
    "age": ("val_age_mae", True),
    "age_group": ("val_age_group_acc", False),
}
SELECTS = ("last", "best_val")


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """The seed of one random stream (0: data order, 1: augmentation) in one epoch: everything
    random in training follows from ``train.seed`` and the epoch, so a resumed run repeats."""
    return (seed * 1_000_003 + epoch * 101 + stream) % 2**63


@dataclass
class FitResult:
    """What :func:`train_models` gives: the selected models keyed by task, the per-epoch
    history, which epoch each model was kept from, and the epoch it resumed after (0: none)."""

    models: dict[str, nn.Module]
    history: pd.DataFrame
    kept: dict[str, dict[str, Any]]
    resumed_after: int = 0


def _rng_state(gens: dict[str, torch.Generator]) -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
        "torch": torch.get_rng_state(),
        "generators": {k: g.get_state() for k, g in gens.items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], gens: dict[str, torch.Generator]) -> None:
    version, keys, pos, has_gauss, cached = state["numpy"]
    random.setstate(_tuples(state["python"]))
    np.random.set_state((version, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    for k, g in gens.items():
        g.set_state(state["generators"][k])
    if "cuda" in state and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(x: Any) -> Any:
    """random.setstate wants tuples where a round trip may give lists."""
    return tuple(_tuples(v) for v in x) if isinstance(x, list | tuple) else x


def train_models(
    cfg: TrainConfig,
    compute: Compute,
    images: torch.Tensor,
    labels: torch.Tensor,
    val_images: torch.Tensor,
    val_labels: torch.Tensor,
    checkpoint: str | Path | None = None,
    threads: int | None = None,
    progress: bool = True,
    name: str = "model",
    key: str = "",
    logger: logging.Logger | None = None,
) -> FitResult:
    """Train the models of ``cfg.protocol`` (one multitask model, or the paper's four single-task
    models, epoch by epoch side by side on the same device-resident data), computing as
    ``compute`` says (device, precision, compile, evaluation batch size, data placement).

    With ``checkpoint``, the whole training state is written there atomically after every
    epoch, and a checkpoint already there whose ``key`` matches is resumed after its last epoch
    (one with another key is ignored). Returns the models selected by ``cfg.select`` (the last
    weights, or each model's best on validation, see :data:`SELECT_ON`), the history (the
    validation metrics of the models together) and what was kept."""
    lg = logger or log
    if cfg.protocol not in PROTOCOLS:
        raise ValueError(f"train.protocol must be one of {sorted(PROTOCOLS)}, not {cfg.protocol!r}")
    if cfg.select not in SELECTS:
        raise ValueError(f"train.select must be one of {SELECTS}, not {cfg.select!r}")
    if threads:
        torch.set_num_threads(threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    steps = max(1, len(images) // cfg.batch_size)
    trainers = {
        task: make_trainer(cfg, compute, steps, task, n_out)
        for task, n_out in PROTOCOLS[cfg.protocol]
    }
    first = next(iter(trainers.values()))
    device, augment = first.device, first.augment
    feeder = make_feeder(images, labels, device, compute.data_placement)
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed)
    gens = {"order": gen, **{f"augment_{t}": tr.augment.gen for t, tr in trainers.items()}}
    models = {task: tr.model for task, tr in trainers.items()}
    best_val = cfg.select == "best_val" and len(val_images) > 0
    if cfg.select == "best_val" and not best_val:
        lg.warning("train.select is best_val but there is no validation image: keeping the last")
    rows: list[dict[str, Any]] = []
    best: dict[str, dict[str, Any]] = {}
    start = 1
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None:
        for stale in remove_stale(ckpt):
            lg.info("removed %s, a checkpoint write cut short by a kill", stale)
    if ckpt is not None and ckpt.exists():
        state = read_resume_state(ckpt, key, lg)
        if state is not None:
            for task, tr in trainers.items():
                tr.model.load_state_dict(state["state_dicts"][task])
                tr.opt.load_state_dict(state["optimizers"][task])
                tr.sched.load_state_dict(state["schedulers"][task])
            _set_rng_state(state["rng"], gens)
            rows = list(state["history"])
            best = state.get("best") or {}
            start = int(state["epoch"]) + 1
            lg.info(
                "train %s: resuming after epoch %d of %d from %s", name, start - 1, cfg.epochs, ckpt
            )
    y_val = val_labels.numpy()
    writer = BackgroundWriter()
    bar = tqdm(
        range(start, cfg.epochs + 1),
        desc=f"train {name}",
        unit="epoch",
        initial=start - 1,
        total=cfg.epochs,
        disable=no_bar(progress),
    )
    for epoch in bar:
        t0 = time.perf_counter()
        row: dict[str, Any] = {"epoch": epoch}
        losses, seen = [], 0
        gen.manual_seed(epoch_seed(cfg.seed, epoch, 0))
        for task, tr in trainers.items():
            tr.augment.gen.manual_seed(epoch_seed(cfg.seed, epoch, 1))
            total, n = train_one_epoch(tr.model, tr.step, feeder, cfg.batch_size, gen)
            losses.append((task, total, n))
            seen += n
        # one host sync per epoch
        row["train_loss"] = sum(float(t) / max(1, n) for _, t, n in losses)
        if len(losses) > 1:
            row.update({f"train_loss_{task}": float(t) / max(1, n) for task, t, n in losses})
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        row.update(lr=first.sched.get_last_lr()[0], seconds=dt, images_per_s=seen / dt)
        if len(val_images):
            pred = predict(
                models,
                val_images,
                augment,
                device,
                compute.eval_batch_size,
                compute.precision,
                val_labels,
                cfg,
            )
            row["val_loss"] = float(pred["loss"])
            row.update({f"val_{k}": v for k, v in prediction_metrics(pred, y_val).items()})
        rows.append(row)
        if best_val:
            _update_best(best, models, row, epoch)
        bar.set_postfix({k: round(v, 3) for k, v in row.items() if k.startswith("val_")})
        if ckpt is not None:
            # a snapshot on the host now; written in the background while the next epoch runs
            extra = {
                "key": key,
                "optimizers": {t: to_cpu(tr.opt.state_dict()) for t, tr in trainers.items()},
                "schedulers": {t: to_cpu(tr.sched.state_dict()) for t, tr in trainers.items()},
                "rng": _rng_state(gens),
                "history": [dict(r) for r in rows],
                "best": dict(best),
            }
            writer.submit(write_checkpoint, checkpoint_payload(models, cfg, epoch, extra), ckpt)
    writer.close()
    kept = _select(models, best, rows, cfg.epochs, best_val)
    return FitResult(models, pd.DataFrame(rows), kept, start - 1)


def _update_best(
    best: dict[str, dict[str, Any]], models: dict[str, nn.Module], row: dict[str, Any], epoch: int
) -> None:
    """Keep a CPU copy of each model's weights at its best validation score so far."""
    for task, model in models.items():
        metric, lower = SELECT_ON[task]
        score = float(row[metric])
        old = best.get(task)
        if old is None or (score < old["score"] if lower else score > old["score"]):
            best[task] = {"epoch": epoch, "score": score, "state_dict": cpu_state(model)}


def _select(
    models: dict[str, nn.Module],
    best: dict[str, dict[str, Any]],
    rows: list[dict[str, Any]],
    epochs: int,
    best_val: bool,
) -> dict[str, dict[str, Any]]:
    """Load the kept weights into ``models``; per task: epoch (1-based), metric and score."""
    kept = {}
    for task, model in models.items():
        metric = SELECT_ON[task][0]
        if best_val and task in best:
            model.load_state_dict(best[task]["state_dict"])
            kept[task] = {"epoch": best[task]["epoch"], "on": metric, "score": best[task]["score"]}
        else:
            last = rows[-1] if rows else {}
            score = last.get(metric)
            kept[task] = {
                "epoch": epochs,
                "on": metric,
                "score": None if score is None else float(score),
            }
    return kept


def selection_summary(kept: dict[str, dict[str, Any]], select: str) -> dict[str, Any]:
    """The report's model-selection keys: ``select``, ``kept_epoch`` (1-based), ``kept_on`` (the
    validation score) and ``kept_score``; for the paper's protocol, whose networks are each
    selected on their own metric, also ``kept_by_task``."""
    if len(kept) == 1:
        (k,) = kept.values()
        return {
            "select": select,
            "kept_epoch": k["epoch"],
            "kept_on": k["on"],
            "kept_score": k["score"],
        }
    scores = [k["score"] for t, k in kept.items() if k["score"] is not None and t != "age"]
    return {
        "select": select,
        # the latest epoch any network was kept from; each network's own is in kept_by_task
        "kept_epoch": max(k["epoch"] for k in kept.values()),
        "kept_on": "per_attribute",
        # the mean validation accuracy of the classification networks (sex, race, age group)
        # at their kept epochs; the age regression's MAE is in kept_by_task
        "kept_score": float(np.mean(scores)) if scores else None,
        "kept_by_task": kept,
    }
