"""Resumable, retried, checksummed HTTP(S) downloads (stdlib ``urllib`` only).

The bytes go to ``<dest>.part`` first and only a complete file whose checksum matches is moved
onto its final name, so a killed download never leaves a file there.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from maskprivacy.core.io import sha256_file
from maskprivacy.core.plumbing import no_bar

log = logging.getLogger(__name__)

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


class _Restart(Exception):
    """Internal: the partial file cannot be resumed and was deleted; start again from zero."""


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


def url_file_name(url: str) -> str:
    """The file name at the end of a URL's path (percent-decoded)."""
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    if not name or name in (".", ".."):
        raise ValueError(
            f"cannot tell a file name from the URL {url!r}; give a URL whose path ends in "
            "the file name, or download it by hand and use 'download.source: path'"
        )
    return name
