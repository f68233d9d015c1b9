"""The one way into a stage: ``run(config, inputs, outputs, log) -> summary``.

Every stage module in :mod:`maskprivacy.stages` has a function of that shape, and every workflow
script is the same two lines::

    from maskprivacy.stages import align
    from maskprivacy.stages.entry import from_snakemake

    from_snakemake(align.run, snakemake)

- ``config`` (:class:`StageConfig`): ``params``, the stage's section of ``params.yaml`` (tracked:
  a change reruns the stage under Snakemake and DVC); ``extra``, any other tracked parameters the
  rule passes (``evaluate.conditions``, ``train.seeds``, ...); ``wildcards``, this job's (shard,
  dataset, seed, condition); ``compute``, how to compute, never what (:class:`Compute`: threads
  and the ``compute:`` section of ``params.yaml``, which no runner tracks, so changing it reruns
  nothing).
- ``inputs``, ``outputs`` (:class:`Files`): the rule's named files, a path or a list of paths
  each, by key (``inputs["images"]``) or attribute (``inputs.images``).
- ``log``: a :class:`logging.Logger` writing to the rule's log file and to stderr.

The summary a stage returns is logged with its wall time, and written to ``outputs.report`` when
the rule has a JSON ``report`` output.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maskprivacy.core.compute import Compute
from maskprivacy.core.logs import finish, logger


class Files(Mapping[str, Any]):
    """A rule's named inputs or outputs: each a path (str) or a list of paths."""

    def __init__(self, items: Mapping[str, Any] | None = None, **more: Any):
        self._items = {k: _plain(v) for k, v in {**(items or {}), **more}.items()}

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __getattr__(self, key: str) -> Any:
        try:
            return self._items[key]
        except KeyError:
            raise AttributeError(key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Files({self._items!r})"


def _plain(value: Any) -> Any:
    if isinstance(value, str | Path):
        return str(value)
    if isinstance(value, list | tuple) or type(value).__name__ == "Namedlist":
        return [str(v) for v in value]
    return value


@dataclass(frozen=True)
class StageConfig:
    """What a stage is told: its parameters, the job's wildcards, and how to compute."""

    params: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    wildcards: Mapping[str, str] = field(default_factory=dict)
    compute: Compute = field(default_factory=Compute)


NUMERIC_WILDCARDS = ("shard", "seed")

StageRun = Callable[[StageConfig, Files, Files, logging.Logger], Mapping[str, Any]]


def run_stage(
    name: str,
    run: StageRun,
    config: StageConfig,
    inputs: Files,
    outputs: Files,
    log_path: str | Path | None = None,
) -> dict[str, Any]:
    """Run one job of stage ``name``: log, time, write the JSON report, return the summary."""
    label = name + (f"[{', '.join(config.wildcards.values())}]" if config.wildcards else "")
    log = logger(label, log_path)
    t0 = time.perf_counter()
    summary = dict(run(config, inputs, outputs, log) or {})
    report = outputs.get("report")
    json_report = report if isinstance(report, str) and report.endswith(".json") else None
    # the job's wildcards lead its report; a shard or seed is a number there, as in the tables
    job = {k: int(v) if k in NUMERIC_WILDCARDS else v for k, v in config.wildcards.items()}
    finish(name, {**job, **summary}, t0, json_report, log)
    return summary


def from_snakemake(run: StageRun, smk: Any) -> dict[str, Any]:
    """Enter a stage from a Snakemake ``script:`` (``smk`` is the ``snakemake`` object)."""
    params = dict(smk.params.items())
    config = StageConfig(
        params=params.pop("cfg", {}) or {},
        extra=params,
        wildcards={k: str(v) for k, v in smk.wildcards.items()},
        compute=Compute.from_config(smk.config.get("compute"), smk.threads),
    )
    return run_stage(
        smk.rule,
        run,
        config,
        Files(dict(smk.input.items())),
        Files(dict(smk.output.items())),
        smk.log[0] if len(smk.log) else None,
    )
