"""Safe extraction of tar and zip archives: no member may leave the destination, be a link or a
special file, or exceed the size limits; a damaged archive or one whose headers lie is refused.

Tar members pass these checks and then tarfile's own ``data`` extraction filter, as an added
layer. Everything is written into a temporary folder that replaces the destination atomically.
"""

from __future__ import annotations

import errno
import gzip
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from maskprivacy.core.labels import IMAGE_SUFFIXES
from maskprivacy.core.plumbing import atomic_dir
from maskprivacy.datasets.ingest import reject

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip")
CHUNK = 1 << 16


class UnsafeArchiveError(ValueError):
    """An archive member that could write outside the destination or is not a plain file/folder."""


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


def _check_tar(tar: tarfile.TarFile, dest: Path) -> list[tuple[tarfile.TarInfo, str]]:
    """Every member of ``tar`` with its safe relative path; refuse anything unsafe, by these
    rules first, then by tarfile's ``data`` extraction filter for ``dest``."""
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
        try:
            tarfile.data_filter(m, str(dest))
        except tarfile.FilterError as err:
            raise UnsafeArchiveError(
                f"archive member {m.name!r} is refused by tarfile's data filter: {err}"
            ) from err
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
            tmembers = _check_tar(tar, dest)
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
                rejects.append(reject(posixpath.basename(m.rel) or m.name, reason, detail))


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


def read_files(
    source: str | os.PathLike, wanted: Callable[[str], bool]
) -> Iterator[tuple[str, bytes]]:
    """``(base name, bytes)`` of each regular file of ``source`` (a folder, walked in sorted
    order; a zip; or a tar, any compression) whose base name ``wanted`` accepts, read into
    memory, never written under its own name (for benchmarks and generated sets)."""
    source = Path(source)
    if source.is_dir():
        for p in sorted(source.rglob("*")):
            if p.is_file() and wanted(p.name):
                yield p.name, p.read_bytes()
    elif zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as z:
            for info in z.infolist():
                if not info.is_dir() and wanted(posixpath.basename(info.filename)):
                    yield posixpath.basename(info.filename), z.read(info)
    else:
        with tarfile.open(source) as t:
            for m in t:
                if m.isfile() and wanted(posixpath.basename(m.name)):
                    yield posixpath.basename(m.name), t.extractfile(m).read()
