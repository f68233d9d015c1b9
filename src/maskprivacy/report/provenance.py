"""How a run was made, for its report: the date, the commit, the command, the machine and the
wall time. Read where the report is written (the compare job), never needed to compute anything:
every field falls back to "unknown" where it cannot be read (no git, no /proc).

The command and the wall time are those of the outermost ``snakemake`` or ``dvc`` process above
the job (the command a person typed); the wall time runs from its start to the report.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RUNNERS = ("snakemake", "dvc")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def commit() -> str:
    """The checkout's commit, with ``+ changes`` when tracked files differ from it."""
    head = _git("rev-parse", "--short", "HEAD")
    if head is None:
        return "unknown (not a git checkout)"
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"{head} + changes" if dirty else head


def _proc(pid: int) -> tuple[list[str], int, float] | None:
    """A process's arguments, parent and start (seconds since boot), from /proc."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    start = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return [a.decode(errors="replace") for a in argv if a], int(fields[1]), start


def _runner_words(argv: list[str]) -> list[str] | None:
    """``argv`` as a person typed it if it runs snakemake or dvc (``python .../snakemake`` ->
    ``snakemake``), else None."""
    for i, a in enumerate(argv[:3]):
        name = Path(a).name
        if name in RUNNERS:
            return [name, *argv[i + 1 :]]
        if a == "-m" and i + 1 < len(argv) and argv[i + 1] in RUNNERS:
            return [argv[i + 1], *argv[i + 2 :]]
    return None


def runner(pid: int | None = None) -> tuple[str, float | None]:
    """The command of the outermost snakemake or dvc process above ``pid`` (default: this one)
    and its seconds of wall time so far; ``("unknown", None)`` where none is found."""
    found: tuple[list[str], float] | None = None
    pid = os.getpid() if pid is None else pid
    for _ in range(64):
        info = _proc(pid)
        if info is None:
            break
        argv, parent, start = info
        words = _runner_words(argv)
        if words is not None:
            found = (words, start)
        if parent <= 1:
            break
        pid = parent
    if found is None:
        return "unknown", None
    words, start = found
    if "--target-jobs" in words:  # a cluster job's own snakemake: not the command typed
        return "unknown (a cluster job)", None
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except OSError:
        return " ".join(words), None
    return " ".join(words), max(0.0, uptime - start)


def machine() -> str:
    """'2 cores, AMD EPYC 7B13, no GPU': the CPUs this job saw and the GPUs nvidia-smi lists."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpus = "no GPU"
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            names = [n.strip() for n in out.stdout.splitlines() if n.strip()]
            if names:
                gpus = f"{len(names)} GPU{'s' if len(names) > 1 else ''}: {', '.join(names)}"
        except (OSError, subprocess.SubprocessError):
            pass
    return f"{cores} core{'s' if cores != 1 else ''}, {cpu}, {gpus}"


def collect() -> dict[str, Any]:
    """This run's provenance: ``date`` (UTC), ``commit``, ``command``, ``machine``,
    ``wall_min`` (None where unknown)."""
    command, seconds = runner()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "command": command,
        "machine": machine(),
        "wall_min": None if seconds is None else round(seconds / 60, 1),
    }
