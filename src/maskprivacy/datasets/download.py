"""download: fetch (or generate, for the demo) the images, prove what they are, clean them.

Three sources, chosen by ``download.source`` in ``params.yaml``:

- ``demo``: UTKFace-named demo faces made offline by :mod:`maskprivacy.datasets.demo`;
- ``path``: UTKFace as the user has it: the aligned & cropped archive ``UTKFace.tar.gz``, a
  ``.zip`` of it (as Kaggle serves it), the extracted folder, or (``download.variant: wild``)
  the in-the-wild archives ``part1..3.tar.gz``; ``download.path`` is one path or a list, and
  archives at the top of a folder are opened too;
- ``url``: archives or single images fetched over HTTP(S) into ``download.cache_dir`` with
  resumable, retried, checksummed downloads (stdlib ``urllib`` only).

Then, whatever the packaging:

1. every file is hashed (sha256) and, for the published aligned set, compared with the
   committed manifest (:mod:`maskprivacy.datasets.verify`, ``download.verify``): missing, altered and
   extra files are counted and, by default, stop the stage;
2. labels are parsed from the names; the published label defects follow
   ``download.label_defects`` (:mod:`maskprivacy.datasets.defects`);
3. byte-identical and near-identical copies follow ``download.duplicates`` and
   ``download.near_duplicates`` (:mod:`maskprivacy.datasets.dedup`), and every file gets a duplicate
   group, which the split keeps on one side.

Every input file ends in exactly one of two tables: the manifest (labels, sha256) or the rejects
table (stage ``download``, with a reason). Decoding the images is left to the align stage (the
near-duplicate hash skips undecodable files). Nothing half-written ever sits under a final name:
downloads go to ``<dest>.part`` first, archives are extracted into a temporary folder, and the
image folder and tables are moved into place atomically.
"""

from __future__ import annotations

import errno
import gzip
import http.client
import logging
import lzma
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
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from maskprivacy.core.io import rejects_frame, sha256_file, write_table
from maskprivacy.core.labels import IMAGE_SUFFIXES, age_bucket
from maskprivacy.core.plumbing import atomic_dir, explain_full_disk, no_bar, remove_stale
from maskprivacy.datasets.dedup import DEFAULT_THRESHOLD, deduplicate
from maskprivacy.datasets.defects import DefectPolicy, name_defect
from maskprivacy.datasets.verify import (
    REFERENCES,
    VARIANTS,
    Verification,
    VerificationError,
    load_reference,
    resolve_mode,
    verify,
)

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
                disable=no_bar(progress),
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
        stored = info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 1
        if stored and info.compress_size != info.file_size:
            raise CorruptArchiveError(
                f"archive member {info.filename!r} is stored uncompressed in "
                f"{info.compress_size} bytes but its header says {info.file_size}: the archive "
                "lies about its sizes"
            )
        members.append((info, rel))
    return members


class ArchiveTooLargeError(UnsafeArchiveError):
    """An archive whose members would exceed ``download.max_member_mb`` or ``max_total_gb``."""


class CorruptArchiveError(ValueError):
    """An archive that cannot be read to its end, or whose headers lie about its contents."""


DEFAULT_MAX_MEMBER_MB = 64  # UTKFace's files are under 1 MB, the in-the-wild photos a few MB
DEFAULT_MAX_TOTAL_GB = 20  # UTKFace.tar.gz extracts to about 0.1 GB, part1..3 to about 1.3 GB
_MAX_PADDING = 16 << 20  # zero bytes allowed after a tar's last member (records pad to 10 KiB)


@dataclass
class ArchiveLimits:
    """Caps on what extraction may write: one member, and all archives of one run together.

    ``used`` counts the bytes already written under these limits, so the archives of one
    ``download`` run share ``max_total``. Limits are checked from the headers before anything
    is written, and again while each member is written, byte by byte.
    """

    max_member: int | None = None  # bytes
    max_total: int | None = None  # bytes
    used: int = 0

    @classmethod
    def from_params(cls, cfg: dict[str, Any]) -> ArchiveLimits:
        mb = float(cfg.get("max_member_mb", DEFAULT_MAX_MEMBER_MB))
        gb = float(cfg.get("max_total_gb", DEFAULT_MAX_TOTAL_GB))
        return cls(int(mb * 2**20), int(gb * 2**30))

    def _check(self, archive: Path, name: str, size: int, total: int, how: str) -> None:
        """Raise :class:`ArchiveTooLargeError` when member ``name`` (``size`` bytes) or the
        extracted ``total`` is over a limit; ``how`` says where the numbers come from."""
        over = None
        if self.max_member is not None and size > self.max_member:
            over = (
                f"is {_mb(size)} {how}, more than download.max_member_mb ({_mb(self.max_member)})"
            )
        elif self.max_total is not None and total > self.max_total:
            over = (
                f"takes what is extracted to {_mb(total)} {how}, more than "
                f"download.max_total_gb ({_mb(self.max_total)})"
            )
        if over:
            raise ArchiveTooLargeError(
                f"archive {archive}: member {name!r} {over}. Nothing was kept. If the archive "
                "is trusted and really this large, raise download.max_member_mb / "
                "download.max_total_gb in params.yaml"
            )

    def check_headers(self, archive: Path, sizes: list[tuple[str, int]], dest: Path) -> None:
        """Refuse an archive whose headers already exceed a limit or the free disk."""
        total = self.used
        for name, size in sizes:
            total += size
            self._check(archive, name, size, total, "(its header says)")
        free = shutil.disk_usage(_existing_parent(dest)).free
        if total - self.used > free:
            raise OSError(
                errno.ENOSPC,
                f"archive {archive} needs {_mb(total - self.used)} to extract but the disk "
                f"holding {dest.parent} has only {_mb(free)} free; free some space and rerun",
            )

    def copy(self, archive: Path, name: str, src: Any, target: Path, declared: int) -> None:
        """Copy one member's stream to ``target``, enforcing the limits on the bytes themselves
        (a header can lie) and that the member gives no more than ``declared`` bytes."""
        written = 0
        with open(target, "wb") as out:
            while chunk := src.read(CHUNK):
                written += len(chunk)
                how = f"while written (its header says {_mb(declared)})"
                self._check(archive, name, written, self.used + written, how)
                if written > declared:
                    raise CorruptArchiveError(
                        f"archive {archive}: member {name!r} gives more bytes than its header "
                        f"says ({declared}); the archive lies about its sizes. Nothing was kept"
                    )
                out.write(chunk)
        if written != declared:
            raise CorruptArchiveError(
                f"archive {archive}: member {name!r} gives {written} bytes, its header says "
                f"{declared}; the archive is truncated or damaged. Nothing was kept"
            )
        self.used += written


def _mb(n: int) -> str:
    return f"{n / 2**30:.2f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB"


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_tar_end(archive: Path, tar: tarfile.TarFile) -> None:
    """After the last member tarfile found, only zero padding may follow: a header that lies
    about its size makes tarfile stop early, and the members after it would silently vanish."""
    f = tar.fileobj
    f.seek(tar.offset)
    seen = 0
    while block := f.read(CHUNK):
        if block.count(0) != len(block):
            raise CorruptArchiveError(
                f"archive {archive}: data follows the end of the members at byte {tar.offset} "
                "(a member's header lies about its size, or the archive is damaged); members "
                "after it could not be read. Nothing was kept"
            )
        seen += len(block)
        if seen > _MAX_PADDING:
            raise CorruptArchiveError(
                f"archive {archive}: more than {_mb(_MAX_PADDING)} of padding after its last "
                "member; refusing it. Nothing was kept"
            )


# errors that mean "this archive cannot be read as it claims", never a full disk (those carry
# an errno and pass through unchanged)
def _is_corrupt(err: BaseException) -> bool:
    if isinstance(err, (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error)):
        return True
    if isinstance(err, lzma.LZMAError | gzip.BadGzipFile):
        return True
    return isinstance(err, OSError) and err.errno is None


def safe_extract(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    limits: ArchiveLimits | None = None,
    rejects: list[dict[str, Any]] | None = None,
) -> Path:
    """Extract a tar (.tar, .tar.gz/.tgz, .tar.bz2, .tar.xz) or zip archive into ``dest``.

    Every member is checked before anything is written: absolute paths, ``..`` escaping the
    destination, symbolic and hard links, device files and FIFOs raise
    :class:`UnsafeArchiveError` naming the member; sizes beyond ``limits`` (or the free disk)
    raise :class:`ArchiveTooLargeError` (:class:`OSError` ENOSPC), from the headers and again
    while writing, so a lying header cannot fill the disk; a damaged archive, or one whose
    headers lie, raises :class:`CorruptArchiveError`. Files are written (never with their
    stored owner or permissions) into a temporary folder beside ``dest`` that then replaces
    ``dest`` atomically; on any error it is removed. A member whose path was already written
    (the same path twice, or a file where a folder is) is not extracted: with ``rejects``
    given it is appended there as a reject row (``duplicate_name`` / ``path_conflict``), else
    it raises :class:`CorruptArchiveError`. Returns ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    limits = limits if limits is not None else ArchiveLimits()
    kind = archive_kind(archive, sniff=True)
    if kind is None:
        raise ValueError(
            f"{archive} is not a supported archive (want one of {', '.join(ARCHIVE_SUFFIXES)})"
        )
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                members = [
                    _Member(i.filename, rel, i.is_dir(), i.file_size, partial(_zip_member, zf, i))
                    for i, rel in _check_zip(zf)
                ]
                _extract_members(archive, dest, members, limits, rejects)
            return dest
        with tarfile.open(archive, "r:*") as tar:
            tmembers = _check_tar(tar)
            _check_tar_end(archive, tar)
            members = [
                _Member(m.name, rel, m.isdir(), m.size, partial(_tar_member, tar, m))
                for m, rel in tmembers
            ]
            _extract_members(archive, dest, members, limits, rejects)
        return dest
    except (UnsafeArchiveError, CorruptArchiveError):
        raise
    except Exception as err:
        if _is_corrupt(err):
            raise CorruptArchiveError(
                f"archive {archive} is damaged or its headers lie about its contents "
                f"({type(err).__name__}: {err}). Nothing was kept; download it again"
            ) from err
        raise


@dataclass
class _Member:
    """An archive member checked by ``_check_zip``/``_check_tar``, with how to write it:
    ``write(archive, target, limits)``."""

    name: str
    rel: str
    is_dir: bool
    size: int
    write: Callable[[Path, Path, ArchiveLimits], None]


def _extract_members(
    archive: Path,
    dest: Path,
    members: list[_Member],
    limits: ArchiveLimits,
    rejects: list[dict[str, Any]] | None,
) -> None:
    """Check the sizes the headers give, then write every member into a fresh folder that
    replaces ``dest`` at the end; a path already taken (the same path twice, a file where a
    folder is) becomes a reject row instead of overwriting."""
    limits.check_headers(archive, [(m.name, m.size) for m in members if not m.is_dir], dest)
    with atomic_dir(dest) as tmp:
        for m in members:
            target = tmp / m.rel if m.rel else tmp
            try:
                if m.is_dir:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if os.path.lexists(target):
                    raise FileExistsError(errno.EEXIST, "already extracted", str(target))
                m.write(archive, target, limits)
            except (FileExistsError, NotADirectoryError, IsADirectoryError) as err:
                reason = "duplicate_name" if isinstance(err, FileExistsError) else "path_conflict"
                detail = (
                    f"archive member {m.name!r} of {archive.name}: its path was already taken "
                    f"by an earlier member ({type(err).__name__}); not extracted"
                )
                if rejects is None:
                    raise CorruptArchiveError(detail) from err
                rejects.append(_reject(posixpath.basename(m.rel) or m.name, reason, detail))


def _zip_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive: Path, target: Path, limits: ArchiveLimits
) -> None:
    with zf.open(info) as src:
        limits.copy(archive, info.filename, src, target, info.file_size)
        if _zip_data_left(src):
            raise CorruptArchiveError(
                f"archive {archive}: member {info.filename!r} holds more data than its header "
                f"says ({info.file_size} bytes); the archive lies about its sizes. Nothing was kept"
            )


def _zip_data_left(src: Any) -> bool:
    """Whether a zip member's stream stopped at its header's size before its data ended
    (zipfile cuts the output there and checks the CRC of what it gave, which a crafted header
    can match). Reads zipfile's private state; False where it is not there."""
    decomp = getattr(src, "_decompressor", None)
    if decomp is not None and hasattr(decomp, "eof"):
        return not decomp.eof
    return getattr(src, "_compress_left", 0) > 0


def _tar_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    archive: Path,
    target: Path,
    limits: ArchiveLimits,
) -> None:
    src = tar.extractfile(member)
    if src is None:  # pragma: no cover - regular members always have data
        raise UnsafeArchiveError(f"archive member {member.name!r} has no data")
    with src:
        limits.copy(archive, member.name, src, target, member.size)
    os.utime(target, (member.mtime, member.mtime))


# --------------------------------------------------------------------------------------------
# Listing and ingesting
# --------------------------------------------------------------------------------------------


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
        suffix = Path(name).suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            detail = f"suffix {suffix or '(none)'!r} is not one of {', '.join(IMAGE_SUFFIXES)}"
            rejects.append(_reject(name, "not_an_image_name", detail))
            continue
        decision = policy.decide(name)
        if not decision.keep:
            rejects.append(_reject(name, decision.reason, decision.detail))
            continue
        labels = decision.labels
        assert labels is not None
        if name in taken:
            detail = f"{shown(path)} has the same base name as {shown(taken[name])}"
            if digests[k] is not None and digests[k] == _digest_of(rows, name):
                detail += " (same bytes)"
            rejects.append(_reject(name, "duplicate_name", detail))
            continue
        try:
            if errors[k]:
                raise OSError(errors[k])
            digest = digests[k] or sha256_file(path)
            _place(path, images_out / name, lnk)
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


def path_entries(cfg: dict[str, Any]) -> list[str]:
    """``download.path`` as a list (one string, or a list of strings)."""
    raw = cfg.get("path") or ""
    items = [raw] if isinstance(raw, str) else list(raw)
    return [str(p).strip() for p in items if str(p).strip()]


@dataclass
class _Inputs:
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
                self.rejects.append(_reject(e.path.name, e.reason, prefix + e.detail))
                continue
            self.files.append(e.path)
            self.sources.append(source)
            self.shown.append(prefix + e.rel)
            self.links.append(link)

    def add_folder(self, folder: Path, source: str, link: bool, prefix: str = "") -> None:
        self.add_entries(list_entries(folder), source, link, prefix)


_PATH_HINT = (
    "set it to the UTKFace archive (UTKFace.tar.gz, or the .zip Kaggle serves), the folder it "
    "extracts to, or (download.variant: wild) the in-the-wild archives part1..3.tar.gz or a "
    "folder holding them"
)


def _collect_path(cfg: dict[str, Any], work: Path, got: _Inputs, limits: ArchiveLimits) -> None:
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


def _extract(archive: Path, dest: Path, limits: ArchiveLimits, got: _Inputs, prefix: str) -> Path:
    """:func:`safe_extract` with the run's limits; colliding members go to the rejects."""
    rejects: list[dict[str, Any]] = []
    folder = safe_extract(archive, dest, limits, rejects)
    got.rejects.extend({**r, "detail": prefix + r["detail"]} for r in rejects)
    return folder


def _collect_url(
    cfg: dict[str, Any], work: Path, got: _Inputs, progress: bool, limits: ArchiveLimits
) -> None:
    cache = Path(str(cfg.get("cache_dir") or "data/download_cache")).expanduser()
    used: set[str] = set()
    entries = _url_entries(cfg)
    for i, (url, digest) in enumerate(entries):
        name = _url_file_name(url)
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


def _off(value: Any) -> str:
    """A params value as a string; YAML reads a bare ``off`` as False."""
    return "off" if value is False else str(value)


def _variant_check(manifest: pd.DataFrame, variant: str) -> int:
    """How many kept names look like the other variant (aligned names end in .chip.jpg)."""
    chip = manifest["file"].str.endswith(".chip.jpg")
    return int((~chip).sum() if variant == "aligned" else chip.sum())


@explain_full_disk("download")  # a full disk is reported as such
def run(
    cfg: dict[str, Any],
    images_out: str | os.PathLike,
    manifest_out: str | os.PathLike,
    rejects_out: str | os.PathLike,
    *,
    groups_out: str | os.PathLike | None = None,
    pairs_out: str | os.PathLike | None = None,
    verification_out: str | os.PathLike | None = None,
    sheet_out: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the download stage with the ``download`` section of params; return a summary.

    Writes the flat image folder ``images_out`` atomically and the manifest and rejects tables,
    and when given the duplicate groups (``groups_out``), the near-duplicate pairs
    (``pairs_out``), the verification table (``verification_out``) and the contact sheet of
    near duplicates (``sheet_out``). Raises :class:`FileNotFoundError` for a missing
    ``download.path``, :class:`DownloadError` for a failed download,
    :class:`~maskprivacy.datasets.verify.VerificationError` when the files are not the published ones
    and ``download.verify`` says so, and :class:`ValueError` when no input is a usable image.
    """
    images_out, manifest_out, rejects_out = Path(images_out), Path(manifest_out), Path(rejects_out)
    kind = str(cfg.get("source", "demo"))
    variant = str(cfg.get("variant", "aligned"))
    policy = DefectPolicy.from_params(cfg)
    exact_policy = str(cfg.get("duplicates", "drop_conflicts"))
    near_policy = _off(cfg.get("near_duplicates", "drop_conflicts"))
    threshold = int(cfg.get("near_threshold", DEFAULT_THRESHOLD))
    verify_mode = _off(cfg.get("verify", "auto"))
    if variant not in VARIANTS:
        raise ValueError(f"download.variant must be one of {VARIANTS}, got {variant!r}")
    images_out.parent.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale(images_out, ".{name}.work.*"):
        log.info("removed %s, left by a download that was killed", stale)
    limits = ArchiveLimits.from_params(cfg)
    got = _Inputs()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(
        prefix=f".{images_out.name}.work.", dir=images_out.parent
    ) as w:
        work = Path(w)
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
        timings["acquire"] = time.perf_counter() - t0

        t = time.perf_counter()
        scanned = scan(got.files, got.shown, progress=progress)
        reference = load_reference(variant=variant) if variant in REFERENCES else None
        mode, why = resolve_mode(verify_mode, kind, variant, scanned["file"], reference)
        check = verify(scanned, reference, mode, why) if reference is not None else None
        if check is None:
            check = Verification("off", why)
        if verification_out is not None:
            write_table(verification_out, check.table)
        if mode != "off" and not check.ok:
            if mode == "error":
                raise VerificationError(check.message())
            log.warning("download.verify is warn, going on: %s", check.message())
        timings["hash_verify"] = time.perf_counter() - t

        t = time.perf_counter()
        with atomic_dir(images_out) as tmp:
            manifest, rejects = ingest(
                got.files,
                tmp,
                policy,
                got.sources,
                link=got.links,
                progress=progress,
                scanned=scanned,
            )
            timings["ingest"] = time.perf_counter() - t
            t = time.perf_counter()
            dd = deduplicate(manifest, tmp, exact_policy, near_policy, threshold, progress)
            timings["dedup"] = time.perf_counter() - t
            if sheet_out is not None:
                from maskprivacy.report.data import near_duplicate_sheet

                t = time.perf_counter()
                near_duplicate_sheet(dd.pairs, tmp, threshold, sheet_out, demo=kind == "demo")
                timings["sheet"] = time.perf_counter() - t
            for row in dd.rejects:
                (tmp / row["file"]).unlink(missing_ok=True)
            manifest = dd.manifest
            if dd.rejects or got.rejects:
                rejects = rejects_frame(rejects.to_dict("records") + dd.rejects + got.rejects)
    write_table(manifest_out, manifest)
    write_table(rejects_out, rejects)
    if groups_out is not None:
        write_table(groups_out, dd.groups)
    if pairs_out is not None:
        write_table(pairs_out, dd.pairs)

    by_reason = dict(sorted(Counter(rejects["reason"]).items()))
    defects = _defect_list(manifest, rejects)
    other_variant = _variant_check(manifest, variant)
    if other_variant > len(manifest) / 2:
        log.warning(
            "%d of %d names look like the other variant than download.variant %r "
            "(aligned & cropped names end in .jpg.chip.jpg): check download.variant",
            other_variant,
            len(manifest),
            variant,
        )
    summary = {
        "source": kind,
        "variant": variant,
        "inputs": got.inputs,
        "n_inputs": got.n_entries,
        "n_images": len(manifest),
        "n_rejects": len(rejects),
        "rejects_by_reason": by_reason,
        "verification": check.summary(),
        "label_defects_policy": policy.mode,
        "label_fixes": policy.fixes_name,
        "label_defects": defects,
        "n_name_notes": int((manifest["name_note"].fillna("") != "").sum()),
        "duplicates": dd.summary,
        "n_names_of_other_variant": other_variant,
        "seconds_by_step": {k: round(v, 3) for k, v in timings.items()},
    }
    log.info(
        "%d inputs -> %d images, %d rejects %s",
        got.n_entries,
        len(manifest),
        len(rejects),
        by_reason,
    )
    if manifest.empty:
        raise ValueError(
            f"no usable image among the {got.n_entries} input entries of download.source "
            f"{kind!r} (rejects by reason: {by_reason or 'none'}; see {rejects_out})"
        )
    return summary


def _defect_list(manifest: pd.DataFrame, rejects: pd.DataFrame) -> list[dict[str, str]]:
    """Every file whose name has a label defect, with what was done to it."""
    out = []
    notes = manifest[manifest["name_note"].fillna("").str.startswith("fixed by")]
    for f, note in zip(notes["file"], notes["name_note"], strict=True):
        out.append({"file": f, "defect": name_defect(f), "action": "kept", "detail": note})
    dropped = rejects[rejects["reason"] == "label_defect"]
    for f, detail in zip(dropped["file"], dropped["detail"], strict=True):
        out.append({"file": f, "defect": name_defect(f), "action": "dropped", "detail": detail})
    return sorted(out, key=lambda r: r["file"])
