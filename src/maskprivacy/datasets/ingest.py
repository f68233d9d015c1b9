"""Listing what a source holds and ingesting it: every entry ends in the manifest or the rejects.

:func:`list_entries` walks a folder without opening anything (links, FIFOs and devices become
rejects); :func:`scan` hashes the files; :func:`ingest` parses the labels from the names, applies
the label-defect policy and places the kept files flat in the image folder.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from maskprivacy.core.io import rejects_frame, sha256_file
from maskprivacy.core.labels import IMAGE_SUFFIXES, age_bucket
from maskprivacy.core.plumbing import no_bar
from maskprivacy.datasets.defects import DefectPolicy

STAGE = "download"
MANIFEST_COLUMNS = ["file", "age", "sex", "race", "age_bucket", "sha256", "source", "name_note"]


def reject(name: str, reason: str, detail: str, stage: str = STAGE) -> dict[str, Any]:
    """A row of a rejects table (the download stage's unless ``stage`` says)."""
    return {"file": name, "stage": stage, "reason": reason, "detail": detail}


def not_an_image(name: str) -> str | None:
    """Why ``name`` cannot be an image by its suffix (a ``not_an_image_name`` reject's detail),
    or None when its suffix is one of :data:`~maskprivacy.core.labels.IMAGE_SUFFIXES`."""
    suffix = Path(name).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return None
    return f"suffix {suffix or '(none)'!r} is not one of {', '.join(IMAGE_SUFFIXES)}"


@dataclass
class Entry:
    """One directory entry below a source folder: a regular file to ingest (``reason`` empty),
    or an entry that cannot be an image, with the reject reason and detail."""

    path: Path  # where it is (for a symbolic link inside the source: the link itself)
    rel: str  # relative to the listed folder, POSIX
    reason: str = ""
    detail: str = ""


_KINDS = {
    stat.S_IFIFO: "FIFO (named pipe)",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFSOCK: "socket",
    stat.S_IFDIR: "folder",
}


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), f"special file (mode {stat.S_IFMT(mode):o})")


def list_entries(folder: str | os.PathLike) -> list[Entry]:
    """Every entry below ``folder``, recursively, sorted by relative path; nothing is opened.

    Regular files are to be ingested. Everything else is an :class:`Entry` with a reject
    reason: a folder named like an image (its contents are listed too), a FIFO, socket or
    device (``not_a_regular_file``; never opened, so a FIFO cannot block the stage); a
    symbolic link that loops (``symlink_loop``), points at nothing (``broken_symlink``) or
    leads out of ``folder`` (``symlink_outside_source``: never followed, so nothing from
    outside is copied); a link to a folder (not followed) or to a non-regular file inside it
    (``not_a_regular_file``). A link to a regular file inside ``folder`` is followed: it is
    ingested under the link's name. Hidden files (``.DS_Store``) and ``__MACOSX`` folders are
    listed too, so that they end in the rejects table rather than vanishing.
    """
    folder = Path(folder)
    root = os.path.realpath(folder)
    out: list[Entry] = []

    def walk(d: Path, prefix: str) -> None:
        try:
            with os.scandir(d) as it:
                names = [e.name for e in it]
        except OSError as err:
            out.append(Entry(d, prefix.rstrip("/") or ".", "unreadable", f"cannot list: {err}"))
            return
        for name in names:
            path, rel = d / name, prefix + name
            try:
                mode = os.lstat(path).st_mode
            except OSError as err:
                out.append(Entry(path, rel, "unreadable", f"{type(err).__name__}: {err}"))
                continue
            if stat.S_ISDIR(mode):
                if name.lower().endswith(IMAGE_SUFFIXES):
                    detail = f"{rel} is a folder named like an image; its contents are listed apart"
                    out.append(Entry(path, rel, "not_a_regular_file", detail))
                walk(path, rel + "/")
            elif stat.S_ISREG(mode):
                out.append(Entry(path, rel))
            elif stat.S_ISLNK(mode):
                out.append(_link_entry(path, rel, root))
            else:
                detail = f"{rel} is a {_kind(mode)}, not a file; not opened"
                out.append(Entry(path, rel, "not_a_regular_file", detail))

    walk(folder, "")
    return sorted(out, key=lambda e: e.rel)


def _link_entry(path: Path, rel: str, root: str) -> Entry:
    """A symbolic link: followed only to a regular file inside ``root``."""
    try:
        shown = f"{rel} -> {os.readlink(path)}"
    except OSError:
        shown = rel
    try:
        mode = os.stat(path).st_mode  # follows the link; never opens the target
    except OSError as err:
        if err.errno == errno.ELOOP:
            return Entry(path, rel, "symlink_loop", f"symbolic link {shown} loops; not followed")
        return Entry(path, rel, "broken_symlink", f"symbolic link {shown} points at nothing")
    target = os.path.realpath(path)
    if os.path.commonpath([root, target]) != root:
        detail = f"symbolic link {shown} leads to {target}, outside {root}; not followed"
        return Entry(path, rel, "symlink_outside_source", detail)
    if not stat.S_ISREG(mode):
        detail = f"symbolic link {shown} leads to a {_kind(mode)}; not followed"
        return Entry(path, rel, "not_a_regular_file", detail)
    return Entry(path, rel)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The regular files below ``folder`` (see :func:`list_entries`), sorted by relative path,
    any suffix."""
    return [e.path for e in list_entries(folder) if not e.reason]


def _place(src: Path, dst: Path, link: bool) -> None:
    """Hard-link ``src`` to ``dst`` when ``link`` (falling back to a copy), else copy it."""
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def scan(files: Sequence[Path], shown: Sequence[str], progress: bool = False) -> pd.DataFrame:
    """One row per file: ``rel`` (as shown), ``file`` (base name), ``sha256`` ('' if unreadable)
    and ``error``."""
    rows = []
    for path, rel in tqdm(
        list(zip(files, shown, strict=True)), desc="sha256", unit="file", disable=no_bar(progress)
    ):
        try:
            rows.append((rel, path.name, sha256_file(path), ""))
        except OSError as err:
            rows.append((rel, path.name, "", f"{type(err).__name__}: {err}"))
    return pd.DataFrame(rows, columns=["rel", "file", "sha256", "error"])


def ingest(
    files: Iterable[str | os.PathLike],
    images_out: str | os.PathLike,
    policy: DefectPolicy | None,
    source: str | Sequence[str],
    *,
    root: str | os.PathLike | None = None,
    link: bool | Sequence[bool] = False,
    progress: bool = True,
    scanned: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Copy the well-named images flat into ``images_out``; return ``(manifest, rejects)``.

    Every file ends in exactly one table. Rejects (stage ``download``; ``file`` is the base
    name): a suffix not in :data:`~maskprivacy.core.labels.IMAGE_SUFFIXES` -> ``not_an_image_name``;
    labels that do not parse -> ``bad_name`` (detail: why); a defective name that the label
    policy (:class:`~maskprivacy.datasets.defects.DefectPolicy`, ``None`` = ``fix`` with the committed
    table) drops -> ``label_defect``; a base name already taken by an earlier file ->
    ``duplicate_name``; a file that cannot be read -> ``unreadable``.

    ``source`` is one string for all files or one per file. ``root`` (optional) is only used
    to show paths relative to it in the details. With ``link`` (one flag, or one per file)
    files are hard-linked when possible (use it only for temporary inputs), else copied with
    :func:`shutil.copy2`. ``scanned`` (from :func:`scan`, same order) saves hashing again.
    """
    paths = [Path(f) for f in files]
    sources = [source] * len(paths) if isinstance(source, str) else list(source)
    links = [link] * len(paths) if isinstance(link, bool) else list(link)
    if len(sources) != len(paths) or len(links) != len(paths):
        raise ValueError(f"got {len(sources)} sources, {len(links)} links for {len(paths)} files")
    policy = policy if policy is not None else DefectPolicy.from_params({})
    images_out = Path(images_out)
    images_out.mkdir(parents=True, exist_ok=True)
    base = Path(root) if root is not None else None

    def shown(p: Path) -> str:
        if base is not None:
            try:
                return p.relative_to(base).as_posix()
            except ValueError:
                pass
        return str(p)

    digests: list[str | None] = [None] * len(paths)
    errors: list[str] = [""] * len(paths)
    if scanned is not None:
        if len(scanned) != len(paths):
            raise ValueError(f"scanned has {len(scanned)} rows for {len(paths)} files")
        digests = [d or None for d in scanned["sha256"]]
        errors = list(scanned["error"])

    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    taken: dict[str, Path] = {}
    for k, (path, src, lnk) in enumerate(
        tqdm(
            list(zip(paths, sources, links, strict=True)),
            desc=STAGE,
            unit="file",
            disable=no_bar(progress),
        )
    ):
        name = path.name
        if detail := not_an_image(name):
            rejects.append(reject(name, "not_an_image_name", detail))
            continue
        decision = policy.decide(name)
        if not decision.keep:
            rejects.append(reject(name, decision.reason, decision.detail))
            continue
        labels = decision.labels
        assert labels is not None
        if name in taken:
            detail = f"{shown(path)} has the same base name as {shown(taken[name])}"
            if digests[k] is not None and digests[k] == _digest_of(rows, name):
                detail += " (same bytes)"
            rejects.append(reject(name, "duplicate_name", detail))
            continue
        try:
            if errors[k]:
                raise OSError(errors[k])
            digest = digests[k] or sha256_file(path)
            _place(path, images_out / name, lnk)
        except OSError as err:
            rejects.append(reject(name, "unreadable", f"{type(err).__name__}: {err}"))
            continue
        taken[name] = path
        rows.append(
            {
                "file": name,
                "age": labels.age,
                "sex": labels.sex,
                "race": labels.race,
                "age_bucket": age_bucket(labels.age),
                "sha256": digest,
                "source": src,
                "name_note": decision.note,
            }
        )
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    manifest = manifest.sort_values("file", kind="stable").reset_index(drop=True)
    return manifest, rejects_frame(rejects)


def _digest_of(rows: list[dict[str, Any]], name: str) -> str | None:
    for r in reversed(rows):
        if r["file"] == name:
            return r["sha256"]
    return None
