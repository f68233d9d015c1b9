"""How a job computes, never what it computes: the ``compute:`` section of params.yaml.

No runner tracks it (no rule passes it as a param, no DVC stage lists it), so changing it reruns
nothing. The stages get it as ``config.compute`` (:mod:`maskprivacy.stages.entry`); train and
evaluate read device, precision, compile, batch size for inference and data placement from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Compute:
    """How a job computes, never what it computes: changing any of these reruns nothing."""

    threads: int = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto = bf16 on CUDA and on a CPU with native bf16, else fp32
    compile: str | bool = "auto"  # auto = on for CUDA
    eval_batch_size: int = 256
    data_placement: str = "auto"  # auto | device | pinned

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None, threads: int = 1) -> Compute:
        """The ``compute:`` section of params.yaml (unknown keys are refused by the schema)."""
        known = {f.name for f in fields(cls)}
        return cls(threads=int(threads), **{k: v for k, v in (section or {}).items() if k in known})
