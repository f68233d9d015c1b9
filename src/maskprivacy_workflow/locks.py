"""Snakemake's directory lock, as left behind by a killed run (kill -9, power loss, OOM killer).

Snakemake locks the working directory while it runs (``.snakemake/locks``) and removes the lock
when it ends. A run that is killed cannot remove it, and the next ``snakemake --cores all`` then
stops with "Directory cannot be locked" until someone runs ``snakemake --unlock``. The Snakefile
calls :func:`clear_stale_locks` before Snakemake takes its lock: when no other Snakemake process
of this machine works in the folder, the lock can only be a leftover, and it is removed (with a
message). With ``rerun-incomplete`` (profiles/default) the same plain command then finishes the
killed run. A Snakemake running in the same folder on another machine of a shared file system
cannot be seen from here: do not start two runs of one folder from two machines.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO


def snakemake_processes(workdir: str | Path) -> list[int]:
    """Process ids of the Snakemake processes (other than this one and its parents) working in
    ``workdir`` on this machine."""
    import psutil

    here = os.path.realpath(workdir)
    me = psutil.Process()
    mine = {me.pid, *(p.pid for p in me.parents())}
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["pid"] in mine or not any(os.path.basename(c) == "snakemake" for c in cmd[:3]):
            continue
        try:
            cwd = proc.cwd()
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied:  # cannot tell where it works: assume here, keep the lock
            cwd = here
        if os.path.realpath(cwd) == here:
            found.append(proc.info["pid"])
    return found


def clear_stale_locks(workdir: str | Path, log: TextIO = sys.stderr) -> bool:
    """Remove ``workdir/.snakemake/locks/*.lock`` if no Snakemake process works in ``workdir``.

    Returns True when a leftover lock was removed."""
    locks = sorted((Path(workdir) / ".snakemake" / "locks").glob("*.lock"))
    if not locks or snakemake_processes(workdir):
        return False
    for lock in locks:
        lock.unlink(missing_ok=True)
    print(
        "maskprivacy: removed the lock a killed Snakemake run left in .snakemake/locks "
        "(no other Snakemake process works in this folder)",
        file=log,
    )
    return True
