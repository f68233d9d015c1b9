"""download stage: label parsing via ingest, safe archive extraction, resumable downloads, run().

Everything runs on data the tests make; the HTTP server listens on 127.0.0.1 only. Verification
against the published manifest, label defects and duplicates have their own test files
(test_verify.py, test_dedup.py); here they are off or see only distinct images.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import socket
import stat
import struct
import subprocess
import sys
import tarfile
import threading
import time
import types
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from maskprivacy.core.io import read_table, sha256_file
from maskprivacy.datasets.archives import (
    ArchiveLimits,
    ArchiveTooLargeError,
    CorruptArchiveError,
    UnsafeArchiveError,
    safe_extract,
)
from maskprivacy.datasets.defects import DefectPolicy
from maskprivacy.datasets.fetch import DownloadError, fetch_url, part_path
from maskprivacy.datasets.ingest import MANIFEST_COLUMNS, ingest, list_images
from maskprivacy.stages import download
from maskprivacy.stages.entry import Files, StageConfig

GOOD = [
    "26_1_2_20170116174525125.jpg.chip.jpg",
    "1_0_0_20161219140623097.jpg.chip.jpg",
    "70_0_3_20170119210016431.jpg",
]
MALFORMED_DATE = "55_0_0_20170116232725357jpg.chip.jpg"  # a published defect: valid labels
MISSING_RACE = "39_1_20170116174525125.jpg.chip.jpg"  # a published defect: no race field
BAD_NAMES = {
    "x_1_2_20170116174525125.jpg.chip.jpg": "age",
    "117_1_2_20170116174525125.jpg.chip.jpg": "age",
}
NOT_IMAGES = ["notes.txt", ".DS_Store", "26_1_2_20170116174525125.jpg.chip.gif"]


def jpeg_bytes(seed: int) -> bytes:
    """A small JPEG of random blobs: bytes and perceptual hash differ with ``seed``."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((48, 48), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_inputs(folder: Path) -> dict[str, str]:
    """A folder of good, badly named, non-image and duplicate-named files.

    Returns {relative path: expected reject reason, or '' for the manifest}.
    """
    expected: dict[str, str] = {}
    files = {n: "" for n in [*GOOD, MALFORMED_DATE]}
    files |= {n: "bad_name" for n in BAD_NAMES}
    files[MISSING_RACE] = "label_defect"  # dropped by the committed corrections table
    files |= {n: "not_an_image_name" for n in NOT_IMAGES}
    files["sub/" + GOOD[0]] = "duplicate_name"  # listed after the top-level copy
    files["__MACOSX/._" + GOOD[1]] = "bad_name"  # resource fork: image suffix, bad labels
    for i, (rel, reason) in enumerate(sorted(files.items())):
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg_bytes(i) if rel.endswith(".jpg") else b"not an image\n")
        expected[rel] = reason
    return expected


def check_tables(manifest: pd.DataFrame, rejects: pd.DataFrame, expected: dict[str, str]) -> None:
    """Every input is in exactly one table, with the expected reason."""
    assert len(manifest) + len(rejects) == len(expected)
    good = sorted(Path(r).name for r, why in expected.items() if not why)
    assert sorted(manifest["file"]) == good
    want = Counter(why for why in expected.values() if why)
    assert Counter(rejects["reason"]) == want
    assert set(rejects["stage"]) <= {"download"}


# --------------------------------------------------------------------------------------------
# ingest and list_images
# --------------------------------------------------------------------------------------------


def test_list_images_keeps_hidden_and_macosx(tmp_path):
    expected = make_inputs(tmp_path)
    listed = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert listed == sorted(expected)
    assert ".DS_Store" in listed and "__MACOSX/._" + GOOD[1] in listed


def test_ingest_every_file_in_one_table(tmp_path):
    src = tmp_path / "in"
    expected = make_inputs(src)
    out = tmp_path / "images"
    manifest, rejects = ingest(list_images(src), out, None, "test", root=src, progress=False)
    check_tables(manifest, rejects, expected)
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert list(rejects.columns) == ["file", "stage", "reason", "detail"]

    row = manifest.set_index("file").loc[GOOD[0]]
    assert (row.age, row.sex, row.race, row.age_bucket) == (26, 1, 2, 3)
    assert row.source == "test" and row.name_note == ""
    assert row.sha256 == sha256_file(src / GOOD[0]) == sha256_file(out / GOOD[0])
    note = manifest.set_index("file").loc[MALFORMED_DATE, "name_note"]
    assert note.startswith("fixed by utkface_label_fixes.csv") and "missing dot" in note
    assert sorted(p.name for p in out.iterdir()) == sorted(manifest["file"])

    rej = rejects.set_index("file")
    for name, word in BAD_NAMES.items():
        assert rej.loc[name, "reason"] == "bad_name"
        assert word in rej.loc[name, "detail"]
    assert "no race field" in rej.loc[MISSING_RACE, "detail"]
    dup = rejects[rejects["reason"] == "duplicate_name"].iloc[0]
    assert dup.file == GOOD[0] and "sub/" + GOOD[0] in dup.detail
    assert rej.loc[".DS_Store", "reason"] == "not_an_image_name"


def test_ingest_label_defects_drop_rejects_malformed_date(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i, name in enumerate([GOOD[0], MALFORMED_DATE]):
        (src / name).write_bytes(jpeg_bytes(i))
    policy = DefectPolicy.from_params({"label_defects": "drop"})
    manifest, rejects = ingest(list_images(src), tmp_path / "out", policy, "t", progress=False)
    assert manifest["file"].tolist() == [GOOD[0]]
    assert rejects["file"].tolist() == [MALFORMED_DATE]
    assert rejects["reason"].tolist() == ["label_defect"]
    assert "malformed_stamp" in rejects["detail"].iloc[0]


def test_ingest_suffix_is_case_insensitive_and_sources_per_file(tmp_path):
    a = tmp_path / "26_1_2_20170116174525125.JPG"
    b = tmp_path / "27_1_2_20170116174525125.png"
    a.write_bytes(jpeg_bytes(1))
    b.write_bytes(jpeg_bytes(2))
    manifest, rejects = ingest([a, b], tmp_path / "out", None, ["s1", "s2"], progress=False)
    assert rejects.empty
    assert manifest["source"].tolist() == ["s1", "s2"]
    assert manifest["name_note"].str.len().gt(0).all()  # not the canonical .jpg form


# --------------------------------------------------------------------------------------------
# safe_extract
# --------------------------------------------------------------------------------------------


def make_tar(path: Path, entries: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_600_000_000
            tar.addfile(info, io.BytesIO(data))
    return path


def make_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


ENTRIES = {
    "UTKFace/" + GOOD[0]: jpeg_bytes(1),
    "UTKFace/" + GOOD[1]: jpeg_bytes(2),
    "UTKFace/x/../" + GOOD[2]: jpeg_bytes(3),  # '..' that stays inside is fine
}


@pytest.mark.parametrize(
    "name, maker",
    [
        ("a.tar.gz", make_tar),
        ("a.tgz", make_tar),
        ("a.tar", lambda p, e: make_tar(p, e, "w")),
        ("a.tar.bz2", lambda p, e: make_tar(p, e, "w:bz2")),
        ("a.zip", make_zip),
    ],
)
def test_safe_extract_good_archives(tmp_path, name, maker):
    archive = maker(tmp_path / name, ENTRIES)
    dest = tmp_path / "out"
    (dest / "stale").mkdir(parents=True)  # replaced atomically
    assert safe_extract(archive, dest) == dest
    got = {p.relative_to(dest).as_posix(): p.read_bytes() for p in list_images(dest)}
    assert got == {
        "UTKFace/" + GOOD[0]: ENTRIES["UTKFace/" + GOOD[0]],
        "UTKFace/" + GOOD[1]: ENTRIES["UTKFace/" + GOOD[1]],
        "UTKFace/" + GOOD[2]: ENTRIES["UTKFace/x/../" + GOOD[2]],
    }
    assert not (dest / "stale").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "out"])  # no temp left


def _tar_with(path: Path, info: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("ok.jpg")
        ok.size = 3
        tar.addfile(ok, io.BytesIO(b"abc"))
        info.size = len(data) if info.isreg() else 0
        tar.addfile(info, io.BytesIO(data) if data else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def _zip_symlink(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.jpg", b"abc")
        info = zipfile.ZipInfo("link.jpg")
        info.create_system = 3
        info.external_attr = (0o120777 << 16) & 0xFFFF0000
        zf.writestr(info, "/etc/passwd")
    return path


UNSAFE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "tar absolute": (
        lambda d: _tar_with(d / "a.tar.gz", _info("/tmp/evil.jpg"), b"x"),
        "/tmp/evil",
    ),
    "tar dotdot": (lambda d: _tar_with(d / "a.tar.gz", _info("../evil.jpg"), b"x"), "../evil"),
    "tar deep dotdot": (
        lambda d: _tar_with(d / "a.tar.gz", _info("a/../../evil.jpg"), b"x"),
        "a/../../evil",
    ),
    "tar symlink": (
        lambda d: _tar_with(d / "a.tar.gz", _info("link.jpg", tarfile.SYMTYPE, "/etc/passwd")),
        "link.jpg",
    ),
    "tar hardlink": (
        lambda d: _tar_with(d / "a.tar.gz", _info("hard.jpg", tarfile.LNKTYPE, "ok.jpg")),
        "hard.jpg",
    ),
    "tar char device": (
        lambda d: _tar_with(d / "a.tar.gz", _info("dev.jpg", tarfile.CHRTYPE)),
        "dev.jpg",
    ),
    "tar block device": (
        lambda d: _tar_with(d / "a.tar.gz", _info("blk.jpg", tarfile.BLKTYPE)),
        "blk.jpg",
    ),
    "tar fifo": (lambda d: _tar_with(d / "a.tar.gz", _info("fifo", tarfile.FIFOTYPE)), "fifo"),
    "zip dotdot": (
        lambda d: make_zip(d / "a.zip", {"ok.jpg": b"a", "../evil.jpg": b"x"}),
        "../evil",
    ),
    "zip absolute": (
        lambda d: make_zip(d / "a.zip", {"ok.jpg": b"a", "/tmp/evil.jpg": b"x"}),
        "/tmp/evil",
    ),
    "zip backslash dotdot": (
        lambda d: make_zip(d / "a.zip", {"..\\evil.jpg": b"x"}),
        "evil",
    ),
    "zip symlink": (lambda d: _zip_symlink(d / "a.zip"), "link.jpg"),
}


@pytest.mark.parametrize("case", list(UNSAFE))
def test_safe_extract_refuses_unsafe_members(tmp_path, case):
    build, member = UNSAFE[case]
    src = tmp_path / "src"
    src.mkdir()
    archive = build(src)
    dest = tmp_path / "box" / "out"
    with pytest.raises(UnsafeArchiveError, match=re.escape(member)):
        safe_extract(archive, dest)
    assert not dest.exists()
    assert not (tmp_path / "evil.jpg").exists() and not (tmp_path / "box" / "evil.jpg").exists()
    assert not (tmp_path / "box").exists() or not any((tmp_path / "box").iterdir())


def test_safe_extract_adds_tarfiles_data_filter(tmp_path, monkeypatch):
    """Every tar member that passes the project's own rules also passes tarfile's ``data``
    filter for the destination; a member the filter refuses is refused, nothing is kept."""
    src = tmp_path / "src"
    src.mkdir()
    archive = make_tar(src / "a.tar.gz", {"UTKFace/ok.jpg": b"a", "UTKFace/b.jpg": b"b"})
    seen = []
    real = tarfile.data_filter

    def recording(member, dest_path):
        seen.append((member.name, dest_path))
        return real(member, dest_path)

    monkeypatch.setattr(tarfile, "data_filter", recording)
    dest = tmp_path / "out"
    safe_extract(archive, dest)
    assert sorted(n for n, _ in seen) == ["UTKFace/b.jpg", "UTKFace/ok.jpg"]
    assert {d for _, d in seen} == {str(dest)}

    def refusing(member, dest_path):
        raise tarfile.OutsideDestinationError(member, "/elsewhere")

    monkeypatch.setattr(tarfile, "data_filter", refusing)
    with pytest.raises(UnsafeArchiveError, match="data filter"):
        safe_extract(archive, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_safe_extract_rejects_non_archive(tmp_path):
    f = tmp_path / "photo.jpg"
    f.write_bytes(jpeg_bytes(0))
    with pytest.raises(ValueError, match="not a supported archive"):
        safe_extract(f, tmp_path / "out")


# --------------------------------------------------------------------------------------------
# fetch_url against a local server
# --------------------------------------------------------------------------------------------


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    # per path, actions applied to successive requests: "cut", "503", "sleep"
    plans: dict[str, list[str]] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    ignore_range: bool = False
    cut_at: int = 1000
    lock: threading.Lock = field(default_factory=threading.Lock)


class Handler(BaseHTTPRequestHandler):
    """Serves ``state.files`` with Range support and scripted failures."""

    server: ThreadingHTTPServer

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server naming
        st: ServerState = self.server.state  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        with st.lock:
            st.requests.append((self.path, rng))
            plan = st.plans.get(self.path)
            action = plan.pop(0) if plan else None
        try:
            if action == "sleep":
                time.sleep(0.6)
            if action == "503":
                self.send_error(503, "try later")
                return
            data = st.files.get(self.path)
            if data is None:
                self.send_error(404, "no such file")
                return
            start = 0
            m = re.fullmatch(r"bytes=(\d+)-", rng or "")
            if m and not st.ignore_range:
                start = int(m.group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if action == "cut":
                self.wfile.write(body[: st.cut_at])
                self.close_connection = True
                return
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    state = ServerState()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_fetch_with_checksum(server, tmp_path):
    base, st = server
    st.files["/data/file.bin"] = PAYLOAD
    dest = tmp_path / "cache" / "file.bin"
    assert fetch_url(base + "/data/file.bin", dest, sha256=PAYLOAD_SHA, progress=True) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not part_path(dest).exists()
    assert st.requests == [("/data/file.bin", None)]
    # already there with the right checksum: nothing is fetched
    fetch_url(base + "/data/file.bin", dest, sha256=PAYLOAD_SHA.upper(), progress=False)
    assert len(st.requests) == 1


def test_fetch_resumes_after_a_cut_connection(server, tmp_path):
    base, st = server
    st.files["/f.bin"] = PAYLOAD
    st.plans["/f.bin"] = ["cut"]
    dest = tmp_path / "f.bin"
    fetch_url(base + "/f.bin", dest, sha256=PAYLOAD_SHA, backoff=0.01, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert st.requests == [("/f.bin", None), ("/f.bin", f"bytes={st.cut_at}-")]


def test_fetch_resumes_an_existing_part(server, tmp_path):
    base, st = server
    st.files["/f.bin"] = PAYLOAD
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(PAYLOAD[:4321])
    fetch_url(base + "/f.bin", dest, sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert st.requests == [("/f.bin", "bytes=4321-")]
    assert not part_path(dest).exists()


def test_fetch_restarts_when_server_ignores_range(server, tmp_path):
    base, st = server
    st.files["/f.bin"] = PAYLOAD
    st.ignore_range = True
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(b"garbage" * 10)
    fetch_url(base + "/f.bin", dest, sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert st.requests == [("/f.bin", "bytes=70-")]


def test_fetch_416_means_part_already_complete(server, tmp_path):
    base, st = server
    st.files["/f.bin"] = PAYLOAD
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(PAYLOAD)
    fetch_url(base + "/f.bin", dest, sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert st.requests == [("/f.bin", f"bytes={len(PAYLOAD)}-")]


def test_fetch_404_fails_at_once(server, tmp_path):
    base, st = server
    url = base + "/missing.tar.gz"
    dest = tmp_path / "missing.tar.gz"
    with pytest.raises(DownloadError) as err:
        fetch_url(url, dest, retries=3, backoff=5, progress=False)
    msg = str(err.value)
    assert url in msg and "404" in msg and "download.source: path" in msg
    assert len(st.requests) == 1
    assert not dest.exists() and not part_path(dest).exists()


def test_fetch_retries_5xx_and_timeouts(server, tmp_path):
    base, st = server
    st.files["/f.bin"] = PAYLOAD
    st.plans["/f.bin"] = ["503", "sleep"]
    dest = tmp_path / "f.bin"
    fetch_url(base + "/f.bin", dest, timeout=0.2, retries=2, backoff=0.01, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert len(st.requests) == 3


def test_fetch_gives_up_after_retries(server, tmp_path):
    base, st = server
    st.files["/f.bin"] = PAYLOAD
    st.plans["/f.bin"] = ["503"] * 5
    url = base + "/f.bin"
    with pytest.raises(DownloadError, match="after 3 attempt") as err:
        fetch_url(url, tmp_path / "f.bin", retries=2, backoff=0.01, progress=False)
    assert url in str(err.value) and "503" in str(err.value)
    assert len(st.requests) == 3
    assert not (tmp_path / "f.bin").exists()


def test_fetch_connection_refused_is_a_download_error(tmp_path):
    import socket

    with socket.socket() as s:  # a free port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.zip"
    with pytest.raises(DownloadError, match=re.escape(url)):
        fetch_url(url, tmp_path / "x.zip", timeout=1, retries=1, backoff=0.01, progress=False)


def test_fetch_wrong_checksum_leaves_nothing(server, tmp_path):
    base, st = server
    st.files["/f.bin"] = PAYLOAD
    url = base + "/f.bin"
    dest = tmp_path / "f.bin"
    wrong = "0" * 64
    with pytest.raises(DownloadError) as err:
        fetch_url(url, dest, sha256=wrong, progress=False)
    msg = str(err.value)
    assert url in msg and wrong in msg and PAYLOAD_SHA in msg and "params.yaml" in msg
    assert not dest.exists() and not part_path(dest).exists()
    assert sorted(tmp_path.iterdir()) == []


def test_fetch_refuses_unknown_scheme(tmp_path):
    with pytest.raises(DownloadError, match="scheme"):
        fetch_url("gopher://x/y", tmp_path / "y", progress=False)


# --------------------------------------------------------------------------------------------
# run()
# --------------------------------------------------------------------------------------------


def download_run(
    cfg: dict, images: Path, manifest: Path, rejects: Path, **more: Path
) -> dict[str, Any]:
    """The download stage entered as the workflow enters it; ``more``: its optional outputs
    (groups, pairs, verification, sheet)."""
    outputs = Files(images=images, manifest=manifest, rejects=rejects, **more)
    return download.run(StageConfig(params=cfg), Files(), outputs, logging.getLogger("test"))


def cfg_for(**kw) -> dict:
    cfg = {
        "source": "path",
        "path": "",
        "urls": [],
        "cache_dir": "",
        "timeout": 5,
        "retries": 1,
        "verify": "off",  # test_verify.py checks verification
        "demo": {"n_images": 4, "seed": 0},
    }
    cfg.update(kw)
    return cfg


def run_stage(cfg: dict, out: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    summary = download_run(cfg, out / "images", out / "manifest.csv", out / "rejects.csv")
    manifest = read_table(out / "manifest.csv")
    rejects = read_table(out / "rejects.csv")
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(manifest["file"])
    assert summary["n_images"] == len(manifest) and summary["n_rejects"] == len(rejects)
    assert summary["n_inputs"] == len(manifest) + len(rejects)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temp left
    return summary, manifest, rejects


def archive_inputs(tmp_path: Path, expected: dict[str, str]) -> dict[str, bytes]:
    src = tmp_path / "in"
    return {"UTKFace/" + rel: (src / rel).read_bytes() for rel in expected}


def test_run_path_folder(tmp_path):
    src = tmp_path / "in"
    expected = make_inputs(src)
    summary, manifest, rejects = run_stage(cfg_for(path=str(src)), tmp_path / "out")
    check_tables(manifest, rejects, expected)
    assert summary["source"] == "path"
    assert summary["rejects_by_reason"]["bad_name"] == 3
    assert summary["rejects_by_reason"]["label_defect"] == 1
    assert [(d["file"], d["action"]) for d in summary["label_defects"]] == [
        (MISSING_RACE, "dropped"),
        (MALFORMED_DATE, "kept"),
    ]
    assert set(manifest["source"]) == {str(src)}
    # copies, not links, of the user's files
    img = tmp_path / "out" / "images" / GOOD[0]
    assert img.stat().st_ino != (src / GOOD[0]).stat().st_ino
    # a rerun replaces the folder
    run_stage(cfg_for(path=str(src)), tmp_path / "out")


@pytest.mark.parametrize("name", ["UTK.tar.gz", "UTK.zip"])
def test_run_path_archive(tmp_path, name):
    expected = make_inputs(tmp_path / "in")
    entries = archive_inputs(tmp_path, expected)
    maker = make_zip if name.endswith(".zip") else make_tar
    archive = maker(tmp_path / name, entries)
    summary, manifest, rejects = run_stage(cfg_for(path=str(archive)), tmp_path / "out")
    check_tables(manifest, rejects, expected)
    assert summary["n_inputs"] == len(expected)
    row = manifest.set_index("file").loc[GOOD[1]]
    assert row.sha256 == hashlib.sha256(entries["UTKFace/" + GOOD[1]]).hexdigest()


def test_run_path_missing_names_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="download.path"):
        download_run(cfg_for(path=str(tmp_path / "nope")), *_outs(tmp_path))
    with pytest.raises(FileNotFoundError, match="download.path"):
        download_run(cfg_for(path=""), *_outs(tmp_path))
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_run_no_usable_image_is_an_error(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "readme.txt").write_text("hi")
    with pytest.raises(ValueError, match="no usable image"):
        download_run(cfg_for(path=str(src)), *_outs(tmp_path))


def _outs(tmp_path: Path) -> tuple[Path, Path, Path]:
    out = tmp_path / "out"
    return out / "images", out / "manifest.csv", out / "rejects.csv"


def test_run_url(server, tmp_path):
    base, st = server
    expected = make_inputs(tmp_path / "in")
    buf = tmp_path / "UTKFace.tar.gz"
    make_tar(buf, archive_inputs(tmp_path, expected))
    st.files["/dl/UTKFace.tar.gz"] = buf.read_bytes()
    single = jpeg_bytes(99)
    single_name = "33_1_4_20170116174525999.jpg.chip.jpg"
    st.files["/img/" + single_name] = single
    urls = [
        {"url": base + "/dl/UTKFace.tar.gz", "sha256": sha256_file(buf)},
        {"url": base + "/img/" + single_name, "sha256": None},
    ]
    cache = tmp_path / "cache"
    cfg = cfg_for(source="url", urls=urls, cache_dir=str(cache))
    summary, manifest, rejects = run_stage(cfg, tmp_path / "out")
    check_tables(manifest, rejects, {**expected, single_name: ""})
    assert summary["source"] == "url" and summary["inputs"] == [u["url"] for u in urls]
    assert manifest.set_index("file").loc[single_name, "source"] == urls[1]["url"]
    assert (cache / "UTKFace.tar.gz").read_bytes() == buf.read_bytes()
    assert not list(cache.glob("*.part"))
    # cached: a second run fetches nothing
    n = len(st.requests)
    run_stage(cfg, tmp_path / "out2")
    assert len(st.requests) == n


def test_run_demo_uses_demo_generate(tmp_path, monkeypatch):
    calls = []

    def fake_generate(folder, n_images=320, seed=0, progress=True):
        calls.append((n_images, seed))
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(n_images):
            p = folder / f"{20 + i}_{i % 2}_{i % 5}_{20260101000000000 + i:017d}.jpg.chip.jpg"
            p.write_bytes(jpeg_bytes(i))
            paths.append(p)
        return paths

    fake = types.ModuleType("maskprivacy.datasets.demo")
    fake.generate = fake_generate  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "maskprivacy.datasets.demo", fake)
    summary, manifest, rejects = run_stage(
        cfg_for(source="demo", demo={"n_images": 5, "seed": 7}), tmp_path / "out"
    )
    assert calls == [(5, 7)]
    assert summary["source"] == "demo" and len(manifest) == 5 and rejects.empty
    assert set(manifest["source"]) == {"demo"}


def test_run_unknown_source(tmp_path):
    with pytest.raises(ValueError, match="download.source"):
        download_run(cfg_for(source="ftp"), *_outs(tmp_path))


# ---------------------------------------------------------------- exact duplicates


def _dup_manifest():
    rows = [
        ("10_0_0_20170101000000001.jpg.chip.jpg", 10, 0, 0, "aa"),
        ("10_0_0_20170101000000002.jpg.chip.jpg", 10, 0, 0, "aa"),  # same bytes, same labels
        ("20_0_1_20170101000000003.jpg.chip.jpg", 20, 0, 1, "bb"),
        ("21_1_1_20170101000000004.jpg.chip.jpg", 21, 1, 1, "bb"),  # same bytes, other labels
        ("30_1_2_20170101000000005.jpg.chip.jpg", 30, 1, 2, "cc"),
    ]
    return pd.DataFrame(rows, columns=["file", "age", "sex", "race", "sha256"])


@pytest.mark.parametrize(
    "policy, kept, reasons",
    [
        ("keep_all", 5, []),
        ("keep_one", 3, ["duplicate_bytes", "duplicate_bytes"]),
        (
            "drop_conflicts",
            2,
            ["duplicate_bytes", "duplicate_label_conflict", "duplicate_label_conflict"],
        ),
    ],
)
def test_exact_duplicate_policies(policy, kept, reasons):
    from maskprivacy.datasets.dedup import exact_duplicates

    m = _dup_manifest()
    out, rejects = exact_duplicates(m, policy)
    assert len(out) == kept
    assert sorted(r["reason"] for r in rejects) == sorted(reasons)
    assert set(out["file"]) | {r["file"] for r in rejects} == set(m["file"])
    assert out["sha256"].is_unique or policy == "keep_all"


def test_run_drops_duplicate_copies_from_the_folder(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "10_0_0_20170101000000001.jpg.chip.jpg").write_bytes(jpeg_bytes(1))
    (src / "10_0_0_20170101000000002.jpg.chip.jpg").write_bytes(jpeg_bytes(1))
    (src / "11_0_0_20170101000000003.jpg.chip.jpg").write_bytes(jpeg_bytes(2))
    cfg = {"source": "path", "path": str(src), "duplicates": "drop_conflicts"}
    out = tmp_path / "out"
    summary = download_run(cfg, out / "images", out / "manifest.csv", out / "rejects.csv")
    assert summary["n_images"] == 2 and summary["rejects_by_reason"] == {"duplicate_bytes": 1}
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "10_0_0_20170101000000001.jpg.chip.jpg",
        "11_0_0_20170101000000003.jpg.chip.jpg",
    ]


# ---------------------------------------------------------------- variants and packagings


def _wild_parts(folder: Path) -> dict[str, bytes]:
    """Three in-the-wild archives part1..3.tar.gz (names without .chip.jpg); their files."""
    files: dict[str, bytes] = {}
    folder.mkdir(parents=True, exist_ok=True)
    for part in (1, 2, 3):
        entries = {
            f"part{part}/{20 + i}_{i % 2}_{i % 5}_2017010112{part}0000{i:02d}.jpg": jpeg_bytes(
                100 * part + i
            )
            for i in range(3)
        }
        make_tar(folder / f"part{part}.tar.gz", entries)
        files |= {Path(k).name: v for k, v in entries.items()}
    return files


def test_run_wild_variant_from_a_folder_of_part_archives(tmp_path):
    files = _wild_parts(tmp_path / "wild")
    (tmp_path / "wild" / "README.txt").write_text("downloaded by hand")
    cfg = cfg_for(path=str(tmp_path / "wild"), variant="wild", verify="auto")
    summary, manifest, rejects = run_stage(cfg, tmp_path / "out")
    assert sorted(manifest["file"]) == sorted(files)
    assert rejects["reason"].tolist() == ["not_an_image_name"]  # README.txt
    assert summary["variant"] == "wild" and summary["n_names_of_other_variant"] == 0
    assert [Path(i).name for i in summary["inputs"]] == ["wild"]
    assert set(manifest["source"]) == {
        str(tmp_path / "wild" / f"part{p}.tar.gz") for p in (1, 2, 3)
    }
    assert summary["verification"]["status"] == "not verified"
    assert "variant 'wild'" in summary["verification"]["why"]
    for name, data in files.items():
        assert (tmp_path / "out" / "images" / name).read_bytes() == data


def test_run_path_list_and_wild_verify_error(tmp_path):
    _wild_parts(tmp_path / "wild")
    parts = [str(tmp_path / "wild" / f"part{p}.tar.gz") for p in (1, 2, 3)]
    summary, manifest, _ = run_stage(cfg_for(path=parts, variant="wild"), tmp_path / "out")
    assert summary["inputs"] == parts and len(manifest) == 9
    with pytest.raises(ValueError, match="no published manifest"):
        download_run(cfg_for(path=parts, variant="wild", verify="error"), *_outs(tmp_path))
    with pytest.raises(FileNotFoundError, match="download.path"):
        download_run(cfg_for(path=[parts[0], str(tmp_path / "part4.tar.gz")]), *_outs(tmp_path))


def test_run_writes_groups_pairs_and_sheet(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        (src / f"{20 + i}_0_1_2017010100000000{i}.jpg.chip.jpg").write_bytes(jpeg_bytes(i))
    (src / "24_0_1_20170101000000009.jpg.chip.jpg").write_bytes(jpeg_bytes(0))  # byte copy
    out = tmp_path / "out"
    summary = download_run(
        cfg_for(path=str(src), duplicates="keep_all"),
        *_outs(tmp_path),
        groups=out / "groups.csv",
        pairs=out / "pairs.csv",
        sheet=out / "sheet.png",
    )
    groups = read_table(out / "groups.csv")
    assert list(groups.columns) == ["file", "group", "group_size", "kind", "phash", "action"]
    assert groups["group_size"].tolist() == [2, 1, 1, 1, 2]
    assert summary["duplicates"]["exact_copies"] == 1
    assert (out / "sheet.png").stat().st_size > 0 and (out / "pairs.csv").exists()


def test_demo_landmarks_are_what_detection_finds():
    """The demo's committed landmarks of its two portraits are the detection cascade's, so the
    demo set is what it was when the cascade ran on each call."""
    from maskprivacy.datasets import demo
    from maskprivacy.faces import detect

    for name, image in demo.portraits().items():
        found, _ = detect.detect_landmarks(np.asarray(image), (0, 1))
        committed = np.array(demo.PORTRAIT_LANDMARKS[name].split(), dtype=float).reshape(68, 2)
        np.testing.assert_array_equal(committed, found, err_msg=name)


def test_download_stage_imports_no_detection_code():
    """An edit to the face detection cascade must not rerun download: its module graph (what
    the runners hash) holds no maskprivacy.faces module, nor dlib."""
    code = (
        "import sys; import maskprivacy.stages.download; "
        "print(sorted(m for m in sys.modules if m.startswith(('maskprivacy.faces', 'dlib'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("env", "shown"), [(None, True), ("1", False), ("0", True), ("true", False)]
)
def test_progress_bars_follow_tqdm_disable(tmp_path, monkeypatch, capsys, env, shown):
    """Cluster and CI logs turn the bars off with TQDM_DISABLE, as for any tqdm program; a
    stage asked for no progress shows none whatever the environment says."""
    from maskprivacy.datasets import demo

    if env is None:
        monkeypatch.delenv("TQDM_DISABLE", raising=False)
    else:
        monkeypatch.setenv("TQDM_DISABLE", env)
    demo.generate(tmp_path / "a", n_images=2, seed=0, progress=True)
    assert ("demo: 100%" in capsys.readouterr().err) is shown
    demo.generate(tmp_path / "b", n_images=2, seed=0, progress=False)
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------------------------
# odd entries of a source folder: accounted for, never opened, never followed out
# --------------------------------------------------------------------------------------------


ODD = {
    "27_0_0_20170101000000001.jpg.chip.jpg": "not_a_regular_file",  # a folder named like an image
    "28_1_0_20170101000000002.jpg.chip.jpg": "not_a_regular_file",  # a FIFO
    "29_0_1_20170101000000003.jpg.chip.jpg": "symlink_loop",
    "29_0_1_20170101000000004.jpg.chip.jpg": "symlink_loop",
    "30_1_1_20170101000000005.jpg.chip.jpg": "symlink_outside_source",  # -> /etc/passwd
    "31_0_2_20170101000000006.jpg.chip.jpg": "symlink_outside_source",  # -> ../outside/x.jpg
    "32_1_2_20170101000000007.jpg.chip.jpg": "broken_symlink",
    "33_0_3_20170101000000008.jpg.chip.jpg": "not_a_regular_file",  # a link to a folder
    "34_1_3_20170101000000009.jpg.chip.jpg": "not_a_regular_file",  # a socket
}
IN_SOURCE_LINK = "35_0_4_20170101000000010.jpg.chip.jpg"  # -> store/blob (a face, no image name)


def make_odd_folder(tmp_path: Path) -> tuple[Path, dict[str, str], bytes]:
    """GOOD images plus one entry of each odd kind; returns the folder, {name: reason} of what
    must be rejected, and the bytes of a file outside the folder that must never be copied."""
    src = tmp_path / "in"
    src.mkdir()
    for i, name in enumerate(GOOD):
        (src / name).write_bytes(jpeg_bytes(10 + i))
    odd = dict(ODD)
    names = list(ODD)
    (src / names[0]).mkdir()
    os.mkfifo(src / names[1])
    os.symlink(names[3], src / names[2])
    os.symlink(names[2], src / names[3])
    os.symlink("/etc/passwd", src / names[4])
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = jpeg_bytes(99)
    (outside / "x.jpg").write_bytes(secret)
    os.symlink("../outside/x.jpg", src / names[5])
    os.symlink("nowhere.jpg", src / names[6])
    (src / "store").mkdir()
    os.symlink("store", src / names[7])
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(src / names[8]))
    sock.close()
    (src / "store" / "blob").write_bytes(jpeg_bytes(20))
    os.symlink("store/blob", src / IN_SOURCE_LINK)
    odd["blob"] = "not_an_image_name"  # the link's target, listed where it is
    return src, odd, secret


@pytest.mark.timeout(60)  # opening the FIFO would block until a writer comes: fail instead
def test_odd_entries_of_a_source_folder_are_rejects_with_reasons(tmp_path):
    src, odd, secret = make_odd_folder(tmp_path)
    out = tmp_path / "out"
    summary, manifest, rejects = run_stage(cfg_for(path=str(src)), out)
    assert sorted(manifest["file"]) == sorted([*GOOD, IN_SOURCE_LINK])
    assert dict(zip(rejects["file"], rejects["reason"], strict=True)) == odd
    assert summary["n_inputs"] == len(GOOD) + 1 + len(odd)  # every directory entry counted
    detail = rejects.set_index("file")["detail"]
    assert "/etc/passwd" in detail[list(ODD)[4]] and "not followed" in detail[list(ODD)[4]]
    assert "folder named like an image" in detail[list(ODD)[0]]
    assert "FIFO" in detail[list(ODD)[1]]
    # nothing from outside the source was copied; the in-source link was followed
    passwd = Path("/etc/passwd").read_bytes()
    for p in (out / "images").iterdir():
        assert p.read_bytes() not in (passwd, secret)
    assert (out / "images" / IN_SOURCE_LINK).read_bytes() == (src / "store" / "blob").read_bytes()
    assert not (out / "images" / IN_SOURCE_LINK).is_symlink()


@pytest.mark.timeout(60)  # reading /dev/zero never ends: fail instead
def test_a_character_device_is_a_reject_never_opened(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / GOOD[0]).write_bytes(jpeg_bytes(10))
    device = "36_1_4_20170101000000011.jpg.chip.jpg"
    try:  # a character device like /dev/zero
        os.mknod(src / device, 0o600 | stat.S_IFCHR, os.makedev(1, 5))
    except PermissionError:
        pytest.skip("making a character device needs root (CAP_MKNOD); .ci/run runs as root")
    summary, manifest, rejects = run_stage(cfg_for(path=str(src)), tmp_path / "out")
    assert manifest["file"].tolist() == [GOOD[0]]
    assert dict(zip(rejects["file"], rejects["reason"], strict=True)) == {
        device: "not_a_regular_file"
    }
    assert summary["n_inputs"] == 2


# --------------------------------------------------------------------------------------------
# archive size limits: from the headers and while writing
# --------------------------------------------------------------------------------------------

MB = 2**20


def test_honest_oversize_member_is_refused_before_writing(tmp_path):
    big = {"UTKFace/" + GOOD[0]: bytes(3 * MB), "UTKFace/" + GOOD[1]: jpeg_bytes(1)}
    for archive in (make_tar(tmp_path / "a.tar.gz", big), make_zip(tmp_path / "a.zip", big)):
        dest = tmp_path / "box" / "out"
        with pytest.raises(ArchiveTooLargeError, match=r"max_member_mb \(1\.0 MB\)"):
            safe_extract(archive, dest, ArchiveLimits(max_member=MB))
        assert not (tmp_path / "box").exists() or not any((tmp_path / "box").iterdir())
    # the total cap, shared by the archives of one run
    limits = ArchiveLimits(max_member=4 * MB, max_total=5 * MB)
    safe_extract(make_zip(tmp_path / "b.zip", big), tmp_path / "b", limits)
    assert limits.used > 3 * MB
    with pytest.raises(ArchiveTooLargeError, match="max_total_gb"):
        safe_extract(make_tar(tmp_path / "c.tar", big, "w"), tmp_path / "c", limits)
    assert not (tmp_path / "c").exists()


def test_download_run_refuses_a_bomb_with_a_clear_error(tmp_path):
    """A gzip bomb through the stage, as a user meets it: 64 MB of zeros in a 64 kB archive."""
    archive = make_tar(tmp_path / "UTKFace.tar.gz", {"UTKFace/" + GOOD[0]: bytes(64 * MB)})
    assert archive.stat().st_size < MB
    out = tmp_path / "out"
    with pytest.raises(ArchiveTooLargeError, match="download.max_member_mb"):
        download_run(cfg_for(path=str(archive), max_member_mb=1), *_outs(tmp_path))
    left = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert left == []  # no partial member, no table


def _zip_lying_about_size(path: Path, real: bytes, claimed: int) -> Path:
    """A deflated zip whose local and central headers both claim ``claimed`` bytes (and whose
    CRC is that of the first ``claimed`` bytes, so the CRC check alone cannot notice)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("UTKFace/" + GOOD[0], real)
    raw = bytearray(path.read_bytes())
    crc = zlib.crc32(real[:claimed])
    lo = raw.find(b"PK\x03\x04")
    struct.pack_into("<I", raw, lo + 14, crc)
    struct.pack_into("<I", raw, lo + 22, claimed)
    cd = raw.find(b"PK\x01\x02")
    struct.pack_into("<I", raw, cd + 16, crc)
    struct.pack_into("<I", raw, cd + 24, claimed)
    path.write_bytes(bytes(raw))
    return path


def _tar_lying_about_size(path: Path, entries: dict[str, bytes], claimed: int) -> Path:
    """An uncompressed tar whose first member's header says ``claimed`` bytes."""
    make_tar(path, entries, "w")
    raw = bytearray(path.read_bytes())
    hdr = raw[:512]
    hdr[124:136] = f"{claimed:011o}\0".encode()
    hdr[148:156] = b" " * 8
    hdr[148:156] = f"{sum(hdr):06o}\0 ".encode()
    raw[:512] = hdr
    path.write_bytes(bytes(raw))
    return path


def test_zip_header_lying_about_size_gets_no_further(tmp_path):
    real = bytes(3 * MB)
    archive = _zip_lying_about_size(tmp_path / "a.zip", real, 1000)
    dest = tmp_path / "box" / "out"
    # the header passes the 1 MB check, zipfile stops at 1000 bytes and their CRC matches:
    # only the unfinished compressed stream shows the lie
    with pytest.raises(CorruptArchiveError, match="more data than its header says"):
        safe_extract(archive, dest, ArchiveLimits(max_member=MB))
    assert not (tmp_path / "box").exists() or not any((tmp_path / "box").iterdir())
    stored = tmp_path / "s.zip"
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("UTKFace/" + GOOD[0], bytes(5000))
    raw = bytearray(stored.read_bytes())
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        struct.pack_into("<I", raw, raw.find(sig) + off, 1000)
        struct.pack_into("<I", raw, raw.find(sig) + off - 8, zlib.crc32(bytes(1000)))
    stored.write_bytes(bytes(raw))
    with pytest.raises(CorruptArchiveError, match="lies"):
        safe_extract(stored, dest)
    assert not dest.exists()


@pytest.mark.parametrize("claimed", ["smaller", "larger"])
def test_tar_header_lying_about_size_is_a_clear_error(tmp_path, claimed):
    entries = {"UTKFace/" + n: jpeg_bytes(i) for i, n in enumerate(GOOD)}
    first = len(entries["UTKFace/" + GOOD[0]])
    size = 100 if claimed == "smaller" else first + 20_000
    archive = _tar_lying_about_size(tmp_path / "a.tar", entries, size)
    dest = tmp_path / "box" / "out"
    # tarfile alone would stop after the first member and the other two would vanish
    with pytest.raises(CorruptArchiveError, match="lies|damaged"):
        safe_extract(archive, dest)
    assert not (tmp_path / "box").exists() or not any((tmp_path / "box").iterdir())


def test_a_stream_longer_than_its_header_is_stopped_while_writing(tmp_path):
    """The copy itself counts bytes: a member giving more than its header declared, or more
    than a limit, stops there (the work folder holding the partial file is then removed)."""
    target = tmp_path / "m.jpg"
    limits = ArchiveLimits(max_member=MB)
    with pytest.raises(CorruptArchiveError, match="more bytes than its header says"):
        limits.copy(tmp_path / "a.zip", "m.jpg", io.BytesIO(bytes(3 * MB)), target, 1000)
    assert target.stat().st_size <= 1000  # stopped at what the header said, not at 3 MB
    limits = ArchiveLimits(max_total=MB, used=MB // 2)
    with pytest.raises(ArchiveTooLargeError, match="max_total_gb"):
        limits.copy(tmp_path / "a.zip", "m.jpg", io.BytesIO(bytes(3 * MB)), target, 3 * MB)
    assert target.stat().st_size <= MB // 2


def test_archive_members_with_the_same_path_are_rejects_not_overwrites(tmp_path):
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        for data in (jpeg_bytes(1), jpeg_bytes(2)):
            info = tarfile.TarInfo("UTKFace/" + GOOD[0])
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    summary, manifest, rejects = run_stage(cfg_for(path=str(archive)), tmp_path / "out")
    assert list(manifest["file"]) == [GOOD[0]]
    assert manifest["sha256"][0] == hashlib.sha256(jpeg_bytes(1)).hexdigest()  # the first kept
    assert list(rejects["reason"]) == ["duplicate_name"] and summary["n_inputs"] == 2
