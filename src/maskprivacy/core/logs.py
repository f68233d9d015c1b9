"""What every workflow script shares: logging a stage's summary where people and tools find it."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from maskprivacy.core.io import write_json


def logger(name: str, log_path: str | Path | None) -> logging.Logger:
    """A logger writing to the rule's log file and to stderr."""
    log = logging.getLogger(f"maskprivacy.{name}")
    log.setLevel(logging.INFO)
    log.handlers.clear()
    fmt = logging.Formatter(f"%(asctime)s {name}: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    for h in handlers:
        h.setFormatter(fmt)
        log.addHandler(h)
    return log


def finish(
    name: str,
    summary: dict[str, Any],
    started: float,
    report: str | Path | None,
    log: logging.Logger,
) -> None:
    """Write the stage report (JSON) and log it with the wall time."""
    # the stage's own wall time wins over any "seconds" a summary carries
    summary = {"stage": name, **summary, "seconds": round(time.perf_counter() - started, 3)}
    if report:
        write_json(report, summary)
    log.info("done: %s", json.dumps(summary, default=str))
