"""The ``train`` stage: one multitask ResNet for sex, race and age, data and augmentation on device.

The whole training set is decoded once into a uint8 tensor that lives on the training device
(GPU memory on CUDA, host memory on CPU), so a step never waits for a data loader. Each batch is
augmented on the device, per sample and seeded (random affine through ``affine_grid`` /
``grid_sample``, horizontal flip, brightness and contrast), normalised with ImageNet statistics
and fed to the network in channels-last layout under bf16 autocast on CUDA. Losses and metrics
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

import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from maskprivacy.core.io import sha256_file, write_table
from maskprivacy.core.labels import RACES, SEXES
from maskprivacy.core.plumbing import atomic_path, explain_full_disk, no_bar, remove_stale

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
AGE_CENTRE, AGE_SCALE = 35.0, 20.0
N_SEX, N_RACE = len(SEXES), len(RACES)
ARCHES = ("resnet18", "resnet34", "resnet50", "resnet101")
CHECKPOINT_NAME = "checkpoint.pt"
log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """The ``train`` section of params.yaml (validated by the schema before it gets here)."""

    arch: str = "resnet50"
    weights: str = ""
    epochs: int = 30
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    image_size: int = 224
    seed: int = 0
    compile: str | bool = "auto"
    precision: str = "auto"
    device: str = "auto"
    eval_batch_size: int = 512
    data_placement: str = "auto"
    protocol: str = "multitask"
    select: str = "last"
    loss_weights: dict[str, float] = field(
        default_factory=lambda: {"sex": 1.0, "race": 1.0, "age": 1.0}
    )
    augment: dict[str, float] = field(
        default_factory=lambda: {
            "flip": 0.5,
            "rotate": 10.0,
            "scale": 0.1,
            "translate": 0.05,
            "brightness": 0.2,
            "contrast": 0.2,
        }
    )

    @classmethod
    def from_params(cls, cfg: dict[str, Any]) -> TrainConfig:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in cfg.items() if k in known})


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device is {name!r} but torch sees no CUDA device")
    return torch.device(name)


# ---------------------------------------------------------------- data


def _decode(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
        return np.array(im, dtype=np.uint8)


def load_images(
    folder: str | Path | Sequence[str | Path],
    files: Sequence[str],
    size: int,
    workers: int = 4,
    progress: bool = True,
) -> torch.Tensor:
    """Decode ``files`` into a (N, 3, size, size) uint8 tensor on the host; ``folder`` is one
    image folder or a list of them (the shards'), each file in exactly one."""
    from maskprivacy.core.shards import locate

    out = torch.empty((len(files), size, size, 3), dtype=torch.uint8)
    paths = locate(folder, files)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        it = pool.map(lambda p: _decode(p, size), paths, chunksize=64)
        for i, arr in enumerate(
            tqdm(it, total=len(files), desc="decode", unit="img", disable=no_bar(progress))
        ):
            out[i] = torch.from_numpy(arr)
    return out.permute(0, 3, 1, 2)


def labels_tensor(table: pd.DataFrame) -> torch.Tensor:
    """(N, 3) float tensor: sex, race, age."""
    return torch.tensor(table[["sex", "race", "age"]].to_numpy(dtype=np.float32))


class GPUAugment:
    """Per-sample seeded augmentation and normalisation of uint8 batches, on their device."""

    def __init__(self, aug: dict[str, float], size: int, device: torch.device, seed: int):
        self.aug = aug
        self.size = size
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(seed)
        self.mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255

    def _u(self, n: int, device: torch.device, lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, device=device, generator=self.gen) * (hi - lo) + lo

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std

    def __call__(self, x: torch.Tensor, train: bool = True) -> torch.Tensor:
        x = x.float()
        n, dev = x.shape[0], x.device
        if train:
            a = self.aug
            angle = self._u(n, dev, -1, 1) * math.radians(a.get("rotate", 0.0))
            scale = 1 + self._u(n, dev, -1, 1) * a.get("scale", 0.0)
            flip = torch.where(self._u(n, dev, 0, 1) < a.get("flip", 0.0), -1.0, 1.0)
            tx = self._u(n, dev, -1, 1) * 2 * a.get("translate", 0.0)
            ty = self._u(n, dev, -1, 1) * 2 * a.get("translate", 0.0)
            cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
            theta = torch.stack(
                [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
            )
            grid = F.affine_grid(theta, [n, 3, self.size, self.size], align_corners=False)
            x = F.grid_sample(
                x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
            )
            b = 1 + self._u(n, dev, -1, 1).view(n, 1, 1, 1) * a.get("brightness", 0.0)
            c = 1 + self._u(n, dev, -1, 1).view(n, 1, 1, 1) * a.get("contrast", 0.0)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = ((x - mean) * c + mean) * b
            x = x.clamp(0, 255)
        elif x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True)
        return (x - self.mean) / self.std


# ---------------------------------------------------------------- model


class MultiTaskHead(nn.Module):
    """The final layer: sex logits (2), race logits (5) and normalised age (1) for the multitask
    model, or one task's outputs for the paper's single-task models."""

    def __init__(self, in_features: int, n_out: int = N_SEX + N_RACE + 1):
        super().__init__()
        self.fc = nn.Linear(in_features, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def build_model(
    arch: str = "resnet50", weights: str = "", n_out: int = N_SEX + N_RACE + 1
) -> nn.Module:
    """A torchvision ResNet with a multitask head; from scratch unless ``weights`` names a file."""
    import torchvision

    if arch not in ARCHES:
        raise ValueError(f"train.arch must be one of {ARCHES}, got {arch!r}")
    model = torchvision.models.get_model(arch, weights=None)
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"train.weights: {path} does not exist. Download torchvision's ImageNet weights for "
                f"{arch} (e.g. ResNet50_Weights.IMAGENET1K_V2 from download.pytorch.org) on a machine "
                "with internet, copy the .pth file here, and point train.weights at it; or leave "
                "train.weights empty to train from scratch."
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"fc.weight", "fc.bias"}:
            raise ValueError(
                f"train.weights: {path} does not fit {arch} (unexpected {unexpected[:3]}, missing {missing[:3]})"
            )
    model.fc = MultiTaskHead(model.fc.in_features, n_out)
    return model


# ---------------------------------------------------------------- protocols and tasks

# The paper's age target and its seven age groups (lower bounds of groups 1..6).
PAPER_AGE_CENTRE, PAPER_AGE_SCALE = 60.0, 60.0
AGE_GROUP_BOUNDS = (4, 13, 20, 31, 46, 61)
N_AGE_GROUPS = len(AGE_GROUP_BOUNDS) + 1
# protocol -> the models it trains: (task, number of outputs)
PROTOCOLS: dict[str, tuple[tuple[str, int], ...]] = {
    "multitask": (("multitask", N_SEX + N_RACE + 1),),
    "paper": (("sex", N_SEX), ("race", N_RACE), ("age", 1), ("age_group", N_AGE_GROUPS)),
}


def age_group(age: torch.Tensor) -> torch.Tensor:
    """The paper's seven age groups (Baby 0-3 ... Senior 61+) as class indices."""
    bounds = torch.tensor(AGE_GROUP_BOUNDS, dtype=age.dtype, device=age.device)
    return torch.bucketize(age.contiguous(), bounds, right=True)


def task_loss(task: str, out: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Training loss of one model; ``y`` holds sex, race and age columns."""
    out = out.float()
    ls = cfg.label_smoothing
    if task == "multitask":
        return multitask_loss(out, y, cfg.loss_weights, ls)
    if task == "sex":
        return F.cross_entropy(out, y[:, 0].long(), label_smoothing=ls)
    if task == "race":
        return F.cross_entropy(out, y[:, 1].long(), label_smoothing=ls)
    if task == "age":
        target = (y[:, 2] - PAPER_AGE_CENTRE) / PAPER_AGE_SCALE
        return F.smooth_l1_loss(out[:, 0], target, beta=0.1 * AGE_SCALE / PAPER_AGE_SCALE)
    if task == "age_group":
        return F.cross_entropy(out, age_group(y[:, 2]).long(), label_smoothing=ls)
    raise ValueError(f"unknown task {task!r}")


def task_outputs(task: str, out: torch.Tensor) -> dict[str, torch.Tensor]:
    """What one model predicts: class probabilities and/or age in years."""
    out = out.float()
    if task == "multitask":
        s, r, a = split_outputs(out)
        return {
            "sex_prob": s.softmax(1),
            "race_prob": r.softmax(1),
            "age": a * AGE_SCALE + AGE_CENTRE,
        }
    if task == "sex":
        return {"sex_prob": out.softmax(1)}
    if task == "race":
        return {"race_prob": out.softmax(1)}
    if task == "age":
        return {"age": out[:, 0] * PAPER_AGE_SCALE + PAPER_AGE_CENTRE}
    if task == "age_group":
        return {"age_group_prob": out.softmax(1)}
    raise ValueError(f"unknown task {task!r}")


def split_outputs(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out = out.float()
    return out[:, :N_SEX], out[:, N_SEX : N_SEX + N_RACE], out[:, -1]


def multitask_loss(
    out: torch.Tensor, y: torch.Tensor, weights: dict[str, float], label_smoothing: float = 0.0
) -> torch.Tensor:
    sex, race, age = split_outputs(out)
    ls = F.cross_entropy(sex, y[:, 0].long(), label_smoothing=label_smoothing)
    lr = F.cross_entropy(race, y[:, 1].long(), label_smoothing=label_smoothing)
    la = F.smooth_l1_loss(age, (y[:, 2] - AGE_CENTRE) / AGE_SCALE, beta=0.1)
    return (
        weights.get("sex", 1.0) * ls + weights.get("race", 1.0) * lr + weights.get("age", 1.0) * la
    )


# ---------------------------------------------------------------- loops


def _autocast(device: torch.device, precision: str):
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


@torch.no_grad()
def predict(
    models: nn.Module | dict[str, nn.Module],
    images: torch.Tensor,
    augment: GPUAugment,
    device: torch.device,
    batch_size: int = 512,
    precision: str = "auto",
    labels: torch.Tensor | None = None,
    cfg: TrainConfig | None = None,
) -> dict[str, np.ndarray]:
    """Predictions of one multitask model or of several single-task models (keyed by task) for
    uint8 images: ``sex_prob``, ``race_prob``, ``age`` (years), and ``age_group_prob`` when an
    age-group model is there. With ``labels`` (and ``cfg``), also ``loss``: the summed loss."""
    if isinstance(models, nn.Module):
        models = {"multitask": models}
    for m in models.values():
        m.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    loss = torch.zeros((), device=device)
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(device, non_blocking=True)
        x = augment(x, train=False).contiguous(memory_format=torch.channels_last)
        for task, model in models.items():
            with _autocast(device, precision):
                out = model(x)
            for k, v in task_outputs(task, out).items():
                parts.setdefault(k, []).append(v)
            if labels is not None:
                y = labels[i : i + batch_size].to(device)
                loss += task_loss(task, out, y, cfg or TrainConfig()) * len(x)
    result = {k: torch.cat(v).cpu().numpy() for k, v in parts.items()}
    if len(images) == 0:
        result = {
            "sex_prob": np.zeros((0, N_SEX)),
            "race_prob": np.zeros((0, N_RACE)),
            "age": np.zeros(0),
        }
    if labels is not None:
        result["loss"] = np.array(float(loss) / max(1, len(images)))
    return result


def prediction_metrics(pred: dict[str, np.ndarray], y: np.ndarray) -> dict[str, float]:
    out = {
        "sex_acc": float((pred["sex_prob"].argmax(1) == y[:, 0]).mean()),
        "race_acc": float((pred["race_prob"].argmax(1) == y[:, 1]).mean()),
        "age_mae": float(np.abs(pred["age"] - y[:, 2]).mean()),
    }
    if "age_group_prob" in pred:
        groups = np.searchsorted(AGE_GROUP_BOUNDS, y[:, 2], side="right")
        out["age_group_acc"] = float((pred["age_group_prob"].argmax(1) == groups).mean())
    return out


class DeviceFeeder:
    """Batches gathered from images that live on the training device (GPU memory, or the host
    when training on the CPU): one index_select per batch, no copy across the bus."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, device: torch.device):
        self.images, self.labels, self.device = images.to(device), labels.to(device), device

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, order: torch.Tensor, batch_size: int, n_batches: int):
        order = order.to(self.device)
        for b in range(n_batches):
            idx = order[b * batch_size : (b + 1) * batch_size]
            yield self.images[idx], self.labels[idx]


class PinnedFeeder:
    """Batches for a data set too large for the device: images stay in (pinned) host memory;
    each batch is gathered on the host into a pinned buffer and copied on a side stream while
    the previous batch computes (double buffering). On a CPU device it degrades to a plain
    host gather, so the same code path runs (and is tested) without a GPU."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"
        self.images = images.pin_memory() if self.cuda else images
        self.labels = labels
        self.stream = torch.cuda.Stream(device) if self.cuda else None

    def __len__(self) -> int:
        return len(self.images)

    def _stage(self, idx: torch.Tensor, k: int):
        """Gather batch ``idx`` into host buffer ``k`` and start its copy to the device."""
        if not self.cuda:
            return self.images[idx], self.labels[idx]
        if self.events[k] is not None:
            self.events[k].synchronize()  # the copy that last read this buffer is done
        x_host, y_host = self.bufs[k]
        torch.index_select(self.images, 0, idx, out=x_host)
        torch.index_select(self.labels, 0, idx, out=y_host)
        with torch.cuda.stream(self.stream):
            x = x_host.to(self.device, non_blocking=True)
            y = y_host.to(self.device, non_blocking=True)
            self.events[k] = torch.cuda.Event()
            self.events[k].record(self.stream)
        return x, y

    def batches(self, order: torch.Tensor, batch_size: int, n_batches: int):
        order = order.cpu()
        if self.cuda:
            self.bufs = [
                (
                    torch.empty(
                        (batch_size, *self.images.shape[1:]), dtype=self.images.dtype
                    ).pin_memory(),
                    torch.empty(
                        (batch_size, *self.labels.shape[1:]), dtype=self.labels.dtype
                    ).pin_memory(),
                )
                for _ in range(2)
            ]
            self.events = [None, None]
        pending = self._stage(order[:batch_size], 0) if n_batches else None
        for b in range(n_batches):
            x, y = pending
            if b + 1 < n_batches:  # start the next copy before this batch computes
                pending = self._stage(
                    order[(b + 1) * batch_size : (b + 2) * batch_size], (b + 1) % 2
                )
            if self.cuda:
                current = torch.cuda.current_stream(self.device)
                current.wait_event(self.events[b % 2])
                x.record_stream(current)
                y.record_stream(current)
            yield x, y


def make_feeder(
    images: torch.Tensor, labels: torch.Tensor, device: torch.device, placement: str = "auto"
) -> DeviceFeeder | PinnedFeeder:
    """``device``: images on the training device; ``pinned``: in host memory with prefetching
    copies; ``auto``: on the device when they take under half of its free memory."""
    if placement == "auto":
        placement = "device"
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            need = images.numel() * images.element_size()
            placement = "device" if need < 0.5 * free else "pinned"
    if placement not in ("device", "pinned"):
        raise ValueError(f"train.data_placement must be auto, device or pinned, not {placement!r}")
    cls = DeviceFeeder if placement == "device" else PinnedFeeder
    return cls(images, labels, device)


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
        with _autocast(self.device, self.cfg.precision):
            out = self.fwd(x)
        loss = task_loss(self.task, out, y, self.cfg)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        return loss


def make_trainer(
    cfg: TrainConfig, steps_per_epoch: int, task: str = "multitask", n_out: int = N_SEX + N_RACE + 1
) -> Trainer:
    """Build one model on the configured device with its optimiser and warm-up cosine schedule."""
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    model = build_model(cfg.arch, cfg.weights, n_out).to(device, memory_format=torch.channels_last)
    augment = GPUAugment(cfg.augment, cfg.image_size, device, cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = max(1, steps_per_epoch * cfg.epochs)
    warmup = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total_steps)))
        ),
    )
    use_compile = cfg.compile if isinstance(cfg.compile, bool) else device.type == "cuda"
    fwd = torch.compile(model) if use_compile else model
    return Trainer(cfg, device, task, model, fwd, opt, sched, augment)


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


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def train_models(
    cfg: TrainConfig,
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
    models, epoch by epoch side by side on the same device-resident data).

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
        task: make_trainer(cfg, steps, task, n_out) for task, n_out in PROTOCOLS[cfg.protocol]
    }
    first = next(iter(trainers.values()))
    device, augment = first.device, first.augment
    feeder = make_feeder(images, labels, device, cfg.data_placement)
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
        state = _read_resume_state(ckpt, key, lg)
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
    writer = _BackgroundWriter()
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
                cfg.eval_batch_size,
                cfg.precision,
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
                "optimizers": {t: _to_cpu(tr.opt.state_dict()) for t, tr in trainers.items()},
                "schedulers": {t: _to_cpu(tr.sched.state_dict()) for t, tr in trainers.items()},
                "rng": _rng_state(gens),
                "history": [dict(r) for r in rows],
                "best": dict(best),
            }
            writer.submit(write_checkpoint, checkpoint_payload(models, cfg, epoch, extra), ckpt)
    writer.close()
    kept = _select(models, best, rows, cfg.epochs, best_val)
    return FitResult(models, pd.DataFrame(rows), kept, start - 1)


class _BackgroundWriter:
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


def _to_cpu(obj: Any) -> Any:
    """A copy of ``obj`` with every tensor copied to the host (optimiser states change in place
    at the next step, so a background write needs its own copy)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _update_best(
    best: dict[str, dict[str, Any]], models: dict[str, nn.Module], row: dict[str, Any], epoch: int
) -> None:
    """Keep a CPU copy of each model's weights at its best validation score so far."""
    for task, model in models.items():
        metric, lower = SELECT_ON[task]
        score = float(row[metric])
        old = best.get(task)
        if old is None or (score < old["score"] if lower else score > old["score"]):
            best[task] = {"epoch": epoch, "score": score, "state_dict": _cpu_state(model)}


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


def _read_resume_state(path: Path, key: str, lg: logging.Logger) -> dict[str, Any] | None:
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


def fit(
    cfg: TrainConfig,
    images: torch.Tensor,
    labels: torch.Tensor,
    val_images: torch.Tensor,
    val_labels: torch.Tensor,
    checkpoint: str | Path | None = None,
    threads: int | None = None,
    progress: bool = True,
    name: str = "model",
) -> tuple[dict[str, nn.Module], pd.DataFrame]:
    """:func:`train_models` giving only the selected models keyed by task and the history."""
    r = train_models(
        cfg, images, labels, val_images, val_labels, checkpoint, threads, progress, name
    )
    return r.models, r.history


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
        "state_dicts": {t: _cpu_state(m) for t, m in models.items()},
        "n_out": {t: m.fc.fc.out_features for t, m in models.items()},
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
    """Delete the resume checkpoint once the stage's outputs are all written (called by the
    workflow script after the report), so no stale checkpoint sits beside a finished model."""
    path = checkpoint_path(model_out)
    if path.exists():
        path.unlink()
        (logger or log).info("removed the resume checkpoint %s: the stage is done", path)


def run(
    cfg: dict[str, Any],
    split_table: str | Path,
    images_dir: str | Path | list[str | Path],
    model_out: str | Path,
    history_out: str | Path,
    threads: int = 1,
    progress: bool = True,
    name: str = "model",
    logger: logging.Logger | None = None,
) -> dict[str, Any]:
    """Train on the split's train part, validate on its val part, write model and history.

    Resumes from ``checkpoint.pt`` beside ``model_out`` when an earlier run with the same
    params and inputs was killed; ``model_out`` is written once, at the end."""
    from maskprivacy.core.io import read_table
    from maskprivacy.core.shards import locate

    tc = TrainConfig.from_params(cfg)
    table = read_table(split_table)
    tr, va = table[table["split"] == "train"], table[table["split"] == "val"]
    if len(tr) < 2:
        raise ValueError(f"train: only {len(tr)} training image(s) in {split_table}")
    workers = max(1, threads)
    remove_stale(model_out)  # a final write cut short by a kill (the checkpoint's: train_models)
    files = pd.concat([tr, va])
    key = run_key(tc, files, locate(images_dir, files["file"].tolist()))
    x_tr = load_images(images_dir, tr["file"].tolist(), tc.image_size, workers, progress)
    x_va = load_images(images_dir, va["file"].tolist(), tc.image_size, workers, progress)
    t0 = time.perf_counter()
    result = train_models(
        tc,
        x_tr,
        labels_tensor(tr),
        x_va,
        labels_tensor(va),
        checkpoint=checkpoint_path(model_out),
        threads=threads,
        progress=progress,
        name=name,
        key=key,
        logger=logger,
    )
    history = result.history
    kept = result.kept
    epochs = [k["epoch"] for k in kept.values()]
    with explain_full_disk("train"):
        save_checkpoint(
            result.models, tc, max(epochs), model_out, extra={"select": tc.select, "kept": kept}
        )
        write_table(history_out, history)
    last = {("last_epoch_seconds" if k == "seconds" else k): v for k, v in history.iloc[-1].items()}
    summary = {
        "n_train": len(tr),
        "n_val": len(va),
        "fit_seconds": time.perf_counter() - t0,
        "resumed_after_epoch": result.resumed_after,
        **last,
        **selection_summary(kept, tc.select),
    }
    if torch.cuda.is_available():
        summary["device"] = torch.cuda.get_device_name()
        summary["peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return summary


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
