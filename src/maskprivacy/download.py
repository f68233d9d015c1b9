"""download: fetch (or generate, for the demo) the images and write the manifest and rejects.

Three sources, chosen by ``download.source`` in ``params.yaml``:

- ``demo``: UTKFace-named demo faces made offline by :mod:`maskprivacy.demo`;
- ``path``: a local folder, or a ``.tar.gz``/``.tgz``/``.tar``/``.tar.bz2``/``.zip`` archive, of
  UTKFace-named images (for example the official ``UTKFace.tar.gz`` downloaded by hand);
- ``url``: archives or single images fetched over HTTP(S) into ``download.cache_dir`` with
  resumable, checksummed downloads (stdlib ``urllib`` only).

Every input file ends in exactly one of two tables: the manifest (labels parsed from the file
name, sha256 of the bytes) or the rejects table (stage ``download``, with a reason). Decoding the
images is left to the align stage. Nothing half-written ever sits under a final name: downloads
go to ``<dest>.part`` first, archives are extracted into a temporary folder, and the image folder
and tables are moved into place atomically.
"""

from __future__ import annotations

import http.client
import logging
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from .dedup import exact_duplicates
from .io import atomic_dir, rejects_frame, sha256_file, write_table
from .labels import IMAGE_SUFFIXES, LabelError, age_bucket, name_problem, parse_name

log = logging.getLogger(__name__)

STAGE = "download"
MANIFEST_COLUMNS = ["file", "age", "sex", "race", "age_bucket", "sha256", "source", "name_note"]
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip")
URL_SCHEMES = ("http", "https", "ftp", "file")
USER_AGENT = "maskprivacy-download/0.1 (+python-urllib)"
CHUNK = 1 << 16
# HTTP statuses worth retrying: server errors, request timeout, too many requests.
_RETRY_STATUSES = frozenset({408, 429})
_HINT = (
    "Check the URL in download.urls of params.yaml, or download the file by hand and use "
    "'download.source: path' with 'download.path' pointing at it."
)


class DownloadError(RuntimeError):
    """A download that failed for good; the message names the URL, the error and what to do."""


class UnsafeArchiveError(ValueError):
    """An archive member that could write outside the destination or is not a plain file/folder."""


class _Restart(Exception):
    """Internal: the partial file cannot be resumed and was deleted; start again from zero."""


# --------------------------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------------------------


def part_path(dest: str | os.PathLike) -> Path:
    """The partial-download file used for ``dest``: ``<dest>.part``."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def fetch_url(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    timeout: float = 60,
    retries: int = 3,
    backoff: float = 1.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` (resumable, retried, checksummed) and return ``dest``.

    The bytes go to ``<dest>.part`` first; an existing ``.part`` is resumed with an HTTP
    ``Range`` request (a server answering 200 instead of 206 restarts it from zero, a 416 means
    it is already complete). Timeouts, connection errors, short reads and 5xx/408/429 answers
    are retried ``retries`` times with exponential backoff (``backoff * 2**k`` seconds); any
    other 4xx fails at once. Only a complete file whose sha256 matches (when given) is moved
    onto ``dest``, so a killed download never leaves a file there. When ``dest`` exists and
    its checksum matches (or no checksum is given) nothing is downloaded.

    Raises :class:`DownloadError` naming the URL, the error and what to do.
    """
    dest = Path(dest)
    want = sha256.strip().lower() if sha256 else None
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in URL_SCHEMES:
        raise DownloadError(
            f"cannot download {url!r}: unsupported URL scheme {scheme!r} "
            f"(want one of {', '.join(URL_SCHEMES)}). {_HINT}"
        )
    if dest.is_file():
        if want is None:
            log.info("%s already downloaded (no checksum given): %s", url, dest)
            return dest
        if sha256_file(dest) == want:
            log.info("%s already downloaded, checksum OK: %s", url, dest)
            return dest
        log.info("%s exists with another checksum; downloading again", dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)

    attempt = 0
    restarts = 0
    while True:
        error: str
        cause: BaseException
        try:
            _attempt(url, part, timeout, progress, dest.name)
            break
        except _Restart:
            restarts += 1
            if restarts > 2:
                raise DownloadError(
                    f"cannot download {url}: the server keeps answering range requests "
                    f"inconsistently. {_HINT}"
                ) from None
            continue
        except urllib.error.HTTPError as err:
            what = f"HTTP {err.code} {err.reason}"
            if not (err.code >= 500 or err.code in _RETRY_STATUSES):
                raise DownloadError(f"cannot download {url}: {what}. {_HINT}") from err
            error, cause = what, err
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", None) if isinstance(err, urllib.error.URLError) else err
            error = f"{type(reason).__name__}: {reason}" if reason is not None else repr(err)
            cause = err
        if attempt >= retries:
            raise DownloadError(
                f"cannot download {url} after {attempt + 1} attempt(s): {error}. {_HINT}"
            ) from cause
        delay = backoff * 2**attempt
        attempt += 1
        log.warning("%s: %s; retry %d/%d in %.1f s", url, error, attempt, retries, delay)
        time.sleep(delay)

    if want is not None:
        got = sha256_file(part)
        if got != want:
            part.unlink()
            raise DownloadError(
                f"checksum mismatch for {url}: expected sha256 {want}, got {got}. The download "
                "was deleted. If the file on the server changed, update its sha256 in "
                "download.urls of params.yaml after checking it; otherwise retry, or download "
                "it by hand and use 'download.source: path'."
            )
    os.replace(part, dest)
    return dest


def _attempt(url: str, part: Path, timeout: float, progress: bool, desc: str) -> None:
    """One request: append to (or restart) ``part``; raise on any error or short read."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # scheme checked above
    except urllib.error.HTTPError as err:
        try:
            if err.code == 416 and offset:
                total = _range_total(err.headers.get("Content-Range", ""))
                if total is None or total == offset:
                    return  # the partial file is already the whole file
                log.info("%s: partial file larger than the remote file; restarting", url)
                part.unlink()
                raise _Restart from err
        finally:
            err.close()
        raise

    with response:
        status = getattr(response, "status", None) or 200
        mode = "wb"
        if offset and status == 206:
            start = _range_start(response.headers.get("Content-Range", ""))
            if start != offset:
                log.info("%s: server resumed at byte %s, not %d; restarting", url, start, offset)
                part.unlink()
                raise _Restart
            mode = "ab"
        else:
            if offset:
                log.info("%s: server ignored the range request; restarting from zero", url)
            offset = 0
        length = response.headers.get("Content-Length", "")
        expected = int(length) if length.strip().isdigit() else None
        total = offset + expected if expected is not None else None
        got = 0
        with (
            open(part, mode) as f,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc,
                disable=not progress,
            ) as bar,
        ):
            while chunk := response.read(CHUNK):
                f.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
    if expected is not None and got < expected:
        raise ConnectionError(f"connection closed after {got} of {expected} bytes")


def _range_start(content_range: str) -> int | None:
    """First byte of a ``Content-Range: bytes a-b/n`` header (None when unparsable)."""
    m = re.match(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*$", content_range)
    return int(m.group(1)) if m else None


def _range_total(content_range: str) -> int | None:
    """Total size of a ``Content-Range: bytes */n`` (or ``a-b/n``) header, if known."""
    m = re.match(r"\s*bytes\s+(?:\*|\d+-\d+)/(\d+)\s*$", content_range)
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------------------------
# Archives
# --------------------------------------------------------------------------------------------


def archive_kind(path: str | os.PathLike, sniff: bool = False) -> str | None:
    """``'tar'`` or ``'zip'`` by file name (and by content when ``sniff``), else None."""
    name = Path(path).name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(ARCHIVE_SUFFIXES):
        return "tar"
    if sniff and Path(path).is_file() and not name.endswith(IMAGE_SUFFIXES):
        if zipfile.is_zipfile(path):
            return "zip"
        try:
            if tarfile.is_tarfile(path):
                return "tar"
        except OSError:
            return None
    return None


def _check_name(name: str) -> str:
    """The normalised relative path of an archive member, or raise UnsafeArchiveError."""
    probe = name.replace("\\", "/")
    if probe.startswith("/") or re.match(r"^[A-Za-z]:", probe):
        raise UnsafeArchiveError(f"archive member {name!r} has an absolute path")
    norm = posixpath.normpath(probe)
    if norm == ".." or norm.startswith("../"):
        raise UnsafeArchiveError(f"archive member {name!r} escapes the destination ('..')")
    if "\x00" in name:
        raise UnsafeArchiveError(f"archive member {name!r} has a NUL byte in its name")
    return "" if norm == "." else norm


def _check_tar(tar: tarfile.TarFile) -> list[tuple[tarfile.TarInfo, str]]:
    """Every member of ``tar`` with its safe relative path; refuse anything unsafe."""
    members = []
    for m in tar.getmembers():
        rel = _check_name(m.name)
        if m.issym():
            raise UnsafeArchiveError(f"archive member {m.name!r} is a symbolic link")
        if m.islnk():
            raise UnsafeArchiveError(f"archive member {m.name!r} is a hard link")
        if m.ischr() or m.isblk():
            raise UnsafeArchiveError(f"archive member {m.name!r} is a device file")
        if m.isfifo():
            raise UnsafeArchiveError(f"archive member {m.name!r} is a FIFO")
        if not (m.isreg() or m.isdir()):
            raise UnsafeArchiveError(f"archive member {m.name!r} is not a file or folder")
        if m.isreg() and not rel:
            raise UnsafeArchiveError(f"archive member {m.name!r} is a file without a name")
        members.append((m, rel))
    return members


def _check_zip(zf: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, str]]:
    """Every member of ``zf`` with its safe relative path; refuse anything unsafe."""
    members = []
    for info in zf.infolist():
        rel = _check_name(info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise UnsafeArchiveError(f"archive member {info.filename!r} is a symbolic link")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArchiveError(f"archive member {info.filename!r} is not a file or folder")
        if not info.is_dir() and not rel:
            raise UnsafeArchiveError(f"archive member {info.filename!r} is a file without a name")
        members.append((info, rel))
    return members


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a tar (.tar, .tar.gz/.tgz, .tar.bz2, .tar.xz) or zip archive into ``dest``.

    Every member is checked before anything is written: absolute paths, ``..`` escaping the
    destination, symbolic and hard links, device files and FIFOs raise
    :class:`UnsafeArchiveError` naming the member. Files are written (never with their stored
    owner or permissions) into a temporary folder beside ``dest`` that then replaces ``dest``
    atomically. Returns ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    kind = archive_kind(archive, sniff=True)
    if kind is None:
        raise ValueError(
            f"{archive} is not a supported archive (want one of {', '.join(ARCHIVE_SUFFIXES)})"
        )
    if kind == "zip":
        with zipfile.ZipFile(archive) as zf:
            zmembers = _check_zip(zf)
            with atomic_dir(dest) as tmp:
                for info, rel in zmembers:
                    if info.is_dir():
                        (tmp / rel).mkdir(parents=True, exist_ok=True)
                        continue
                    target = tmp / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, CHUNK)
        return dest
    with tarfile.open(archive, "r:*") as tar:
        tmembers = _check_tar(tar)
        with atomic_dir(dest) as tmp:
            for member, rel in tmembers:
                if member.isdir():
                    (tmp / rel).mkdir(parents=True, exist_ok=True)
                    continue
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                if src is None:  # pragma: no cover - regular members always have data
                    raise UnsafeArchiveError(f"archive member {member.name!r} has no data")
                with src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
                os.utime(target, (member.mtime, member.mtime))
    return dest


# --------------------------------------------------------------------------------------------
# Listing and ingesting
# --------------------------------------------------------------------------------------------


def list_images(folder: str | os.PathLike) -> list[Path]:
    """All files below ``folder`` (recursively, sorted by relative path, any suffix).

    Hidden files (``.DS_Store``) and ``__MACOSX`` folders are listed too, so that they end in
    the rejects table rather than vanishing. Symbolic links to folders are not followed.
    """
    folder = Path(folder)
    found: list[tuple[str, Path]] = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            if path.is_file():
                found.append((path.relative_to(folder).as_posix(), path))
    return [p for _, p in sorted(found)]


def _place(src: Path, dst: Path, link: bool) -> None:
    """Hard-link ``src`` to ``dst`` when ``link`` (falling back to a copy), else copy it."""
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def ingest(
    files: Iterable[str | os.PathLike],
    images_out: str | os.PathLike,
    strict_names: bool,
    source: str | Sequence[str],
    *,
    root: str | os.PathLike | None = None,
    link: bool = False,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Copy the well-named images flat into ``images_out``; return ``(manifest, rejects)``.

    Every file ends in exactly one table. Rejects (stage ``download``; ``file`` is the base
    name): a suffix not in :data:`~maskprivacy.labels.IMAGE_SUFFIXES` -> ``not_an_image_name``;
    labels that do not parse -> ``bad_name`` (detail: why); a base name already taken by an
    earlier file -> ``duplicate_name``; a file that cannot be read -> ``unreadable``.

    ``source`` is one string for all files or one per file. ``root`` (optional) is only used
    to show paths relative to it in the details. With ``link`` files are hard-linked when
    possible (use it only for temporary inputs), else copied with :func:`shutil.copy2`.
    """
    paths = [Path(f) for f in files]
    sources = [source] * len(paths) if isinstance(source, str) else list(source)
    if len(sources) != len(paths):
        raise ValueError(f"got {len(sources)} sources for {len(paths)} files")
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

    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    taken: dict[str, Path] = {}
    for path, src in tqdm(
        list(zip(paths, sources, strict=True)),
        desc=STAGE,
        unit="file",
        disable=not progress,
    ):
        name = path.name
        suffix = Path(name).suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            detail = f"suffix {suffix or '(none)'!r} is not one of {', '.join(IMAGE_SUFFIXES)}"
            rejects.append(_reject(name, "not_an_image_name", detail))
            continue
        try:
            labels = parse_name(name, strict=strict_names)
        except LabelError as err:
            rejects.append(_reject(name, "bad_name", str(err)))
            continue
        if name in taken:
            detail = f"{shown(path)} has the same base name as {shown(taken[name])}"
            rejects.append(_reject(name, "duplicate_name", detail))
            continue
        try:
            digest = sha256_file(path)
            _place(path, images_out / name, link)
        except OSError as err:
            rejects.append(_reject(name, "unreadable", f"{type(err).__name__}: {err}"))
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
                "name_note": name_problem(name),
            }
        )
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    manifest = manifest.sort_values("file", kind="stable").reset_index(drop=True)
    return manifest, rejects_frame(rejects)


def _reject(name: str, reason: str, detail: str) -> dict[str, Any]:
    return {"file": name, "stage": STAGE, "reason": reason, "detail": detail}


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


def _url_file_name(url: str) -> str:
    """The file name at the end of a URL's path (percent-decoded)."""
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    if not name or name in (".", ".."):
        raise ValueError(
            f"cannot tell a file name from the URL {url!r}; give a URL whose path ends in "
            "the file name, or download it by hand and use 'download.source: path'"
        )
    return name


def _url_entries(cfg: dict[str, Any]) -> list[tuple[str, str | None]]:
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


def run(
    cfg: dict[str, Any],
    images_out: str | os.PathLike,
    manifest_out: str | os.PathLike,
    rejects_out: str | os.PathLike,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the download stage with the ``download`` section of params; return a summary.

    Writes the flat image folder ``images_out`` atomically and the manifest and rejects tables.
    Raises :class:`FileNotFoundError` for a missing ``download.path``, :class:`DownloadError`
    for a failed download, and :class:`ValueError` when no input is a usable image.
    """
    images_out, manifest_out, rejects_out = Path(images_out), Path(manifest_out), Path(rejects_out)
    kind = str(cfg.get("source", "demo"))
    strict = bool(cfg.get("strict_names", False))
    images_out.parent.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    sources: list[str] = []
    roots: list[Path] = []
    inputs: list[str] = []
    link = True
    with tempfile.TemporaryDirectory(
        prefix=f".{images_out.name}.work.", dir=images_out.parent
    ) as w:
        work = Path(w)
        if kind == "demo":
            from .demo import generate

            demo_cfg = cfg.get("demo") or {}
            folder = work / "demo"
            generate(
                folder,
                n_images=int(demo_cfg.get("n_images", 320)),
                seed=int(demo_cfg.get("seed", 0)),
                progress=progress,
            )
            found = list_images(folder)
            files, sources, roots, inputs = found, ["demo"] * len(found), [folder], ["demo"]
        elif kind == "path":
            raw = str(cfg.get("path") or "").strip()
            if not raw:
                raise FileNotFoundError(
                    "download.source is 'path' but download.path in params.yaml is empty: set it "
                    "to a folder or a .tar.gz/.tgz/.tar/.zip of UTKFace-named images"
                )
            path = Path(raw).expanduser()
            if not path.exists():
                raise FileNotFoundError(
                    f"download.path in params.yaml is {raw!r}, which does not exist: set it to "
                    "a folder or a .tar.gz/.tgz/.tar/.zip of UTKFace-named images"
                )
            if path.is_dir():
                folder, link = path, False
            elif archive_kind(path, sniff=True):
                log.info("extracting %s", path)
                folder = safe_extract(path, work / "extracted")
            else:
                raise ValueError(
                    f"download.path {raw!r} is neither a folder nor a supported archive "
                    f"({', '.join(ARCHIVE_SUFFIXES)})"
                )
            found = list_images(folder)
            files, sources, roots, inputs = found, [str(path)] * len(found), [folder], [str(path)]
        elif kind == "url":
            cache = Path(str(cfg.get("cache_dir") or "data/download_cache")).expanduser()
            used: set[str] = set()
            for i, (url, digest) in enumerate(_url_entries(cfg)):
                name = _url_file_name(url)
                if name in used:
                    name = f"{i}-{name}"
                used.add(name)
                got = fetch_url(
                    url,
                    cache / name,
                    sha256=digest,
                    timeout=float(cfg.get("timeout", 60)),
                    retries=int(cfg.get("retries", 3)),
                    progress=progress,
                )
                inputs.append(url)
                if archive_kind(got, sniff=True):
                    log.info("extracting %s", got)
                    folder = safe_extract(got, work / f"url{i}")
                    found = list_images(folder)
                    roots.append(folder)
                else:
                    found = [got]
                    roots.append(cache)
                    link = False  # a cached download: copy it, never share its inode
                files += found
                sources += [url] * len(found)
        else:
            raise ValueError(f"download.source must be demo, path or url, not {kind!r}")

        with atomic_dir(images_out) as tmp:
            manifest, rejects = ingest(
                files,
                tmp,
                strict,
                sources,
                root=roots[0] if len(roots) == 1 else None,
                link=link,
                progress=progress,
            )
            manifest, dup_rows = exact_duplicates(
                manifest, str(cfg.get("duplicates", "drop_conflicts"))
            )
            for row in dup_rows:
                (tmp / row["file"]).unlink(missing_ok=True)
            if dup_rows:
                rejects = rejects_frame(rejects.to_dict("records") + dup_rows)
    write_table(manifest_out, manifest)
    write_table(rejects_out, rejects)

    by_reason = dict(sorted(Counter(rejects["reason"]).items()))
    summary = {
        "source": kind,
        "inputs": inputs,
        "n_inputs": len(files),
        "n_images": len(manifest),
        "n_rejects": len(rejects),
        "rejects_by_reason": by_reason,
        "n_name_notes": int((manifest["name_note"] != "").sum()),
        "duplicates_policy": str(cfg.get("duplicates", "drop_conflicts")),
        "n_same_bytes_kept": int(manifest["sha256"].duplicated().sum()),
    }
    log.info(
        "%d inputs -> %d images, %d rejects %s", len(files), len(manifest), len(rejects), by_reason
    )
    if manifest.empty:
        raise ValueError(
            f"no usable image among the {len(files)} input file(s) of download.source {kind!r} "
            f"(rejects by reason: {by_reason or 'none'}; see {rejects_out})"
        )
    return summary
