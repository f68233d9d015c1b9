"""Atomic file and folder writes, hashing and the tables every stage shares.

A stage never leaves a half-written file that looks finished: everything is written under a
temporary name beside the target and moved into place with ``os.replace`` once complete.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

REJECT_COLUMNS = ["file", "stage", "reason", "detail"]


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


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_table(path: str | os.PathLike, df: pd.DataFrame) -> None:
    """Write a CSV atomically."""
    with atomic_path(path, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False)


def read_table(path: str | os.PathLike, **kw: Any) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""], **kw)


def rejects_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A rejects table: one row per input that did not make it, with a reason."""
    df = pd.DataFrame(rows, columns=REJECT_COLUMNS)
    return df.sort_values("file", kind="stable").reset_index(drop=True)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 120) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)
