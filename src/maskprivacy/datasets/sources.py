"""Acquiring a run's inputs from ``download.source``: the demo set, the user's paths, or URLs.

Archives are extracted (:mod:`maskprivacy.datasets.archives`), URLs fetched into
``download.cache_dir`` (:mod:`maskprivacy.datasets.fetch`) and folders listed
(:mod:`maskprivacy.datasets.ingest`); what comes out is one list of files to ingest, with where
each came from, and the entries rejected on sight.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maskprivacy.datasets.archives import (
    ARCHIVE_SUFFIXES,
    ArchiveLimits,
    archive_kind,
    safe_extract,
)
from maskprivacy.datasets.fetch import fetch_url, url_file_name
from maskprivacy.datasets.ingest import Entry, list_entries, reject

log = logging.getLogger(__name__)

_PATH_HINT = (
    "set it to the UTKFace archive (UTKFace.tar.gz, or the .zip Kaggle serves), the folder it "
    "extracts to, or (download.variant: wild) the in-the-wild archives part1..3.tar.gz or a "
    "folder holding them"
)


@dataclass
class Acquired:
    """What the sources gave: files with where they came from, and entries rejected on sight
    (not regular files, links out of the source, archive members that collide)."""

    files: list[Path] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)
    links: list[bool] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_entries(self) -> int:
        """Every entry found: files to ingest plus entries rejected on sight."""
        return len(self.files) + len(self.rejects)

    def add_entries(
        self, entries: Iterable[Entry], source: str, link: bool, prefix: str = ""
    ) -> None:
        for e in entries:
            if e.reason:
                self.rejects.append(reject(e.path.name, e.reason, prefix + e.detail))
                continue
            self.files.append(e.path)
            self.sources.append(source)
            self.shown.append(prefix + e.rel)
            self.links.append(link)

    def add_folder(self, folder: Path, source: str, link: bool, prefix: str = "") -> None:
        self.add_entries(list_entries(folder), source, link, prefix)


def acquire(cfg: dict[str, Any], work: Path, limits: ArchiveLimits, progress: bool) -> Acquired:
    """The inputs of ``download.source`` (demo, path or url), extracted or made in ``work``."""
    kind = str(cfg.get("source", "demo"))
    got = Acquired()
    if kind == "demo":
        from maskprivacy.datasets.demo import generate

        demo_cfg = cfg.get("demo") or {}
        folder = work / "demo"
        generate(
            folder,
            n_images=int(demo_cfg.get("n_images", 320)),
            seed=int(demo_cfg.get("seed", 0)),
            progress=progress,
        )
        got.add_folder(folder, "demo", True)
        got.inputs.append("demo")
    elif kind == "path":
        _collect_path(cfg, work, got, limits)
    elif kind == "url":
        _collect_url(cfg, work, got, progress, limits)
    else:
        raise ValueError(f"download.source must be demo, path or url, not {kind!r}")
    return got


def url_entries(cfg: dict[str, Any]) -> list[tuple[str, str | None]]:
    """``download.urls`` as (url, sha256 or None) pairs."""
    entries = cfg.get("urls") or []
    if not entries:
        raise ValueError("download.source is 'url' but download.urls in params.yaml is empty")
    out = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            out.append((entry, None))
        elif isinstance(entry, dict) and entry.get("url"):
            out.append((str(entry["url"]), entry.get("sha256") or None))
        else:
            raise ValueError(f"download.urls[{i}] must be a URL or {{url: ..., sha256: ...}}")
    return out


def path_entries(cfg: dict[str, Any]) -> list[str]:
    """``download.path`` as a list (one string, or a list of strings)."""
    raw = cfg.get("path") or ""
    items = [raw] if isinstance(raw, str) else list(raw)
    return [str(p).strip() for p in items if str(p).strip()]


def _collect_path(cfg: dict[str, Any], work: Path, got: Acquired, limits: ArchiveLimits) -> None:
    entries = path_entries(cfg)
    if not entries:
        raise FileNotFoundError(
            f"download.source is 'path' but download.path in params.yaml is empty: {_PATH_HINT}"
        )
    for n, raw in enumerate(entries):
        path = Path(raw).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"download.path in params.yaml names {raw!r}, which does not exist: {_PATH_HINT}"
            )
        got.inputs.append(str(path))
        prefix = f"{path.name}/" if len(entries) > 1 else ""
        if path.is_dir():
            listed = list_entries(path)
            # archives at the top of the folder (part1..3.tar.gz, UTKFace.tar.gz) are opened
            archives = [e for e in listed if not e.reason and "/" not in e.rel]
            archives = [e for e in archives if archive_kind(e.path)]
            for i, a in enumerate(archives):
                log.info("extracting %s", a.path)
                folder = _extract(a.path, work / f"p{n}a{i}", limits, got, f"{a.rel}/")
                got.add_folder(folder, str(a.path), True, f"{a.rel}/")
            # the user's files: copied, never sharing an inode
            got.add_entries([e for e in listed if e not in archives], str(path), False, prefix)
        elif archive_kind(path, sniff=True):
            log.info("extracting %s", path)
            folder = _extract(path, work / f"p{n}", limits, got, prefix)
            got.add_folder(folder, str(path), True, prefix)
        else:
            raise ValueError(
                f"download.path {raw!r} is neither a folder nor a supported archive "
                f"({', '.join(ARCHIVE_SUFFIXES)}): {_PATH_HINT}"
            )


def _extract(archive: Path, dest: Path, limits: ArchiveLimits, got: Acquired, prefix: str) -> Path:
    """:func:`safe_extract` with the run's limits; colliding members go to the rejects."""
    rejects: list[dict[str, Any]] = []
    folder = safe_extract(archive, dest, limits, rejects)
    got.rejects.extend({**r, "detail": prefix + r["detail"]} for r in rejects)
    return folder


def _collect_url(
    cfg: dict[str, Any], work: Path, got: Acquired, progress: bool, limits: ArchiveLimits
) -> None:
    cache = Path(str(cfg.get("cache_dir") or "data/download_cache")).expanduser()
    used: set[str] = set()
    entries = url_entries(cfg)
    for i, (url, digest) in enumerate(entries):
        name = url_file_name(url)
        if name in used:
            name = f"{i}-{name}"
        used.add(name)
        path = fetch_url(
            url,
            cache / name,
            sha256=digest,
            timeout=float(cfg.get("timeout", 60)),
            retries=int(cfg.get("retries", 3)),
            progress=progress,
        )
        got.inputs.append(url)
        if archive_kind(path, sniff=True):
            log.info("extracting %s", path)
            prefix = f"{name}/" if len(entries) > 1 else ""
            got.add_folder(_extract(path, work / f"url{i}", limits, got, prefix), url, True, prefix)
        else:
            got.files.append(path)
            got.sources.append(url)
            got.shown.append(name)
            got.links.append(False)  # a cached download: copy it, never share its inode
