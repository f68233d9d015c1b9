"""What a training run is (:class:`TrainConfig`, the tracked ``train`` section) and how it
computes (:class:`~maskprivacy.core.compute.Compute`, the untracked ``compute`` section): device and precision."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class TrainConfig:
    """The ``train`` section of params.yaml (validated by the schema before it gets here): what
    is trained, so every field is part of a resume checkpoint's key."""

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
        raise RuntimeError(f"compute.device is {name!r} but torch sees no CUDA device")
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    """The autocast context of ``compute.precision`` on ``device``."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)
