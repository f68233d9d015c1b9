"""What a training run is (:class:`TrainConfig`, the tracked ``train`` section) and how it
computes (:class:`~maskprivacy.core.compute.Compute`, the untracked ``compute`` section): device and precision."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


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


# CPU flags (Linux /proc/cpuinfo) of native bf16 arithmetic. Without them torch's bf16 on the
# CPU is emulated: a ResNet-18 training step at 64 px took 15.6 s in bf16 against 1.03 s in fp32
# on a 2-core AMD EPYC with AVX2 only (2026-12-07), while with avx512_bf16 bf16 is 1.6-2x fp32.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Does this CPU compute bf16 natively (:data:`BF16_CPU_FLAGS`)? False where it cannot be
    read (not Linux): fp32 is the safe guess."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return any(flag in flags.split() for flag in BF16_CPU_FLAGS)


def resolve_precision(device: torch.device, precision: str) -> str:
    """``compute.precision`` made concrete: ``auto`` is bf16 on CUDA and on a CPU with native
    bf16, fp32 on any other CPU. An explicit ``bf16`` on a CPU without it is kept, with a
    warning: it is an order of magnitude slower there than fp32."""
    native = device.type == "cuda" or cpu_has_native_bf16()
    if precision == "auto":
        return "bf16" if native else "fp32"
    if precision == "bf16" and not native:
        _warn_slow_bf16()
    return precision


@functools.cache
def _warn_slow_bf16() -> None:
    log.warning(
        "compute.precision: bf16 on a CPU without native bf16 (no %s in /proc/cpuinfo): torch "
        "emulates it, about 15x slower than fp32 (measured on an AVX2 CPU); set "
        "compute.precision: auto (fp32 here) to train at full speed",
        " or ".join(BF16_CPU_FLAGS),
    )


def autocast(device: torch.device, precision: str):
    """The autocast context of ``compute.precision`` on ``device`` (:func:`resolve_precision`)."""
    if resolve_precision(device, precision) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)
