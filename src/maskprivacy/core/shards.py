"""Shards: the ``align`` and ``mask`` rules run once per shard (the Snakemake wildcard
``{shard}``; ``align.shards`` in params.yaml), so ``--cores N`` or a cluster runs them in
parallel, and the stages after them read every shard's tables and image folders.

A file's shard depends on its name alone (a hash), so it never moves when other files come or
go, and the shards are balanced for any naming scheme.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path


def shard_of(name: str, shards: int) -> int:
    """The shard (0 .. ``shards`` - 1) of the file called ``name``."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    digest = hashlib.sha1(Path(name).name.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def select(files: Iterable[str], shard: int, shards: int) -> list[str]:
    """The files of ``files`` that belong to ``shard`` of ``shards``, in their order."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not in 0 .. {shards - 1} (align.shards = {shards})")
    return [f for f in files if shards == 1 or shard_of(f, shards) == shard]


def locate(folders: str | os.PathLike | Sequence[str | os.PathLike], files: Sequence[str]):
    """The path of each of ``files`` in one of ``folders`` (the shards' image folders).

    Raises :class:`FileNotFoundError` naming the first missing files, and :class:`ValueError`
    when a name is in two folders (two shards claimed one image).
    """
    if isinstance(folders, str | os.PathLike):
        folders = [folders]
    folders = [Path(f) for f in folders]
    wanted = set(files)
    where: dict[str, Path] = {}
    for folder in folders:
        with os.scandir(folder) as it:
            for entry in it:  # (tools leave their own files there: .snakemake_timestamp)
                if entry.name not in wanted:
                    continue
                if entry.name in where:
                    raise ValueError(
                        f"{entry.name} is in two shard folders: {where[entry.name]} and {folder}"
                    )
                where[entry.name] = folder
    missing = [f for f in files if f not in where]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise FileNotFoundError(
            f"{len(missing)} image(s) not found in {', '.join(map(str, folders))}: {shown}"
        )
    return [where[f] / f for f in files]
