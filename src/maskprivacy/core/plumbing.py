"""Result-neutral plumbing: atomic writes, leftovers of killed runs, full-disk messages, progress bars.

Nothing here may change what a stage computes, only how safely and visibly it writes it. That is
why no runner hashes this module: it is not a rule input (Snakemake) nor a stage dep (DVC), and
editing it reruns nothing (``maskprivacy_workflow.codedeps.RESULT_NEUTRAL``). Code that shapes an
output's content (columns, JSON layout, hashes) belongs in :mod:`maskprivacy.core.io` instead.

A stage never leaves a half-written file that looks finished: everything is written under a
temporary name beside the target and moved into place with ``os.replace`` once complete.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def no_bar(progress: bool) -> bool:
    """tqdm's ``disable`` for a bar shown when ``progress``: off also when the environment sets
    ``TQDM_DISABLE`` (to 1, true, yes), which tqdm itself reads only when ``disable`` is not passed."""
    flag = os.environ.get("TQDM_DISABLE", "").strip().lower()
    return not progress or flag in ("1", "true", "yes", "on")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success move it onto ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale(target: str | os.PathLike, pattern: str = ".{name}.*.tmp") -> list[Path]:
    """Delete what a killed earlier run left beside ``target`` (its temporary files and folders,
    named by ``pattern`` with ``{name}`` = the target's name; never the target itself) and
    return them. A job owns its outputs, so nothing else writes these names meanwhile."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    stale = sorted(target.parent.glob(pattern.format(name=glob_escape(target.name))))
    for p in stale:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


_FULL = {
    errno.ENOSPC: "the disk is full",
    errno.EFBIG: "a file size limit was hit",
    errno.EDQUOT: "the disk quota is exceeded",
}


@contextlib.contextmanager
def explain_full_disk(stage: str) -> Iterator[None]:
    """Turn a full disk (ENOSPC, EFBIG, EDQUOT) into an OSError that says what happened and
    what to do; outputs are atomic, so nothing was left under a final name."""
    try:
        yield
    except OSError as err:
        why = _FULL.get(err.errno or 0)
        if why is None:
            raise
        raise OSError(
            err.errno,
            f"{stage}: cannot write {err.filename or 'its outputs'}: {why} ({err.strerror}). "
            "Nothing was left under a final name; free space (or lift the limit) and rerun",
        ) from err


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``target``; on success it replaces ``target``.
    Temporary folders that a killed earlier run left beside ``target`` are deleted first."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    remove_stale(target, ".{name}.old")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
